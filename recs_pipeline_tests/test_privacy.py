"""Privacy on the real pipeline (DuckDB, dbt, Dagster) and a small generated shop:
pseudonymised ids, direct identifiers kept out, retention, erasure, and the key."""

from __future__ import annotations

import csv
import hashlib
import hmac
import json
import re
import shutil
from dataclasses import replace
from datetime import date
from pathlib import Path

import dagster as dg
import duckdb
import pandas as pd
import pytest

from recs_pipeline.definitions import build_defs
from recs_pipeline.privacy import Pseudonymizer
from recs_pipeline.privacy.erasure import ERASURE_LOG
from recs_pipeline.privacy.lines import LineLayout, id_pattern, redact_line
from recs_pipeline.settings import DEMO_PSEUDONYM_KEY, load_settings
from recs_pipeline.sources.adapters import build_source
from recs_pipeline.synthetic.shop import DIRECT_IDENTIFIER_COLUMNS, ShopConfig, generate_landing_zone
from recs_pipeline.warehouse import connection

from .conftest import settings_for
from .test_pipeline import run_all_days

pytestmark = pytest.mark.slow

PSEUDONYM = r"^u_[0-9a-f]{16}$"
CONFIG = ShopConfig(seed=11, n_days=7, n_users=240, n_items=120, events_per_day=900, dirt_rate=0.03)


# --- helpers ------------------------------------------------------------------------


def all_tables(con: duckdb.DuckDBPyConnection, catalog: str | None = None) -> list[str]:
    where = f"database_name = '{catalog}'" if catalog else "database_name = current_database()"
    return [
        f'"{s}"."{t}"'
        for s, t in con.execute(f"SELECT schema_name, table_name FROM duckdb_tables() WHERE {where} ORDER BY ALL").fetchall()
    ]


def tables_mentioning(path: Path, values: list[str], skip_schemas: tuple[str, ...] = ()) -> dict[str, int]:
    """Table -> rows whose text (every column, cast together) contains one of ``values``
    as a whole token. Every table and column of the file is scanned."""
    found = {}
    pattern = id_pattern(values)
    with connection(path, read_only=True) as con:
        for table in all_tables(con):
            if table.split(".")[0].strip('"') in skip_schemas:
                continue
            n = con.execute(
                f"SELECT count(*) FROM {table} t WHERE regexp_matches(CAST(t AS VARCHAR), ?)", [pattern]
            ).fetchall()[0][0]
            if n:
                found[table] = n
    return found


def tables_containing(path: Path, values: list[str]) -> dict[str, int]:
    """Table -> rows whose text contains one of ``values`` anywhere (substring)."""
    found = {}
    with connection(path, read_only=True) as con:
        con.execute("CREATE TEMP TABLE needles AS SELECT unnest(?::VARCHAR[]) AS v", [values])
        for table in all_tables(con):
            n = con.execute(
                f"SELECT count(*) FROM (SELECT CAST(t AS VARCHAR) AS line FROM {table} t) r "
                "WHERE EXISTS (SELECT 1 FROM needles WHERE contains(r.line, needles.v))"
            ).fetchall()[0][0]
            if n:
                found[table] = n
    return found


def shop_user_ids(landing: Path) -> list[str]:
    return pd.read_csv(landing / "users" / "users.csv", dtype=str)["user_id"].tolist()


def files_mentioning(root: Path, values: list[str]) -> list[str]:
    import re

    rx = re.compile(id_pattern(values))
    return sorted(
        str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.suffix in (".csv", ".json", ".txt")
        and rx.search(p.read_text(encoding="utf-8", errors="replace"))
    )


def copy_pipeline(settings, target: Path):
    """A private copy of a built pipeline (landing zone, warehouse, snapshot, models)."""
    shutil.copytree(settings.data_dir, target, dirs_exist_ok=True)
    return settings_for(target, RECS_LANDING_DIR=str(target / "landing"))


def byte_count(path: Path, value: str) -> int:
    """Occurrences of ``value`` (ASCII) in the bytes of a file: rows, freed blocks, all."""
    return Path(path).read_bytes().count(value.encode("ascii"))


def sha256_hex(pseudonym: str) -> str:
    return hashlib.sha256(pseudonym.encode()).hexdigest()


def privacy_rows_naming(path: Path, pseudonym: str) -> int:
    """Rows of the privacy schema (suppression list, audit) that name ``pseudonym`` by
    its SHA-256 (``pseudonym_sha256``): the pseudonym itself is stored nowhere."""
    with connection(path, read_only=True) as con:
        return con.execute(
            "SELECT (SELECT count(*) FROM privacy.suppressed_users WHERE pseudonym_sha256 = ?)"
            " + (SELECT count(*) FROM privacy.erasure_log WHERE pseudonym_sha256 = ?)",
            [sha256_hex(pseudonym), sha256_hex(pseudonym)],
        ).fetchall()[0][0]


