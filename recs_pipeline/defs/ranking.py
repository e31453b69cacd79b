"""Rank: the LightGBM ranker over the candidates of every generator, trained on past
cut-offs, evaluated on the hold-out next to the slot blend and TIFU-KNN, and promoted
to serve when it beats them. The maths lives in recs_pipeline.ranking."""

import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from dataclasses import asdict, replace
from functools import lru_cache
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd

from recs_pipeline.defs.metadata import gate_result, table_metadata
from recs_pipeline.defs.ml import (
    EVALUATION_MODELS,
    data_version,
    evaluation_context,
    item_feature_tokens,
    model_params,
    png_markdown,
    weighted_interactions_sql,
    write_pointer,
)
from recs_pipeline.ml import metrics as ranking_metrics
from recs_pipeline.ml import scoring
from recs_pipeline.ml.matrices import TrainingData, build_training_data
from recs_pipeline.ml.model import fit_model, load_model, save_model
from recs_pipeline.ranking import stage
from recs_pipeline.ranking.ranker import RankerParams, load_ranker, rank_candidates, save_ranker, train_ranker
from recs_pipeline.ranking.tifu_knn import TifuParams
from recs_pipeline.recommender.evaluation import sample_users, split_users
from recs_pipeline.recommender.serving import training_data_for
from recs_pipeline.engine import Session
from recs_pipeline.resources import EngineResource, ModelStoreResource
from recs_pipeline.settings import RankingSettings, Settings

RANKERS = "ranker"  # sub-folder of the model store
RANKER_POINTER = "serving.json"  # in RANKERS: the ranker that serves, or why none does
KEEP_RANKERS = 4
EVALUATED_RANKER = "evaluated"  # sub-folder of a ranker's: the one trained without its hold-out, for the gates
CUTOFF_MODELS = "ranker_cutoffs"  # sub-folder of the model store: LightFM models of training cut-offs, by input hash
KEEP_CUTOFF_MODELS = 6  # a night uses `cutoffs` of them; the rest serve a rerun of an older day
CUTOFF_GRID_ORIGIN = pd.Timestamp("1970-01-05")  # a Monday: weekly cut-off models start on Mondays


def stage_params(cfg: RankingSettings, depth: int | None = None) -> stage.StageParams:
    return stage.StageParams(
        depth=depth or cfg.depth,
        tifu=TifuParams(cfg.tifu_neighbours, cfg.tifu_within_decay, cfg.tifu_group_decay, cfg.tifu_alpha, cfg.tifu_groups),
        buy_again_half_life_days=cfg.buy_again_half_life_days,
        popularity_window_days=cfg.popularity_window_days,
        min_segment_buyers=cfg.min_segment_buyers,
        batch_users=cfg.batch_users,
    )


def ranker_params(cfg: RankingSettings) -> RankerParams:
    return RankerParams(n_estimators=cfg.n_estimators, learning_rate=cfg.learning_rate, num_leaves=cfg.num_leaves,
                        min_child_samples=cfg.min_child_samples, negatives_per_user=cfg.negatives_per_user,
                        seed=cfg.seed, num_threads=cfg.num_threads)  # fmt: skip


def relevance_kinds(db: Session) -> str:
    """The events that count as "bought": purchases where the shop has them, otherwise
    any positive event (ratings): the same rule as ml.holdout."""
    has = db.scalar("SELECT count(*) FROM staging.stg_events WHERE event_type = 'purchase'")
    return "('purchase')" if has else "('rating', 'purchase', 'add_to_cart', 'click')"


def load_shop_history(db: Session) -> stage.ShopHistory:
    """Purchases, segments and the catalogue's text vectors, as the generators read them."""
    kinds = relevance_kinds(db)
    purchases = db.df(
        "SELECT user_id, item_id, event_ts, session_id AS basket, price FROM staging.stg_events "
        f"WHERE event_type IN {kinds} AND NOT is_anonymous AND item_id IS NOT NULL "
        "ORDER BY user_id, item_id, event_ts, basket, price"
    )
    item_ids = pd.Index(db.df("SELECT item_id FROM features.item_features ORDER BY item_id")["item_id"],
                        dtype=object)  # fmt: skip
    segments = db.df("SELECT user_id, country FROM features.user_features WHERE country IS NOT NULL")
    return stage.ShopHistory(
        purchases=purchases,
        item_ids=item_ids,
        segments=segments.set_index("user_id")["country"],
        item_vectors=item_text_vectors(db, item_ids),
    )


