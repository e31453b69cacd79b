"""Real Online Retail days in the shapes shops really send, through the real pipeline.

Six days of ../shared/data: one exported by a spreadsheet (every line ends in ``,,``),
one in the data set's original timestamp layout (``12/3/2010 9:00``), one with a truly
repeated header field, the others as they are. Run as a user would (``recs run``):

* the repeated-header day is rejected alone (quality.rejected_files, its lines counted
  in the reconciliation) and ``recs run`` ends non-zero naming it, while the other five
  days and everything downstream of them load;
* the ``,,`` day loads with a warning; the original-layout day parses clean (the
  adapter knows its data set's layout) and the snapshots derived from it never crash;
* with a timestamp layout that parses nothing, that day is all quarantined: no dbt
  model crashes, and the blocking check names the day, the reason and an example line;
* a dbt model that fails shows up as one line naming the model and dbt's own error.
"""

from __future__ import annotations

import csv
import io
from datetime import date, datetime
from pathlib import Path

import dagster as dg
import pytest

from recs_pipeline.cli import failure_lines, main
from recs_pipeline.definitions import build_defs
from recs_pipeline.warehouse import connection

from .conftest import ONLINE_RETAIL, settings_for

pytestmark = [pytest.mark.slow, pytest.mark.realdata]

DAYS = [date(2010, 12, d) for d in (1, 2, 3, 5, 6, 7)]
D_TRAILING, D_ORIGINAL_TS, D_REPEATED = DAYS[1], DAYS[2], DAYS[3]
# Everything up to the reconciliation and the snapshots derived from all files.
SELECTION = (
    "raw/events,raw/items,raw/users,quality/rejected_files,staging/int_events_validated,staging/stg_events,staging/stg_message_events,"
    "quality/quarantine_events,quality/duplicate_events,staging/stg_users,staging/stg_items,"
    "quality/event_reconciliation"
)