def every_table_checksum(path: Path) -> dict[str, str]:
    from .test_pipeline import table_checksum

    with connection(path, read_only=True) as con:
        return {t: table_checksum(con, t) for t in all_tables(con)}


# --- the pipeline, built once -------------------------------------------------------


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The whole graph over a generated shop, then 2 simulated days in which shoppers see
    the published lists (so feedback tables hold rows), then the run of those days."""
    from recs_pipeline.cli import published_lists
    from recs_pipeline.synthetic.continuation import continue_landing_zone

    root = tmp_path_factory.mktemp("privacy")
    generate_landing_zone(root / "landing", CONFIG)
    settings = settings_for(root, RECS_LANDING_DIR=str(root / "landing"))
    days = build_source(settings).event_days()
    assert run_all_days(settings, days).success
    new = continue_landing_zone(settings.landing_dir, 2, *published_lists(settings)).days
    result = run_all_days(settings, new)
    assert result.success
    return settings, result


# --- (a) pseudonyms only ------------------------------------------------------------


def test_no_shop_user_id_reaches_any_table(built):
    settings, _ = built
    ids = shop_user_ids(settings.landing_dir)
    assert len(ids) == CONFIG.n_users
    # Every table and column, raw_line included, of the warehouse and of the snapshot.
    from recs_pipeline.defs.publish import snapshot_path

    assert tables_mentioning(settings.warehouse_path, ids) == {}
    assert tables_mentioning(snapshot_path(settings.warehouse_path), ids) == {}
    with connection(settings.warehouse_path, read_only=True) as con:
        columns = con.execute(
            "SELECT table_schema, table_name, column_name FROM information_schema.columns "
            "WHERE column_name LIKE '%user_id' AND table_catalog = current_database()"
        ).fetchall()
        assert len(columns) >= 15
        for schema, table, column in columns:
            bad = con.execute(
                f'SELECT count(*) FROM "{schema}"."{table}" WHERE "{column}" IS NOT NULL '
                f"AND NOT regexp_matches(\"{column}\", '{PSEUDONYM}')"
            ).fetchall()[0][0]
            assert bad == 0, f"{schema}.{table}.{column}"
        # Malformed lines keep their text, with the pseudonym in the user field.
        redacted = con.execute("SELECT raw_line FROM raw.events WHERE raw_line IS NOT NULL").fetchall()
        assert redacted and all(line.startswith("u_") for (line,) in redacted)
        # The same user has the same pseudonym in events and in the profile snapshot.
        assert con.execute(
            "SELECT count(*) FROM staging.stg_events WHERE user_id NOT IN (SELECT user_id FROM raw.users)"
        ).fetchall()[0][0] == 0
    # Models hold pseudonyms too.
    assert files_mentioning(settings.model_dir, ids) == []


# --- (b) direct identifiers ---------------------------------------------------------


def test_direct_identifiers_never_reach_the_warehouse(built):
    settings, _ = built
    users = pd.read_csv(settings.landing_dir / "users" / "users.csv", dtype=str, keep_default_na=False)
    assert set(DIRECT_IDENTIFIER_COLUMNS) <= set(users.columns)
    values = sorted({v for c in DIRECT_IDENTIFIER_COLUMNS for v in users[c] if v})
    assert len(values) > 3 * CONFIG.n_users
    from recs_pipeline.defs.publish import snapshot_path

    assert tables_containing(settings.warehouse_path, values) == {}
    assert tables_containing(snapshot_path(settings.warehouse_path), values) == {}
    with connection(settings.warehouse_path, read_only=True) as con:
        raw_columns = [r[0] for r in con.execute("DESCRIBE raw.users").fetchall()]
    assert not set(raw_columns) & set(DIRECT_IDENTIFIER_COLUMNS)


def test_direct_identifiers_come_from_their_own_random_stream(tmp_path, monkeypatch):
    """Adding them changed no other generated byte: without them every file is the same
    and the user file's other columns too."""
    import recs_pipeline.synthetic.shop as shop_module

    config = replace(CONFIG, n_days=3)
    with_ids = generate_landing_zone(tmp_path / "a", config)
    real = shop_module.direct_identifiers
    monkeypatch.setattr(
        shop_module, "direct_identifiers",
        lambda cfg, n: real(cfg, n).assign(**{c: "" for c in DIRECT_IDENTIFIER_COLUMNS}),
    )  # fmt: skip
    generate_landing_zone(tmp_path / "b", config)
    for path in sorted((tmp_path / "a").rglob("*")):
        if path.is_file() and path.name != "users.csv":
            assert path.read_bytes() == (tmp_path / "b" / path.relative_to(tmp_path / "a")).read_bytes(), path
    a = pd.read_csv(with_ids.paths["users"], dtype=str)
    b = pd.read_csv(tmp_path / "b" / "users" / "users.csv", dtype=str)
    canonical = [c for c in a.columns if c not in DIRECT_IDENTIFIER_COLUMNS]
    pd.testing.assert_frame_equal(a[canonical], b[canonical])
    assert a["email"].str.fullmatch(r"[a-z.]+\d+@example\.com").all()
    assert a["phone"].str.fullmatch(r"\+44 7700 900\d{3}").all() and a["full_name"].str.contains(" ").all()


