"""Data-quality gates between stages: great-expectations suites as blocking asset checks.

Each check validates (a) a deterministic sample of the table with great-expectations
and (b) exact violation counts computed in SQL over the whole table, also validated
with great-expectations (each count must be 0). A failing blocking check stops every
downstream asset in the run; its metadata lists the failed expectations and row counts.

The suites of the daily tables (``raw.events``, ``staging.stg_events``) take their
sample and their aggregate counts (lines loaded twice, duplicate ids) from the days of
the run only, when the run covers days: the other days were checked when they were
loaded, and nothing since (retention, erasure) adds a row to them. Their filtered counts,
one cheap scan each, still cover every day. A nightly run so samples and de-duplicates
one day, not the whole history; a backfill its range.
"""


from dataclasses import dataclass, field, replace
from datetime import date

import dagster as dg
import pandas as pd

from recs_pipeline.quality.expectations import ValidationSummary, expect, validate_frame
from recs_pipeline.quality.quarantine_share import days_over_quarantine_share
from recs_pipeline.resources import EngineResource
from recs_pipeline.settings import Settings
from recs_pipeline.sources.base import CANONICAL_EVENT_TYPES

SAMPLE_ROWS = 100_000
SAMPLE_SEED = 42  # the same table gives the same sample


@dataclass(frozen=True)
class TableSuite:
    """What one check validates: a sample query with expectations, and exact counts."""

    name: str
    table: str
    # The sample the expectations see: ``sample_sql`` (a query, taken whole), or else a
    # reproducible random sample of ``table`` (``sample_where`` filters it).
    sample_sql: str = ""
    sample_where: str = ""
    expectations: list = field(default_factory=list)
    # name -> SQL returning one number that must be 0; ``{rows}`` stands for the table
    # narrowed to the run's days (when ``by_day``), a table name for all of it.
    violation_counts: dict[str, str] = field(default_factory=dict)
    # A table of daily partitions (partition_date): a run over days checks those days.
    by_day: bool = False

    def narrowed(self, first: date | None, last: date | None) -> "TableSuite":
        """The suite over the days first..last (inclusive) of a ``by_day`` table; the
        whole table when the run covers no days or the table is not by day."""
        window = f"partition_date BETWEEN DATE '{first.isoformat()}' AND DATE '{last.isoformat()}'" if (
            self.by_day and first is not None and last is not None) else ""  # fmt: skip
        rows = f"(SELECT * FROM {self.table} WHERE {window}) AS t" if window else f"{self.table} AS t"
        return replace(
            self,
            sample_where=window or self.sample_where,
            violation_counts={k: sql.format(rows=rows) for k, sql in self.violation_counts.items()},
        )


def run_suite(
    warehouse: EngineResource, suite: TableSuite, first: date | None = None, last: date | None = None
) -> dg.AssetCheckResult:
    """Validate ``suite`` (over the days first..last of a ``by_day`` table)."""
    days_checked = f"{first} .. {last}" if suite.by_day and first is not None and last is not None else "all"
    suite = suite.narrowed(first, last)
    with warehouse.session(read_only=True) as db:
        sample = (db.df(suite.sample_sql) if suite.sample_sql
                  else db.sample(suite.table, SAMPLE_ROWS, suite.sample_where, seed=SAMPLE_SEED))  # fmt: skip
        counts = {k: int(db.scalar(sql) or 0) for k, sql in suite.violation_counts.items()}
    summaries: list[ValidationSummary] = []
    if suite.expectations:
        summaries.append(validate_frame(sample, f"{suite.name}_sample", suite.expectations))
    if counts:
        counts_frame = pd.DataFrame([counts])
        summaries.append(
            validate_frame(
                counts_frame,
                f"{suite.name}_exact",
                [expect("ExpectColumnValuesToBeBetween", column=c, min_value=0, max_value=0) for c in counts],
            )
        )
    failed = [o for s in summaries for o in s.failed]
    table_md = "\n\n".join(s.markdown() for s in summaries)
    return dg.AssetCheckResult(
        passed=not failed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            "all expectations passed"
            if not failed
            else "failed: " + "; ".join(f"{o.expectation}({o.column})" for o in failed)
        ),
        metadata={
            "days_checked": dg.MetadataValue.text(days_checked),
            "rows_sampled": len(sample),
            "failed_expectations": len(failed),
            **{f"violations/{k}": v for k, v in counts.items()},
            "expectations": dg.MetadataValue.md(table_md),
        },
    )