def rows_of(day: date) -> list[list[str]]:
    with (ONLINE_RETAIL / f"{day}.csv").open(newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def write_rows(path: Path, rows: list[list[str]]) -> None:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    path.write_text(out.getvalue(), encoding="utf-8")


def original_layout(ts: str) -> str:
    """2010-12-03 09:05:00 -> 12/3/2010 9:05, as UCI publishes the data set."""
    t = datetime.fromisoformat(ts)
    return f"{t.month}/{t.day}/{t.year} {t.hour}:{t.minute:02d}"


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("online_retail")
    for day in DAYS:
        rows = rows_of(day)
        if day == D_TRAILING:
            rows = [r + ["", ""] for r in rows]
        elif day == D_ORIGINAL_TS:
            rows = [rows[0]] + [r[:4] + [original_layout(r[4])] + r[5:] for r in rows[1:]]
        elif day == D_REPEATED:
            rows = [rows[0] + ["Quantity"]] + [r + [r[3]] for r in rows[1:]]
        write_rows(folder / f"{day}.csv", rows)
    return folder


def run_cli(tmp: Path, shop: Path, **env: str) -> tuple[int, str]:
    """``recs run`` over the six days, as a user types it; returns (exit code, output)."""
    import contextlib

    output = io.StringIO()
    with pytest.MonkeyPatch.context() as monkeypatch:
        for name, value in {"RECS_DATA_DIR": str(tmp), "RECS_SOURCE": "online_retail",
                            "RECS_SOURCE_PATH": str(shop), "RECS_HOLDOUT_DAYS": "2", **env}.items():  # fmt: skip
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("DAGSTER_HOME", raising=False)
        monkeypatch.delenv("RECS_WAREHOUSE", raising=False)  # a run exports it for dbt
        with contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            code = main(["run", "--select", SELECTION, "--start", str(DAYS[0]), "--end", str(DAYS[-1]), "--quiet"])
    return code, output.getvalue()


@pytest.fixture(scope="module")
def loaded(shop, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("warehouse")
    code, output = run_cli(tmp, shop)
    return tmp, code, output


def query(tmp: Path, sql: str, params=None) -> list[tuple]:
    with connection(tmp / "warehouse.duckdb", read_only=True) as con:
        return con.execute(sql, params or []).fetchall()


def test_the_run_ends_non_zero_and_names_the_rejected_file_alone(loaded):
    tmp, code, output = loaded
    assert code == 1, output
    assert f"1 file(s) rejected, the other days loaded: {D_REPEATED}.csv" in output, output
    assert "repeats the field(s) Quantity ('Quantity' in columns 4, 9)" in output, output
    assert "Traceback" not in output


def test_every_other_day_loads_and_the_rejected_day_reconciles(loaded):
    tmp, _, _ = loaded
    assert [r[0] for r in query(tmp, "SELECT DISTINCT partition_date FROM raw.events ORDER BY 1")] == [
        d for d in DAYS if d != D_REPEATED
    ]
    [(day, source_file, line, n_lines, resolved)] = query(
        tmp, "SELECT partition_date, source_file, first_offending_line, rejected_lines, resolved_at "
        "FROM quality.rejected_files"
    )
    assert (day, source_file, line, resolved) == (D_REPEATED, f"{D_REPEATED}.csv", 1, None)
    assert n_lines == len(rows_of(D_REPEATED)) - 1
    recon = {r[0]: r[1:] for r in query(
        tmp, "SELECT partition_date, raw_rows, clean_rows + quarantined_rows + duplicate_rows, rejected_lines, "
        "is_balanced FROM quality.event_reconciliation")}  # fmt: skip
    assert recon[D_REPEATED] == (0, 0, n_lines, True)
    for d in DAYS:
        if d != D_REPEATED:
            raw, accounted, rejected, balanced = recon[d]
            assert raw == len(rows_of(d)) - 1 and accounted == raw and rejected == 0 and balanced, (d, recon[d])


def test_trailing_empty_columns_load_with_a_warning(loaded, shop):
    tmp, _, _ = loaded
    [(raw, clean)] = query(
        tmp, "SELECT (SELECT count(*) FROM raw.events WHERE partition_date = ?), "
        "(SELECT count(*) FROM staging.stg_events WHERE partition_date = ?)", [D_TRAILING, D_TRAILING]
    )
    assert raw == len(rows_of(D_TRAILING)) - 1 and clean > 0.9 * raw
    from recs_pipeline.sources.adapters import OnlineRetailSource

    [warning] = OnlineRetailSource(shop).header_warnings([D_TRAILING])
    assert "2 trailing column(s) without a name (column 9, 10) ignored" in warning


def test_the_original_timestamp_layout_parses_and_snapshots_never_crash(loaded):
    tmp, _, _ = loaded
    iso = {(i + 2): r[4] for i, r in enumerate(rows_of(D_ORIGINAL_TS)[1:])}
    rows = query(
        tmp, "SELECT source_line, strftime(timezone('Europe/London', event_ts), '%Y-%m-%d %H:%M:%S') "
        "FROM staging.stg_events WHERE partition_date = ?", [D_ORIGINAL_TS]
    )
    assert len(rows) > 500 and all(ts == iso[line] for line, ts in rows)
    assert query(tmp, "SELECT count(*) FROM quality.quarantine_events WHERE partition_date = ? "
                 "AND reject_reason = 'unparseable_timestamp'", [D_ORIGINAL_TS]) == [(0,)]  # fmt: skip
    # Users and items first seen that day get their dates from the parsed invoice times.
    [(users, dated)] = query(tmp, "SELECT count(*), count(signup_date) FROM staging.stg_users")
    assert users > 0 and dated == users


def test_a_layout_that_parses_nothing_quarantines_the_day_and_the_check_names_it(shop, tmp_path):
    code, output = run_cli(tmp_path, shop, RECS_TIMESTAMP_FORMAT="%d.%m.%Y %H:%M")
    assert code == 1
    first = rows_of(D_ORIGINAL_TS)[1]
    assert (f"check days_within_quarantine_share on staging/stg_events failed: {D_ORIGINAL_TS}: 100% of "
            in output), output  # fmt: skip
    assert "mostly unparseable_timestamp" in output
    assert f"e.g. {D_ORIGINAL_TS}.csv line 2 (event_ts {original_layout(first[4])!r})" in output
    assert "timestamp_format" in output and "DagsterDbtCliRuntimeError" not in output
    # No dbt model crashed: the day's lines are all in the quarantine, the others clean.
    [(raw, quarantined)] = query(
        tmp_path, "SELECT (SELECT count(*) FROM raw.events WHERE partition_date = $1), "
        "(SELECT count(*) FROM quality.quarantine_events WHERE partition_date = $1)", [D_ORIGINAL_TS]
    )
    assert raw == len(rows_of(D_ORIGINAL_TS)) - 1 and quarantined == raw


def test_snapshot_values_no_cast_can_read_become_null_not_a_crash(loaded):
    """The crash of stg_users on Online Retail's other layout (`invalid date field format`)."""
    tmp, _, _ = loaded
    settings = settings_for(tmp, RECS_SOURCE="online_retail", RECS_SOURCE_PATH=str(ONLINE_RETAIL))
    with connection(settings.warehouse_path) as con:
        con.execute("UPDATE raw.users SET signup_date = '12/1/2010 ' WHERE user_id = (SELECT min(user_id) FROM raw.users)")
        con.execute("UPDATE raw.items SET launch_date = '2010-13-45', price = '1,5' "
                    "WHERE item_id = (SELECT min(item_id) FROM raw.items)")  # fmt: skip
    job = build_defs(settings).resolve_implicit_global_asset_job_def()
    keys = [dg.AssetKey(["staging", "stg_users"]), dg.AssetKey(["staging", "stg_items"])]
    result = job.execute_in_process(asset_selection=keys, raise_on_error=False)
    assert result.success, failure_lines(result)
    first_user = "(SELECT min(user_id) FROM raw.users)"
    first_item = "(SELECT min(item_id) FROM raw.items)"
    assert query(tmp, f"SELECT signup_date FROM staging.stg_users WHERE user_id = {first_user}") == [(None,)]
    assert query(tmp, f"SELECT launch_date, price FROM staging.stg_items WHERE item_id = {first_item}") == [(None, None)]


def test_a_failing_dbt_model_is_one_line_naming_the_model_and_dbts_error(loaded):
    tmp, _, _ = loaded
    settings = settings_for(tmp, RECS_SOURCE="online_retail", RECS_SOURCE_PATH=str(ONLINE_RETAIL))
    with connection(settings.warehouse_path) as con:
        con.execute("ALTER TABLE raw.users RENAME COLUMN signup_date TO signed_up")
    job = build_defs(settings).resolve_implicit_global_asset_job_def()
    result = job.execute_in_process(asset_selection=[dg.AssetKey(["staging", "stg_users"])], raise_on_error=False)
    assert not result.success
    lines = failure_lines(result)
    assert any(
        line.startswith("dbt_models: stg_users: Binder Error: ") and "signup_date" in line
        and f"(dbt log: {tmp / 'logs' / 'dbt' / 'dbt.log'})" in line
        for line in lines
    ), lines