# --- (c) retention ------------------------------------------------------------------


def test_retention_drops_old_line_level_rows_and_kept_days_reconcile(built, tmp_path):
    settings, _ = built
    copy = tmp_path / "warehouse.duckdb"
    shutil.copy(settings.warehouse_path, copy)
    short = settings.with_overrides(warehouse_path=copy, privacy=replace(settings.privacy, retention_days=3))
    days = build_source(short).event_days()
    cutoff = date.fromordinal(days[-1].toordinal() - 3)
    with connection(copy) as con:
        before = con.execute("SELECT count(*) FROM raw.events").fetchall()[0][0]
        # The serving log only holds the lists of this shop's last days: add a day of lists
        # shown before the cut-off (a copy of the first day's), which retention must drop.
        lists = dict(con.execute(
            "SELECT list_date, count(*) FROM serving.published_recommendations GROUP BY 1"
        ).fetchall())  # fmt: skip
        assert lists and min(lists) >= cutoff
        con.execute(
            "INSERT INTO serving.published_recommendations SELECT * REPLACE (?::DATE AS list_date) "
            "FROM serving.published_recommendations WHERE list_date = ?",
            [date.fromordinal(cutoff.toordinal() - 1), min(lists)],
        )
    defs = build_defs(short)
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks],
        resources=defs.resources,
        partition_key=days[-1].isoformat(),
        selection=dg.AssetSelection.keys(
            ["raw", "events"], ["staging", "int_events_validated"], ["staging", "stg_events"],
            ["staging", "stg_message_events"], ["quality", "quarantine_events"], ["quality", "duplicate_events"],
            ["quality", "event_reconciliation"],
        ).required_multi_asset_neighbors(),  # raw/events may come with other assets of its step
        raise_on_error=False,
    )  # fmt: skip
    assert result.success
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == dg.AssetKey(["raw", "events"])]
    meta = event.materialization.metadata
    assert str(cutoff) in meta["retention"].value
    dropped = meta["retention_rows_dropped_by_table"].value
    assert dropped["raw.events"] > 0 and meta["retention_rows_dropped"].value == sum(dropped.values())
    assert {"staging.int_events_validated", "staging.stg_events", "quality.quarantine_events"} <= set(dropped)
    with connection(copy, read_only=True) as con:
        after = con.execute("SELECT count(*) FROM raw.events").fetchall()[0][0]
        assert before - after == dropped["raw.events"]
        for table in ("raw.events", "staging.int_events_validated", "staging.stg_events",
                      "quality.quarantine_events", "quality.duplicate_events", "quality.event_reconciliation"):
            first = con.execute(f"SELECT min(partition_date) FROM {table}").fetchall()[0][0]
            assert first >= cutoff and (first == cutoff or table.startswith("quality.")), table
        kept = con.execute(
            "SELECT count(*), bool_and(is_balanced), sum(raw_rows) FROM quality.event_reconciliation"
        ).fetchall()[0]
        assert kept[0] == 4 and kept[1] and kept[2] == after
        # The serving log lost the lists shown before the cut-off, and only those.
        assert dropped["serving.published_recommendations"] == lists[min(lists)]
        assert dict(con.execute(
            "SELECT list_date, count(*) FROM serving.published_recommendations GROUP BY 1"
        ).fetchall()) == lists  # fmt: skip


def test_retention_trims_the_serving_log_by_list_date():
    """serving.published_recommendations has no partition_date: it is trimmed by the
    day its lists were shown, in the same transaction, the cut-off day kept."""
    from recs_pipeline.defs.feedback import PUBLISHED_DDL
    from recs_pipeline.privacy import apply_retention

    con = duckdb.connect()
    con.execute("CREATE SCHEMA raw")
    con.execute("CREATE SCHEMA serving")
    con.execute("CREATE TABLE raw.events AS SELECT DATE '2026-03-01' + i::INTEGER AS partition_date FROM range(10) t(i)")
    con.execute(PUBLISHED_DDL)
    con.execute(
        "INSERT INTO serving.published_recommendations (list_date, user_id, rank, item_id) "
        "SELECT DATE '2026-03-02' + (i // 3)::INTEGER, 'u_' || i, 1, 'I1' FROM range(30) t(i)"
    )  # 3 rows a day from 03-02 to 03-11
    report = apply_retention(con, 5)  # newest day 03-10: keep from 03-05
    assert str(report.cutoff) == "2026-03-05"
    assert report.rows_dropped == {"raw.events": 4, "serving.published_recommendations": 9}
    assert con.execute("SELECT min(list_date)::VARCHAR, count(*) FROM serving.published_recommendations").fetchall() == [
        ("2026-03-05", 21)
    ]
    assert apply_retention(con, None).rows_dropped == {}


