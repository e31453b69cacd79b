"""What a person can do through the project's own doors: `recs sql` is read-only,
sealed off from the file system and bounded (statement timeout, memory limit), and the
Dagster UI listens on loopback only."""

from __future__ import annotations

import re
import time
from pathlib import Path

import duckdb
import pytest

from recs_pipeline.cli import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def warehouse(tmp_path, monkeypatch):
    path = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE SCHEMA serving")
        con.execute("CREATE TABLE serving.recommendations AS SELECT 'u1' AS user_id, 1 AS rank")
    monkeypatch.setenv("RECS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RECS_WAREHOUSE", str(path))
    return path


@pytest.mark.parametrize(
    "statement",
    [
        "DELETE FROM serving.recommendations",
        "DROP TABLE serving.recommendations",
        "CREATE TABLE serving.x AS SELECT 1",
        "UPDATE serving.recommendations SET rank = 2",
        "COPY serving.recommendations TO '{tmp}/leak.csv'",
        "SELECT * FROM read_csv('/etc/passwd')",
        "ATTACH '{tmp}/other.duckdb' AS other",
        "INSTALL httpfs",
        "SET enable_external_access = true",
        # The guard rails of recs sql are locked too: a query cannot lift its own limits.
        "SET memory_limit = '100GB'",
        "RESET memory_limit",
        "SET threads = 64",
        "SET max_temp_directory_size = '1TB'",
        "SET lock_configuration = false",
    ],
)
def test_recs_sql_refuses_writes_and_file_access(warehouse, statement, capsys):
    tmp = warehouse.parent
    assert main(["sql", "--live", statement.format(tmp=tmp)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "hint: recs sql is read-only" in err and "Traceback" not in err
    assert not (tmp / "leak.csv").exists() and not (tmp / "other.duckdb").exists()
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute("SELECT count(*), min(rank) FROM serving.recommendations").fetchall() == [(1, 1)]


def test_recs_sql_still_answers_queries(warehouse, capsys):
    assert main(["sql", "--live", "SELECT user_id, rank FROM serving.recommendations"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split() == ["u1", "|", "1"]


# --- recs sql: statement timeout and memory limit -------------------------------------

RUNAWAY_ROWS = 100_000_000_000


def seconds_for(rows: int) -> float:
    """How long ``SELECT sum(hash(i)) FROM range(rows)`` runs on this machine (2 threads),
    extrapolated from 200 million rows."""
    sample = 200_000_000
    with duckdb.connect(config={"threads": 2}) as con:
        started = time.perf_counter()
        con.execute(f"SELECT sum(hash(i)) FROM range({sample}) t(i)").fetchall()
        return (time.perf_counter() - started) * rows / sample


@pytest.mark.parametrize(
    "query",
    [
        f"SELECT sum(hash(i)) FROM range({RUNAWAY_ROWS}) t(i)",  # busy before the first row
        f"SELECT i FROM range({RUNAWAY_ROWS}) t(i) WHERE hash(i) % 1000 = 0",  # busy while rows stream
    ],
    ids=["aggregate", "streaming"],
)
def test_a_runaway_query_is_stopped_by_the_statement_timeout(warehouse, monkeypatch, capsys, query):
    would_run = seconds_for(RUNAWAY_ROWS)
    assert would_run > 120, f"the runaway query would only run {would_run:.0f}s here: make it bigger"
    monkeypatch.setenv("RECS_SQL_TIMEOUT_S", "2")
    started = time.perf_counter()
    assert main(["sql", "--live", query]) == 1
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err
    assert 1.9 <= elapsed < 15, elapsed
    assert err.splitlines()[0] == (
        "error: the query was stopped after 2 s (statement timeout; set RECS_SQL_TIMEOUT_S or [sql] timeout_s)"
    ), err
    assert len(err.splitlines()) == 2 and err.splitlines()[1].startswith("hint: ") and "Traceback" not in err
    # The warehouse is not left locked or broken: the next query answers at once.
    started = time.perf_counter()
    assert main(["sql", "--live", "SELECT count(*) AS n FROM serving.recommendations"]) == 0
    assert time.perf_counter() - started < 5 and capsys.readouterr().out.splitlines()[-1].strip() == "1"
    print(f"runaway query (would run ~{would_run:.0f}s) stopped after {elapsed:.2f}s")


@pytest.mark.parametrize(
    ("query", "env", "message"),
    [
        (  # one huge list: cannot spill, fails as soon as it outgrows the limit
            "SELECT length(list(i)) FROM range(200000000) t(i)",
            {"RECS_SQL_MEMORY_LIMIT": "64MB"},
            "error: the query needs more than 64MB of memory "
            "(memory limit; set RECS_SQL_MEMORY_LIMIT or [sql] memory_limit)",
        ),
        (  # a big sort: spills to disk, up to the spill limit
            "SELECT max(rn) FROM (SELECT row_number() OVER (ORDER BY hash(i)) AS rn FROM range(100000000) t(i))",
            {"RECS_SQL_MEMORY_LIMIT": "64MB", "RECS_SQL_SPILL_LIMIT": "100MB"},
            "error: the query needs more than 64MB of memory and 100MB of temporary disk "
            "(memory limit; set RECS_SQL_MEMORY_LIMIT or [sql] memory_limit, RECS_SQL_SPILL_LIMIT or [sql] spill_limit)",
        ),
    ],
    ids=["list", "sort"],
)
def test_a_query_needing_too_much_memory_fails_with_one_line(warehouse, monkeypatch, capsys, query, env, message):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    started = time.perf_counter()
    assert main(["sql", "--live", query]) == 1
    elapsed = time.perf_counter() - started
    err = capsys.readouterr().err
    print(f"memory-hungry query stopped after {elapsed:.2f}s")
    assert err.splitlines()[0] == message, err
    assert len(err.splitlines()) == 2 and "Traceback" not in err and elapsed < 15
    # The spilled temporary files are gone with the query.
    spill = warehouse.parent / f"{warehouse.name}.tmp"
    assert not spill.exists() or not any(spill.iterdir())


def test_recs_sql_answers_under_the_limits_and_counts_the_rows_it_does_not_show(warehouse, monkeypatch, capsys):
    monkeypatch.setenv("RECS_SQL_TIMEOUT_S", "2")
    monkeypatch.setenv("RECS_SQL_MEMORY_LIMIT", "64MB")
    assert main(["sql", "--live", "SELECT user_id, rank FROM serving.recommendations"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].split() == ["u1", "|", "1"]
    # Ten million rows: five are shown, the rest counted (never all turned into Python rows).
    started = time.perf_counter()
    assert main(["sql", "--live", "SELECT i, i * 2 AS j FROM range(10000000) t(i)", "--max-rows", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2].split() == ["4", "|", "8"] and out[-1] == "... 9999995 more rows"
    assert time.perf_counter() - started < 10


def test_the_limits_come_from_the_config_file_and_the_environment(tmp_path):
    from recs_pipeline.settings import SqlSettings, load_settings

    assert load_settings({"RECS_DATA_DIR": str(tmp_path)}).sql == SqlSettings(60.0, "2GB", 2, "4GB")
    config = tmp_path / "recs.toml"
    config.write_text('[sql]\ntimeout_s = 5\nmemory_limit = "1GB"\nthreads = 1\n')
    from_file = load_settings({"RECS_CONFIG": str(config)}).sql
    assert from_file == SqlSettings(timeout_s=5.0, memory_limit="1GB", threads=1, spill_limit="4GB")
    env = {"RECS_CONFIG": str(config), "RECS_SQL_TIMEOUT_S": "0.5", "RECS_SQL_MEMORY_LIMIT": "512MB"}
    assert load_settings(env).sql == SqlSettings(timeout_s=0.5, memory_limit="512MB", threads=1, spill_limit="4GB")
    for bad in ({"RECS_SQL_MEMORY_LIMIT": "lots"}, {"RECS_SQL_TIMEOUT_S": "-1"}, {"RECS_SQL_THREADS": "0"}):
        with pytest.raises(ValueError):
            load_settings({"RECS_DATA_DIR": str(tmp_path), **bad})


def test_run_with_timeout_stops_a_statement_and_leaves_the_connection_usable():
    from recs_pipeline.warehouse import StatementTimeout, run_with_timeout

    with duckdb.connect(config={"threads": 2}) as con:
        started = time.perf_counter()
        with pytest.raises(StatementTimeout) as stopped:
            run_with_timeout(con, f"SELECT sum(hash(i)) FROM range({RUNAWAY_ROWS}) t(i)", 0.5)
        assert 0.45 <= stopped.value.elapsed_s < 5 and time.perf_counter() - started < 5
        result = run_with_timeout(con, "SELECT 42 AS answer", 0.5)
        assert (result.columns, result.rows, result.n_rows) == (["answer"], [(42,)], 1)
        time.sleep(0.7)  # past the first statement's deadline: no stray interrupt is left
        assert run_with_timeout(con, "SELECT count(*) FROM range(1000)", None).rows == [(1000,)]


def test_the_ui_binds_to_loopback_only():
    dev = re.search(r"^dev:.*\n\t(.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE).group(1)
    assert "dagster dev" in dev and "-h 127.0.0.1" in dev


def test_a_failed_run_prints_the_error_that_names_the_file(small_shop, tmp_path, monkeypatch, capsys):
    """`recs run` shows the asset's own error (file, line, field), not Dagster's wrapper."""
    import shutil

    root, _ = small_shop
    landing = tmp_path / "landing"
    shutil.copytree(root / "landing", landing)
    day_file = sorted((landing / "events").glob("*.csv"))[0]
    day_file.write_text("")
    monkeypatch.setenv("RECS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RECS_LANDING_DIR", str(landing))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    day = re.search(r"\d{4}-\d{2}-\d{2}", day_file.name).group(0)
    assert main(["run", "--select", "raw/events", "--start", day, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert f"raw__events: {day_file}: line 1: the file is empty" in err, err
    assert "Traceback" not in err


def test_quiet_run_prints_no_dbt_lines_and_logs_them_to_a_file(small_shop, tmp_path, monkeypatch, capsys):
    """`recs run --quiet`: nothing of the run on the terminal but the summary; dbt's
    lines go to data/logs/<run id>.log."""
    root, _ = small_shop
    monkeypatch.setenv("RECS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RECS_LANDING_DIR", str(root / "landing"))
    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    day = sorted((root / "landing" / "events").glob("*.csv"))[0].stem
    selection = (
        "raw/events,raw/items,raw/users,staging/int_events_validated,staging/stg_events,staging/stg_message_events,"
        "quality/quarantine_events,quality/duplicate_events"
    )
    assert main(["run", "--select", selection, "--start", day, "--quiet"]) == 0
    out = capsys.readouterr()
    assert "Running with dbt" not in out.out + out.err and "START sql" not in out.out + out.err
    logs = list((tmp_path / "logs").glob("*.log"))
    assert len(logs) == 1 and "stg_events" in logs[0].read_text()
