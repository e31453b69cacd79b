"""Days whose lines were mostly quarantined: the sign of a broken export or a wrong
setting (a timestamp layout the source does not know), not of a few bad lines.

Each such day is reported with its dominant reason and one example line (file, line and
the offending value), so that the person reading the failed check knows what to fix.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from recs_pipeline.engine import Session

# The field that shows why a line got its reason (its text as the file had it).
REASON_FIELDS = {
    "unparseable_timestamp": "event_ts",
    "future_timestamp": "event_ts",
    "timestamp_out_of_range": "event_ts",
    "invalid_price": "price",
    "negative_price": "price",
    "invalid_quantity": "quantity",
    "missing_user_id": "user_id",
    "unknown_event_type": "event_type",
    "missing_item_id": "item_id",
    "unknown_item": "item_id",
    "malformed_line": "raw_line",
}
# What to do about a dominant reason that usually means a setting, not the data.
REASON_HINTS = {
    "unparseable_timestamp": 'set the source\'s timestamp_format (e.g. "%m/%d/%Y %H:%M"; RECS_TIMESTAMP_FORMAT)',
    "malformed_line": "check the file's delimiter and quoting",
    "unknown_item": "check that the catalogue file lists the items of the events",
}


@dataclass(frozen=True)
class QuarantinedDay:
    day: date
    lines: int
    quarantined: int
    reason: str  # the most frequent reject_reason of the day
    reason_lines: int
    example_file: str
    example_line: int
    example_value: str | None

    @property
    def share(self) -> float:
        return self.quarantined / self.lines if self.lines else 0.0

    def describe(self) -> str:
        field = REASON_FIELDS.get(self.reason, "line")
        value = "" if self.example_value is None else f" ({field} {self.example_value[:80]!r})"
        hint = f"; {REASON_HINTS[self.reason]}" if self.reason in REASON_HINTS else ""
        return (
            f"{self.day}: {self.share:.0%} of {self.lines:,} lines quarantined, mostly {self.reason} "
            f"({self.reason_lines:,}), e.g. {self.example_file} line {self.example_line}{value}{hint}"
        )


def days_over_quarantine_share(
    db: Session, first_day: date | None, last_day: date | None, max_share: float
) -> list[QuarantinedDay]:
    """The days between ``first_day`` and ``last_day`` (all days when None) with more than
    ``max_share`` of their raw rows in ``quality.quarantine_events``, oldest first."""
    window = "partition_date BETWEEN ? AND ?" if first_day and last_day else "true"
    params = [first_day, last_day] if first_day and last_day else []
    value = "CASE reject_reason " + " ".join(
        f"WHEN '{reason}' THEN {column}" for reason, column in REASON_FIELDS.items()
    ) + " END"
    rows = db.rows(
        f"""
        WITH raw_days AS (
            SELECT partition_date, count(*) AS lines FROM raw.events WHERE {window} GROUP BY 1
        ),
        numbered AS (
            SELECT partition_date, reject_reason, source_file, source_line, {value} AS example_value,
                   count(*) OVER (PARTITION BY partition_date, reject_reason) AS n,
                   row_number() OVER (PARTITION BY partition_date, reject_reason
                                      ORDER BY source_line, source_file) AS line_rank
            FROM quality.quarantine_events WHERE {window}
        ),
        reasons AS (  -- each reason's first line is its example
            SELECT partition_date, reject_reason, n, source_file AS example_file,
                   source_line AS example_line, example_value
            FROM numbered WHERE line_rank = 1
        ),
        ranked AS (
            SELECT *, sum(n) OVER (PARTITION BY partition_date) AS quarantined,
                   row_number() OVER (PARTITION BY partition_date ORDER BY n DESC, reject_reason) AS rank_in_day
            FROM reasons
        )
        SELECT d.partition_date, d.lines, p.quarantined, p.reject_reason, p.n,
               p.example_file, p.example_line, CAST(p.example_value AS STRING)
        FROM raw_days d JOIN ranked p USING (partition_date)
        WHERE p.rank_in_day = 1 AND p.quarantined > ? * d.lines
        ORDER BY 1
        """,
        params + params + [max_share],
    )
    return [QuarantinedDay(*row) for row in rows]
