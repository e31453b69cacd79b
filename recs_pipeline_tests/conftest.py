"""Shared fixtures: a small generated shop in a temporary folder, and settings pointing at it."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

from recs_pipeline.settings import SHARED_DATA_DIR, Settings, load_settings

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DAGSTER_DISABLE_TELEMETRY", "1")
logging.getLogger("great_expectations").setLevel(logging.ERROR)

# pytest-xdist's workers run under a __main__ without a file, which PySpark's Connect
# module takes for its own doctest runner and answers with sys.exit(0) on import
# (pyspark/sql/connect/utils.py); great-expectations imports it whenever PySpark is
# installed. Give the worker's __main__ a name so that a check step does not exit.
_main = sys.modules["__main__"]
if getattr(_main, "__spec__", None) is None and not hasattr(_main, "__file__"):
    _main.__file__ = "<pytest-xdist worker>"

ONLINE_RETAIL = SHARED_DATA_DIR / "online-retail" / "by-day"
MOVIELENS = SHARED_DATA_DIR / "movielens-100k"


# What Settings.export_env puts into the environment for dbt's profile.
EXPORTED_ENV = ("RECS_WAREHOUSE", "RECS_DBT_TARGET", "RECS_SPARK_WAREHOUSE", "RECS_SPARK_MASTER", "RECS_SPARK_DRIVER_MEMORY")


@pytest.fixture(autouse=True)
def _no_exported_warehouse():
    """Every test starts, and leaves, without RECS_WAREHOUSE: a dbt step exports it for
    dbt's profile (Settings.export_env), and a later test (or a `recs` process it starts)
    reading the environment would otherwise open an earlier test's warehouse. Removed
    after the test too, so that the next module's fixtures start clean."""
    saved = {name: os.environ.pop(name) for name in EXPORTED_ENV if name in os.environ}
    yield
    for name in EXPORTED_ENV:
        os.environ.pop(name, None)
    os.environ.update(saved)


def settings_for(tmp: Path, **env: str) -> Settings:
    """Settings for a pipeline living entirely under ``tmp``."""
    return load_settings({"RECS_DATA_DIR": str(tmp), "RECS_HOLDOUT_DAYS": "3", **env})


@pytest.fixture(scope="session")
def small_shop_config():
    from recs_pipeline.synthetic.shop import ShopConfig

    # Small but with every kind of dirt: 10 days, ~300 users, ~150 items, ~1,200 events a day.
    return ShopConfig(seed=7, n_days=10, n_users=300, n_items=150, events_per_day=1200, dirt_rate=0.03)


@pytest.fixture(scope="session")
def small_shop(tmp_path_factory, small_shop_config):
    """A generated landing zone shared (read-only) by the tests of a session."""
    from recs_pipeline.synthetic.shop import generate_landing_zone

    root = tmp_path_factory.mktemp("shop")
    report = generate_landing_zone(root / "landing", small_shop_config)
    return root, report


# Suites with targets of their own (`make test-ui`, `make test-reliability`, `make test-spark`, all run by CI):
# skipped by a plain `pytest` unless selected with `-m <name>` or RECS_<NAME>_TESTS=1.
SEPARATE_SUITES = ("ui", "reliability", "spark")


def pytest_collection_modifyitems(config, items):
    # Real-data tests skip cleanly on a machine without ../shared/data.
    skip = pytest.mark.skip(reason=f"{SHARED_DATA_DIR} is not present")
    selected = config.getoption("-m") or ""
    for item in items:
        if "realdata" in item.keywords and not SHARED_DATA_DIR.exists():
            item.add_marker(skip)
        for suite in SEPARATE_SUITES:
            asked = suite in selected and f"not {suite}" not in selected
            wanted = asked or os.environ.get(f"RECS_{suite.upper()}_TESTS") == "1"
            if suite in item.keywords and not wanted:
                item.add_marker(pytest.mark.skip(reason=f"run by `make test-{suite}`"))
