"""Tune: Optuna over LightFM, TIFU-KNN and the ranker on a validation split before the
hold-out; the best parameters go to ``<model_dir>/tuned.json``, which later runs load
(recs_pipeline.settings.apply_tuned). Its own job (``tuning_job``, ``recs tune``),
never the nightly one. The maths lives in recs_pipeline.tuning."""

import os
from dataclasses import replace
from datetime import datetime, timezone

import dagster as dg
import pandas as pd
import pyarrow as pa

from recs_pipeline.defs.metadata import table_metadata
from recs_pipeline.defs.ml import item_feature_tokens, model_params, png_markdown, weighted_interactions_sql, write_pointer
from recs_pipeline.defs.ranking import load_shop_history, model_lists, ranker_params, stage_params, training_cutoffs
from recs_pipeline.engine import Session
from recs_pipeline.resources import EngineResource, ModelStoreResource
from recs_pipeline.settings import TUNED_FILE, Settings, ignore_tuned, read_tuned
from recs_pipeline.tuning import TuningData, tune, tuned_document, validation_split
from recs_pipeline.tuning.studies import STUDIES, TuningBase, TuningResult

TUNED_KEY = dg.AssetKey(["ml", "tuned_parameters"])
TRIALS_TABLE = "ml.tuning_trials"


class TuningConfig(dg.Config):
    """Trials per study (0 skips a study; trial 0 is always the current settings) and
    the sampler's seed. The defaults take a few minutes on the `make run` shop."""

    lightfm_trials: int = 6
    tifu_knn_trials: int = 10
    ranker_trials: int = 8
    seed: int = 42


def load_tuning_data(db: Session, settings: Settings) -> TuningData:
    """Everything the studies read, from the days before the hold-out only: purchases,
    the interactions before each cut-off, and the catalogue and users known by then
    (an item or user first seen in the hold-out is not in any index space)."""
    cfg, rcfg = settings.model, settings.ranking
    first_event, last = db.row("SELECT min(event_ts), max(event_ts) FROM staging.stg_events")
    if last is None:
        raise dg.Failure("staging.stg_events is empty: nothing to tune on")
    first_holdout = pd.Timestamp(last).normalize() + pd.Timedelta(days=1 - cfg.holdout_days)
    v = first_holdout - pd.Timedelta(days=cfg.holdout_days)
    split = validation_split(first_holdout, cfg.holdout_days,
                             training_cutoffs(v, pd.Timestamp(first_event), cfg.holdout_days, rcfg.cutoffs))  # fmt: skip
    before = [first_holdout.to_pydatetime()]
    shop = load_shop_history(db)
    known_items = pd.Index(db.df(
        "SELECT item_id FROM features.item_features WHERE in_catalogue UNION "
        "SELECT item_id FROM staging.stg_events WHERE item_id IS NOT NULL AND event_ts < ?", before,
    )["item_id"])  # fmt: skip
    keep = shop.item_ids.isin(known_items)
    shop = replace(
        shop,
        purchases=shop.purchases[shop.purchases["event_ts"] < first_holdout].reset_index(drop=True),
        item_ids=shop.item_ids[keep],
        item_vectors=None if shop.item_vectors is None else shop.item_vectors[keep],
    )
    interactions = {}
    for cutoff in split.cutoffs:
        at = f"TIMESTAMP '{cutoff}'"
        interactions[cutoff] = db.df(
            weighted_interactions_sql(settings, f"event_ts < {at}", at, db) + " ORDER BY user_id, item_id"
        )
    user_tokens = db.df(
        "SELECT user_id, feature, weight FROM features.user_feature_tokens WHERE user_id IN "
        "(SELECT user_id FROM staging.stg_events WHERE NOT is_anonymous AND event_ts < ?) "
        "ORDER BY user_id, feature, weight", before,
    )  # fmt: skip
    item_tokens = item_feature_tokens(db)
    item_tokens = item_tokens[item_tokens["item_id"].isin(known_items)].reset_index(drop=True)
    return TuningData(
        split=split,
        shop=shop,
        interactions=interactions,
        user_tokens=user_tokens,
        item_tokens=item_tokens,
        identity_weights=(cfg.user_identity_weight, cfg.item_identity_weight),
        evaluation_users=cfg.evaluation_users,
        train_users=rcfg.train_users,
        k=cfg.k,
    )


def tuning_base(settings: Settings) -> TuningBase:
    return TuningBase(model=model_params(settings.model), stage=stage_params(settings.ranking),
                      ranker=ranker_params(settings.ranking))  # fmt: skip


def run_tuning(data: TuningData, settings: Settings, n_trials: dict[str, int], seed: int = 42,
               log=lambda _: None) -> TuningResult:  # fmt: skip
    """The studies with the current settings as trial 0 and the ranking stage's
    LightFM lists as the ranker's ``model`` generator."""
    item_ids = data.shop.item_ids
    return tune(data, tuning_base(settings), n_trials, lambda model, mdata: model_lists(model, mdata, item_ids),
                seed=seed, log=log)  # fmt: skip


