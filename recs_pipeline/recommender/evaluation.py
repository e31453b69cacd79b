"""Time-based hold-out evaluation of the serving strategy against baselines.

The pipeline's question is not "is LightFM good?" but "should tomorrow's lists come
from this model?". So we evaluate exactly what would be served — the blend of the
shopper's likely re-purchases with the model's discoveries — next to the
alternatives a shop would otherwise use: most-popular of a recent window, buy-again
and item-based co-occurrence, all trained on the same days before the cut-off and
scored on what shoppers did after it.

The blend's repeat share is tuned on one half of the hold-out users and every number
is reported on the other half, so the tuned blend gets no advantage from the tuning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recs_pipeline.ml import baselines, blend, metrics, scoring
from recs_pipeline.ml.matrices import TrainingData, build_training_data, with_weak_negatives
from recs_pipeline.ml.model import ModelParams, WarmStartBase, fit_model, recent_mask

CURVE_KS = (1, 3, 5, 10, 20)


@dataclass(frozen=True)
class HoldoutData:
    """What the evaluation needs, all restricted to events before the cut-off for training."""

    train_interactions: pd.DataFrame  # user_id, item_id, weight
    train_purchases: pd.DataFrame  # user_id, item_id, event_ts (purchases before the cut-off)
    relevant: pd.DataFrame  # user_id, item_id: what known users bought (or rated) after the cut-off
    user_tokens: pd.DataFrame
    item_tokens: pd.DataFrame
    cutoff: pd.Timestamp
    in_stock: pd.Series | None = None  # item_id -> bool
    negatives: pd.DataFrame | None = None  # shown-but-ignored pairs before the cut-off (user_id, item_id)


@dataclass
class EvaluationReport:
    k: int
    repeat_share: float
    metrics: dict[str, dict[str, float]]  # strategy -> metric -> value (reporting half)
    curves: dict[str, dict[int, tuple[float, float]]]  # strategy -> k -> (precision, recall)
    share_table: pd.DataFrame
    n_train_interactions: int
    n_eval_users: int
    notes: list[str] = field(default_factory=list)
    training: dict = field(default_factory=dict)  # how the evaluated model was trained (fit_model's record)
    n_holdout_users: int = 0  # known users with hold-out purchases, before sampling

    def best_baseline(self) -> tuple[str, float]:
        key = f"precision@{self.k}"
        name = max(("popularity", "buy_again", "item_based"), key=lambda s: self.metrics[s][key])
        return name, self.metrics[name][key]


def split_users(users: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic halves of the evaluated users: (tuning half, reporting half)."""
    users = np.sort(np.asarray(users, dtype=object))
    rng = np.random.default_rng(seed)
    mask = rng.random(len(users)) < 0.5
    return users[mask], users[~mask]


def sample_users(users: np.ndarray, max_users: int) -> np.ndarray:
    """At most ``max_users`` of ``users``: those with the smallest hash of their id, so
    the same users are chosen whatever the order and every night (0 = all)."""
    users = np.asarray(users, dtype=object)
    if max_users <= 0 or len(users) <= max_users:
        return users
    hashes = pd.util.hash_array(users, hash_key="recs-evaluation.")
    return users[np.sort(np.argsort(hashes, kind="stable")[:max_users])]


def _frame(ranked: scoring.Ranked, data: TrainingData) -> pd.DataFrame:
    return ranked.to_frame(data.mappings.user_ids, data.mappings.item_ids)


def purchased_matrix(purchases: pd.DataFrame, data: TrainingData):
    """users x items, non-zero where the user bought the item (excluded from discoveries)."""
    rows = data.mappings.user_codes(purchases["user_id"])
    cols = data.mappings.item_codes(purchases["item_id"])
    known = (rows >= 0) & (cols >= 0)
    shape = (data.mappings.n_users, data.mappings.n_items)
    return sp.csr_matrix((np.ones(int(known.sum())), (rows[known], cols[known])), shape=shape)