# --- (d) erasure --------------------------------------------------------------------


def test_erasure_removes_a_user_everywhere_and_keeps_them_out(built, tmp_path):
    from recs_pipeline.cli import published_lists
    from recs_pipeline.defs.publish import snapshot_path
    from recs_pipeline.synthetic.continuation import continue_landing_zone

    settings = copy_pipeline(built[0], tmp_path)
    pseudonymizer = Pseudonymizer.from_settings(settings.privacy)
    ids = shop_user_ids(settings.landing_dir)
    by_pseudonym = dict(zip(pseudonymizer.many(ids), ids))
    with connection(settings.warehouse_path, read_only=True) as con:
        # A user with events, a list, served impressions, attributed responses and
        # quarantined lines (a malformed one, known by its raw_line, if possible).
        candidates = con.execute(
            """SELECT s.user_id,
                      s.user_id IN (SELECT regexp_extract(raw_line, '^(u_[0-9a-f]{16})', 1) FROM raw.events) AS malformed
               FROM feedback.served_recommendations s
               JOIN feedback.attributed_events a USING (serve_id)
               WHERE s.user_id IN (SELECT user_id FROM serving.recommendations)
                 AND s.user_id IN (SELECT user_id FROM quality.quarantine_events)
               GROUP BY 1 ORDER BY malformed DESC, count(*) DESC, 1"""
        ).fetchall()
    pseudonym = candidates[0][0]
    user = by_pseudonym[pseudonym]
    assert files_mentioning(settings.landing_dir / "events", [user])

    request = settings.erasure_requests_path / "ticket-42.csv"
    request.parent.mkdir(parents=True)
    request.write_text(f"user_id\n{user}\n")
    defs = build_defs(settings)
    result = dg.materialize(
        [*defs.assets, *defs.asset_checks], resources=defs.resources, selection=[dg.AssetKey(["privacy", "erasure_log"])]
    )
    assert result.success
    meta = result.get_asset_materialization_events()[0].materialization.metadata
    assert meta["users_erased"].value == 1 and meta["warehouse_rows_deleted"].value > 0
    assert not request.exists()  # it names the user in clear text
    # The live file was compacted and the snapshot rebuilt: not one byte of the pseudonym
    # is left in either; the audit and the suppression list name it by its SHA-256.
    assert byte_count(settings.warehouse_path, pseudonym) == 0
    assert byte_count(snapshot_path(settings.warehouse_path), pseudonym) == 0
    assert privacy_rows_naming(settings.warehouse_path, pseudonym) == 2

    # Nothing of the user anywhere: every table and column, by pseudonym or by id.
    both = [pseudonym, user]
    assert tables_mentioning(settings.warehouse_path, both) == {}
    assert tables_mentioning(snapshot_path(settings.warehouse_path), both) == {}
    assert files_mentioning(settings.landing_dir, both) == []
    assert files_mentioning(settings.model_dir, both) == []
    with connection(settings.warehouse_path, read_only=True) as con:
        [audit] = con.execute(
            f"SELECT pseudonym_sha256, origin, rows_deleted, rows_deleted_total, files_rewritten, lines_removed, "
            f"snapshot_rows_deleted, models_scrubbed FROM {ERASURE_LOG}"
        ).fetchall()
        suppressed = con.execute("SELECT pseudonym_sha256 FROM privacy.suppressed_users").fetchall()
        # DuckDB's sha256 is the digest the erasure stored (Python's hashlib).
        assert con.execute("SELECT sha256(?)", [pseudonym]).fetchall() == [(sha256_hex(pseudonym),)]
    rows = json.loads(audit[2])
    assert audit[0] == sha256_hex(pseudonym) and audit[1] == "file:ticket-42.csv"
    assert suppressed == [(sha256_hex(pseudonym),)]
    for table in ("raw.events", "raw.users", "staging.stg_events", "quality.quarantine_events",
                  "serving.recommendations", "serving.published_recommendations",
                  "feedback.served_recommendations", "feedback.attributed_events", "features.interactions"):
        assert rows.get(table, 0) > 0, table
    assert audit[3] == sum(rows.values()) and audit[6] > 0 and audit[5] > 0
    assert "users/users.csv" in audit[4] and audit[7]
    print(f"erasure of one user: {audit[3]} warehouse rows in {len(rows)} tables, {audit[6]} snapshot rows, "
          f"{audit[5]} landing lines in {len(audit[4])} files, {len(audit[7])} models")

    # The shop lives on and the user comes back in its files: the next run keeps them out,
    # and trains from scratch (the scrubbed models are never warm-started from; the serving
    # model may continue only the hold-out model trained from scratch in this same run).
    new = continue_landing_zone(settings.landing_dir, 1, *published_lists(settings)).days
    back = files_mentioning(settings.landing_dir, [user])
    assert "users/users.csv" in back and set(back) <= {"users/users.csv", f"events/{new[0]}.csv"}
    days = build_source(settings).event_days()
    result = run_all_days(settings, days)  # every day again, from the rewritten files
    assert result.success
    events = {e.asset_key.to_user_string(): e.materialization.metadata for e in result.get_asset_materialization_events()}
    assert (events["raw/events"]["suppressed_rows"].value > 0) == (f"events/{new[0]}.csv" in back)
    assert events["ml/evaluation"]["training"].value.startswith("from scratch")
    serving_training = events["ml/model"]["training"].value
    base = re.match(r"warm start of (\w+)", serving_training)
    if base:
        stored = json.loads((settings.model_dir / "evaluation" / base[1] / "metrics.json").read_text())["training"]
        assert stored["chain"] == 0 and stored["warm_start_of"] is None
        assert base[1] not in json.dumps(audit[7])
    else:
        assert serving_training.startswith("from scratch")
    assert tables_mentioning(settings.warehouse_path, both) == {}
    assert tables_mentioning(snapshot_path(settings.warehouse_path), both) == {}
    assert files_mentioning(settings.model_dir, both) == []
    # The re-delivered lines were dropped on the way in: their pseudonym never reached
    # the file, nor the snapshot published by the run.
    assert byte_count(settings.warehouse_path, pseudonym) == 0
    assert byte_count(snapshot_path(settings.warehouse_path), pseudonym) == 0
    with connection(settings.warehouse_path, read_only=True) as con:
        assert con.execute("SELECT bool_and(is_balanced) FROM quality.event_reconciliation").fetchall()[0][0]
        assert con.execute("SELECT count(*) FROM serving.recommendations").fetchall()[0][0] > 0
        quarantined = {
            (f, int(line)): reason
            for f, line, reason in con.execute(
                "SELECT source_file, source_line, reject_reason FROM quality.quarantine_events"
            ).fetchall()
        }
    # The synthetic shop's defect ground truth followed the rewritten files line for line.
    with (settings.landing_dir / "_truth" / "defects.csv").open() as fh:
        defects = [d for d in csv.DictReader(fh) if d["kind"] != "duplicate"]
    mismatched = [d for d in defects if quarantined.get((d["file"], int(d["line"]))) != d["kind"]]
    # Defect copies of the erased user's lines were removed with them, or suppressed if new.
    assert all(d["file"] == f"events/{new[0]}.csv" for d in mismatched)