def item_text_vectors(db: Session, item_ids: pd.Index) -> np.ndarray | None:
    """The WordLlama vectors of features.item_text_embeddings in the order of
    ``item_ids`` (zeros for an item without one), or None before that table exists."""
    from recs_pipeline.defs.text import ITEM_TEXT_TABLE, load_item_text

    if not db.table_exists(ITEM_TEXT_TABLE):
        return None
    ids, vectors, _ = load_item_text(db)
    out = np.zeros((len(item_ids), vectors.shape[1] if vectors.ndim == 2 else 0), dtype=np.float32)
    rows = item_ids.get_indexer(ids)
    out[rows[rows >= 0]] = vectors[rows >= 0]
    return out if out.shape[1] else None


def model_lists(model, data: TrainingData, item_ids: pd.Index, item_mask: np.ndarray | None = None,
                map_batches=None) -> stage.ModelLists:  # fmt: skip
    """LightFM's top-n for user ids, as the ``model`` generator (users it does not know get none).
    ``map_batches``: the engine's, to score where it computes (Spark's executors)."""
    maps = data.mappings
    # The model's items in the generators' order; items it does not know are never proposed.
    mask = None
    if item_mask is not None:
        mask = pd.Series(item_mask, index=item_ids).reindex(maps.item_ids).fillna(False).to_numpy(dtype=bool)

    def lists(user_ids: np.ndarray, n: int) -> pd.DataFrame:
        rows = maps.user_codes(pd.Index(user_ids))
        ranked = scoring.top_n(model, n, data.user_features, data.item_features, users=rows[rows >= 0], item_mask=mask,
                               map_batches=map_batches)
        return ranked.to_frame(maps.user_ids, maps.item_ids)

    return lists


def _tokens(db: Session) -> tuple[pd.DataFrame, pd.DataFrame]:
    users = db.df("SELECT user_id, feature, weight FROM features.user_feature_tokens ORDER BY user_id, feature, weight")
    return users, item_feature_tokens(db)


def lightfm_before(db: Session, settings: Settings, store: ModelStoreResource, cutoff: pd.Timestamp,
                   holdout: bool = False):  # fmt: skip
    """A LightFM hybrid that has seen only interactions before ``cutoff``, and the
    interactions before ``cutoff`` in its index space: the ``model`` candidates of a cut-off.

    At the hold-out (``holdout``) it is the model ml/evaluation trained tonight. At a
    training cut-off it is the model of the interactions before ``model_cutoff(cutoff)``,
    the Monday-aligned week start at or before it (for ``holdout_days`` 7): a pure
    function of those inputs, stored under their hash in ``CUTOFF_MODELS``. The cut-offs
    roll with the hold-out, but the model stays the same for ``holdout_days`` nights, so
    those nights load it instead of training it again, and a full run over the same
    days loads or trains the very same one. Tonight's hold-out model is never used for a
    training cut-off: it has seen the cut-off's labels.
    """
    cfg = settings.model
    identity = (cfg.user_identity_weight, cfg.item_identity_weight)

    def interactions_before(moment: pd.Timestamp) -> pd.DataFrame:
        at = f"TIMESTAMP '{moment}'"
        return db.df(weighted_interactions_sql(settings, f"event_ts < {at}", at, db) + " ORDER BY user_id, item_id")

    interactions = interactions_before(cutoff)
    user_tokens, item_tokens = _tokens(db)
    if holdout:
        found = stored_holdout_model(store.root / EVALUATION_MODELS, str((cutoff - pd.Timedelta(days=1)).date()),
                                     asdict(model_params(cfg)), evaluation_context(cfg))  # fmt: skip
        if found is not None:
            model, mappings, _, _ = load_model(found)
            return model, training_data_for(mappings, interactions, user_tokens, item_tokens, identity)
    # A training cut-off's model only proposes the ranker's training candidates, so it
    # gets a smaller budget of updates (at L, a fifth of a full training; the `make run`
    # shop keeps its 20 epochs). Users and items first seen after it stay out of its
    # inputs: they have nothing to learn from there and would change its hash night after
    # night (a new sign-up, a new product).
    params = replace(model_params(cfg), max_updates=min(cfg.max_updates or 1 << 62,
                                                         settings.ranking.cutoff_model_max_updates))  # fmt: skip
    trained_before = model_cutoff(cutoff, settings.model.holdout_days) if not holdout else cutoff
    seen = interactions_before(trained_before) if trained_before < cutoff else interactions
    user_tokens_seen = user_tokens[user_tokens["user_id"].isin(seen["user_id"])].reset_index(drop=True)
    item_tokens_seen = item_tokens[item_tokens["item_id"].isin(seen["item_id"])].reset_index(drop=True)
    cache = store.root / CUTOFF_MODELS
    directory = cache / data_version((seen, user_tokens_seen, item_tokens_seen), asdict(params),
                                     evaluation_context(cfg), str(trained_before))  # fmt: skip
    if (directory / "model.npz").exists():
        model, mappings, _, _ = load_model(directory)
        os.utime(directory)  # pruning goes by modification time: a model in use is a recent one
    else:
        data = build_training_data(seen, user_tokens_seen, item_tokens_seen, "hybrid", *identity)
        model, _ = fit_model(data.interactions, params, data.mappings, data.user_features, data.item_features,
                             data.weights)  # fmt: skip
        mappings = data.mappings
        save_model(directory, model, mappings, params,
                   {"training": {"horizon": str((trained_before - pd.Timedelta(days=1)).date()), "role": "cutoff"}})  # fmt: skip
        prune_folders(cache, keep=KEEP_CUTOFF_MODELS, protect=directory.name)
    return model, training_data_for(mappings, interactions, user_tokens, item_tokens, identity)