def candidate_lists(
    data: TrainingData,
    model,
    purchases: pd.DataFrame,
    users: np.ndarray,
    now: pd.Timestamp,
    depth: int,
    item_mask: np.ndarray | None,
    popularity_window_days: int = 14,
    item_neighbours: int | None = 100,
) -> dict[str, pd.DataFrame]:
    """Top-``depth`` lists of every strategy for the user rows ``users``."""
    maps = data.mappings
    history = data.interactions.tocsr()
    # Discoveries exclude what the user already bought (buy-again covers those); in a
    # shop without purchases (ratings) they exclude everything the user has seen.
    bought = purchased_matrix(purchases, data).tocsr() if len(purchases) else history
    popularity = baselines.item_popularity(
        purchases if len(purchases) else pd.DataFrame(columns=["user_id", "item_id", "event_ts"]),
        maps.item_ids,
        since=now - pd.Timedelta(days=popularity_window_days),
    )
    if popularity.sum() == 0:  # shops without purchases in the window (e.g. ratings)
        popularity = np.asarray(history.sum(axis=0)).ravel()
    frequency = baselines.purchase_frequency(purchases, maps.user_ids, maps.item_ids, now)
    lists = {
        "popularity": _frame(baselines.most_popular(popularity, users, depth, item_mask=item_mask), data),
        "buy_again": _frame(baselines.buy_again(frequency, popularity, users, depth, item_mask=item_mask), data),
        "item_based": _frame(
            baselines.item_based(
                history, baselines.item_cosine_similarity(history, item_neighbours), users, depth, item_mask=item_mask
            ),
            data,
        ),
        "lightfm": _frame(
            scoring.top_n(
                model, depth, data.user_features, data.item_features, users=users, exclude=bought, item_mask=item_mask
            ),
            data,
        ),
    }
    return lists


def evaluate_holdout(
    holdout: HoldoutData,
    params: ModelParams,
    k: int = 10,
    identity_weights: tuple[float, float] = (1.0, 1.0),
    seed: int = 0,
    negative_weight: float = 0.2,
    base: WarmStartBase | None = None,
    max_users: int = 0,
    item_neighbours: int | None = 100,
    recent_pairs: pd.DataFrame | None = None,
    replay: float = 1.0,
) -> tuple[EvaluationReport, TrainingData, object]:
    """Train on the days before the cut-off (from scratch, or continuing ``base``) and
    score every strategy on the days after, for at most ``max_users`` hold-out users
    (a fixed sample, see :func:`sample_users`; 0 = all). A warm start trains on the
    ``recent_pairs`` (user_id, item_id with events after the base's data) and replayed
    older ones when given (see :func:`~recs_pipeline.ml.model.fit_model`)."""
    data = build_training_data(
        holdout.train_interactions,
        holdout.user_tokens,
        holdout.item_tokens,
        mode="hybrid",
        user_identity_weight=identity_weights[0],
        item_identity_weight=identity_weights[1],
    )
    fit_data = data
    if params.loss == "logistic" and holdout.negatives is not None:
        fit_data = with_weak_negatives(data, holdout.negatives, negative_weight)
    recent = None
    if base is not None and recent_pairs is not None:
        recent = recent_mask(fit_data.interactions, data.mappings, recent_pairs)
    model, training = fit_model(
        fit_data.interactions, params, data.mappings, data.user_features, data.item_features, fit_data.weights, base,
        recent, replay,
    )
    relevant = holdout.relevant[holdout.relevant["user_id"].isin(data.mappings.user_ids)]
    n_holdout_users = relevant["user_id"].nunique()
    eval_users = sample_users(relevant["user_id"].unique(), max_users)
    relevant = relevant[relevant["user_id"].isin(eval_users)]
    tune_users, report_users = split_users(eval_users, seed)
    rows = data.mappings.user_codes(eval_users)
    item_mask = None
    if holdout.in_stock is not None:
        item_mask = holdout.in_stock.reindex(data.mappings.item_ids).fillna(True).to_numpy(dtype=bool)
    depth = max(max(CURVE_KS), k)
    lists = candidate_lists(
        data, model, holdout.train_purchases, rows, holdout.cutoff, depth, item_mask, item_neighbours=item_neighbours
    )

    tune_rel = relevant[relevant["user_id"].isin(tune_users)]
    share, share_table = blend.tune_repeat_share(
        lists["buy_again"][lists["buy_again"]["user_id"].isin(tune_users)],
        lists["lightfm"][lists["lightfm"]["user_id"].isin(tune_users)],
        tune_rel,
        k,
    )
    lists["blend"] = blend.blend(lists["buy_again"], lists["lightfm"], depth, share)

    report_rel = relevant[relevant["user_id"].isin(report_users)]
    results: dict[str, dict[str, float]] = {}
    curves: dict[str, dict[int, tuple[float, float]]] = {}
    n_items = data.mappings.n_items
    popularity = pd.Series(
        np.asarray(data.interactions.tocsr().sum(axis=0)).ravel(), index=data.mappings.item_ids
    )
    for name, frame in lists.items():
        reported = frame[frame["user_id"].isin(report_users)]
        m = metrics.ranking_metrics(reported, report_rel, k)
        m.update(metrics.repeat_explore_metrics(reported, report_rel, holdout.train_purchases, k))
        top_k = reported[reported["rank"] <= k]
        m["coverage"] = metrics.catalogue_coverage(top_k, n_items)
        m["popularity_percentile"] = metrics.popularity_bias(top_k, popularity)["mean_popularity_percentile"]
        results[name] = m
        curves[name] = {
            kk: (metrics.precision_at_k(reported, report_rel, kk), metrics.recall_at_k(reported, report_rel, kk))
            for kk in CURVE_KS
        }
    results["lightfm"]["auc"] = model_auc(model, data, report_rel, purchased_matrix(holdout.train_purchases, data))
    report = EvaluationReport(
        k=k,
        repeat_share=share,
        metrics=results,
        curves=curves,
        share_table=share_table,
        n_train_interactions=int(data.interactions.nnz),
        n_eval_users=len(report_users),
        training=training,
        n_holdout_users=n_holdout_users,
    )
    return report, data, model