def test_erasure_compacts_the_live_warehouse_file(built, tmp_path, monkeypatch, capsys):
    """DuckDB's DELETE leaves the erased rows' bytes in freed blocks of the file; the
    erasure rewrites the file, so a byte scan finds the erased user's pseudonym nowhere
    (the suppression list and the audit hold its SHA-256 only), while another user's is
    still there. Without the compaction the pseudonym stays in the file's bytes. `recs
    erase` also rebuilds the published snapshot: not a byte of the pseudonym in it."""
    from recs_pipeline.cli import main
    from recs_pipeline.defs.publish import snapshot_path
    from recs_pipeline.privacy import ErasureRequest, erase_users
    from recs_pipeline.privacy.erasure import compact_warehouse

    settings = copy_pipeline(built[0], tmp_path / "plain")
    pseudonymizer = Pseudonymizer.from_settings(settings.privacy)
    ids = shop_user_ids(settings.landing_dir)
    by_pseudonym = dict(zip(pseudonymizer.many(ids), ids))
    with connection(settings.warehouse_path, read_only=True) as con:
        busiest = [u for (u,) in con.execute(
            "SELECT user_id FROM staging.stg_events GROUP BY 1 ORDER BY count(*) DESC, 1 LIMIT 2"
        ).fetchall()]  # fmt: skip
    erased, other = busiest
    warehouse = settings.warehouse_path
    before = byte_count(warehouse, erased)
    assert before > 0 and byte_count(warehouse, other) > 0

    # Without the compaction: the rows are gone from every table, not from the file.
    erase_users(ErasureRequest([by_pseudonym[erased]], "cli"), pseudonymizer, warehouse, compact=False)
    assert tables_mentioning(warehouse, [erased]) == {}
    assert privacy_rows_naming(warehouse, erased) == 2  # by digest
    left = byte_count(warehouse, erased)
    assert left > 0, left

    # The compaction keeps every row of every table, and drops the freed bytes.
    checksums = every_table_checksum(warehouse)
    sizes = compact_warehouse(warehouse)
    assert every_table_checksum(warehouse) == checksums
    assert byte_count(warehouse, erased) == 0
    assert byte_count(warehouse, other) > 0  # the scan does find a pseudonym that is there
    assert privacy_rows_naming(warehouse, erased) == 2
    assert sorted(p.name for p in warehouse.parent.iterdir() if p.name.startswith(("warehouse", ".warehouse"))) == [
        "warehouse.duckdb", "warehouse.duckdb.lock"
    ]  # fmt: skip  (no .wal, no temporary copy)

    # `recs erase` compacts within the same request and rebuilds the snapshot; it shows
    # the pseudonym on the terminal (output, not stored) and an audit query that works.
    settings = copy_pipeline(built[0], tmp_path / "default")
    snapshot = snapshot_path(settings.warehouse_path)
    assert byte_count(snapshot, erased) > 0 and byte_count(snapshot, other) > 0
    monkeypatch.setattr("recs_pipeline.cli.load_settings", lambda: settings)
    assert main(["erase", by_pseudonym[erased]]) == 0
    out = capsys.readouterr().out
    assert erased in out and by_pseudonym[erased] not in out and "warehouse compacted" in out
    [audit] = re.findall(r'recs sql --live "(.+)"', out)
    for path in (settings.warehouse_path, snapshot):
        assert byte_count(path, erased) == 0, path
        assert byte_count(path, other) > 0, path
    assert privacy_rows_naming(settings.warehouse_path, erased) == 2
    assert main(["sql", "--live", audit]) == 0
    logged = capsys.readouterr().out
    assert "pseudonym_sha256" in logged and sha256_hex(erased)[:8] in logged and erased not in logged
    compacted = settings.warehouse_path.stat().st_size
    print(f"erased pseudonym in the file's bytes: {before} before, {left} after DELETE, 0 after compaction "
          f"(privacy rows hold its SHA-256); file {sizes[0] / 1e6:.1f} -> {sizes[1] / 1e6:.1f} MB "
          f"({compacted / 1e6:.1f} MB via recs erase)")


