"""A reconstructable job for tests that go through Dagster's own run path (execute_job)."""

from recs_pipeline.definitions import build_defs


def nightly_job():
    # Settings come from the RECS_* environment variables the test sets.
    return build_defs().resolve_job_def("nightly_job")