SUITES = {
    ("raw", "events"): TableSuite(
        name="raw_events_have_lineage",
        table="raw.events",
        expectations=[
            expect("ExpectColumnValuesToNotBeNull", column="source_file"),
            expect("ExpectColumnValuesToNotBeNull", column="source_line"),
            expect("ExpectColumnValuesToBeBetween", column="source_line", min_value=1),
            expect("ExpectColumnValuesToNotBeNull", column="partition_date"),
        ],
        violation_counts={
            # A filtered count is one cheap scan: over every day.
            "rows_without_lineage": "SELECT count(*) FROM raw.events WHERE source_file IS NULL OR source_line IS NULL",
            # A line of one day's file loaded twice (partition_date is part of the key, so
            # the days of a run are checked alone).
            "lines_loaded_twice": "SELECT (SELECT count(*) FROM {rows}) - (SELECT count(*) FROM "
            "(SELECT DISTINCT partition_date, source_file, source_line FROM {rows}) AS lines)",
        },
        by_day=True,
    ),
    ("staging", "stg_events"): TableSuite(
        name="stg_events_are_valid",
        table="staging.stg_events",
        expectations=[
            expect("ExpectColumnValuesToNotBeNull", column="event_id"),
            expect("ExpectColumnValuesToBeInSet", column="event_type", value_set=list(CANONICAL_EVENT_TYPES)),
            expect("ExpectColumnValuesToNotBeNull", column="event_ts"),
            expect("ExpectColumnValuesToBeBetween", column="price", min_value=0),
            expect("ExpectColumnValuesToBeBetween", column="quantity", min_value=1),
        ],
        violation_counts={
            "known_user_events_without_user": "SELECT count(*) FROM staging.stg_events WHERE NOT is_anonymous AND user_id IS NULL",
            "non_search_events_without_item": "SELECT count(*) FROM staging.stg_events WHERE item_id IS NULL AND event_type <> 'search'",
            "negative_prices": "SELECT count(*) FROM staging.stg_events WHERE price < 0",
            "events_after_their_day": "SELECT count(*) FROM staging.stg_events WHERE event_ts >= partition_date + INTERVAL '2' DAY",
            # event_id hashes the day, file and line, so ids of different days never
            # collide; dbt's unique test on event_id checks the whole table all the same.
            "duplicate_event_ids": "SELECT count(*) - count(DISTINCT event_id) FROM {rows}",
        },
        by_day=True,
    ),
    ("quality", "event_reconciliation"): TableSuite(
        name="raw_rows_reconcile",
        table="quality.event_reconciliation",
        sample_sql="SELECT *, clean_rows + quarantined_rows + duplicate_rows AS accounted_rows FROM quality.event_reconciliation",
        expectations=[
            expect("ExpectColumnPairValuesToBeEqual", column_A="raw_rows", column_B="accounted_rows"),
        ],
        violation_counts={
            "raw_days_not_reconciled": "SELECT count(*) FROM (SELECT DISTINCT partition_date FROM raw.events) r "
            "WHERE partition_date NOT IN (SELECT partition_date FROM quality.event_reconciliation)",
        },
    ),
    ("features", "interactions"): TableSuite(
        name="interactions_reference_known_users_and_items",
        table="features.interactions",
        expectations=[
            expect("ExpectColumnValuesToNotBeNull", column="user_id"),
            expect("ExpectColumnValuesToNotBeNull", column="item_id"),
            expect("ExpectColumnValuesToBeBetween", column="weight", min_value=0, strict_min=True),
            expect("ExpectCompoundColumnsToBeUnique", column_list=["user_id", "item_id"]),
        ],
        violation_counts={
            "unknown_users": "SELECT count(*) FROM features.interactions WHERE user_id NOT IN (SELECT user_id FROM features.user_features)",
            "unknown_items": "SELECT count(*) FROM features.interactions WHERE item_id NOT IN (SELECT item_id FROM features.item_features)",
            "non_positive_weights": "SELECT count(*) FROM features.interactions WHERE NOT weight > 0",
        },
    ),
    ("features", "item_features"): TableSuite(
        name="item_features_are_complete",
        table="features.item_features",
        expectations=[
            expect("ExpectColumnValuesToNotBeNull", column="item_id"),
            expect("ExpectColumnValuesToBeUnique", column="item_id"),
            expect("ExpectColumnValuesToBeBetween", column="price", min_value=0),
            expect("ExpectColumnValuesToBeBetween", column="price_band", min_value=1, max_value=5),
        ],
        violation_counts={
            "duplicate_items": "SELECT count(*) - count(DISTINCT item_id) FROM features.item_features",
        },
    ),
    ("features", "user_features"): TableSuite(
        name="user_features_are_complete",
        table="features.user_features",
        expectations=[
            expect("ExpectColumnValuesToNotBeNull", column="user_id"),
            expect("ExpectColumnValuesToBeUnique", column="user_id"),
            expect("ExpectColumnValuesToBeBetween", column="n_events", min_value=0),
        ],
        violation_counts={
            "duplicate_users": "SELECT count(*) - count(DISTINCT user_id) FROM features.user_features",
        },
    ),
}


