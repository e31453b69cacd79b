"""A/B experiments: deterministic variant assignment and the statistics that compare
variants: pure functions over pandas/numpy, no Dagster (assets using them belong in ``recs_pipeline.defs``)."""

from .assignment import assign_variants, bucket_variants, hash_to_unit_interval, validate_traffic_shares
from .stats import (
    DEFAULT_METRICS,
    RESULT_COLUMNS,
    BootstrapResult,
    MetricSpec,
    ProportionTestResult,
    bootstrap_mean_diff,
    compare_variants,
    proportion_min_detectable_effect,
    two_proportion_test,
)

__all__ = [
    "DEFAULT_METRICS",
    "RESULT_COLUMNS",
    "BootstrapResult",
    "MetricSpec",
    "ProportionTestResult",
    "assign_variants",
    "bucket_variants",
    "bootstrap_mean_diff",
    "compare_variants",
    "hash_to_unit_interval",
    "proportion_min_detectable_effect",
    "two_proportion_test",
    "validate_traffic_shares",
]
