"""The daily partitions of the event assets."""

from __future__ import annotations

from datetime import date, datetime, timedelta

import dagster as dg

from recs_pipeline.settings import Settings
from recs_pipeline.sources.base import Source

# Public data sets are finished history: their partitions stop after the last file.
# Live sources (the synthetic shop, a real shop) get a new partition every day.
STATIC_SOURCES = ("online_retail", "movielens")


def build_daily_partitions(settings: Settings, source: Source) -> dg.DailyPartitionsDefinition:
    days = source.event_days()
    if settings.partitions_start:
        start = settings.partitions_start
    elif days:
        start = days[0]
    else:
        from recs_pipeline.synthetic.shop import ShopConfig

        start = ShopConfig().start_date
    end = None
    if settings.source.kind in STATIC_SOURCES and days:
        end = (days[-1] + timedelta(days=1)).isoformat()
    return dg.DailyPartitionsDefinition(start_date=start.isoformat(), end_date=end, timezone=settings.schedule_timezone)


def days_in_window(context: dg.AssetExecutionContext) -> list[date]:
    """The calendar days a (single- or multi-partition) run covers."""
    window = context.partition_time_window
    first: datetime = window.start
    n_days = (window.end - window.start).days
    return [(first + timedelta(days=i)).date() for i in range(n_days)]