def model_cutoff(cutoff: pd.Timestamp, days: int) -> pd.Timestamp:
    """The start of the ``days``-day step of a fixed grid (from ``CUTOFF_GRID_ORIGIN``)
    that holds ``cutoff``: the same day for ``days`` consecutive cut-offs."""
    step = pd.Timedelta(days=days)
    return CUTOFF_GRID_ORIGIN + ((cutoff.normalize() - CUTOFF_GRID_ORIGIN) // step) * step


def stored_holdout_model(root: Path, horizon: str, params: dict, context: dict) -> Path | None:
    """The newest stored hold-out model whose data ends on ``horizon`` (its last
    training day), trained with ``params`` and ``context``; None if there is none."""
    if not root.is_dir():
        return None
    matches = []
    for directory in root.iterdir():
        try:
            training = json.loads((directory / "metrics.json").read_text()).get("training", {})
            stored = json.loads((directory / "params.json").read_text())
        except (OSError, ValueError):
            continue
        if training.get("horizon") == horizon and stored == params and training.get("context") == context:
            matches.append((directory.stat().st_mtime, directory.name, directory))
    return max(matches)[2] if matches else None


@lru_cache(maxsize=1)
def ranking_code_version() -> str:
    """A hash of the ranking package's source (its generators and features): a stored
    ranker is reused only by the code that made its feature columns (an upgrade that
    adds or drops a feature retrains instead of scoring with the wrong columns)."""
    digest = hashlib.sha256()
    for path in sorted(Path(stage.__file__).parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def ranker_anchor(first_holdout: pd.Timestamp, every_days: int) -> pd.Timestamp:
    """The day the rankers serving a hold-out starting ``first_holdout`` are trained as
    of: the start of its ``every_days`` step of the grid (the hold-out's own first day
    when ``every_days`` <= 1, i.e. retrained every run)."""
    return first_holdout if every_days <= 1 else model_cutoff(first_holdout, every_days)


def stored_rankers(root: Path, week_key: str):
    """(version, evaluated ranker, serving ranker, its ranker.json) trained for
    ``week_key`` (the retraining period's start, its inputs and settings), or None."""
    if not root.is_dir():
        return None
    for directory in sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")):
        try:
            meta = json.loads((directory / "ranker.json").read_text())
        except (OSError, ValueError):
            continue
        if meta.get("week") == week_key and (directory / EVALUATED_RANKER / "ranker.txt").is_file():
            serving, meta = load_ranker(directory)
            evaluated, _ = load_ranker(directory / EVALUATED_RANKER)
            return directory.name, evaluated, serving, meta
    return None


def training_cutoffs(first_holdout: pd.Timestamp, first_event: pd.Timestamp, days: int, n: int) -> list[pd.Timestamp]:
    """Up to ``n`` cut-offs ``days`` apart before the hold-out, oldest first; each keeps
    at least ``days`` of history before it."""
    cutoffs = [first_holdout - pd.Timedelta(days=days * j) for j in range(n, 0, -1)]
    return [c for c in cutoffs if c - pd.Timedelta(days=days) >= first_event.normalize()]


def importance_chart(importance: pd.DataFrame, top: int = 20) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = importance.head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(shown) + 1))
    ax.barh(shown["feature"], shown["gain"])
    ax.set(title="LightGBM feature importance (gain)", xlabel="total gain")
    md = png_markdown(fig)
    plt.close(fig)
    return md


