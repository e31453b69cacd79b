"""Idempotent backfills and overlapping runs, checked on every table of the warehouse.

A 7-day backfill run twice leaves every table identical (checksums of all rows), and
two backfills started at the same moment in two processes (a schedule tick and a
manual run, say) both succeed — the second waits for the DuckDB lock — and leave the
same tables as a single run.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest

from recs_pipeline.warehouse import connection

from .conftest import EXPORTED_ENV, settings_for

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

# Tables that log what each night did, and what is measured on those logs: a nightly run
# on top of a full run also holds the lists the earlier night published and the sends it
# planned (and the responses to them); a run over all the days publishes and plans once.
NIGHTLY_LOGS = {
    "serving.published_recommendations", "feedback.experiment_user_outcomes", "feedback.experiment_results",
    "marketing.campaign_sends", "feedback.campaign_send_outcomes", "feedback.campaign_results",
    "marketing.variant_posteriors",
}

# Columns that record when something happened, not what: they differ between runs by design.
VOLATILE_COLUMNS = {"loaded_at", "published_at", "generated_at", "materialized_at", "detected_at", "resolved_at"}


def warehouse_checksums(path: Path) -> dict[str, str]:
    """table -> sha256 of all its rows (sorted), volatile columns left out."""
    sums = {}
    with connection(path, read_only=True) as con:
        tables = con.execute(
            "SELECT table_schema, table_name FROM information_schema.tables "
            "WHERE table_type = 'BASE TABLE' ORDER BY ALL"
        ).fetchall()
        for schema, name in tables:
            columns = [
                r[0]
                for r in con.execute(
                    "SELECT column_name FROM information_schema.columns WHERE table_schema = ? AND table_name = ? "
                    "ORDER BY ordinal_position",
                    [schema, name],
                ).fetchall()
                if r[0] not in VOLATILE_COLUMNS
            ]
            select = ", ".join(f'"{c}"' for c in columns)
            rows = con.execute(f'SELECT {select} FROM "{schema}"."{name}" ORDER BY ALL').fetchall()
            sums[f"{schema}.{name}"] = hashlib.sha256(repr(rows).encode()).hexdigest()
    return sums


def recs_run(data_dir: Path, landing: Path, start: str, end: str, **extra_env: str) -> subprocess.Popen:
    """`recs run` for a range of days in its own process, as a user or the scheduler would."""
    env = {
        **os.environ,
        "RECS_DATA_DIR": str(data_dir),
        "RECS_LANDING_DIR": str(landing),
        "RECS_HOLDOUT_DAYS": "3",
        "GX_ANALYTICS_ENABLED": "false",
        **extra_env,
    }
    env.pop("DAGSTER_HOME", None)
    for name in EXPORTED_ENV:  # a warehouse another test's dbt step exported is not this run's
        env.pop(name, None)
    return subprocess.Popen(
        [sys.executable, "-m", "recs_pipeline.cli", "run", "--start", start, "--end", end, "--quiet"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="module")
def week(small_shop):
    from recs_pipeline.sources.adapters import build_source

    root, _ = small_shop
    landing = root / "landing"
    days = build_source(settings_for(root, RECS_LANDING_DIR=str(landing))).event_days()[:7]
    return landing, days[0].isoformat(), days[-1].isoformat()


@pytest.fixture(scope="module")
def backfilled_once(week, tmp_path_factory):
    landing, start, end = week
    data_dir = tmp_path_factory.mktemp("backfill")
    run = recs_run(data_dir, landing, start, end)
    output, _ = run.communicate(timeout=600)
    assert run.returncode == 0, output
    return data_dir, warehouse_checksums(data_dir / "warehouse.duckdb")


def test_a_seven_day_backfill_run_twice_leaves_every_table_identical(week, backfilled_once):
    landing, start, end = week
    data_dir, first = backfilled_once
    assert len(first) > 20  # raw, staging, quality, features, ml, serving, feedback, marketing
    run = recs_run(data_dir, landing, start, end)
    output, _ = run.communicate(timeout=600)
    assert run.returncode == 0, output
    second = warehouse_checksums(data_dir / "warehouse.duckdb")
    changed = sorted(t for t in first if second.get(t) != first[t])
    assert changed == [] and set(second) == set(first)


def test_two_backfills_started_together_both_succeed_and_agree_with_one(week, backfilled_once, tmp_path):
    landing, start, end = week
    _, single = backfilled_once
    runs = [recs_run(tmp_path, landing, start, end) for _ in range(2)]
    outputs = [run.communicate(timeout=900)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], "\n".join(outputs)
    together = warehouse_checksums(tmp_path / "warehouse.duckdb")
    changed = sorted(t for t in single if together.get(t) != single[t])
    assert changed == [] and set(together) == set(single)
    # The published snapshot analysts read is whole too.
    snapshot = tmp_path / "published" / "warehouse.duckdb"
    assert snapshot.exists() and warehouse_checksums(snapshot)


def test_a_nightly_run_on_top_of_a_full_run_equals_a_full_run_over_the_same_days(small_shop, tmp_path):
    """Nine days, then the tenth as the nightly run does it, give the tables of one run
    over all ten, when the model is the same: LightFM trained from scratch each night
    (`full_retrain_every = 0`, no warm start from the night before) and the newest model
    promoted (so the ninth night's model does not keep serving), and the rankers trained
    every run (`retrain_every_days = 1`, not reused from the ninth night). The ranker's
    cut-off models and every ml table are equal; only the logs of what each night did differ."""
    from recs_pipeline.sources.adapters import build_source

    root, _ = small_shop
    landing = root / "landing"
    days = [d.isoformat() for d in build_source(settings_for(root, RECS_LANDING_DIR=str(landing))).event_days()]
    config = tmp_path / "recs.toml"
    config.write_text("[model]\nfull_retrain_every = 0\npromotion_margin = -1.0\nserving_tolerance = 1.0\n"
                      "[ranking]\nretrain_every_days = 1\n")
    outputs = {}
    for name, ranges in {"nightly": [(days[0], days[-2]), (days[-1], days[-1])], "full": [(days[0], days[-1])]}.items():
        for first, last in ranges:
            run = recs_run(tmp_path / name, landing, first, last, RECS_CONFIG=str(config))
            output, _ = run.communicate(timeout=600)
            assert run.returncode == 0, output
        outputs[name] = warehouse_checksums(tmp_path / name / "warehouse.duckdb")
    nightly, full = outputs["nightly"], outputs["full"]
    assert set(nightly) == set(full)
    assert {"ml.ranker_evaluation", "ml.evaluation", "serving.recommendations"} <= set(full)
    changed = sorted(t for t in full if nightly.get(t) != full[t])
    assert changed == sorted(NIGHTLY_LOGS), changed


def test_checksums_see_a_changed_row(backfilled_once, tmp_path):
    """The comparison above can fail: one changed value changes its table's checksum."""
    data_dir, first = backfilled_once
    copy = tmp_path / "copy.duckdb"
    shutil.copy(data_dir / "warehouse.duckdb", copy)
    with connection(copy) as con:
        con.execute("UPDATE serving.recommendations SET score = score + 1 WHERE rank = 1")
    changed = {t for t, s in warehouse_checksums(copy).items() if first[t] != s}
    assert changed == {"serving.recommendations"}