def test_compaction_replays_a_left_over_wal_and_keeps_views(tmp_path):
    """A writer killed before its checkpoint leaves a .wal: its committed rows are in the
    compacted file, the .wal is gone (replayed onto the new file it would corrupt it),
    and views naming the warehouse's catalog (as dbt's do) still work."""
    import subprocess
    import sys

    from recs_pipeline.privacy.erasure import compact_warehouse

    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA staging")
        con.execute("CREATE TABLE staging.t AS SELECT i, 'u_' || i AS user_id FROM range(1000) t(i)")
        con.execute('CREATE VIEW staging.v AS SELECT count(*) AS n FROM "warehouse"."staging"."t"')
    crash = (
        "import duckdb, os; con = duckdb.connect({path!r}); con.execute('PRAGMA disable_checkpoint_on_shutdown'); "
        "con.execute(\"SET checkpoint_threshold = '10GB'\"); "
        "con.execute(\"INSERT INTO staging.t SELECT 1000 + i, 'u_wal' FROM range(5) t(i)\"); os._exit(0)"
    ).format(path=str(path))
    subprocess.run([sys.executable, "-c", crash], check=True)
    wal = Path(f"{path}.wal")
    assert wal.exists() and wal.stat().st_size > 0
    compact_warehouse(path)
    assert not wal.exists()
    with duckdb.connect(str(path), read_only=True) as con:
        assert con.execute("SELECT n FROM staging.v").fetchall() == [(1005,)]
        assert con.execute("SELECT count(*) FROM staging.t WHERE user_id = 'u_wal'").fetchall() == [(5,)]


# The privacy tables as the code before the digest made them (a clear `pseudonym`).
OLD_SUPPRESSED_DDL = (
    "CREATE TABLE privacy.suppressed_users (pseudonym VARCHAR PRIMARY KEY, request_id VARCHAR, suppressed_at TIMESTAMP)"
)
OLD_ERASURE_LOG_DDL = (
    "CREATE TABLE privacy.erasure_log (request_id VARCHAR, pseudonym VARCHAR, origin VARCHAR, key_fingerprint VARCHAR, "
    "requested_at TIMESTAMP, erased_at TIMESTAMP, tables_touched VARCHAR[], rows_deleted VARCHAR, "
    "rows_deleted_total BIGINT, snapshot_rows_deleted BIGINT, files_rewritten VARCHAR[], lines_removed BIGINT, "
    "models_scrubbed VARCHAR[])"
)


