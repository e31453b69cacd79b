"""Serve: tables a shop reads its lists from, built with the model that is serving now."""

import dagster as dg
import numpy as np
import pandas as pd

from recs_pipeline.defs.metadata import table_metadata
from recs_pipeline.defs.ranking import RANKERS, load_serving_ranker, load_shop_history, model_lists, stage_params
from recs_pipeline.defs.ml import item_feature_tokens, load_serving_model
from recs_pipeline.defs.text import load_item_text
from recs_pipeline.ranking import stage
from recs_pipeline.ranking.ranker import compiled_ranker
from recs_pipeline.recommender.similar import text_similar_items, with_text_neighbours
from recs_pipeline.recommender.serving import recommend_all, similar_item_table, training_data_for
from recs_pipeline.resources import EngineResource, ModelStoreResource
from recs_pipeline.settings import Settings


def _load_inputs(warehouse: EngineResource) -> dict[str, pd.DataFrame]:
    # Every frame in a fixed order: sums over rows then come out the same on every run.
    with warehouse.session(read_only=True) as db:
        return {
            "interactions": db.df("SELECT user_id, item_id, weight FROM features.interactions ORDER BY user_id, item_id"),
            "user_tokens": db.df(
                "SELECT user_id, feature, weight FROM features.user_feature_tokens ORDER BY user_id, feature, weight"
            ),
            "item_tokens": item_feature_tokens(db),
            "items": db.df(
                "SELECT item_id, coalesce(title, item_id) AS title, category, in_stock FROM features.item_features "
                "ORDER BY item_id"
            ),
            "users": db.df("SELECT user_id, country, age_band FROM features.user_features ORDER BY user_id"),
            "purchases": db.df(
                "SELECT user_id, item_id, event_ts FROM staging.stg_events "
                "WHERE event_type = 'purchase' AND NOT is_anonymous AND item_id IS NOT NULL "
                "ORDER BY user_id, item_id, event_ts"
            ),
            "now": db.scalar("SELECT max(event_ts) FROM staging.stg_events"),
        }


def serving_model_and_data(warehouse: EngineResource, model_store: ModelStoreResource):
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


def ranked_lists(warehouse: EngineResource, model_store: ModelStoreResource, model, data, inputs: dict,
                 settings: Settings) -> tuple[pd.DataFrame | None, str]:  # fmt: skip
    """The ranking stage's top-n for every user with history, when a ranker serves;
    (None, why not) otherwise (the slot blend then serves)."""
    if not settings.ranking.enabled:
        return None, "slot blend (the ranker is turned off: [ranking] enabled = false)"
    trained, pointer = load_serving_ranker(model_store)
    if trained is None:
        return None, "slot blend: " + ((pointer or {}).get("reason") or "no ranker has been trained yet")
    cfg = settings.ranking
    with warehouse.session(read_only=True) as db:
        shop = load_shop_history(db)
    stock = inputs["items"].set_index("item_id")["in_stock"].astype(bool)
    item_mask = stock.reindex(shop.item_ids).fillna(True).to_numpy(dtype=bool)
    # Everything up to the newest event counts: the cut-off is just after it.
    cutoff = pd.Timestamp(inputs["now"]) + pd.Timedelta(seconds=1)
    history = np.asarray(data.interactions.tocsr().sum(axis=1)).ravel() > 0
    users = data.mappings.user_ids[history]
    gen = stage.prepare(shop, cutoff, stage_params(cfg, cfg.serving_depth), users=users,
                        model_lists=model_lists(model, data, shop.item_ids, item_mask, warehouse.engine().map_batches),
                        item_mask=item_mask)  # fmt: skip
    if cfg.compile_min_users and len(users) >= cfg.compile_min_users:
        trained = compiled_ranker(trained, model_store.root / RANKERS / pointer["version"])
    ranked = stage.rank_users(gen, trained, users, settings.model.top_n)
    return ranked, f"ranker {pointer['version']} ({pointer['reason']})"


