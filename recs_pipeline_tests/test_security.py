"""What a person can do through the project's own doors: `recs sql` is read-only and
sealed off from the file system, and the Dagster UI listens on loopback only."""

from __future__ import annotations

import re
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
    assert f"raw__events: SourceError: {day_file}: line 1: the file is empty" in err, err
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
        "raw/events,raw/items,raw/users,staging/int_events_validated,staging/stg_events,"
        "quality/quarantine_events,quality/duplicate_events"
    )
    assert main(["run", "--select", selection, "--start", day, "--quiet"]) == 0
    out = capsys.readouterr()
    assert "Running with dbt" not in out.out + out.err and "START sql" not in out.out + out.err
    logs = list((tmp_path / "logs").glob("*.log"))
    assert len(logs) == 1 and "stg_events" in logs[0].read_text()