def _old_warehouse(path: Path, earlier: str, users: list[str]) -> None:
    """A warehouse of the old code: ``earlier`` erased (in both privacy tables, in clear)
    and ``users`` with 5 events each."""
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA privacy")
        con.execute(OLD_SUPPRESSED_DDL)
        con.execute(OLD_ERASURE_LOG_DDL)
        con.execute(
            "INSERT INTO privacy.suppressed_users VALUES (?, 'req-1', TIMESTAMP '2026-01-02 03:04:05')", [earlier]
        )
        con.execute(
            "INSERT INTO privacy.erasure_log VALUES ('req-1', ?, 'cli', 'abcd1234', TIMESTAMP '2026-01-02', "
            "TIMESTAMP '2026-01-02 03:04:05', ['raw.events'], '{\"raw.events\": 3}', 3, 0, [], 0, [])",
            [earlier],
        )
        con.execute("CREATE SCHEMA raw")
        con.execute("CREATE TABLE raw.events (user_id VARCHAR, n INTEGER)")
        con.execute("INSERT INTO raw.events SELECT u.user_id, r.range FROM unnest(?) u(user_id), range(5) r", [users])


def test_privacy_tables_of_an_old_warehouse_are_migrated_to_digests(tmp_path, monkeypatch):
    """A warehouse (and snapshot) made before the digest: the suppression list still
    works before the migration; the first ensure_privacy_schema rewrites both privacy
    tables in one transaction (all or nothing); after the next erasure's compaction
    neither file holds a byte of any erased pseudonym, the earlier one included."""
    from recs_pipeline.privacy import ErasureRequest, erase_users
    from recs_pipeline.privacy import suppression
    from recs_pipeline.privacy.suppression import ensure_privacy_schema, suppress, suppressed_digests

    pseudonymizer = Pseudonymizer("test-key")
    earlier, now, kept = pseudonymizer.many(["U000001", "U000002", "U000003"])
    path = tmp_path / "warehouse.duckdb"
    _old_warehouse(path, earlier, [now, kept])
    snapshot = tmp_path / "published" / "warehouse.duckdb"
    snapshot.parent.mkdir()
    shutil.copy(path, snapshot)
    assert byte_count(path, earlier) > 0 and byte_count(snapshot, earlier) > 0

    def columns(con, table):
        return [c for (c,) in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'privacy' AND table_name = ? "
            "ORDER BY ordinal_position", [table]).fetchall()]  # fmt: skip

    # Not migrated yet (a loader reading it): the old list gives the digests.
    with connection(path, read_only=True) as con:
        assert suppressed_digests(con) == {sha256_hex(earlier)}

    # One transaction: a migration that fails half-way leaves both tables as they were.
    failing = tmp_path / "failing.duckdb"
    shutil.copy(path, failing)
    monkeypatch.setitem(suppression.PRIVACY_TABLES, "erasure_log", "CREATE TABLE privacy.erasure_log (broken")
    with connection(failing) as con:
        with pytest.raises(duckdb.Error):
            ensure_privacy_schema(con)
        assert columns(con, "suppressed_users") == ["pseudonym", "request_id", "suppressed_at"]
        assert columns(con, "erasure_log")[:2] == ["request_id", "pseudonym"]
        assert con.execute("SELECT pseudonym FROM privacy.suppressed_users").fetchall() == [(earlier,)]
    monkeypatch.undo()

    with connection(path) as con:
        ensure_privacy_schema(con)
        assert columns(con, "suppressed_users") == ["pseudonym_sha256", "request_id", "suppressed_at"]
        assert columns(con, "erasure_log")[:3] == ["request_id", "pseudonym_sha256", "origin"]
        assert con.execute("SELECT * FROM privacy.suppressed_users").fetchall()[0][:2] == (sha256_hex(earlier), "req-1")
        assert con.execute("SELECT pseudonym_sha256, rows_deleted_total FROM privacy.erasure_log").fetchall() == [
            (sha256_hex(earlier), 3)
        ]
        assert suppression.migrate_privacy_tables(con) == []  # done once
        assert suppress(con, [earlier], "req-2") == 0  # the key still holds: no second row
        assert suppressed_digests(con) == {sha256_hex(earlier)}

    report = erase_users(ErasureRequest(["U000002"], "cli"), pseudonymizer, path, snapshot_path=snapshot)
    assert [u.pseudonym for u in report.users] == [now] and report.warehouse_bytes
    for file in (path, snapshot):
        assert byte_count(file, earlier) == 0 and byte_count(file, now) == 0, file
        assert byte_count(file, kept) > 0, file  # the scan finds what is there
    with connection(path, read_only=True) as con:
        logged = con.execute("SELECT request_id, pseudonym_sha256, origin FROM privacy.erasure_log ORDER BY 1")
        assert logged.fetchall() == [("req-1", sha256_hex(earlier), "cli"), (report.request_id, sha256_hex(now), "cli")]
        assert suppressed_digests(con) == {sha256_hex(earlier), sha256_hex(now)}
    with connection(snapshot, read_only=True) as con:
        listed = con.execute("SELECT pseudonym_sha256 FROM privacy.suppressed_users").fetchall()
        assert listed == [(sha256_hex(earlier),)]
        assert con.execute("SELECT DISTINCT user_id FROM raw.events").fetchall() == [(kept,)]