def build_serving_assets(settings: Settings) -> list[dg.AssetsDefinition]:
    cfg = settings.model
    upstream = [
        dg.AssetKey(["ml", "model"]),
        *([dg.AssetKey(["ml", "ranker"])] if settings.ranking.enabled else []),
        dg.AssetKey(["features", "interactions"]),
        dg.AssetKey(["features", "user_features"]),
        dg.AssetKey(["features", "item_features"]),
        dg.AssetKey(["features", "item_text_embeddings"]),
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
    def recommendations(warehouse: EngineResource, model_store: ModelStoreResource) -> dg.MaterializeResult:
        version, model, pointer, inputs, data = serving_model_and_data(warehouse, model_store)
        now = pd.Timestamp(inputs["now"])
        ranked, ranker_note = ranked_lists(warehouse, model_store, model, data, inputs, settings)
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
            ranked=ranked,
            # Scoring runs where the engine computes: on Spark, its executors.
            map_batches=warehouse.engine().map_batches,
        )
        # generated_at is the as-of time of the data (the newest event), not the wall
        # clock, so rebuilding from the same data gives identical rows.
        recs["model_version"] = version
        recs["generated_at"] = now
        columns = ["user_id", "rank", "item_id", "score", "strategy", "reason", "model_version", "generated_at"]
        rows = (recs[columns].astype({"rank": "int32", "generated_at": "datetime64[us]"})
                .sort_values(["user_id", "rank"], kind="stable").reset_index(drop=True))  # fmt: skip
        with warehouse.session() as db:
            db.replace_table("serving.recommendations", rows)
            by_strategy = db.df(
                "SELECT strategy, count(*) AS rows, count(DISTINCT user_id) AS users FROM serving.recommendations "
                "GROUP BY strategy ORDER BY count(*) DESC"
            )
            n_users, n_missing = db.row(
                "SELECT (SELECT count(DISTINCT user_id) FROM serving.recommendations), "
                "(SELECT count(*) FROM features.user_features WHERE user_id NOT IN "
                "(SELECT user_id FROM serving.recommendations))"
            )
            meta = table_metadata(db, "serving.recommendations")
        return dg.MaterializeResult(
            metadata={
                **meta,
                "model_version": version,
                "lists_from": ranker_note,
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
        "representations; for an item nobody has interacted with yet, by the cosine of its WordLlama text vector "
        "(basis = 'text').",
    )
    def similar_items(warehouse: EngineResource, model_store: ModelStoreResource) -> dg.MaterializeResult:
        version, model, _, inputs, data = serving_model_and_data(warehouse, model_store)
        table = similar_item_table(data, model, inputs["items"], cfg.similar_n)
        # Items nobody has interacted with yet: their neighbours by what their text means.
        with warehouse.session(read_only=True) as db:
            ids, vectors, _ = load_item_text(db)
            n_events = db.df("SELECT item_id, n_events FROM features.item_features")
        stock = inputs["items"].set_index("item_id")["in_stock"].astype(bool).reindex(ids).fillna(True).to_numpy(bool)
        unseen = n_events.set_index("item_id")["n_events"].reindex(ids).fillna(0).to_numpy() == 0
        by_text = text_similar_items(vectors, ids, unseen, stock, cfg.similar_n)
        table = with_text_neighbours(table, by_text)
        table["basis"] = np.where(table["item_id"].isin(by_text["item_id"]), "text", "model")
        table["model_version"] = version
        rows = (table[["item_id", "rank", "similar_item_id", "score", "basis", "model_version"]]
                .astype({"rank": "int32"}).sort_values(["item_id", "rank"], kind="stable").reset_index(drop=True))  # fmt: skip
        with warehouse.session() as db:
            db.replace_table("serving.similar_items", rows)
            meta = table_metadata(db, "serving.similar_items")
        return dg.MaterializeResult(metadata={**meta, "model_version": version})

    return [recommendations, similar_items]
