"""Learn: training set, hold-out evaluation against baselines, versioned model and the
promotion gate. The maths lives in recs_pipeline.ml and recs_pipeline.recommender."""

import base64
import hashlib
import io
import json
import os
import tempfile
from dataclasses import asdict, fields
from pathlib import Path

import dagster as dg
import pandas as pd

from recs_pipeline.defs.metadata import gate_result, table_metadata
from recs_pipeline.ml.matrices import build_training_data, with_weak_negatives
from recs_pipeline.ml.model import (
    ModelParams,
    find_warm_start_base,
    fit_model,
    load_model,
    newest_base,
    prune_models,
    recent_mask,
    save_model,
)
from recs_pipeline.recommender.evaluation import HoldoutData, evaluate_holdout, promotion_decision
from recs_pipeline.engine import Session
from recs_pipeline.resources import EngineResource, ModelStoreResource
from recs_pipeline.settings import ModelSettings, Settings

SERVING_POINTER = "serving.json"
EVALUATION_MODELS = "evaluation"  # sub-folder of the model store for the hold-out models


def data_version(frames: tuple[pd.DataFrame, ...], *extra) -> str:
    """A short content hash of the training frames and settings: same inputs, same version.
    Numbers are hashed as float64, so the version depends on the values, not on how an
    engine typed a count or a sum (DuckDB's HUGEINT sums, Spark's BIGINT)."""
    digest = hashlib.sha256()
    for frame in frames:
        numeric = [c for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])]
        canonical = frame.astype({c: "float64" for c in numeric}) if numeric else frame
        digest.update(pd.util.hash_pandas_object(canonical, index=False).values.tobytes())
    digest.update(json.dumps(extra, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:12]


def training_description(training: dict) -> str:
    if training.get("warm_start_of"):
        on = (
            f" on {training['recent_pairs']:,} new and {training['replayed_pairs']:,} replayed interactions"
            if "recent_pairs" in training
            else ""
        )
        return (
            f"warm start of {training['warm_start_of']} ({training['epochs']} epochs{on}; "
            f"{training['chain']} in a row since a training from scratch)"
        )
    return f"from scratch ({training['epochs']} epochs)"


def model_params(cfg: ModelSettings) -> ModelParams:
    """The LightFM hyper-parameters among the model settings."""
    names = {f.name for f in fields(ModelParams)} & {f.name for f in fields(ModelSettings)}
    return ModelParams(**{name: getattr(cfg, name) for name in names})


def weighted_interactions_sql(settings: Settings, where: str, reference: str, db: Session) -> str:
    """Interactions as the dbt model features.interactions computes them, for a subset of
    events (the training days), in the SQL of ``db``'s engine. A test checks both agree on
    the full history."""
    cases = " ".join(
        f"WHEN '{name}' THEN {float(w)}" + (" * coalesce(rating, 0)" if name == "rating" else "")
        for name, w in settings.event_weights.items()
    )
    return f"""
        SELECT user_id, item_id,
               round(sum(CASE event_type {cases} ELSE 0 END
                   * power(0.5, CAST({db.hours_between('event_ts', reference)} AS DOUBLE) / (24.0 * {float(settings.decay_half_life_days)}))), 9)
                   AS weight,
               sum(CASE WHEN event_type = 'purchase' THEN 1 ELSE 0 END) AS n_purchases
        FROM staging.stg_events
        WHERE NOT is_anonymous AND item_id IS NOT NULL AND {where}
        GROUP BY user_id, item_id
        HAVING sum(CASE event_type {cases} ELSE 0 END) > 0
    """


def item_feature_tokens(db: Session) -> pd.DataFrame:
    """LightFM's item features: features.item_feature_tokens (category, brand, price band,
    words) plus each item's WordLlama text theme, so that an item nobody has bought yet
    is placed by what its description means, not only by its exact words."""
    from recs_pipeline.defs.text import ITEM_TEXT_TABLE, text_theme_tokens_sql

    themes = f" UNION ALL {text_theme_tokens_sql()}" if db.table_exists(ITEM_TEXT_TABLE) else ""
    return db.df(f"SELECT item_id, feature, weight FROM features.item_feature_tokens{themes} ORDER BY item_id, feature, weight")


def serving_pointer(store: ModelStoreResource) -> dict | None:
    path = store.root / SERVING_POINTER
    return json.loads(path.read_text()) if path.exists() else None


def write_pointer(path: Path, pointer: dict) -> None:
    """Write a small JSON pointer atomically (a temp file, then rename): a reader sees
    the old pointer or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump(pointer, fh, indent=2, default=str)
    os.replace(tmp, path)


def write_serving_pointer(store: ModelStoreResource, pointer: dict) -> None:
    """Point serving at a model version."""
    write_pointer(store.root / SERVING_POINTER, pointer)


def png_markdown(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return f"![chart](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})"


def curves_chart(curves: dict[str, dict[int, tuple[float, float]]]) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_p, ax_r) = plt.subplots(1, 2, figsize=(9, 3.2))
    for name, by_k in curves.items():
        ks = sorted(by_k)
        ax_p.plot(ks, [by_k[k][0] for k in ks], marker="o", label=name)
        ax_r.plot(ks, [by_k[k][1] for k in ks], marker="o", label=name)
    ax_p.set(title="precision@k", xlabel="k")
    ax_r.set(title="recall@k", xlabel="k")
    ax_r.legend(fontsize=7)
    md = png_markdown(fig)
    plt.close(fig)
    return md


def pairs_since(db: Session, base, before: pd.Timestamp | None = None) -> pd.DataFrame | None:
    """(user_id, item_id) with events after the last day of ``base``'s data (and before
    ``before``): what a warm start from ``base`` has not seen yet."""
    if base is None:
        return None
    since = pd.Timestamp(base.horizon) + pd.Timedelta(days=1)
    bounds = [since.to_pydatetime()] + ([] if before is None else [pd.Timestamp(before).to_pydatetime()])
    return db.df(
        "SELECT DISTINCT user_id, item_id FROM staging.stg_events WHERE NOT is_anonymous AND item_id IS NOT NULL "
        "AND event_ts >= ?" + (" AND event_ts < ?" if before is not None else "") + " ORDER BY user_id, item_id",
        bounds,
    )


def evaluation_context(cfg: ModelSettings) -> dict:
    """What a hold-out model's warm-start base must share with it (stored with the model)."""
    return {"role": "evaluation", "identity_weights": [cfg.user_identity_weight, cfg.item_identity_weight],
            "negative_weight": cfg.negative_weight}


