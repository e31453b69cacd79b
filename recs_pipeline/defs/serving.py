"""Serve: tables a shop reads its lists from, built with the model that is serving now."""

import dagster as dg
import pandas as pd

from recs_pipeline.defs.metadata import table_metadata
from recs_pipeline.defs.ml import load_serving_model
from recs_pipeline.recommender.serving import recommend_all, similar_item_table, training_data_for
from recs_pipeline.resources import ModelStoreResource, WarehouseResource
from recs_pipeline.settings import Settings
from recs_pipeline.warehouse import replace_table


def _load_inputs(warehouse: WarehouseResource) -> dict[str, pd.DataFrame]:
    # Every frame in a fixed order: sums over rows then come out the same on every run.
    with warehouse.connect(read_only=True) as con:
        return {
            "interactions": con.execute(
                "SELECT user_id, item_id, weight FROM features.interactions ORDER BY user_id, item_id"
            ).df(),
            "user_tokens": con.execute("SELECT user_id, feature, weight FROM features.user_feature_tokens ORDER BY ALL").df(),
            "item_tokens": con.execute("SELECT item_id, feature, weight FROM features.item_feature_tokens ORDER BY ALL").df(),
            "items": con.execute(
                "SELECT item_id, coalesce(title, item_id) AS title, category, in_stock FROM features.item_features "
                "ORDER BY item_id"
            ).df(),
            "users": con.execute("SELECT user_id, country, age_band FROM features.user_features ORDER BY user_id").df(),
            "purchases": con.execute(
                "SELECT user_id, item_id, event_ts FROM staging.stg_events "
                "WHERE event_type = 'purchase' AND NOT is_anonymous AND item_id IS NOT NULL ORDER BY ALL"
            ).df(),
            "now": con.execute("SELECT max(event_ts) FROM staging.stg_events").fetchall()[0][0],
        }


def serving_model_and_data(warehouse: WarehouseResource, model_store: ModelStoreResource):
    """The serving model, its pointer, today's inputs and the matrices in its index space."""
    version, model, mappings, _, metrics, pointer = load_serving_model(model_store)
    inputs = _load_inputs(warehouse)
    weights = metrics.get("feature_config", {})
    data = training_data_for(
        mappings,
        inputs["interactions"],
        inputs["user_tokens"],
        inputs["item_tokens"],
        (weights.get("user_identity_weight", 1.0), weights.get("item_identity_weight", 1.0)),
    )
    return version, model, pointer, inputs, data


def build_serving_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    cfg = settings.model
    upstream = [
        dg.AssetKey(["ml", "model"]),
        dg.AssetKey(["features", "interactions"]),
        dg.AssetKey(["features", "user_features"]),
        dg.AssetKey(["features", "item_features"]),
    ]

    @dg.asset(
        key=["serving", "recommendations"],
        deps=upstream,
        group_name="serving",
        kinds={"duckdb", "lightfm"},
        pool="duckdb",
        description=f"Top-{cfg.top_n} per known user: buy-again and LightFM discoveries blended, cold-start "
        "lists from profile features or popularity, out-of-stock items filtered; strategy and reason per row.",
    )
    def recommendations(warehouse: WarehouseResource, model_store: ModelStoreResource) -> dg.MaterializeResult:
        version, model, pointer, inputs, data = serving_model_and_data(warehouse, model_store)
        now = pd.Timestamp(inputs["now"])
        recs = recommend_all(
            data,
            model,
            inputs["purchases"],
            inputs["items"],
            inputs["users"],
            pointer["repeat_share"],
            cfg.top_n,
            now,
            user_tokens=inputs["user_tokens"],
        )
        # generated_at is the as-of time of the data (the newest event), not the wall
        # clock, so rebuilding from the same data gives identical rows.
        recs["model_version"] = version
        recs["generated_at"] = now
        with warehouse.connect() as con:
            con.register("recs_frame", recs)
            replace_table(
                con,
                "serving.recommendations",
                "SELECT user_id, rank::INTEGER AS rank, item_id, score, strategy, reason, model_version, "
                "generated_at::TIMESTAMP AS generated_at FROM recs_frame ORDER BY user_id, rank",
            )
            by_strategy = con.execute(
                "SELECT strategy, count(*) AS rows, count(DISTINCT user_id) AS users FROM serving.recommendations "
                "GROUP BY 1 ORDER BY 2 DESC"
            ).df()
            n_users, n_missing = con.execute(
                "SELECT (SELECT count(DISTINCT user_id) FROM serving.recommendations), "
                "(SELECT count(*) FROM features.user_features WHERE user_id NOT IN "
                "(SELECT user_id FROM serving.recommendations))"
            ).fetchall()[0]
            meta = table_metadata(con, "serving.recommendations")
        return dg.MaterializeResult(
            metadata={
                **meta,
                "model_version": version,
                "users_served": int(n_users),
                "users_without_list": int(n_missing),
                "rows_by_strategy": dg.MetadataValue.md(by_strategy.to_markdown(index=False)),
            }
        )

    @dg.asset(
        key=["serving", "similar_items"],
        deps=upstream,
        group_name="serving",
        kinds={"duckdb", "lightfm"},
        pool="duckdb",
        description=f"The {cfg.similar_n} nearest in-stock items of every item by the cosine of their LightFM "
        "representations (new items included, through their content features).",
    )
    def similar_items(warehouse: WarehouseResource, model_store: ModelStoreResource) -> dg.MaterializeResult:
        version, model, _, inputs, data = serving_model_and_data(warehouse, model_store)
        table = similar_item_table(data, model, inputs["items"], cfg.similar_n)
        table["model_version"] = version
        with warehouse.connect() as con:
            con.register("similar_frame", table)
            replace_table(
                con,
                "serving.similar_items",
                "SELECT item_id, rank::INTEGER AS rank, similar_item_id, score, model_version FROM similar_frame "
                "ORDER BY item_id, rank",
            )
            meta = table_metadata(con, "serving.similar_items")
        return dg.MaterializeResult(metadata={**meta, "model_version": version})

    return [recommendations, similar_items]
