"""Close the loop: experiment assignment, the lists published to the shop, and the
experiment results computed from what shoppers did with them."""

import dagster as dg
import pandas as pd

from recs_pipeline.defs.metadata import table_metadata
from recs_pipeline.defs.ml import png_markdown
from recs_pipeline.experiments import assign_variants, compare_variants
from recs_pipeline.resources import EngineResource
from recs_pipeline.settings import Settings

PUBLISHED_DDL = """
CREATE TABLE IF NOT EXISTS serving.published_recommendations (
    list_date DATE, user_id STRING, rank INTEGER, item_id STRING, score DOUBLE,
    strategy STRING, reason STRING, variant STRING, experiment_id STRING
)"""


def daily_ctr_chart(daily: pd.DataFrame) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 3))
    for variant, rows in daily.groupby("variant"):
        ax.plot(rows["served_date"], rows["ctr"], marker="o", label=variant)
    ax.set(title="daily CTR by variant", ylabel="clicks / impressions")
    ax.legend(fontsize=8)
    fig.autofmt_xdate()
    md = png_markdown(fig)
    plt.close(fig)
    return md


def build_feedback_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    exp = settings.experiment

    @dg.asset(
        key=["serving", "experiment_assignments"],
        deps=[dg.AssetKey(["features", "user_features"])],
        group_name="feedback",
        kinds={"duckdb"},
        pool="duckdb",
        description=f"Every user's variant in experiment {exp.experiment_id!r} "
        f"({', '.join(f'{v} {s:.0%}' for v, s in exp.variants.items())}), by a salted hash: stable across runs.",
    )
    def experiment_assignments(warehouse: EngineResource) -> dg.MaterializeResult:
        with warehouse.session() as db:
            users = db.df("SELECT user_id FROM features.user_features ORDER BY user_id")
            users["variant"] = assign_variants(users["user_id"], exp.experiment_id, exp.variants, exp.salt).to_numpy()
            users["experiment_id"] = exp.experiment_id
            db.replace_table("serving.experiment_assignments", users)
            shares = db.df("SELECT variant, count(*) AS users FROM serving.experiment_assignments GROUP BY 1 ORDER BY 1")
            meta = table_metadata(db, "serving.experiment_assignments")
        return dg.MaterializeResult(metadata={**meta, "users_by_variant": dg.MetadataValue.md(shares.to_markdown(index=False))})

    @dg.asset(
        key=["serving", "published_recommendations"],
        deps=[experiment_assignments, dg.AssetKey(["serving", "recommendations"])],
        group_name="feedback",
        kinds={"duckdb"},
        pool="duckdb",
        description="The lists the shop shows from the next day on, one set per day (list_date), by variant: "
        "the hybrid blend, most-popular, or nothing (hold-out). Re-running a day replaces its lists.",
    )
    def published_recommendations(warehouse: EngineResource) -> dg.MaterializeResult:
        n = settings.model.top_n
        with warehouse.session() as db:
            db.execute("CREATE SCHEMA IF NOT EXISTS serving")
            db.execute(PUBLISHED_DDL)
            list_date = db.scalar("SELECT max(event_date) + 1 FROM staging.stg_events")
            select = f"""
                WITH popular AS (
                    SELECT item_id, count(DISTINCT user_id) AS buyers
                    FROM staging.stg_events e JOIN features.item_features i USING (item_id)
                    WHERE e.event_type = 'purchase' AND i.in_stock
                      AND e.event_date > (SELECT max(event_date) - 30 FROM staging.stg_events)
                    GROUP BY item_id
                    ORDER BY buyers DESC, item_id
                    LIMIT {int(n)}
                ),
                popular_ranked AS (
                    SELECT item_id, buyers, row_number() OVER (ORDER BY buyers DESC, item_id) AS rank FROM popular
                )
                SELECT DATE '{list_date}' AS list_date, r.user_id, r.rank, r.item_id, r.score, r.strategy, r.reason,
                       a.variant, a.experiment_id
                FROM serving.recommendations r JOIN serving.experiment_assignments a USING (user_id)
                WHERE a.variant = 'hybrid'
                UNION ALL
                SELECT DATE '{list_date}', a.user_id, CAST(p.rank AS INTEGER), p.item_id, CAST(p.buyers AS DOUBLE), 'popular',
                       'popular in the shop this month', a.variant, a.experiment_id
                FROM serving.experiment_assignments a CROSS JOIN popular_ranked p
                WHERE a.variant = 'popularity'
            """
            # Re-running a day replaces that day's lists only (one transaction).
            db.replace_partition("serving.published_recommendations", select, "list_date", list_date)
            by_variant = db.df(
                "SELECT variant, count(*) AS rows, count(DISTINCT user_id) AS users FROM serving.published_recommendations "
                "WHERE list_date = ? GROUP BY 1 ORDER BY 1",
                [list_date],
            )
            meta = table_metadata(db, "serving.published_recommendations", where=f"list_date = DATE '{list_date}'")
        return dg.MaterializeResult(
            metadata={**meta, "list_date": str(list_date), "by_variant": dg.MetadataValue.md(by_variant.to_markdown(index=False))}
        )

    @dg.asset(
        key=["feedback", "experiment_results"],
        deps=[dg.AssetKey(["feedback", "experiment_user_outcomes"]), dg.AssetKey(["feedback", "daily_variant_metrics"])],
        group_name="feedback",
        kinds={"duckdb"},
        pool="duckdb",
        description=f"Every variant against {exp.control!r}: lift, confidence interval and p-value of CTR and "
        "conversion (two-proportion z-test) and revenue per user (bootstrap), with sample sizes and an "
        "under-powered flag.",
    )
    def experiment_results(warehouse: EngineResource) -> dg.MaterializeResult:
        with warehouse.session(read_only=True) as db:
            outcomes = db.df("SELECT * FROM feedback.experiment_user_outcomes ORDER BY user_id")
            daily = db.df(
                "SELECT served_date, variant, sum(clicks) * 1.0 / sum(impressions) AS ctr "
                "FROM feedback.daily_variant_metrics GROUP BY 1, 2 ORDER BY 1, 2"
            )
        results = (
            compare_variants(outcomes, exp.control)
            if exp.control in set(outcomes["variant"]) and outcomes["variant"].nunique() > 1
            else pd.DataFrame()
        )
        if len(results):
            results.insert(0, "experiment_id", exp.experiment_id)
        with warehouse.session() as db:
            if len(results):
                db.replace_table("feedback.experiment_results", results)
            elif not db.table_exists("feedback.experiment_results"):
                db.replace_table(
                    "feedback.experiment_results",
                    "SELECT CAST(NULL AS STRING) AS experiment_id, CAST(NULL AS STRING) AS metric WHERE false",
                )
        metadata: dict = {"variants": outcomes["variant"].nunique(), "users": len(outcomes)}
        if len(results):
            shown = results[["metric", "variant_a", "variant_b", "value_a", "value_b", "lift", "ci_low", "ci_high",
                             "p_value", "n_a", "n_b", "underpowered"]]
            metadata["results"] = dg.MetadataValue.md(shown.round(4).to_markdown(index=False))
            for row in results.itertuples():
                metadata[f"{row.metric}/{row.variant_b}_vs_{row.variant_a}/lift"] = dg.MetadataValue.float(float(row.lift))
                metadata[f"{row.metric}/{row.variant_b}_vs_{row.variant_a}/p_value"] = dg.MetadataValue.float(float(row.p_value))
        if len(daily):
            metadata["daily_ctr"] = dg.MetadataValue.md(daily_ctr_chart(daily))
        return dg.MaterializeResult(metadata=metadata)

    return [experiment_assignments, published_recommendations, experiment_results]
