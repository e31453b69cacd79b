"""The warehouse's single-writer lock: runs through the definitions' default executor wait
for a lock held by another process instead of failing."""

from __future__ import annotations

import multiprocessing as mp
import time

import dagster as dg
import pytest

from recs_pipeline.sources.adapters import build_source

from .conftest import settings_for

pytestmark = [pytest.mark.slow, pytest.mark.reliability]  # waits on a locked warehouse: make test-reliability


def hold_write_lock(path: str, seconds: float, ready) -> None:
    import duckdb

    con = duckdb.connect(path)
    con.execute("CREATE TABLE IF NOT EXISTS main.lock_holder AS SELECT 1 AS x")
    ready.set()
    time.sleep(seconds)
    con.close()


def test_default_executor_waits_for_a_locked_warehouse(small_shop, tmp_path, monkeypatch):
    root, _ = small_shop
    monkeypatch.setenv("RECS_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("RECS_LANDING_DIR", str(root / "landing"))
    settings = settings_for(tmp_path, RECS_LANDING_DIR=str(root / "landing"))
    day = build_source(settings).event_days()[0].isoformat()

    # Another process (say, an analyst's client or an overlapping run) holds the file.
    ctx = mp.get_context("spawn")
    ready = ctx.Event()
    holder = ctx.Process(target=hold_write_lock, args=(str(settings.warehouse_path), 4.0, ready))
    holder.start()
    assert ready.wait(30)

    instance = dg.DagsterInstance.ephemeral()
    started = time.monotonic()
    from . import executor_jobs

    result = dg.execute_job(dg.reconstructable(executor_jobs.nightly_job), instance=instance, tags={"dagster/partition": day})
    holder.join()
    assert result.success
    assert time.monotonic() - started >= 3.0  # it really waited for the lock
    failures = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert failures == []
