"""The bad-input matrix: broken shop files through the real pipeline (DuckDB, dbt, Dagster).

One small generated shop is corrupted in known ways, then materialised once:

* line-level cases are lines injected into day files (``2026-09-02`` is read by DuckDB's
  CSV reader, ``2026-09-03`` holds the structural breakage that makes the loader split the
  file line by line); each bad line is followed by a good "sentinel" line (session
  ``OK-<case>``) that must load with its exact line number;
* day-level format cases are whole days (added column, reordered columns, CRLF + BOM,
  header only) and two catalogue cases;
* file-level cases that must stop a day (empty file, missing field, wrong delimiter,
  schema drift...) are days outside the main run, each materialised alone (``raw/events``
  for one partition) and expected to fail with a message naming the file, the line and
  the field - without touching what is already loaded.

Every case has a name in the parametrisation, so the report lists the outcome of each.
"""

from __future__ import annotations

import csv
import io
import shutil
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from recs_pipeline.definitions import build_defs
from recs_pipeline.sources.base import physical_lines
from recs_pipeline.warehouse import connection

from .conftest import settings_for

pytestmark = pytest.mark.slow

SHOP = dict(seed=5, n_days=8, n_users=80, n_items=50, events_per_day=150, dirt_rate=0.0)
DAYS = [date(2026, 9, 1) + timedelta(days=i) for i in range(7)]  # the main run: 09-01 .. 09-07
D_BASE, D_FAST, D_SLOW, D_ADDED, D_REORDERED, D_WINDOWS, D_HEADER_ONLY = DAYS
HEADER = ["user_id", "item_id", "event_type", "event_ts", "quantity", "price", "session_id", "search_query"]
SQL_ID = "x'); DROP TABLE raw.events; --"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def render(fields: list[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(fields)  # fields holding a newline get quoted
    return out.getvalue()[:-1].encode("utf-8")


def rel(day: date) -> str:
    return f"events/{day.isoformat()}.csv"


# --- Line-level cases -------------------------------------------------------------------
# Each builder gets a template (a valid purchase of a known user and item) and returns the
# physical lines of the case. The expected outcome is ("quarantine", reason),
# ("clean", {column: value}) or ("duplicate", None).


@dataclass(frozen=True)
class LineCase:
    name: str
    build: object  # (template dict, generator lines) -> list[bytes]
    outcome: tuple
    day: date = D_FAST
    last: bool = False  # must be the file's last line (no newline after it)


def v(t: dict, **changes) -> list[bytes]:
    return [render([str(changes.get(c, t[c])) for c in HEADER])]


def search(t: dict, **changes) -> list[bytes]:
    return v(t, item_id="", event_type="search", price="", **changes)


def unterminated(t: dict) -> bytes:
    """A search line whose query opens a quote and never closes it."""
    return render([t["user_id"], "", "search", t["event_ts"], "1", "", t["session_id"]]) + b',"red dre'


LINE_CASES = [
    # structure of a line
    LineCase("extra_field", lambda t, g: [v(t)[0] + b",web"], ("quarantine", "malformed_line")),
    LineCase("missing_fields", lambda t, g: [render([t["user_id"], t["item_id"], "purchase"])],
             ("quarantine", "malformed_line")),
    LineCase("non_utf8_bytes_in_search", lambda t, g: [search(t, search_query="cafX")[0].replace(b"cafX", b"caf\xe9")],
             ("quarantine", "malformed_line")),
    LineCase("non_utf8_bytes_in_user_id", lambda t, g: [b"U\xff" + v(t)[0]], ("quarantine", "malformed_line")),
    LineCase("field_of_1mb", lambda t, g: search(t, search_query="a" * 1_000_000), ("quarantine", "oversized_field")),
    LineCase("line_over_4mb", lambda t, g: search(t, search_query="b" * 4_100_000), ("quarantine", "malformed_line")),
    LineCase("all_fields_empty", lambda t, g: [b",,,,,,,"], ("quarantine", "missing_user_id")),
    LineCase("blank_lines", lambda t, g: [b"", b""], ("skipped", None)),
    # prices and quantities
    LineCase("price_nan", lambda t, g: v(t, price="NaN"), ("quarantine", "invalid_price")),
    LineCase("price_negative", lambda t, g: v(t, price="-9.99"), ("quarantine", "negative_price")),
    LineCase("price_absurd", lambda t, g: v(t, price="1e12"), ("quarantine", "invalid_price")),
    LineCase("price_infinite", lambda t, g: v(t, price="inf"), ("quarantine", "invalid_price")),
    LineCase("price_with_currency", lambda t, g: v(t, price="$9.99"), ("quarantine", "invalid_price")),
    LineCase("price_decimal_comma", lambda t, g: v(t, price="9,99"), ("quarantine", "invalid_price")),
    LineCase("quantity_nan", lambda t, g: v(t, quantity="nan"), ("quarantine", "invalid_quantity")),
    LineCase("quantity_negative", lambda t, g: v(t, quantity="-3"), ("quarantine", "invalid_quantity")),
    LineCase("quantity_zero", lambda t, g: v(t, quantity="0"), ("quarantine", "invalid_quantity")),
    LineCase("quantity_absurd", lambda t, g: v(t, quantity="1000000000"), ("quarantine", "invalid_quantity")),
    LineCase("quantity_fractional", lambda t, g: v(t, quantity="2.5"), ("quarantine", "invalid_quantity")),
    # ids
    LineCase("item_id_sql_injection", lambda t, g: v(t, item_id=SQL_ID), ("quarantine", "unknown_item")),
    LineCase("user_id_sql_injection", lambda t, g: v(t, user_id=SQL_ID), ("clean", {"user_id": SQL_ID})),
    LineCase("search_query_sql_injection", lambda t, g: search(t, search_query=SQL_ID),
             ("clean", {"search_query": SQL_ID})),
    LineCase("user_id_with_nul", lambda t, g: v(t, user_id=t["user_id"] + "\x00"), ("quarantine", "invalid_id")),
    LineCase("item_id_with_bell", lambda t, g: v(t, item_id="\x07" + t["item_id"]), ("quarantine", "invalid_id")),
    LineCase("session_id_with_tab", lambda t, g: v(t, session_id=t["session_id"] + "\t"), ("quarantine", "invalid_id")),
    LineCase("user_id_of_300_chars", lambda t, g: v(t, user_id="U" * 300), ("quarantine", "oversized_field")),
    LineCase("unknown_item", lambda t, g: v(t, item_id="I999999x"), ("quarantine", "unknown_item")),
    LineCase("unknown_user", lambda t, g: v(t, user_id="U999999x"), ("clean", {"user_id": "U999999x"})),
    LineCase("missing_user_id", lambda t, g: v(t, user_id=""), ("quarantine", "missing_user_id")),
    LineCase("unknown_event_type", lambda t, g: v(t, event_type="wishlist"), ("quarantine", "unknown_event_type")),
    LineCase("event_type_upper_case_padded", lambda t, g: v(t, event_type=" PURCHASE "),
             ("clean", {"event_type": "purchase"})),
    LineCase("rating_without_value", lambda t, g: v(t, event_type="rating", price=""),
             ("quarantine", "invalid_rating")),
    LineCase("exact_duplicate_line", lambda t, g: [g[0]], ("duplicate", None)),
    # timestamps
    LineCase("ts_without_zone", lambda t, g: v(t, event_ts="2026-09-02 10:00:00"),
             ("clean", {"event_ts": datetime(2026, 9, 2, 10)})),
    LineCase("ts_with_offset", lambda t, g: v(t, event_ts="2026-09-02T12:00:00+02:00"),
             ("clean", {"event_ts": datetime(2026, 9, 2, 10)})),
    LineCase("ts_with_zone_name", lambda t, g: v(t, event_ts="2026-09-02 06:00:00 America/New_York"),
             ("clean", {"event_ts": datetime(2026, 9, 2, 10)})),
    LineCase("ts_lower_case_z", lambda t, g: v(t, event_ts="2026-09-02T10:00:00z"),
             ("clean", {"event_ts": datetime(2026, 9, 2, 10)})),
    LineCase("ts_unknown_zone_name", lambda t, g: v(t, event_ts="2026-09-02 10:00:00 Mars/Olympus_Mons"),
             ("quarantine", "unparseable_timestamp")),
    LineCase("ts_offset_beyond_14h", lambda t, g: v(t, event_ts="2026-09-02T10:00:00+25:00"),
             ("quarantine", "unparseable_timestamp")),
    LineCase("ts_far_past", lambda t, g: v(t, event_ts="1970-01-01T00:00:00Z"),
             ("quarantine", "timestamp_out_of_range")),
    LineCase("ts_far_future", lambda t, g: v(t, event_ts="2999-01-01T00:00:00Z"), ("quarantine", "future_timestamp")),
    LineCase("ts_year_99999", lambda t, g: v(t, event_ts="99999-01-01T00:00:00Z"), ("quarantine", "future_timestamp")),
    LineCase("ts_epoch_seconds", lambda t, g: v(t, event_ts="1788350400"), ("quarantine", "unparseable_timestamp")),
    LineCase("ts_day_first", lambda t, g: v(t, event_ts="31/02/2026 10:00"), ("quarantine", "unparseable_timestamp")),
    LineCase("truncated_last_line", lambda t, g: [v(t)[0][:20]], ("quarantine", "malformed_line"), last=True),
    # structural breakage: the loader splits this day line by line
    LineCase("unterminated_quote_mid_file", lambda t, g: [unterminated(t)], ("quarantine", "malformed_line"),
             day=D_SLOW),
    LineCase("quoted_newline_in_search", lambda t, g: search(t, search_query="red\ndress"),
             ("clean", {"search_query": "red\ndress"}), day=D_SLOW),
    LineCase("quoted_newline_in_user_id", lambda t, g: v(t, user_id=t["user_id"] + "\nX"),
             ("quarantine", "invalid_id"), day=D_SLOW),
    LineCase("stray_carriage_return", lambda t, g: [v(t)[0].replace(b"BAD-", b"BAD\r-")],
             ("quarantine", "malformed_line"), day=D_SLOW),
    LineCase("truncated_last_line_in_quote", lambda t, g: [unterminated(t)], ("quarantine", "malformed_line"),
             day=D_SLOW, last=True),
]


# --- Day-level, catalogue and file-level cases --------------------------------------------

DAY_CASES = {
    "schema_drift_added_column": D_ADDED,
    "reordered_columns": D_REORDERED,
    "crlf_line_endings_and_bom": D_WINDOWS,
    "header_only": D_HEADER_ONLY,
}
CATALOGUE_CASES = ["catalogue_duplicate_item_ids", "catalogue_row_missing_for_item_in_events"]


@dataclass(frozen=True)
class FileCase:
    name: str
    day: date
    content: object  # bytes, or a function (generator lines of a good day) -> bytes; None: no file
    expected: tuple[str, ...]  # substrings of the failure message


def _semicolons(good: list[bytes]) -> bytes:
    return b"\n".join(";".join(next(csv.reader([line.decode()]))).encode() for line in good)


def _header(names: list[str], good: list[bytes], keep=None) -> bytes:
    rows = [next(csv.reader([line.decode()])) for line in good[1:]]
    keep = keep or list(range(len(HEADER)))
    return b"\n".join([render(names)] + [render([r[i] for i in keep]) for r in rows]) + b"\n"


FILE_CASES = [
    FileCase("empty_file", date(2026, 9, 10), b"", ("2026-09-10.csv", "line 1", "empty", "user_id, item_id")),
    FileCase("missing_required_column", date(2026, 9, 11),
             lambda g: _header([c for c in HEADER if c != "item_id"], g, [0, 2, 3, 4, 5, 6, 7]),
             ("2026-09-11.csv", "line 1", "lacks required field(s) item_id")),
    FileCase("wrong_delimiter", date(2026, 9, 12), lambda g: _semicolons(g) + b"\n",
             ("2026-09-12.csv", "line 1", "';'-separated", "user_id")),
    FileCase("utf16_file", date(2026, 9, 13), lambda g: b"\n".join(g).decode().encode("utf-16"),
             ("2026-09-13.csv", "line 1", "UTF-16", "user_id")),
    FileCase("duplicate_header_field", date(2026, 9, 14), lambda g: _header(HEADER[:-1] + ["user_id"], g),
             ("2026-09-14.csv", "line 1", "repeats the field(s) user_id")),
    # 09-15 is a good day: the reference of the drift cases after it
    FileCase("schema_drift_renamed_optional_column", date(2026, 9, 16),
             lambda g: _header([c if c != "price" else "unit_price" for c in HEADER], g),
             ("2026-09-16.csv", "line 1", "price", "unit_price", "2026-09-15.csv")),
    FileCase("schema_drift_dropped_column", date(2026, 9, 17),
             lambda g: _header([c if c != "price" else "unit_price" for c in HEADER if c != "session_id"], g,
                               [0, 1, 2, 3, 4, 5, 7]),
             ("2026-09-17.csv", "line 1", "session_id", "2026-09-16.csv")),
    FileCase("schema_drift_renamed_required_column", date(2026, 9, 18),
             lambda g: _header([c if c != "item_id" else "product_id" for c in HEADER], g),
             ("2026-09-18.csv", "line 1", "item_id", "product_id")),
    FileCase("no_file_for_the_day", date(2026, 9, 19), None, ("No events file for 2026-09-19",)),
    FileCase("duplicate_files_for_one_day", date(2026, 9, 20), lambda g: b"\n".join(g) + b"\n",
             ("two files for 2026-09-20", "2026-09-20.csv", "2026-09-20-resend.csv")),
]
OTHER_FILE_CASES = ["catalogue_malformed_line", "redelivered_broken_file_keeps_loaded_day"]
REDELIVERY_CASES = ["redelivered_day_replaces_loaded_day"]
N_CASES = (len(LINE_CASES) + len(DAY_CASES) + len(CATALOGUE_CASES) + len(FILE_CASES)
           + len(OTHER_FILE_CASES) + len(REDELIVERY_CASES))  # fmt: skip


# --- Building the landing zone --------------------------------------------------------------


@dataclass
class Plan:
    """Where every case and every good line ended up."""

    case_lines: dict[str, tuple[str, int]] = field(default_factory=dict)  # case -> (file, first line)
    sentinels: dict[str, tuple[str, int]] = field(default_factory=dict)  # case -> (file, line) of its good line
    good: set[tuple[str, int]] = field(default_factory=set)  # generator lines expected clean
    removed_item_lines: set[tuple[str, int]] = field(default_factory=set)
    records: dict[str, int] = field(default_factory=dict)  # file -> expected raw rows
    duplicate_of: dict[str, int] = field(default_factory=dict)
    removed_item: str = ""
    duplicated_item: str = ""


def build_landing(landing: Path) -> Plan:
    plan = Plan()
    events = landing / "events"
    generated = {d: (events / f"{d.isoformat()}.csv").read_bytes().split(b"\n")[:-1] for d in DAYS}
    rows = {d: [next(csv.reader([line.decode()])) for line in generated[d][1:]] for d in DAYS}

    # The catalogue loses its least-viewed item (its events become unknown_item) and
    # repeats another item with a new title (the last line wins).
    counts: dict[str, int] = {}
    for d in DAYS[:-1]:
        for r in rows[d]:
            if r[1]:
                counts[r[1]] = counts.get(r[1], 0) + 1
    plan.removed_item = min(sorted(counts), key=lambda i: counts[i])
    items = (landing / "items" / "items.csv").read_bytes().split(b"\n")
    kept = [line for line in items if not line.startswith(plan.removed_item.encode() + b",")]
    repeat = kept[1]
    plan.duplicated_item = repeat.split(b",")[0].decode()
    copy = next(csv.reader([repeat.decode()]))
    copy[1] = "LAST COPY WINS"
    (landing / "items" / "items.csv").write_bytes(b"\n".join([*kept[:-1], render(copy), b""]))

    template_row = next(r for r in rows[D_FAST] if r[2] == "purchase" and r[1] != plan.removed_item)
    keep = {d: [n for n, r in enumerate(rows[d], start=2) if r[1] != plan.removed_item] for d in DAYS}
    for d in DAYS[:-1]:
        for n, r in enumerate(rows[d], start=2):
            key = (rel(d), n)
            (plan.removed_item_lines if r[1] == plan.removed_item else plan.good).add(key)

    # Line-level days: the generator's lines, then each case and its sentinel.
    for day in (D_FAST, D_SLOW):
        lines = list(generated[day])
        cases = [c for c in LINE_CASES if c.day == day]
        for case in sorted(cases, key=lambda c: c.last):
            t = dict(zip(HEADER, template_row))
            t |= {"event_ts": f"{day.isoformat()}T10:00:00Z", "session_id": f"BAD-{case.name}", "search_query": ""}
            # the exact duplicate repeats a generated line that stays clean
            built = case.build(t, [generated[day][n - 1] for n in keep[day]])
            plan.case_lines[case.name] = (rel(day), len(lines) + 1)
            if case.name == "exact_duplicate_line":
                plan.duplicate_of[case.name] = keep[day][0]
            for chunk in built:
                lines.extend(chunk.split(b"\n"))  # a quoted newline makes two physical lines
            if not case.last:
                lines.append(v(t | {"session_id": f"OK-{case.name}"})[0])
                plan.sentinels[case.name] = (rel(day), len(lines))
        text = b"\n".join(lines) + (b"" if any(c.last for c in cases) else b"\n")
        (events / f"{day.isoformat()}.csv").write_bytes(text)
        n_continuations = sum(1 for c in cases if c.name.startswith("quoted_newline"))
        plan.records[rel(day)] = sum(1 for line in lines[1:] if line) - n_continuations

    # Day-level format cases rewrite a generated day.
    g = rows[D_ADDED]
    added = [render(HEADER + ["channel"])] + [render(r + ["web"]) for r in g]
    (events / f"{D_ADDED}.csv").write_bytes(b"\n".join(added) + b"\n")
    order = [2, 1, 7, 3, 0, 6, 5, 4]
    g = rows[D_REORDERED]
    (events / f"{D_REORDERED}.csv").write_bytes(
        b"\n".join([render([HEADER[i] for i in order])] + [render([r[i] for i in order]) for r in g]) + b"\n"
    )
    g = rows[D_WINDOWS]
    windows = [render(HEADER)] + [render(r) for r in g]
    (events / f"{D_WINDOWS}.csv").write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(windows) + b"\r\n")
    (events / f"{D_HEADER_ONLY}.csv").write_bytes(render(HEADER) + b"\n")
    for d in (D_BASE, D_ADDED, D_REORDERED, D_WINDOWS):
        plan.records[rel(d)] = len(rows[d])
    plan.records[rel(D_HEADER_ONLY)] = 0

    # File-level cases: days after the main run, loaded one by one by their tests.
    good_day = (events / "2026-09-08.csv").read_bytes().split(b"\n")[:-1]
    (events / "2026-09-15.csv").write_bytes(b"\n".join(good_day) + b"\n")
    for case in FILE_CASES:
        if case.content is None or case.name == "duplicate_files_for_one_day":
            continue
        content = case.content if isinstance(case.content, bytes) else case.content(good_day)
        (events / f"{case.day.isoformat()}.csv").write_bytes(content)
    (events / "2026-09-08.csv").unlink()  # keep the folder to the days of the plan
    return plan


# --- Running the pipeline -------------------------------------------------------------------


def error_text(result) -> str:
    """Every failure message of a run, causes included."""

    def chain(err) -> list[str]:
        if err is None:
            return []
        return [err.message, *chain(err.cause), *chain(getattr(err, "context", None))]

    parts = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            parts.extend(chain(event.event_specific_data.error))
    return "\n".join(parts)


@dataclass
class Matrix:
    settings: object
    landing: Path
    plan: Plan
    result: object
    outcome: dict  # (file, line) -> (kind, detail row)
    reconciliation: list
    checks_failed: list

    def pseudonym(self, user_id: str) -> str:
        from recs_pipeline.privacy.pseudonym import Pseudonymizer

        return Pseudonymizer.from_settings(self.settings.privacy).one(user_id)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> Matrix:
    from recs_pipeline.synthetic.shop import ShopConfig, generate_landing_zone

    root = tmp_path_factory.mktemp("bad_inputs")
    landing = root / "landing"
    generate_landing_zone(landing, ShopConfig(**SHOP))
    plan = build_landing(landing)
    settings = settings_for(root, RECS_LANDING_DIR=str(landing))
    job = build_defs(settings).resolve_job_def("nightly_job")
    result = job.execute_in_process(
        tags={RANGE_START: DAYS[0].isoformat(), RANGE_END: DAYS[-1].isoformat()}, raise_on_error=False
    )
    if not result.success:
        pytest.fail(f"the main run failed: {error_text(result)[:3000]}")
    outcome: dict = {}
    with connection(settings.warehouse_path, read_only=True) as con:
        for f, line, user, ts, query, etype in con.execute(
            "SELECT source_file, source_line, user_id, event_ts, search_query, event_type FROM staging.stg_events"
        ).fetchall():
            outcome.setdefault((f, line), []).append(
                ("clean", {"user_id": user, "event_ts": ts, "search_query": query, "event_type": etype})
            )
        for f, line, reason, parse_error in con.execute(
            "SELECT source_file, source_line, reject_reason, parse_error FROM quality.quarantine_events"
        ).fetchall():
            outcome.setdefault((f, line), []).append(("quarantine", {"reason": reason, "parse_error": parse_error}))
        for f, line, first in con.execute(
            "SELECT source_file, source_line, first_source_line FROM quality.duplicate_events"
        ).fetchall():
            outcome.setdefault((f, line), []).append(("duplicate", {"first_source_line": first}))
        reconciliation = con.execute(
            "SELECT partition_date, raw_rows, clean_rows, quarantined_rows, duplicate_rows, is_balanced "
            "FROM quality.event_reconciliation ORDER BY 1"
        ).fetchall()
    # The data checks (ERROR severity); the model gates (WARN) judge quality, and on a
    # shop this small the ranker may well lose to the blend.
    checks_failed = [
        e.event_specific_data.check_name
        for e in result.all_events
        if e.event_type_value == "ASSET_CHECK_EVALUATION" and not e.event_specific_data.passed
        and e.event_specific_data.severity == dg.AssetCheckSeverity.ERROR
    ]
    return Matrix(settings, landing, plan, result, outcome, reconciliation, checks_failed)


def only(matrix: Matrix, key: tuple[str, int]):
    found = matrix.outcome.get(key, [])
    assert len(found) == 1, f"{key}: expected exactly one outcome, got {found}"
    return found[0]


# --- The tests ------------------------------------------------------------------------------


def test_the_matrix_has_at_least_25_cases():
    assert N_CASES >= 25
    names = [c.name for c in LINE_CASES] + list(DAY_CASES) + CATALOGUE_CASES + [c.name for c in FILE_CASES]
    assert len(names) == len(set(names))


def test_the_main_run_succeeds_and_every_check_passes(matrix):
    assert matrix.result.success, error_text(matrix.result)
    assert matrix.checks_failed == []


@pytest.mark.parametrize("case", LINE_CASES, ids=[c.name for c in LINE_CASES])
def test_line_case(matrix, case: LineCase):
    key = matrix.plan.case_lines[case.name]
    kind, expected = case.outcome
    if kind == "skipped":
        for n in (key[1], key[1] + 1):  # the blank lines hold no record
            assert (key[0], n) not in matrix.outcome
    else:
        got_kind, row = only(matrix, key)
        assert got_kind == kind, (case.name, row)
        if kind == "quarantine":
            assert row["reason"] == expected, (case.name, row)
        elif kind == "duplicate":
            assert row["first_source_line"] == matrix.plan.duplicate_of[case.name]
        else:
            # user ids are pseudonymised on load: the pseudonym of the exact id proves it was kept verbatim
            want = {k: matrix.pseudonym(x) if k == "user_id" else x for k, x in expected.items()}
            assert {k: row[k] for k in expected} == want
    # The good line right after the bad one loads, with its own line number.
    if case.name in matrix.plan.sentinels:
        got_kind, row = only(matrix, matrix.plan.sentinels[case.name])
        assert got_kind == "clean" and row["user_id"] is not None, (case.name, row)
    assert_day_reconciles(matrix, case.day)


def assert_day_reconciles(matrix: Matrix, day: date) -> None:
    """raw = clean + quarantined + duplicates for the day, and raw = the records of its file."""
    rows = [r for r in matrix.reconciliation if r[0] == day]
    expected = matrix.plan.records[rel(day)]
    if expected == 0:
        assert rows == []  # nothing loaded, nothing to reconcile
        return
    [(_, raw, clean, quarantined, duplicates, balanced)] = rows
    assert raw == expected and raw == clean + quarantined + duplicates and balanced, rows


def test_every_generated_line_loads_with_its_line_number(matrix):
    """The shop's own lines (every day, before and after the injected ones) are all clean."""
    wrong = [key for key in matrix.plan.good if [k for k, _ in matrix.outcome.get(key, [])] != ["clean"]]
    assert wrong == []


def test_raw_rows_reconcile_on_every_day(matrix):
    for day in DAYS:
        assert_day_reconciles(matrix, day)
    # ... and no row landed in two of the three outputs.
    assert [key for key, found in matrix.outcome.items() if len(found) != 1] == []


@pytest.mark.parametrize("name", list(DAY_CASES), ids=list(DAY_CASES))
def test_day_case(matrix, name: str):
    day = DAY_CASES[name]
    with connection(matrix.settings.warehouse_path, read_only=True) as con:
        raw = con.execute("SELECT count(*) FROM raw.events WHERE partition_date = ?", [day]).fetchall()[0][0]
        clean = con.execute("SELECT count(*) FROM staging.stg_events WHERE partition_date = ?", [day]).fetchall()[0][0]
    assert raw == matrix.plan.records[rel(day)]
    lost = sum(1 for f, _ in matrix.plan.removed_item_lines if f == rel(day))
    assert clean == raw - lost
    assert_day_reconciles(matrix, day)
    if name == "reordered_columns":
        # read by name: the values are where they belong
        with connection(matrix.settings.warehouse_path, read_only=True) as con:
            bad = con.execute(
                "SELECT count(*) FROM staging.stg_events WHERE partition_date = ? AND NOT "
                "(coalesce(item_id LIKE 'I%', event_type = 'search') AND session_id LIKE 'S%' AND event_type IN "
                "('view', 'search', 'add_to_cart', 'remove_from_cart', 'purchase', 'impression', 'click'))",
                [day],
            ).fetchall()[0][0]
        assert bad == 0


def test_each_reader_handles_its_day(matrix, monkeypatch):
    """2026-09-02 is read by DuckDB's reader; 2026-09-03 (quoted newlines, an unterminated
    quote, a stray CR) line by line. Forced line by line, 2026-09-02 gives the same rows."""
    import duckdb

    from recs_pipeline.sources import base

    calls = []
    original = base._parse_line_by_line
    monkeypatch.setattr(base, "_parse_line_by_line", lambda *a, **k: calls.append(1) or original(*a, **k))

    def parse(day: date) -> tuple[list, list]:
        con = duckdb.connect()
        parsed = base.parse_delimited(con, matrix.landing / rel(day), name="events", required=tuple(HEADER[:4]))
        good = con.execute(f"SELECT * FROM {parsed.table} ORDER BY source_line").fetchall()
        bad = con.execute(f"SELECT line, error, csv_line FROM {parsed.rejects} ORDER BY line").fetchall()
        return good, bad

    by_duckdb = parse(D_FAST)
    assert calls == []
    parse(D_SLOW)
    assert calls == [1]
    monkeypatch.setattr(base, "_parse_with_duckdb", lambda *a, **k: False)
    assert parse(D_FAST) == by_duckdb


def test_catalogue_duplicate_item_ids(matrix):
    with connection(matrix.settings.warehouse_path, read_only=True) as con:
        rows = con.execute(
            "SELECT title FROM staging.stg_items WHERE item_id = ?", [matrix.plan.duplicated_item]
        ).fetchall()
    assert rows == [("LAST COPY WINS",)]


def test_catalogue_row_missing_for_item_in_events(matrix):
    lines = matrix.plan.removed_item_lines
    assert lines
    got = {key: only(matrix, key) for key in lines}
    assert {(k, r["reason"]) for k, r in got.values()} == {("quarantine", "unknown_item")}


def test_unknown_users_are_kept_with_unknown_attributes(matrix):
    """By design (features/user_features): events of users missing from the user snapshot
    are clean; the user gets a row with NULL attributes. Ids are kept verbatim (as the
    pseudonym of the exact id) and never run as SQL."""
    users = [matrix.pseudonym("U999999x"), matrix.pseudonym(SQL_ID)]
    with connection(matrix.settings.warehouse_path, read_only=True) as con:
        rows = dict(con.execute(
            "SELECT user_id, country FROM features.user_features WHERE user_id IN (?, ?)", users
        ).fetchall())
        assert con.execute("SELECT count(*) FROM raw.events").fetchall()[0][0] > 0  # nothing was dropped
    assert rows == {users[0]: None, users[1]: None}


# --- File-level cases: one partition of raw/events each -------------------------------------


@pytest.fixture(scope="module")
def raw_events_run(matrix):
    defs = build_defs(matrix.settings)
    job = defs.resolve_job_def("nightly_job")

    def run(day: date):
        return job.execute_in_process(
            partition_key=day.isoformat(), asset_selection=[dg.AssetKey(["raw", "events"])], raise_on_error=False
        )

    return run


def raw_counts(settings) -> list:
    with connection(settings.warehouse_path, read_only=True) as con:
        return con.execute("SELECT partition_date, count(*) FROM raw.events GROUP BY 1 ORDER BY 1").fetchall()


@pytest.mark.parametrize("case", FILE_CASES, ids=[c.name for c in FILE_CASES])
def test_file_case_stops_the_day_with_a_clear_error(matrix, raw_events_run, case: FileCase):
    before = raw_counts(matrix.settings)
    stray = matrix.landing / "events" / f"{case.day.isoformat()}-resend.csv"
    if case.name == "duplicate_files_for_one_day":
        good = (matrix.landing / "events" / "2026-09-15.csv").read_bytes()
        (matrix.landing / "events" / f"{case.day.isoformat()}.csv").write_bytes(good)
        stray.write_bytes(good)
    try:
        result = raw_events_run(case.day)
    finally:
        if stray.exists():
            stray.unlink()
            (matrix.landing / "events" / f"{case.day.isoformat()}.csv").unlink()
    assert not result.success
    message = error_text(result)
    for part in case.expected:
        assert part in message, f"{part!r} not in: {message}"
    assert raw_counts(matrix.settings) == before  # nothing loaded, nothing lost


def test_redelivered_broken_file_keeps_loaded_day(matrix, raw_events_run):
    path = matrix.landing / "events" / f"{D_BASE}.csv"
    before, original = raw_counts(matrix.settings), path.read_bytes()
    path.write_bytes(b"")
    try:
        result = raw_events_run(D_BASE)
    finally:
        path.write_bytes(original)
    assert not result.success
    assert "2026-09-01.csv: line 1: the file is empty" in error_text(result)
    assert raw_counts(matrix.settings) == before  # the loaded version of the day is intact


def test_catalogue_malformed_line(matrix, tmp_path):
    landing = tmp_path / "landing"
    shutil.copytree(matrix.landing, landing)
    items = landing / "items" / "items.csv"
    lines = items.read_bytes().split(b"\n")
    lines.insert(5, b"I77777,broken line")
    items.write_bytes(b"\n".join(lines))
    settings = settings_for(tmp_path, RECS_LANDING_DIR=str(landing))
    job = build_defs(settings).resolve_job_def("nightly_job")
    result = job.execute_in_process(
        partition_key=D_BASE.isoformat(), asset_selection=[dg.AssetKey(["raw", "items"])], raise_on_error=False
    )
    assert not result.success
    message = error_text(result)
    assert "items/items.csv: line 6 cannot be parsed" in message, message


def test_redelivered_day_replaces_loaded_day(matrix, tmp_path):
    """A corrected file for a day already loaded replaces it: no line counted twice, other days untouched."""
    landing, warehouse = tmp_path / "landing", tmp_path / "warehouse.duckdb"
    shutil.copytree(matrix.landing, landing)
    shutil.copy(matrix.settings.warehouse_path, warehouse)
    settings = settings_for(tmp_path, RECS_LANDING_DIR=str(landing))
    path = landing / "events" / f"{D_BASE}.csv"
    lines = path.read_bytes().split(b"\n")[:-1]
    bad = next(csv.reader([lines[1].decode()]))
    bad[5], bad[6] = "-1.00", "REDELIVERED"
    lines = [*lines[:-5], render(bad)]
    path.write_bytes(b"\n".join(lines) + b"\n")

    query = "SELECT partition_date, count(*) FROM staging.stg_events GROUP BY 1 ORDER BY 1"
    with connection(warehouse, read_only=True) as con:
        other_days_before = [r for r in con.execute(query).fetchall() if r[0] != D_BASE]
    defs = build_defs(settings)
    selection = dg.AssetSelection.groups("ingest", "transform", "quality").resolve(defs.resolve_asset_graph())
    result = defs.resolve_job_def("nightly_job").execute_in_process(
        partition_key=D_BASE.isoformat(), asset_selection=list(selection), raise_on_error=False
    )
    assert result.success, error_text(result)
    with connection(warehouse, read_only=True) as con:
        raw = con.execute("SELECT count(*), count(DISTINCT source_line) FROM raw.events WHERE partition_date = ?",
                          [D_BASE]).fetchall()[0]
        reason = con.execute("SELECT reject_reason FROM quality.quarantine_events WHERE session_id = 'REDELIVERED'"
                             ).fetchall()
        balanced = con.execute("SELECT bool_and(is_balanced) FROM quality.event_reconciliation").fetchall()[0][0]
        other_days_after = [r for r in con.execute(query).fetchall() if r[0] != D_BASE]
    assert raw == (len(lines) - 1, len(lines) - 1)
    assert reason == [("negative_price",)]
    assert balanced and other_days_after == other_days_before


def test_a_range_run_rejects_each_bad_file_alone_and_loads_the_good_day(matrix, tmp_path):
    """The file cases in one backfill (09-10 .. 09-18): every bad file becomes a row of
    quality.rejected_files with its reason and lines, the good day between them (09-15)
    loads, and the run succeeds."""
    landing, warehouse = tmp_path / "landing", tmp_path / "warehouse.duckdb"
    shutil.copytree(matrix.landing, landing)
    shutil.copy(matrix.settings.warehouse_path, warehouse)
    settings = settings_for(tmp_path, RECS_LANDING_DIR=str(landing))
    first, last = date(2026, 9, 10), date(2026, 9, 18)
    result = build_defs(settings).resolve_job_def("nightly_job").execute_in_process(
        tags={RANGE_START: first.isoformat(), RANGE_END: last.isoformat()},
        asset_selection=[dg.AssetKey(["raw", "events"]), dg.AssetKey(["quality", "rejected_files"])],
        raise_on_error=False,
    )
    assert result.success, error_text(result)
    with connection(warehouse, read_only=True) as con:
        rejected = con.execute(
            "SELECT partition_date, source_file, reason, first_offending_line, rejected_lines FROM quality.rejected_files "
            "WHERE resolved_at IS NULL AND partition_date BETWEEN ? AND ? ORDER BY 1", [first, last]
        ).fetchall()
        loaded = con.execute(
            "SELECT DISTINCT partition_date FROM raw.events WHERE partition_date BETWEEN ? AND ?", [first, last]
        ).fetchall()
    cases = {c.day: c for c in FILE_CASES if first <= c.day <= last}
    assert [r[0] for r in rejected] == sorted(cases) and loaded == [(date(2026, 9, 15),)]
    for day, source_file, reason, line, n_lines in rejected:
        assert source_file == rel(day) and line == 1, (day, reason)
        assert all(part in reason for part in cases[day].expected if part != "line 1"), (day, reason)
        assert n_lines == max(physical_lines(landing / rel(day)) - 1, 0), (day, n_lines)
    # The materialisation (one event per day of the range, the same metadata) says so too.
    events = [e for e in result.get_asset_materialization_events()
              if e.asset_key == dg.AssetKey(["quality", "rejected_files"])]  # fmt: skip
    days = [r["day"] for r in events[0].materialization.metadata["rejected_files"].value]
    assert days == [d.isoformat() for d in sorted(cases)]
