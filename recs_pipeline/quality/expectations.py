"""A thin helper around great-expectations 1.x: validate a pandas DataFrame.

We validate DataFrames, not SQL tables: GE's SQL datasource fails against DuckDB.
Big tables are validated as a deterministic sample plus exact violation counts
computed in SQL (see ``recs_pipeline.defs.quality``).

GE is imported lazily (it takes seconds), with usage analytics and progress bars off.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from typing import Any

import pandas as pd


@dataclass(frozen=True)
class ExpectationOutcome:
    expectation: str
    column: str | None
    success: bool
    unexpected_count: int | None
    details: str


@dataclass(frozen=True)
class ValidationSummary:
    suite: str
    rows_validated: int
    outcomes: list[ExpectationOutcome] = field(default_factory=list)

    @property
    def success(self) -> bool:
        return all(o.success for o in self.outcomes)

    @property
    def failed(self) -> list[ExpectationOutcome]:
        return [o for o in self.outcomes if not o.success]

    def markdown(self) -> str:
        """A small table of the outcomes, for the Dagster UI."""
        lines = ["| expectation | column | result | unexpected rows |", "|---|---|---|---|"]
        for o in sorted(self.outcomes, key=lambda o: o.success):
            mark = "passed" if o.success else "**FAILED**"
            count = "" if o.unexpected_count is None else str(o.unexpected_count)
            lines.append(f"| {o.expectation} | {o.column or ''} | {mark} | {count} |")
        return "\n".join(lines)


def _quiet_gx() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")  # GE's progress bars go through tqdm
    for name in ("great_expectations", "great_expectations.core", "great_expectations.data_context"):
        logging.getLogger(name).setLevel(logging.ERROR)
    import great_expectations as gx

    return gx


def expect(kind: str, **kwargs: Any) -> tuple[str, dict[str, Any]]:
    """Declare an expectation by its GE class name, e.g. ``expect("ExpectColumnValuesToNotBeNull", column="id")``."""
    return kind, kwargs


def validate_frame(df: pd.DataFrame, suite: str, expectations: list[tuple[str, dict[str, Any]]]) -> ValidationSummary:
    """Run the expectations on ``df`` with an ephemeral GE context and summarise each one."""
    gx = _quiet_gx()
    context = gx.get_context(mode="ephemeral")
    from great_expectations.data_context.types.base import ProgressBarsConfig

    context.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    source = context.data_sources.add_pandas(name=f"{suite}_source")
    asset = source.add_dataframe_asset(name=f"{suite}_frame")
    batch_def = asset.add_batch_definition_whole_dataframe(f"{suite}_batch")
    gx_suite = gx.ExpectationSuite(name=suite)
    for kind, kwargs in expectations:
        gx_suite.add_expectation(getattr(gx.expectations, kind)(**kwargs))
    batch = batch_def.get_batch(batch_parameters={"dataframe": df})
    result = batch.validate(gx_suite, result_format="SUMMARY")
    outcomes = []
    for r in result.results:
        cfg = r.expectation_config
        res = r.result or {}
        exc = (r.exception_info or {}).get("exception_message") if isinstance(r.exception_info, dict) else None
        details = exc or ", ".join(
            f"{k}={v}" for k, v in res.items() if k in ("observed_value", "unexpected_percent", "partial_unexpected_list")
        )
        outcomes.append(
            ExpectationOutcome(
                expectation=cfg.type,
                column=cfg.kwargs.get("column") or cfg.kwargs.get("column_A"),
                success=bool(r.success),
                unexpected_count=res.get("unexpected_count"),
                details=str(details)[:300],
            )
        )
    return ValidationSummary(suite=suite, rows_validated=len(df), outcomes=outcomes)
