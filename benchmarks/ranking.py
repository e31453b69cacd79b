"""The two-stage recommender on Online Retail: candidates from several generators, a
LightGBM lambdarank model over their features (recs_pipeline.ranking.ranker).

Protocol (the one of benchmarks.quality): test month August 2011, every model trained
on purchases before 2011-08-01. The ranker is trained on rolling cut-offs inside the
training data only - 2011-06-01 (labels: June) and 2011-07-01 (labels: July) - each
with candidates and features computed from the purchases before its own cut-off, then
applied to the candidates of 2011-08-01. Nothing of August is seen before the test.

    python -m benchmarks.ranking          # prints the table (part of `make bench-quality`)
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recs_pipeline.ml import baselines, metrics
from recs_pipeline.ml.splits import time_holdout
from recs_pipeline.ranking.candidates import candidate_frame
from recs_pipeline.ranking.ranker import RankerParams, labels, pair_features, rank_candidates, train_ranker
from recs_pipeline.ranking.tifu_knn import TifuParams, tifu_knn_candidates, user_vectors
from recs_pipeline.text.embeddings import embed_texts, item_texts, pair_similarity, text_candidates, user_profiles

K = 10
CANDIDATES = 50  # per generator and user
# Labels: April, May, June and July (each month's purchases after its cut-off).
TRAIN_CUTOFFS = tuple(pd.Timestamp(f"2011-{m:02d}-01") for m in (4, 5, 6, 7))
# Validation (for choosing the ranker's settings): train on April-June, rank July.
VALIDATION_CUTOFFS, VALIDATION_TEST = TRAIN_CUTOFFS[:3], TRAIN_CUTOFFS[3]
TEST_CUTOFF = pd.Timestamp("2011-08-01")
GENERATORS = ("buy_again", "tifu_knn", "item_knn", "popular", "text", "model")
# Chosen with `python -m benchmarks.ranking --validate --grid` (July 2011, trained on April-June):
# P@10 0.3343 against 0.3319 for the defaults, 0.3303 for buy-again and 0.3046 for TIFU-KNN alone.
RETAIL_RANKER = RankerParams(n_estimators=150, learning_rate=0.05, num_leaves=63, min_child_samples=100)
RANKER_GRID = [
    RankerParams(),
    RankerParams(n_estimators=600, learning_rate=0.03),
    RankerParams(n_estimators=300, num_leaves=15, min_child_samples=50),
    RankerParams(n_estimators=300, lambdarank_truncation_level=10),
    RankerParams(n_estimators=150, learning_rate=0.05, num_leaves=63, min_child_samples=100),
]


@dataclass
class Stage:
    """One cut-off: its period, candidates and labelled features."""

    cutoff: pd.Timestamp
    period: object  # benchmarks.quality.RetailPeriod
    candidates: pd.DataFrame
    features: pd.DataFrame


def _item_text_vectors(period) -> np.ndarray:
    train = period.split.train.sort_values("event_ts")
    described = train.groupby("item_id")["description"].last().reindex(period.items)
    return embed_texts(item_texts(described, pd.Series([None] * len(described), index=described.index)))


def candidates_of(period, model_setup, tifu: TifuParams, buy_again: dict, users: np.ndarray) -> tuple[pd.DataFrame, object]:
    """Every generator's top-CANDIDATES for ``users`` (index positions in period.users),
    as one long frame, and the text similarity function of the period."""
    from benchmarks.quality import recommend, fit, retail_interactions

    train, cutoff = period.split.train, period.split.cutoff
    parts = []

    def add(name: str, ranked) -> None:
        parts.append(candidate_frame(ranked, period.users, period.items, generator=name))

    frequency = baselines.purchase_frequency(train, period.users, period.items, cutoff, buy_again["half_life_days"])
    add("buy_again", baselines.buy_again(frequency, period.popularity, users, CANDIDATES, buy_again["popularity_exponent"]))
    vectors = user_vectors(train, period.users, period.items, basket_col="invoice", n_groups=tifu.n_groups,
                           within_decay=tifu.within_decay, group_decay=tifu.group_decay)  # fmt: skip
    add("tifu_knn", tifu_knn_candidates(vectors, users, CANDIDATES, tifu.n_neighbours, tifu.alpha))
    history = (period.seen > 0).astype(np.float64).tocsr()
    add("item_knn", baselines.item_based(history, baselines.item_cosine_similarity(history), users, CANDIDATES,
                                         exclude=period.seen))  # fmt: skip
    add("popular", baselines.most_popular(period.popularity, users, CANDIDATES))
    text_vectors = _item_text_vectors(period)
    profiles = user_profiles(frequency.tocsr(), text_vectors)
    add("text", text_candidates(profiles, text_vectors, users, CANDIDATES, exclude=period.seen))
    model, data = fit(model_setup, retail_interactions(train, cutoff), period.user_tokens, period.item_tokens)
    lists = recommend(model, data, period.users[users], CANDIDATES, exclude_seen=False)
    parts.append(lists[["user_id", "item_id", "score", "rank"]].assign(generator="model"))

    def similarity(pairs: pd.DataFrame) -> np.ndarray:
        u, i = period.users.get_indexer(pairs["user_id"]), period.items.get_indexer(pairs["item_id"])
        known = (u >= 0) & (i >= 0)
        out = np.full(len(pairs), np.nan)
        out[known] = pair_similarity(profiles, text_vectors, u[known], i[known])
        return out

    return pd.concat(parts, ignore_index=True), similarity


def stage(purchases: pd.DataFrame, cutoff: pd.Timestamp, end: pd.Timestamp, model_setup, tifu, buy_again,
          labelled: bool) -> Stage:  # fmt: skip
    from benchmarks.quality import RetailPeriod

    period = RetailPeriod.of(time_holdout(purchases[purchases["event_ts"] < end], cutoff=cutoff))
    users = period.users.get_indexer(period.test_users)
    cands, similarity = candidates_of(period, model_setup, tifu, buy_again, users)
    prices = period.split.train.groupby("item_id")["price"].median()
    frame = pair_features(cands, period.split.train, cutoff, generators=GENERATORS, item_prices=prices,
                          text_similarity=similarity)  # fmt: skip
    frame["label"] = labels(frame, period.split.test, cutoff, end)
    return Stage(cutoff, period, cands, frame)


def candidate_recall(stage: Stage) -> dict[str, float]:
    """Share of the period's (user, item) purchases among each generator's candidates and the union."""
    relevant = stage.period.relevant
    out = {}
    for name in (*GENERATORS, "union"):
        cands = stage.candidates if name == "union" else stage.candidates[stage.candidates["generator"] == name]
        hit = relevant.merge(cands[["user_id", "item_id"]].drop_duplicates(), on=["user_id", "item_id"], how="inner")
        out[name] = round(len(hit) / max(len(relevant), 1), 4)
    return out


def run(purchases: pd.DataFrame, model_setup, tifu: TifuParams, buy_again: dict,
        params: RankerParams = RankerParams(), cutoffs=TRAIN_CUTOFFS, test_cutoff=TEST_CUTOFF,
        test_end=pd.Timestamp("2100-01-01")) -> dict:  # fmt: skip
    """Train on the rolling ``cutoffs`` (each labelled by the month up to the next one),
    rank the candidates of ``test_cutoff``; lists and figures."""
    started = time.perf_counter()
    ends = (*cutoffs[1:], test_cutoff)
    training = [stage(purchases, c, e, model_setup, tifu, buy_again, True) for c, e in zip(cutoffs, ends)]
    test = stage(purchases, test_cutoff, test_end, model_setup, tifu, buy_again, False)
    grid = params if isinstance(params, list) else [params]
    tried = []
    for setting in grid:
        ranker = train_ranker([s.features for s in training], setting, generators=GENERATORS)
        lists = rank_candidates(ranker, test.features, K)
        tried.append((metrics.precision_at_k(lists, test.period.relevant, K), setting, ranker, lists))
    # With several settings (--validate --grid), the best on this period is reported.
    _, params, ranker, lists = max(tried, key=lambda t: t[0])
    # Explore-only: the same ranker over the candidates the user has not bought before.
    unseen = test.features[test.features["bought_before"] == 0]
    explore = rank_candidates(ranker, unseen, K)
    # Each generator alone, from the same candidates: its own top 10.
    alone_lists = {
        name: test.candidates[(test.candidates["generator"] == name) & (test.candidates["rank"] <= K)]
        for name in GENERATORS
    }
    alone = {name: metrics.ranking_metrics(lists_, test.period.relevant, K) for name, lists_ in alone_lists.items()}
    return {
        "generators_alone": alone,
        "generators_alone_lists": alone_lists,
        "train_cutoffs": list(cutoffs),
        "grid": [(round(p, 4), setting) for p, setting, _, _ in tried],
        "params": params,
        "repeats_allowed": lists,
        "explore_only": explore,
        "relevant": test.period.relevant,
        "candidate_recall": candidate_recall(test),
        "importance": ranker.importance(),
        "seconds": time.perf_counter() - started,
        "generator_share": lists["generator"].value_counts(normalize=True).round(4).to_dict(),
    }


def main(argv: list[str] | None = None) -> int:
    import argparse

    from benchmarks.quality import RETAIL_BLEND_BUY_AGAIN, RETAIL_HYBRID, RETAIL_TIFU, load_online_retail

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--validate", action="store_true", help="rank July (trained on April-June): for tuning")
    parser.add_argument("--grid", action="store_true", help="with --validate: try RANKER_GRID")
    args = parser.parse_args(argv)
    purchases = load_online_retail()
    if args.validate:
        purchases = purchases[purchases["event_ts"] < TEST_CUTOFF]
        result = run(purchases, RETAIL_HYBRID, RETAIL_TIFU, RETAIL_BLEND_BUY_AGAIN,
                     RANKER_GRID if args.grid else RETAIL_RANKER, cutoffs=VALIDATION_CUTOFFS,
                     test_cutoff=VALIDATION_TEST, test_end=TEST_CUTOFF)  # fmt: skip
        for precision, setting in result["grid"]:
            print(f"P@10 {precision:.4f}  {setting}")
    else:
        result = run(purchases, RETAIL_HYBRID, RETAIL_TIFU, RETAIL_BLEND_BUY_AGAIN, RETAIL_RANKER)
    rows = {
        **{f"{name} alone": m for name, m in result["generators_alone"].items()},
        "repeats allowed": metrics.ranking_metrics(result["repeats_allowed"], result["relevant"], K),
        "explore only": metrics.ranking_metrics(result["explore_only"], result["relevant"], K),
    }
    print(pd.DataFrame(rows).T.to_markdown(floatfmt=".4f"))
    print("candidate recall@%d per generator:" % CANDIDATES, result["candidate_recall"])
    print("served rows by generator:", result["generator_share"])
    print(result["importance"].head(15).to_markdown(index=False, floatfmt=".1f"))
    print(f"{result['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