def build_ml_assets(settings: Settings) -> list:
    cfg = settings.model

    @dg.asset(
        key=["ml", "training_set"],
        deps=[dg.AssetKey(["staging", "stg_events"]), dg.AssetKey(["features", "interactions"])],
        group_name="ml",
        kinds={"duckdb"},
        pool="duckdb",
        description=f"Time-based split: interactions of the days before the last {cfg.holdout_days} "
        "(ml.training_set) and what known users bought after them (ml.holdout).",
    )
    def training_set(warehouse: EngineResource) -> dg.MaterializeResult:
        with warehouse.session() as db:
            last = db.scalar("SELECT max(event_ts) FROM staging.stg_events")
            if last is None:
                raise dg.Failure("staging.stg_events is empty: nothing to train on")
            cutoff = pd.Timestamp(last).normalize() + pd.Timedelta(days=1 - cfg.holdout_days)
            cutoff_sql = f"TIMESTAMP '{cutoff}'"
            db.replace_table("ml.training_set", weighted_interactions_sql(settings, f"event_ts < {cutoff_sql}", cutoff_sql, db))
            # Relevance: purchases where the shop has them, otherwise any positive event.
            has_purchases = db.scalar(
                f"SELECT count(*) FROM staging.stg_events WHERE event_type = 'purchase' AND event_ts >= {cutoff_sql}"
            )
            kinds = "('purchase')" if has_purchases else "('rating', 'purchase', 'add_to_cart', 'click')"
            db.replace_table(
                "ml.holdout",
                f"""SELECT DISTINCT e.user_id, e.item_id,
                           e.user_id IN (SELECT user_id FROM ml.training_set) AS is_known_user
                    FROM staging.stg_events e
                    WHERE NOT e.is_anonymous AND e.item_id IS NOT NULL
                      AND e.event_ts >= {cutoff_sql} AND e.event_type IN {kinds}""",
            )
            n_known, n_cold = db.row(
                "SELECT count(DISTINCT CASE WHEN is_known_user THEN user_id END), "
                "count(DISTINCT CASE WHEN NOT is_known_user THEN user_id END) FROM ml.holdout"
            )
            meta = table_metadata(db, "ml.training_set")
        return dg.MaterializeResult(
            metadata={
                **meta,
                "cutoff": str(cutoff),
                "holdout_known_users": int(n_known),
                "holdout_cold_users": int(n_cold),
                "relevance": "purchases" if has_purchases else "any positive event",
            }
        )

    @dg.asset(
        key=["ml", "evaluation"],
        deps=[
            training_set,
            dg.AssetKey(["features", "user_feature_tokens"]),
            dg.AssetKey(["features", "item_feature_tokens"]),
            dg.AssetKey(["features", "item_text_embeddings"]),
            dg.AssetKey(["features", "impression_negatives"]),
        ],
        group_name="ml",
        kinds={"lightfm", "duckdb"},
        pool="duckdb",
        description="LightFM hybrid trained on the training days, the serving blend (buy-again + model) and the "
        "baselines (popularity, buy-again, item-based) scored on the hold-out days.",
    )
    def evaluation(warehouse: EngineResource, model_store: ModelStoreResource) -> dg.MaterializeResult:
        with warehouse.session(read_only=True) as db:
            train_interactions = db.df("SELECT * FROM ml.training_set ORDER BY user_id, item_id")
            relevant = db.df("SELECT user_id, item_id FROM ml.holdout WHERE is_known_user ORDER BY user_id, item_id")
            last = db.scalar("SELECT max(event_ts) FROM staging.stg_events")
            first_holdout = pd.Timestamp(last).normalize() + pd.Timedelta(days=1 - cfg.holdout_days)
            purchases = db.df(
                "SELECT user_id, item_id, event_ts FROM staging.stg_events WHERE event_type = 'purchase' "
                "AND NOT is_anonymous AND event_ts < ? ORDER BY user_id, item_id, event_ts",
                [first_holdout.to_pydatetime()],
            )
            user_tokens = db.df(
                "SELECT user_id, feature, weight FROM features.user_feature_tokens ORDER BY user_id, feature, weight"
            )
            item_tokens = item_feature_tokens(db)
            in_stock = db.df("SELECT item_id, in_stock FROM features.item_features")
            negatives = db.df(
                "SELECT user_id, item_id FROM features.impression_negatives WHERE last_shown_ts < ? "
                "ORDER BY user_id, item_id",
                [first_holdout.to_pydatetime()],
            )
        holdout = HoldoutData(
            train_interactions=train_interactions,
            train_purchases=purchases,
            relevant=relevant,
            user_tokens=user_tokens,
            item_tokens=item_tokens,
            cutoff=first_holdout,
            in_stock=in_stock.set_index("item_id")["in_stock"],
            negatives=negatives,
        )
        params = model_params(cfg)
        store = model_store.root / EVALUATION_MODELS
        horizon = str((first_holdout - pd.Timedelta(days=1)).date())  # the last training day
        context = evaluation_context(cfg)
        base = find_warm_start_base(store, params, horizon, context, cfg.full_retrain_every, cfg.warm_start_epochs)
        with warehouse.session(read_only=True) as db:
            recent_pairs = pairs_since(db, base, first_holdout)
        report, data, fitted = evaluate_holdout(
            holdout,
            params,
            k=cfg.k,
            identity_weights=(cfg.user_identity_weight, cfg.item_identity_weight),
            negative_weight=cfg.negative_weight,
            base=base,
            max_users=cfg.evaluation_users,
            item_neighbours=cfg.item_neighbours,
            recent_pairs=recent_pairs,
            replay=cfg.warm_start_replay,
        )
        # Kept so that tomorrow's evaluation can continue from it.
        version = data_version(
            (train_interactions, user_tokens, item_tokens), asdict(params), context, base and base.version,
            base and cfg.warm_start_replay,
        )
        save_model(store / version, fitted, data.mappings, params, {"training": {**report.training, "horizon": horizon,
                                                                                 "context": context}})
        # Tonight's and the warm-start base (the ranker's past cut-offs have their own
        # models, see recs_pipeline.defs.ranking.CUTOFF_MODELS).
        prune_models(store, keep=2)
        rows = [
            {"strategy": s, "metric": m, "value": float(v)} for s, ms in report.metrics.items() for m, v in ms.items()
        ]
        rows += [{"strategy": "blend", "metric": "repeat_share", "value": report.repeat_share}]
        frame = pd.DataFrame(rows)
        with warehouse.session() as db:
            db.replace_table("ml.evaluation", frame)
            meta = table_metadata(db, "ml.evaluation")
        key = f"precision@{cfg.k}"
        baseline_name, baseline = report.best_baseline()
        return dg.MaterializeResult(
            metadata={
                # One strategy x metric table first; then each number on its own (rounded:
                # the UI plots these across runs, and 17 digits say nothing more).
                "metrics": dg.MetadataValue.md(
                    pd.DataFrame(report.metrics).T.drop(columns="n_users", errors="ignore").round(4).to_markdown()
                ),
                **{f"{s}/{m}": dg.MetadataValue.float(round(float(v), 4)) for s, ms in report.metrics.items()
                   for m, v in ms.items() if m != "n_users"},
                **{name: value for name, value in meta.items() if name != "preview"},
                "repeat_share": dg.MetadataValue.float(round(report.repeat_share, 4)),
                "eval_users": report.n_eval_users,
                "holdout_users": report.n_holdout_users,
                "best_baseline": f"{baseline_name} ({key} {baseline:.4f})",
                "training": training_description(report.training),
                "precision_recall_curves": dg.MetadataValue.md(curves_chart(report.curves)),
            }
        )

    @dg.asset(
        key=["ml", "model"],
        deps=[evaluation, dg.AssetKey(["features", "interactions"]), dg.AssetKey(["features", "impression_negatives"]),
              dg.AssetKey(["features", "item_text_embeddings"])],
        group_name="ml",
        kinds={"lightfm"},
        pool="duckdb",
        description="LightFM hybrid trained on all interactions, saved as a versioned artefact under "
        "data/models/<version>/; promoted to serving when the hold-out evaluation passes the gate.",
    )
    def model(warehouse: EngineResource, model_store: ModelStoreResource) -> dg.MaterializeResult:
        with warehouse.session(read_only=True) as db:
            interactions = db.df("SELECT user_id, item_id, weight FROM features.interactions ORDER BY user_id, item_id")
            user_tokens = db.df(
                "SELECT user_id, feature, weight FROM features.user_feature_tokens ORDER BY user_id, feature, weight"
            )
            item_tokens = item_feature_tokens(db)
            evaluation_rows = db.df("SELECT * FROM ml.evaluation")
            horizon = str(db.scalar("SELECT CAST(max(event_ts) AS DATE) FROM staging.stg_events"))
            negatives = db.df("SELECT user_id, item_id FROM features.impression_negatives ORDER BY user_id, item_id")
        params = model_params(cfg)
        data = build_training_data(
            interactions, user_tokens, item_tokens, "hybrid", cfg.user_identity_weight, cfg.item_identity_weight
        )
        # Impressions nobody responded to are negatives for the logistic loss (the
        # feedback loop); WARP and BPR sample their own negatives.
        fit_data = with_weak_negatives(data, negatives, cfg.negative_weight) if cfg.loss == "logistic" else data
        metrics = {f"{r.strategy}/{r.metric}": r.value for r in evaluation_rows.itertuples()}
        metrics["feature_config"] = {
            "user_identity_weight": cfg.user_identity_weight,
            "item_identity_weight": cfg.item_identity_weight,
        }
        context = {"role": "serving", **metrics["feature_config"], "negative_weight": cfg.negative_weight}
        # Continue yesterday's serving model, or, when there is none (a first or a full
        # retraining run), today's hold-out model: it was just trained from the same
        # settings on all but the hold-out days, so a few epochs on those days' interactions
        # (plus as many replayed older ones) finish it.
        base = newest_base(
            find_warm_start_base(
                model_store.root, params, horizon, context, cfg.full_retrain_every, cfg.warm_start_epochs
            ),
            find_warm_start_base(
                model_store.root / EVALUATION_MODELS, params, horizon, evaluation_context(cfg),
                cfg.full_retrain_every, cfg.warm_start_epochs,
            ),
        )
        recent = None
        if base is not None:
            with warehouse.session(read_only=True) as db:
                recent = recent_mask(fit_data.interactions, data.mappings, pairs_since(db, base))
        fitted, training = fit_model(
            fit_data.interactions, params, data.mappings, data.user_features, data.item_features, fit_data.weights,
            base, recent, cfg.warm_start_replay,
        )
        metrics["training"] = {**training, "horizon": horizon, "context": context}
        # Same data, settings and base -> same version: re-running does not pile up copies.
        frames = (interactions, user_tokens, item_tokens) + ((negatives,) if fit_data is not data else ())
        version = data_version(
            frames, asdict(params), metrics["feature_config"], base and base.version, base and cfg.warm_start_replay
        )
        directory = save_model(model_store.root / version, fitted, data.mappings, params, metrics)

        # The promotion gate.
        metric_key = f"precision@{cfg.k}"
        blend_metric = float(metrics.get(f"blend/{metric_key}", 0.0))
        baselines = {s: float(metrics.get(f"{s}/{metric_key}", 0.0)) for s in ("popularity", "buy_again", "item_based")}
        current = serving_pointer(model_store)
        serving_metric = None if current is None else current.get("metric")
        decision = promotion_decision(
            blend_metric, baselines, serving_metric, metric_key, cfg.promotion_margin, cfg.serving_tolerance
        )
        promoted = decision.promote or current is None or not (model_store.root / current["version"]).exists()
        reason = decision.reason if decision.promote or not promoted else (
            f"no model was serving, so this first version serves although: {decision.reason}"
        )
        if promoted:
            write_serving_pointer(
                model_store,
                {
                    "version": version,
                    "metric": blend_metric,
                    "repeat_share": float(metrics.get("blend/repeat_share", 0.0)),
                    "reason": reason,
                },
            )
        pruned = prune_models(
            model_store.root, cfg.keep_model_versions, protect={version, (serving_pointer(model_store) or {}).get("version")}
        )
        return dg.MaterializeResult(
            metadata={
                "version": version,
                "training": training_description(training),
                "models_pruned": len(pruned),
                "path": dg.MetadataValue.path(str(directory)),
                "promoted": promoted,
                "gate_passed": decision.promote,
                "promotion_reason": reason,
                "serving_version": version if promoted else current["version"],
                "n_users": data.mappings.n_users,
                "n_items": data.mappings.n_items,
                "n_interactions": int(data.interactions.nnz),
                f"blend/{metric_key}": dg.MetadataValue.float(blend_metric),
            }
        )

    @dg.asset_check(
        asset=model,
        name="new_model_beats_baselines",
        description="The promotion gate: the blend beats the best baseline on the hold-out and is not worse "
        "than the serving model. When it fails, the previous model keeps serving.",
    )
    def new_model_beats_baselines(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        return gate_result(context, dg.AssetKey(["ml", "model"]), "gate_passed", "model", extra=("serving_version",))

    return [training_set, evaluation, model, new_model_beats_baselines]


def load_serving_model(store: ModelStoreResource):
    """(version, model, mappings, params, metrics, pointer) of the model serving now."""
    pointer = serving_pointer(store)
    if pointer is None:
        raise dg.Failure(f"no model is serving: {store.root / SERVING_POINTER} does not exist; materialise ml/model")
    model, mappings, params, metrics = load_model(Path(store.root) / pointer["version"])
    return pointer["version"], model, mappings, params, metrics, pointer
