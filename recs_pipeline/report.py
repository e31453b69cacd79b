"""A static HTML report of the latest run: data quality, model vs baselines, what was
served and the experiment's lift over time.

It reads the warehouse read-only (the published snapshot by default, so it never
waits for a running pipeline) and writes one self-contained HTML file, charts
embedded as PNG, that can be opened from disk or mailed. No Dagster imports: the
``recs report`` command and any notebook can call :func:`write_report`.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import duckdb
import pandas as pd

from recs_pipeline.warehouse import table_exists

STRATEGY_ORDER = ("blend", "buy_again", "lightfm", "item_based", "popularity")


@dataclass
class Section:
    title: str
    parts: list[str] = field(default_factory=list)  # HTML fragments

    def text(self, value: str) -> None:
        self.parts.append(f"<p>{html.escape(value)}</p>")

    def table(self, frame: pd.DataFrame) -> None:
        self.parts.append(frame.to_html(index=False, border=0, classes="data", float_format=lambda v: f"{v:,.4g}"))

    def figure(self, fig) -> None:
        import matplotlib.pyplot as plt

        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
        plt.close(fig)
        data = base64.b64encode(buf.getvalue()).decode()
        self.parts.append(f'<img alt="{html.escape(self.title)}" src="data:image/png;base64,{data}">')


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _day_axis(ax) -> None:
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.tick_params(axis="x", labelsize=8)


def quality_section(con: duckdb.DuckDBPyConnection) -> Section:
    section = Section("Data quality")
    if not table_exists(con, "quality.event_reconciliation"):
        section.text("No reconciliation yet: run the pipeline first.")
        return section
    days = con.execute(
        "SELECT partition_date, raw_rows, clean_rows, quarantined_rows, duplicate_rows, is_balanced "
        "FROM quality.event_reconciliation ORDER BY partition_date"
    ).df()
    totals = days[["raw_rows", "clean_rows", "quarantined_rows", "duplicate_rows"]].sum()
    balanced = int(days["is_balanced"].sum())
    section.text(
        f"{len(days)} days: raw {totals.raw_rows:,} = clean {totals.clean_rows:,} + quarantined "
        f"{totals.quarantined_rows:,} + duplicates {totals.duplicate_rows:,}; "
        f"{balanced} of {len(days)} days balance."
    )
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 2.8))
    x = pd.to_datetime(days["partition_date"])
    ax.bar(x, days["clean_rows"], label="clean", color="#4c78a8")
    ax.bar(x, days["quarantined_rows"], bottom=days["clean_rows"], label="quarantined", color="#e45756")
    ax.bar(x, days["duplicate_rows"], bottom=days["clean_rows"] + days["quarantined_rows"], label="duplicates",
           color="#f58518")
    ax.set(title="event lines per day", ylabel="lines")
    _day_axis(ax)
    ax.legend(fontsize=8)
    section.figure(fig)
    if table_exists(con, "quality.quarantine_events"):
        section.table(
            con.execute(
                "SELECT reject_reason, count(*) AS lines FROM quality.quarantine_events GROUP BY 1 ORDER BY 2 DESC"
            ).df()
        )
    return section


def model_section(con: duckdb.DuckDBPyConnection) -> Section:
    section = Section("Model vs baselines on the hold-out")
    if not table_exists(con, "ml.evaluation"):
        section.text("No evaluation yet: materialise ml/evaluation.")
        return section
    wide = con.execute(
        "PIVOT (SELECT strategy, metric, value FROM ml.evaluation) ON metric USING first(value)"
    ).df()
    order = {s: i for i, s in enumerate(STRATEGY_ORDER)}
    wide = wide.sort_values("strategy", key=lambda s: s.map(lambda v: order.get(v, len(order))))
    shown = [c for c in ("strategy", "precision@10", "recall@10", "ndcg@10", "coverage", "auc") if c in wide]
    section.text(
        "Every strategy is trained on the days before the cut-off and scored on what shoppers bought after it; "
        "'blend' is what is served (likely re-purchases mixed with the model's discoveries)."
    )
    section.table(wide[shown])
    plt = _pyplot()
    metrics = [m for m in ("precision@10", "recall@10", "ndcg@10", "coverage") if m in wide]
    fig, axes = plt.subplots(1, len(metrics), figsize=(3 * len(metrics), 2.8), sharey=True)
    for ax, metric in zip(axes if len(metrics) > 1 else [axes], metrics):
        ax.barh(wide["strategy"], wide[metric], color="#4c78a8")
        ax.set_title(metric, fontsize=9)
        ax.tick_params(labelsize=8)
    axes_list = axes if len(metrics) > 1 else [axes]
    axes_list[0].invert_yaxis()  # shared y axis: best-known strategy on top
    section.figure(fig)
    return section


def serving_section(con: duckdb.DuckDBPyConnection) -> Section:
    section = Section("What is served")
    if not table_exists(con, "serving.recommendations"):
        section.text("No recommendations yet: materialise serving/recommendations.")
        return section
    section.table(
        con.execute(
            "SELECT strategy, count(DISTINCT user_id) AS users, count(*) AS rows, "
            "count(DISTINCT item_id) AS distinct_items FROM serving.recommendations GROUP BY 1 ORDER BY 2 DESC"
        ).df()
    )
    return section


def experiment_section(con: duckdb.DuckDBPyConnection) -> Section:
    section = Section("Experiment: lift over time")
    if not table_exists(con, "feedback.daily_variant_metrics") or not con.execute(
        "SELECT count(*) FROM feedback.daily_variant_metrics"
    ).fetchall()[0][0]:
        section.text("No served recommendations have been seen by shoppers yet, so there is nothing to measure.")
        return section
    daily = con.execute(
        "SELECT served_date, variant, sum(clicks) * 1.0 / sum(impressions) AS ctr, sum(impressions) AS impressions "
        "FROM feedback.daily_variant_metrics GROUP BY 1, 2 ORDER BY 1, 2"
    ).df()
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 2.8))
    for variant, rows in daily.groupby("variant"):
        ax.plot(pd.to_datetime(rows["served_date"]), rows["ctr"], marker="o", label=variant)
    ax.set(title="click-through rate by day and variant", ylabel="CTR")
    _day_axis(ax)
    ax.legend(fontsize=8)
    section.figure(fig)
    if table_exists(con, "feedback.experiment_results"):
        section.table(
            con.execute(
                "SELECT metric, variant_b || ' vs ' || variant_a AS comparison, value_a AS control, "
                "value_b AS variant, lift, ci_low, ci_high, p_value, n_a, n_b FROM feedback.experiment_results "
                "ORDER BY metric, comparison"
            ).df()
        )
    return section


CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1000px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; border-bottom: 1px solid #ddd; padding-bottom: .2em; margin-top: 2em; }
table.data { border-collapse: collapse; font-size: .85em; margin: .5em 0; }
table.data th, table.data td { padding: .25em .7em; text-align: right; border-bottom: 1px solid #eee; }
table.data th:first-child, table.data td:first-child { text-align: left; }
img { max-width: 100%; } .meta { color: #666; font-size: .85em; }
"""


def render(warehouse: Path) -> str:
    """The report for ``warehouse`` as one HTML document."""
    with duckdb.connect(str(warehouse), read_only=True) as con:
        sections = [quality_section(con), model_section(con), serving_section(con), experiment_section(con)]
    now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    body = "\n".join(f"<h2>{html.escape(s.title)}</h2>\n" + "\n".join(s.parts) for s in sections)
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>recs-pipeline report</title>"
        f"<style>{CSS}</style></head><body><h1>recs-pipeline report</h1>"
        f"<p class='meta'>{html.escape(str(warehouse))} · generated {now}</p>{body}</body></html>"
    )


def write_report(warehouse: Path, reports_dir: Path) -> Path:
    """Write ``report-<UTC timestamp>.html`` and ``latest.html`` into ``reports_dir``."""
    reports_dir.mkdir(parents=True, exist_ok=True)
    document = render(warehouse)
    stamped = reports_dir / f"report-{datetime.now(timezone.utc):%Y%m%dT%H%M%SZ}.html"
    stamped.write_text(document, encoding="utf-8")
    (reports_dir / "latest.html").write_text(document, encoding="utf-8")
    return stamped