def model_auc(model, data: TrainingData, relevant: pd.DataFrame, exclude, max_users: int = 2000) -> float:
    """Mean per-user AUC of the model's scores over the catalogue (items bought before
    the cut-off are neither positives nor negatives). At most ``max_users`` users (the
    first by id) are scored, to bound the dense users x items block."""
    users = pd.Index(np.sort(relevant["user_id"].unique())[:max_users])
    if not len(users):
        return float("nan")
    chosen = relevant[relevant["user_id"].isin(users)]
    cols = data.mappings.item_codes(chosen["item_id"])
    known = cols >= 0
    positives = sp.csr_matrix(
        (np.ones(int(known.sum())), (users.get_indexer(chosen["user_id"])[known], cols[known])),
        shape=(len(users), data.mappings.n_items),
    )
    rows = data.mappings.user_codes(users)
    representation = scoring.representations(model, data.user_features, data.item_features)
    scores = np.vstack([batch for _, batch in scoring.score_batches(*representation, rows)])
    return metrics.mean_auc(scores, positives, exclude[rows])


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str


def promotion_decision(
    candidate: float,
    baselines: dict[str, float],
    serving_metric: float | None,
    metric_name: str,
    margin: float = 0.0,
    tolerance: float = 0.05,
) -> PromotionDecision:
    """Promote when the candidate beats the best baseline by ``margin`` (relative) and is
    not worse than the model serving now by more than ``tolerance`` (relative: hold-out
    windows move from night to night, so an exact tie is not required)."""
    baseline_name = max(baselines, key=baselines.get)
    baseline = baselines[baseline_name]
    if candidate == 0 or candidate <= baseline * (1 + margin):
        return PromotionDecision(
            False, f"blend {metric_name} {candidate:.4f} does not beat {baseline_name} {baseline:.4f} by {margin:.0%}"
        )
    if serving_metric is not None and candidate < serving_metric * (1 - tolerance):
        return PromotionDecision(
            False, f"blend {metric_name} {candidate:.4f} is worse than the serving model's {serving_metric:.4f}"
        )
    suffix = "" if serving_metric is None else f" and is within {tolerance:.0%} of the serving model's {serving_metric:.4f}"
    return PromotionDecision(True, f"blend {metric_name} {candidate:.4f} beats {baseline_name} {baseline:.4f}{suffix}")