def phase_timer(seconds: dict[str, float]):
    """``with timed(name):`` adds the block's wall time to ``seconds[name]``."""
    @contextmanager
    def timed(name: str):
        started = time.perf_counter()
        yield
        seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - started

    return timed


def ranker_pointer(store: ModelStoreResource) -> dict | None:
    path = store.root / RANKERS / RANKER_POINTER
    return json.loads(path.read_text()) if path.exists() else None


def load_serving_ranker(store: ModelStoreResource):
    """(the ranker, its pointer) when a ranker serves, else (None, the pointer or None)."""
    pointer = ranker_pointer(store)
    if not pointer or not pointer.get("promoted") or not (store.root / RANKERS / pointer["version"]).exists():
        return None, pointer
    trained, _ = load_ranker(store.root / RANKERS / pointer["version"])
    return trained, pointer


def prune_folders(root: Path, keep: int, protect: str | None) -> None:
    """Delete all but the ``keep`` newest sub-folders of ``root`` (never ``protect``)."""
    folders = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")),
                     key=lambda d: d.stat().st_mtime, reverse=True)  # fmt: skip
    for directory in folders[keep:]:
        if directory.name != protect:
            shutil.rmtree(directory, ignore_errors=True)


def build_ranking_assets(settings: Settings) -> list:
    cfg, rcfg = settings.model, settings.ranking
    k = cfg.k

    @dg.asset(
        key=["ml", "ranker"],
        deps=[
            dg.AssetKey(["ml", "evaluation"]),
            dg.AssetKey(["features", "item_text_embeddings"]),
            dg.AssetKey(["features", "user_features"]),
        ],
        group_name="ml",
        kinds={"lightgbm", "duckdb"},
        pool="duckdb",
        description="LightGBM lambdarank over the candidates of six generators (buy-again, TIFU-KNN, item-kNN, "
        "segment best sellers, WordLlama text, LightFM), trained on cut-offs before the hold-out and scored on it "
        "next to the slot blend and TIFU-KNN (ml.ranker_evaluation, ml.candidate_recall); serves when it beats them. "
        "Trained once per retraining period ([ranking] retrain_every_days, weekly from Mondays) and reused by the "
        "period's other runs, which still score it on their own hold-out.",
    )
    def ranker(context: dg.AssetExecutionContext, warehouse: EngineResource,
               model_store: ModelStoreResource) -> dg.MaterializeResult:  # fmt: skip
        params = stage_params(rcfg)
        seconds: dict[str, float] = {}  # where the step's time goes, for the metadata
        timed = phase_timer(seconds)
        with warehouse.session(read_only=True) as db:
            first_event, last = db.row("SELECT min(event_ts), max(event_ts) FROM staging.stg_events")
            first_holdout = pd.Timestamp(last).normalize() + pd.Timedelta(days=1 - cfg.holdout_days)
            shop = load_shop_history(db)
            relevant = db.df("SELECT user_id, item_id FROM ml.holdout WHERE is_known_user ORDER BY user_id, item_id")
            in_stock = db.df("SELECT item_id, in_stock FROM features.item_features")
            blend_rows = db.df("SELECT strategy, metric, value FROM ml.evaluation")
            item_mask = in_stock.set_index("item_id")["in_stock"].reindex(shop.item_ids).fillna(True).to_numpy(bool)

            # The rankers are trained as of the start of the retraining period that holds the
            # hold-out (a fixed grid of `retrain_every_days`), once, and reused by the other
            # nights of the period: the cut-offs' candidates and both LightGBM fits were most
            # of a nightly run's ranking time. The reused evaluated ranker learnt only from
            # labels before that start, so tonight's hold-out is still unseen by it.
            anchor = ranker_anchor(first_holdout, rcfg.retrain_every_days)
            week_key = data_version((shop.purchases[shop.purchases["event_ts"] < anchor],), str(anchor),
                                    asdict(ranker_params(rcfg)), str(params), asdict(model_params(cfg)),
                                    evaluation_context(cfg), rcfg.cutoffs, rcfg.train_users,
                                    rcfg.cutoff_model_max_updates, ranking_code_version(),
                                    # the text source proposes nothing before the text table exists
                                    shop.item_vectors is not None)  # fmt: skip
            stored = stored_rankers(model_store.root / RANKERS, week_key)
            # Training rows: each past cut-off with its own LightFM and labels from the period after it.
            training, trained_on = [], []
            cutoffs = [] if stored else training_cutoffs(anchor, pd.Timestamp(first_event), cfg.holdout_days,
                                                         rcfg.cutoffs)  # fmt: skip
            for cutoff in cutoffs:
                end = cutoff + pd.Timedelta(days=cfg.holdout_days)
                period = shop.purchases[(shop.purchases["event_ts"] >= cutoff) & (shop.purchases["event_ts"] < end)]
                known = set(shop.purchases.loc[shop.purchases["event_ts"] < cutoff, "user_id"])
                users = sample_users(np.sort(period.loc[period["user_id"].isin(known), "user_id"].unique()),
                                     rcfg.train_users)  # fmt: skip
                if not len(users):
                    continue
                with timed(f"LightFM for {cutoff.date()}"):
                    model, data = lightfm_before(db, settings, model_store, cutoff)
                with timed(f"candidates and features of {cutoff.date()}"):
                    gen = stage.prepare(shop, cutoff, params, users=users,
                                        model_lists=model_lists(model, data, shop.item_ids))  # fmt: skip
                    training.append(stage.labelled_rows(gen, users, shop.purchases, end))
                trained_on.append(f"{cutoff.date()} ({len(users):,} users, {len(training[-1]):,} rows, "
                                  f"{int(training[-1]['label'].sum()):,} positives)")  # fmt: skip
                context.log.info(f"ranker training cut-off {trained_on[-1]}")

            # The hold-out: the same users ml/evaluation reports on, ranked from the days before it.
            eval_users = sample_users(relevant["user_id"].unique(), cfg.evaluation_users)
            _, report_users = split_users(eval_users)
            with timed("LightFM for the hold-out"):
                model, data = lightfm_before(db, settings, model_store, first_holdout, holdout=True)
        with timed("candidates and features of the hold-out"):
            gen = stage.prepare(shop, first_holdout, params, users=eval_users,
                                model_lists=model_lists(model, data, shop.item_ids, item_mask), item_mask=item_mask)  # fmt: skip
            cands = stage.candidates(gen, eval_users)
            test = stage.features(gen, cands)
        bought_after = relevant.drop_duplicates().assign(label=1)
        test["label"] = test[["user_id", "item_id"]].merge(bought_after, on=["user_id", "item_id"], how="left")[
            "label"].fillna(0).to_numpy(np.int32)  # fmt: skip
        report_rel = relevant[relevant["user_id"].isin(report_users)]
        recall = stage.candidate_recall(cands[cands["user_id"].isin(report_users)], report_rel).assign(depth=params.depth)
        bought = gen.history[["user_id", "item_id"]].drop_duplicates()

        labelled = [frame for frame in training if frame["label"].any()]
        results: dict[str, dict[str, float]] = {}
        version = evaluated = serving = None
        if stored:
            version, evaluated, serving, stored_meta = stored
            trained_on = stored_meta.get("trained_on", [])
            os.utime(model_store.root / RANKERS / version)  # pruning goes by modification time

        def score(name: str, lists: pd.DataFrame) -> None:
            shown = lists[lists["user_id"].isin(report_users)]
            results[name] = {
                **{m: v for m, v in ranking_metrics.ranking_metrics(shown, report_rel, k).items() if m != "n_users"},
                **ranking_metrics.repeat_explore_metrics(shown, report_rel, bought, k),
            }

        for name, lists in cands.groupby("generator", sort=True):
            score(name, lists)
        if not stored and labelled:
            with timed("ranker training (evaluated)"):
                evaluated = train_ranker(labelled, ranker_params(rcfg), generators=stage.GENERATORS)
        if evaluated is not None:
            score("ranker", rank_candidates(evaluated, test[test["user_id"].isin(report_users)], k))

        # The gate: the ranker against the best of the baselines, TIFU-KNN and the blend.
        key = f"precision@{k}"
        rivals = {r.strategy: float(r.value) for r in blend_rows.itertuples() if r.metric == key
                  and r.strategy in ("popularity", "buy_again", "item_based", "blend")}  # fmt: skip
        rivals["tifu_knn"] = results.get("tifu_knn", {}).get(key, 0.0)
        rival = max(rivals, key=rivals.get)
        value = results.get("ranker", {}).get(key, 0.0)
        if evaluated is None:
            promoted, reason = False, "no training cut-off has labelled candidates yet (too little history)"
        elif value > rivals[rival] * (1 + rcfg.promotion_margin):
            promoted, reason = True, f"ranker {key} {value:.4f} beats {rival} {rivals[rival]:.4f}"
        else:
            promoted, reason = False, f"ranker {key} {value:.4f} does not beat {rival} {rivals[rival]:.4f}: the blend serves"

        if evaluated is not None and not stored:
            # The serving ranker also learns from the hold-out period itself (its rows were built
            # from the days before it, exactly like a training cut-off's).
            with timed("ranker training (serving)"):
                serving = train_ranker([*labelled, test], ranker_params(rcfg), generators=stage.GENERATORS)
            version = data_version(tuple(labelled) + (test,), str(ranker_params(rcfg)), str(params))
            root = model_store.root / RANKERS
            save_ranker(serving, root / version, {"stage": {"cutoff": str(first_holdout), "anchor": str(anchor)},
                                                  "week": week_key, "trained_on": trained_on,
                                                  "evaluation": results, "promoted": promoted, "reason": reason})  # fmt: skip
            # Written last: a folder without it is not reused (see stored_rankers).
            save_ranker(evaluated, root / version / EVALUATED_RANKER)
            prune_folders(root, KEEP_RANKERS, protect=version)
        importance = serving.importance() if serving is not None else pd.DataFrame(columns=["feature", "gain"])
        write_pointer(model_store.root / RANKERS / RANKER_POINTER,
                      {"version": version, "promoted": promoted, "reason": reason, key: value})  # fmt: skip

        rows = pd.DataFrame(
            [{"strategy": s, "metric": m, "value": float(v)} for s, ms in results.items() for m, v in ms.items()],
            columns=["strategy", "metric", "value"],
        )
        recall_rows = (recall[["generator", "depth", "recall", "n_relevant"]]
                       .astype({"depth": "int32", "n_relevant": "int64"})
                       .sort_values("generator", kind="stable").reset_index(drop=True))  # fmt: skip
        with warehouse.session() as db:
            db.replace_table("ml.ranker_evaluation", rows)
            db.replace_table("ml.candidate_recall", recall_rows)
            meta = table_metadata(db, "ml.ranker_evaluation")
        table = pd.DataFrame(results).T.round(4)
        main_cols = [c for c in (key, f"recall@{k}", f"ndcg@{k}", f"repeat_precision@{k}", f"explore_precision@{k}",
                                 f"repeat_recall@{k}", f"explore_recall@{k}", f"repeat_share@{k}") if c in table]  # fmt: skip
        return dg.MaterializeResult(
            metadata={
                **meta,
                "metrics": dg.MetadataValue.md(table[main_cols].to_markdown()),
                "candidate_recall": dg.MetadataValue.md(recall.round(4).to_markdown(index=False)),
                **{f"candidate_recall/{r.generator}": dg.MetadataValue.float(round(float(r.recall), 4))
                   for r in recall.itertuples()},  # fmt: skip
                **{f"{s}/{m}": dg.MetadataValue.float(round(float(v), 4)) for s, ms in results.items()
                   for m, v in ms.items() if m in main_cols},  # fmt: skip
                "seconds": dg.MetadataValue.md(pd.Series(seconds, name="seconds").round(1).to_markdown()),
                "promoted": promoted,
                "promotion_reason": reason,
                "ranker_version": version or "",
                "ranker_trained": ("reused: trained as of " + str(anchor.date()) + f", retrained every "
                                   f"{rcfg.retrain_every_days} days") if stored else (
                                   f"this run, as of {anchor.date()}" if version else "no"),  # fmt: skip
                "training_cutoffs": "; ".join(trained_on) or "(none)",
                "feature_importance": dg.MetadataValue.md(importance_chart(importance) if len(importance) else "(none)"),
            }
        )

    @dg.asset_check(
        asset=ranker,
        name="ranker_beats_blend_and_tifu_knn",
        description="The ranker's gate: it serves only when its hold-out precision beats the best baseline, TIFU-KNN "
        "and the slot blend; otherwise the blend serves.",
    )
    def ranker_beats_blend_and_tifu_knn(context: dg.AssetCheckExecutionContext) -> dg.AssetCheckResult:
        return gate_result(context, dg.AssetKey(["ml", "ranker"]), "promoted", "ranker")

    return [ranker, ranker_beats_blend_and_tifu_knn] if rcfg.enabled else []
