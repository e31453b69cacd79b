"""A run killed with SIGKILL in the middle leaves a warehouse that opens, holds only
whole tables, and a re-run completes."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from recs_pipeline.sources.adapters import build_source
from recs_pipeline.synthetic.continuation import continue_landing_zone
from recs_pipeline.warehouse import connection

from .conftest import settings_for
from .test_pipeline import run_all_days

pytestmark = [pytest.mark.slow, pytest.mark.reliability]  # a minute and more per case: make test-reliability


def whole_tables_hold(settings) -> None:
    with connection(settings.warehouse_path) as con:  # read-write: replays the WAL of the killed run
        unbalanced = con.execute("SELECT count(*) FROM quality.event_reconciliation WHERE NOT is_balanced").fetchall()[0][0]
        days_raw = {r[0] for r in con.execute("SELECT DISTINCT partition_date FROM raw.events").fetchall()}
        per_user = con.execute(
            "SELECT min(n), max(n) FROM (SELECT count(*) AS n FROM serving.recommendations GROUP BY user_id)"
        ).fetchall()[0]
    assert unbalanced == 0
    assert days_raw  # the raw layer is there, old days intact
    assert per_user == (settings.model.top_n, settings.model.top_n)  # no half-written list


@pytest.mark.parametrize("kill_after_s", [6.0, 14.0])
def test_sigkill_mid_run_leaves_whole_tables_and_a_rerun_completes(small_shop, tmp_path, kill_after_s):
    root, _ = small_shop
    shutil.copytree(root / "landing", tmp_path / "landing")
    settings = settings_for(tmp_path, RECS_LANDING_DIR=str(tmp_path / "landing"))
    days = build_source(settings).event_days()
    assert run_all_days(settings, days).success
    new = continue_landing_zone(settings.landing_dir, 2).days

    env = {**os.environ, "RECS_DATA_DIR": str(tmp_path), "RECS_LANDING_DIR": str(tmp_path / "landing"),
           "RECS_HOLDOUT_DAYS": "3"}
    run = subprocess.Popen(
        [sys.executable, "-m", "recs_pipeline.cli", "run", "--new"], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    time.sleep(kill_after_s)
    killed = run.poll() is None
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert killed, "the run finished before it could be killed; raise the data size or lower the delay"

    whole_tables_hold(settings)
    assert run_all_days(settings, new).success  # the same days again, from where the crash left them
    whole_tables_hold(settings)
    with connection(settings.warehouse_path, read_only=True) as con:
        loaded = {r[0] for r in con.execute("SELECT DISTINCT partition_date FROM staging.stg_events").fetchall()}
    assert set(days) | set(new) <= loaded