def history_chart(result: TuningResult) -> str:
    """Value of every trial per study, the best so far, and the current settings (trial 0)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = [s for s in result.studies.values() if len(s.trials)]
    fig, axes = plt.subplots(1, max(len(shown), 1), figsize=(3.6 * max(len(shown), 1), 3.0), squeeze=False)
    for ax, study in zip(axes[0], shown):
        trials = study.trials.dropna(subset=["value"])
        ax.scatter(trials["trial"], trials["value"], s=14, label="trial")
        ax.step(trials["trial"], trials["value"].cummax(), where="post", color="C1", label="best so far")
        ax.axhline(study.default_value, color="grey", linestyle="--", linewidth=1, label="current settings")
        ax.set(title=study.name, xlabel="trial", ylabel=result.metric)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    md = png_markdown(fig)
    plt.close(fig)
    return md


def summary_table(result: TuningResult) -> pd.DataFrame:
    rows = []
    for name, s in result.studies.items():
        rows.append({
            "study": name,
            f"current {result.metric}": None if s.default_value is None else round(s.default_value, 4),
            f"best {result.metric}": None if s.best_value is None else round(s.best_value, 4),
            "trials": len(s.trials),
            "written": s.improved,
            "best parameters": ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                         for k, v in s.best_params.items()),
        })  # fmt: skip
    return pd.DataFrame(rows)


TRIALS_SCHEMA = pa.schema([("study", pa.string()), ("trial", pa.int32()), ("value", pa.float64()),
                           ("params", pa.string()), ("state", pa.string())])  # fmt: skip


def trials_table(trials: pd.DataFrame) -> pa.Table:
    """The trials as ml.tuning_trials stores them (VARCHAR, INTEGER, DOUBLE, VARCHAR,
    VARCHAR), ordered by study and trial."""
    rows = trials.sort_values(["study", "trial"], kind="stable")
    return pa.table({
        "study": pa.array(rows["study"].astype(str).tolist(), type=pa.string()),
        "trial": pa.array(rows["trial"].astype("int64").tolist(), type=pa.int32()),
        "value": pa.array([None if pd.isna(v) else float(v) for v in rows["value"]], type=pa.float64()),
        "params": pa.array(rows["params"].astype(str).tolist(), type=pa.string()),
        "state": pa.array(rows["state"].astype(str).tolist(), type=pa.string()),
    }, schema=TRIALS_SCHEMA)  # fmt: skip


def build_tuning_assets(settings: Settings) -> list:
    @dg.asset(
        key=TUNED_KEY,
        deps=[
            dg.AssetKey(["ml", "training_set"]),
            dg.AssetKey(["features", "item_text_embeddings"]),
            dg.AssetKey(["staging", "stg_events"]),
            dg.AssetKey(["features", "user_features"]),
            dg.AssetKey(["features", "item_features"]),
            dg.AssetKey(["features", "user_feature_tokens"]),
            dg.AssetKey(["features", "item_feature_tokens"]),
        ],
        group_name="ml",
        kinds={"optuna"},
        pool="duckdb",
        description="Optuna (TPE, fixed seed) over LightFM, TIFU-KNN and the ranker's parameters on a validation split "
        "of the training days (labels: the holdout_days before the hold-out; the hold-out is never read). A study's "
        f"best parameters go to <model_dir>/{TUNED_FILE} only when they beat the current settings there; later runs "
        "use them unless the TOML file sets the key. Trials in ml.tuning_trials. Run by tuning_job (recs tune), never "
        "by the nightly job.",
    )
    def tuned_parameters(context: dg.AssetExecutionContext, config: TuningConfig, warehouse: EngineResource,
                         model_store: ModelStoreResource) -> dg.MaterializeResult:  # fmt: skip
        with warehouse.session(read_only=True) as db:
            data = load_tuning_data(db, settings)
        n_trials = {"lightfm": config.lightfm_trials, "tifu_knn": config.tifu_knn_trials,
                    "ranker": config.ranker_trials}  # fmt: skip
        try:
            result = run_tuning(data, settings, n_trials, config.seed, log=context.log.info)
        except ValueError as exc:
            raise dg.Failure(str(exc)) from exc
        previous = None if ignore_tuned(dict(os.environ)) else read_tuned(model_store.root)
        document = tuned_document(result, previous, datetime.now(timezone.utc).isoformat(timespec="seconds"))
        path = model_store.root / TUNED_FILE
        write_pointer(path, document)  # a temporary file, then renamed: never half written

        with warehouse.session() as db:
            db.replace_table(TRIALS_TABLE, trials_table(result.trials))
            meta = table_metadata(db, TRIALS_TABLE)
        split = result.validation.split
        return dg.MaterializeResult(
            metadata={
                **meta,
                "best_vs_current": dg.MetadataValue.md(summary_table(result).to_markdown(index=False)),
                "optimisation_history": dg.MetadataValue.md(history_chart(result)),
                **{f"{name}/current": dg.MetadataValue.float(round(s.default_value, 4))
                   for name, s in result.studies.items() if s.default_value is not None},  # fmt: skip
                **{f"{name}/best": dg.MetadataValue.float(round(s.best_value, 4))
                   for name, s in result.studies.items() if s.best_value is not None},  # fmt: skip
                **{f"{name}/decision": s.decision for name, s in result.studies.items()},
                "validation_cutoff": str(split.cutoff),
                "first_holdout": str(split.first_holdout),
                "validation_users": len(result.validation.users),
                "ranker_training_cutoffs": "; ".join(result.ranker_cutoffs) or "(none)",
                "tuned_file": dg.MetadataValue.path(str(path)),
                "tuned_model": dg.MetadataValue.json(document["model"]),
                "tuned_ranking": dg.MetadataValue.json(document["ranking"]),
                "seconds": dg.MetadataValue.json({k: round(v, 1) for k, v in result.seconds.items()}),
            }
        )

    return [tuned_parameters]


__all__ = ["STUDIES", "TUNED_KEY", "TuningConfig", "build_tuning_assets", "load_tuning_data", "run_tuning"]