# --- (e) the key --------------------------------------------------------------------


def _load_day(tmp_path: Path, key: str) -> list[tuple]:
    from recs_pipeline.sources.loader import load_event_days, load_users

    settings = settings_for(tmp_path, RECS_PSEUDONYM_KEY=key)
    source = build_source(settings)
    con = duckdb.connect()
    pseudonymizer = Pseudonymizer.from_settings(settings.privacy)
    load_event_days(con, source, source.event_days()[:1], pseudonymizer)
    load_users(con, source, pseudonymizer)
    rows = con.execute("SELECT source_line, user_id, raw_line FROM raw.events ORDER BY source_line").fetchall()
    users = con.execute("SELECT source_line, user_id FROM raw.users ORDER BY source_line").fetchall()
    con.close()
    return rows + users


def test_the_key_decides_the_pseudonyms(tmp_path):
    generate_landing_zone(tmp_path / "landing", replace(CONFIG, n_days=1, events_per_day=400))
    first, again, other = _load_day(tmp_path, "key-one"), _load_day(tmp_path, "key-one"), _load_day(tmp_path, "key-two")
    assert first == again  # repeatable
    ids_first = {r[1] for r in first if r[1]}
    ids_other = {r[1] for r in other if r[1]}
    assert len(ids_first) == len(ids_other) > 50 and not ids_first & ids_other  # another key, other ids
    # The documented construction: u_ + 16 hex digits of HMAC-SHA256(key, id).
    expected = "u_" + hmac.new(b"key-one", b"U000007", hashlib.sha256).hexdigest()[:16]
    assert Pseudonymizer("key-one").one(" U000007 ") == expected
    assert Pseudonymizer("key-one").one("") is None and Pseudonymizer("key-one").many([None, "U1"])[0] is None


def test_the_key_never_shows(tmp_path, monkeypatch, caplog):
    import logging

    from recs_pipeline.privacy import pseudonym

    monkeypatch.setenv("RECS_PSEUDONYM_KEY", "s3cret-key-value")
    settings = load_settings({"RECS_DATA_DIR": str(tmp_path), "RECS_PSEUDONYM_KEY": "s3cret-key-value"})
    assert "s3cret" not in repr(settings) and "s3cret" not in repr(Pseudonymizer.from_settings(settings.privacy))
    defs = build_defs(settings)
    resource = defs.resources["privacy"]
    assert isinstance(resource.pseudonym_key, dg.EnvVar)  # the UI shows the variable's name only
    assert resource.pseudonymizer().one("U1") == Pseudonymizer("s3cret-key-value").one("U1")
    # Without a key: the demo key, and a warning (once) that never prints a key.
    monkeypatch.setattr(pseudonym, "_warned_demo_key", False)
    demo = load_settings({"RECS_DATA_DIR": str(tmp_path)})
    assert demo.privacy.key_is_demo and demo.privacy.effective_key == DEMO_PSEUDONYM_KEY
    with caplog.at_level(logging.WARNING):
        p = Pseudonymizer.from_settings(demo.privacy)
        assert pseudonym.warn_if_demo_key(p) and not pseudonym.warn_if_demo_key(p)
    assert len(caplog.records) == 1 and DEMO_PSEUDONYM_KEY not in caplog.text and "RECS_PSEUDONYM_KEY" in caplog.text
    with pytest.raises(ValueError, match="RECS_PSEUDONYM_KEY"):
        config = tmp_path / "c.toml"
        config.write_text('[privacy]\npseudonym_key = "x"\n')
        load_settings({"RECS_CONFIG": str(config)})


def test_raw_line_redaction_and_speed():
    """The user field of a malformed line becomes its pseudonym; a field holding a known
    id anywhere too. And the hashing keeps up with a busy shop's day."""
    import time

    p = Pseudonymizer("k")
    known = p.mapping(["U1", "U2"])
    line, found = redact_line("U1,I9,view,extra,U2", LineLayout(",", 0), known, p.one)
    assert line == f"{known['U1']},I9,view,extra,{known['U2']}" and found == set(known.values())
    line, _ = redact_line('U3,"a, b",x', LineLayout(",", 0), known, p.one)
    assert line == f'{p.one("U3")},"a, b",x'
    ids = [f"U{i:07d}" for i in range(200_000)]
    started = time.perf_counter()
    mapping = p.mapping(ids)
    seconds = time.perf_counter() - started
    assert len(set(mapping.values())) == len(ids)
    print(f"pseudonymised {len(ids):,} distinct ids in {seconds:.2f}s")
    assert seconds < 5

