"""The great-expectations suites on small hand-made tables: what a run over days checks."""

from datetime import date

import duckdb

from recs_pipeline.defs.quality import SUITES, run_suite
from recs_pipeline.resources import EngineResource

DAY_1, DAY_2 = date(2026, 9, 1), date(2026, 9, 2)


def _warehouse(tmp_path, rows):
    path = tmp_path / "warehouse.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE SCHEMA raw")
    con.execute(
        "CREATE TABLE raw.events (partition_date DATE, user_id VARCHAR, source_file VARCHAR, source_line BIGINT)"
    )
    con.executemany("INSERT INTO raw.events VALUES (?, 'u1', ?, ?)", rows)
    con.close()
    return EngineResource(path=str(path))


def _violations(result):
    return {k.split("/", 1)[1]: v.value for k, v in result.metadata.items() if k.startswith("violations/")}


def test_a_run_over_days_samples_and_deduplicates_its_days_but_scans_every_day_for_lineage(tmp_path):
    suite = SUITES[("raw", "events")]
    # Day 1 has a line loaded twice; day 2 is clean.
    warehouse = _warehouse(tmp_path, [
        (DAY_1, "events/2026-09-01.csv", 2), (DAY_1, "events/2026-09-01.csv", 2),
        (DAY_2, "events/2026-09-02.csv", 2), (DAY_2, "events/2026-09-02.csv", 3),
    ])  # fmt: skip
    whole = run_suite(warehouse, suite)
    assert not whole.passed and _violations(whole)["lines_loaded_twice"] == 1
    assert whole.metadata["rows_sampled"].value == 4 and whole.metadata["days_checked"].text == "all"

    day_2 = run_suite(warehouse, suite, DAY_2, DAY_2)
    assert day_2.passed, day_2.description
    assert day_2.metadata["rows_sampled"].value == 2  # the run's day only
    assert day_2.metadata["days_checked"].text == "2026-09-02 .. 2026-09-02"

    day_1 = run_suite(warehouse, suite, DAY_1, DAY_2)
    assert not day_1.passed and _violations(day_1)["lines_loaded_twice"] == 1


def test_rows_without_lineage_are_found_outside_the_runs_days(tmp_path):
    warehouse = _warehouse(tmp_path, [(DAY_1, None, None), (DAY_2, "events/2026-09-02.csv", 2)])
    result = run_suite(warehouse, SUITES[("raw", "events")], DAY_2, DAY_2)
    assert not result.passed
    assert _violations(result) == {"rows_without_lineage": 1, "lines_loaded_twice": 0}