def _make_check(key: tuple[str, ...], suite: TableSuite) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(list(key)),
        name=suite.name,
        blocking=True,
        pool="duckdb",
        description=f"great-expectations suite on {suite.table}: a sample plus exact violation counts.",
    )
    def _check(context: dg.AssetCheckExecutionContext, warehouse: EngineResource) -> dg.AssetCheckResult:
        return run_suite(warehouse, suite, *run_window(context.run))

    return _check


def run_window(run: dg.DagsterRun) -> tuple[date | None, date | None]:
    """The days a run covers, from its partition tags (None, None: not a partitioned run)."""
    tags = run.tags
    if "dagster/asset_partition_range_start" in tags:
        return (date.fromisoformat(tags["dagster/asset_partition_range_start"]),
                date.fromisoformat(tags["dagster/asset_partition_range_end"]))  # fmt: skip
    if "dagster/partition" in tags:
        day = date.fromisoformat(tags["dagster/partition"])
        return day, day
    return None, None


def build_quarantine_share_check(max_share: float) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=dg.AssetKey(["staging", "stg_events"]),
        name="days_within_quarantine_share",
        blocking=True,
        pool="duckdb",
        description=f"No day of the run has more than {max_share:.0%} of its lines quarantined (a broken "
        "export or a wrong setting, not a few bad lines): the failure names the day, the dominant reason and "
        "an example line. Setting max_quarantine_share (1.0 turns the check off).",
    )
    def days_within_quarantine_share(
        context: dg.AssetCheckExecutionContext, warehouse: EngineResource
    ) -> dg.AssetCheckResult:
        first, last = run_window(context.run)
        with warehouse.session(read_only=True) as db:
            days = [] if max_share >= 1 else days_over_quarantine_share(db, first, last, max_share)
        lines = [d.describe() for d in days]
        return dg.AssetCheckResult(
            passed=not days,
            severity=dg.AssetCheckSeverity.ERROR,
            description="; ".join(lines) if days else f"every day within {max_share:.0%} quarantined",
            metadata={
                "max_quarantine_share": dg.MetadataValue.float(max_share),
                "days_over": len(days),
                "days": dg.MetadataValue.md("\n".join(f"- {line}" for line in lines) or "none"),
            },
        )

    return days_within_quarantine_share


def build_quality_checks(settings: Settings) -> list[dg.AssetChecksDefinition]:
    return [
        *(_make_check(key, suite) for key, suite in SUITES.items()),
        build_quarantine_share_check(settings.max_quarantine_share),
    ]
