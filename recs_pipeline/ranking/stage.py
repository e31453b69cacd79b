"""The two stages put together over one shop's purchase history at one cut-off.

:func:`prepare` computes, once per cut-off, everything the generators share (the
users x items matrices, TIFU-KNN's user vectors, the item-item similarities, the
popularity of each segment, the users' text profiles and the ranker's item
features), all from purchases strictly before the cut-off. Then, for any block of
users, :func:`candidates` asks every generator for its ``depth`` best items and
:func:`features` turns them into the ranker's rows. :func:`rank_users` does both and
ranks, block after block, so memory is bounded by the block and not by the shop.

The same functions build the ranker's training rows (a past cut-off, labelled with
what was bought in the days after it), its evaluation on the hold-out and the
served lists; nothing here imports Dagster.

Generators (``generator`` column, also the ``strategy`` of a served row):

- ``buy_again``: the user's own purchases by recency-decayed frequency;
- ``tifu_knn``: TIFU-KNN (:mod:`.tifu_knn`);
- ``item_knn``: items bought with the user's items (cosine of co-purchases);
- ``segment_popular``: best sellers of the user's segment (country) in a recent
  window, the shop's overall best sellers filling up;
- ``text``: items whose description is closest to what the user bought (WordLlama);
- ``model``: the LightFM hybrid, given as a function (it is trained elsewhere).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recs_pipeline.ml import baselines
from recs_pipeline.ml.scoring import Ranked, top_n_sparse
from recs_pipeline.ranking.candidates import candidate_frame
from recs_pipeline.ranking.popular import SegmentPopularity, buy_again_candidates, popular_by_segment, segment_popularity
from recs_pipeline.ranking.ranker import TrainedRanker, item_features_table, labels, pair_features, rank_candidates
from recs_pipeline.ranking.tifu_knn import TifuParams, tifu_knn_candidates, user_vectors
from recs_pipeline.text.embeddings import pair_similarity, text_candidates, user_profiles

GENERATORS = ("buy_again", "tifu_knn", "item_knn", "segment_popular", "text", "model")
# LightFM's lists for a block of user ids: (user_ids, n) -> user_id, item_id, score, rank.
ModelLists = Callable[[np.ndarray, int], pd.DataFrame]


@dataclass(frozen=True)
class StageParams:
    """How many candidates each generator proposes, and the generators' own settings."""

    depth: int = 50
    tifu: TifuParams = field(default_factory=TifuParams)
    buy_again_half_life_days: float = 90.0
    popularity_window_days: int = 30
    item_neighbours: int = 100
    # A segment with fewer buyers in the window gets the overall best sellers.
    min_segment_buyers: int = 20
    batch_users: int = 20_000  # users per block of rank_users


@dataclass(frozen=True)
class ShopHistory:
    """A shop's purchases and what is known of its users and items.

    ``purchases``: user_id, item_id, event_ts, basket (an order or session id; the
    day when missing), price (may be NaN). Rows at or after a cut-off are never used
    for that cut-off, whatever is passed.
    """

    purchases: pd.DataFrame
    item_ids: pd.Index  # the catalogue: every item that may be proposed
    segments: pd.Series | None = None  # user_id -> segment (e.g. country)
    item_vectors: np.ndarray | None = None  # rows aligned with item_ids (L2-normalised; zeros = no text)


@dataclass
class Generators:
    """Everything the generators share at one cut-off (built by :func:`prepare`)."""

    cutoff: pd.Timestamp
    params: StageParams
    user_ids: pd.Index
    item_ids: pd.Index
    history: pd.DataFrame  # purchases before the cut-off
    frequency: sp.csr_matrix  # recency-decayed purchase counts
    seen: sp.csr_matrix  # 1 where the user bought the item
    tifu_vectors: sp.csr_matrix
    similarity: sp.csr_matrix  # item x item
    popularity: np.ndarray  # distinct buyers per item in the window
    segment_popularity: SegmentPopularity | None
    profiles: np.ndarray | None  # users x text dimensions
    item_vectors: np.ndarray | None
    item_table: pd.DataFrame  # the ranker's item features
    item_prices: pd.Series
    item_mask: np.ndarray | None
    segments: pd.Series | None
    model_lists: ModelLists | None

    @property
    def generators(self) -> tuple[str, ...]:
        """The generators that can propose something here (no text without vectors,
        no model without one)."""
        skip = {"text"} if self.profiles is None else set()
        if self.model_lists is None:
            skip.add("model")
        return tuple(g for g in GENERATORS if g not in skip)


def prepare(
    shop: ShopHistory,
    cutoff: pd.Timestamp | str,
    params: StageParams = StageParams(),
    users: Sequence | None = None,
    model_lists: ModelLists | None = None,
    item_mask: np.ndarray | None = None,
) -> Generators:
    """The generators' shared state from the purchases before ``cutoff``.

    ``users``: ids that will be asked for candidates (besides every past buyer, who
    is in the index space anyway as a neighbour and co-purchaser). ``item_mask``: False
    for items never to propose (out of stock: only meaningful for today's lists).
    """
    cutoff = pd.Timestamp(cutoff)
    purchases = shop.purchases
    history = purchases[purchases["event_ts"] < cutoff].copy()
    if "basket" not in history.columns:
        history["basket"] = pd.NA
    # A purchase without an order id is its user's basket of that day.
    history["basket"] = history["basket"].fillna(history["event_ts"].dt.strftime("%Y-%m-%d")).astype(str)
    # One row order whatever the caller's: float sums (and so ties between scores) then
    # come out the same, and the same purchases always give the same lists.
    history = history.sort_values(["user_id", "event_ts", "basket", "item_id"], kind="stable", ignore_index=True)
    ids = history["user_id"] if users is None else pd.concat([history["user_id"], pd.Series(list(users), dtype=object)])
    user_ids = pd.Index(np.sort(ids.astype(str).unique()), dtype=object)
    item_ids = shop.item_ids
    frequency = baselines.purchase_frequency(history, user_ids, item_ids, cutoff, params.buy_again_half_life_days)
    seen = frequency.copy()
    seen.data[:] = 1.0
    tifu = params.tifu
    vectors = user_vectors(history, user_ids, item_ids, basket_col="basket", n_groups=tifu.n_groups,
                           within_decay=tifu.within_decay, group_decay=tifu.group_decay)  # fmt: skip
    since = cutoff - pd.Timedelta(days=params.popularity_window_days)
    popularity = baselines.item_popularity(history, item_ids, since=since)
    segment_pop = None
    if shop.segments is not None:
        with_segment = history.assign(segment=history["user_id"].map(shop.segments))
        segment_pop = segment_popularity(with_segment, item_ids, "segment", since=since)
    profiles = None
    if shop.item_vectors is not None and np.abs(shop.item_vectors).sum() > 0:
        profiles = user_profiles(frequency, shop.item_vectors)
    prices = history.groupby("item_id")["price"].median() if "price" in history.columns else pd.Series(dtype=float)
    return Generators(
        cutoff=cutoff,
        params=params,
        user_ids=user_ids,
        item_ids=item_ids,
        history=history,
        frequency=frequency,
        seen=seen,
        tifu_vectors=vectors,
        similarity=baselines.item_cosine_similarity(seen, params.item_neighbours),
        popularity=popularity,
        segment_popularity=segment_pop,
        profiles=profiles,
        item_vectors=shop.item_vectors,
        item_table=item_features_table(history, cutoff),
        item_prices=prices,
        item_mask=item_mask,
        segments=shop.segments,
        model_lists=model_lists,
    )


def candidates(gen: Generators, users: Sequence) -> pd.DataFrame:
    """Every generator's ``depth`` best items for the user ids ``users``: user_id,
    item_id, score, rank, generator (a pair proposed by two generators is two rows)."""
    depth, mask = gen.params.depth, gen.item_mask
    rows = gen.user_ids.get_indexer(pd.Index(list(users), dtype=object))
    rows = np.unique(rows[rows >= 0])
    parts = []

    def add(name: str, ranked) -> None:
        parts.append(candidate_frame(ranked, gen.user_ids, gen.item_ids, generator=name))

    buyers = rows[np.diff(gen.frequency.indptr)[rows] > 0]
    add("buy_again", buy_again_candidates(gen.history, gen.user_ids, gen.item_ids, buyers, depth, gen.cutoff,
                                          gen.params.buy_again_half_life_days, gen.popularity, item_mask=mask))  # fmt: skip
    tifu = gen.params.tifu
    add("tifu_knn", tifu_knn_candidates(gen.tifu_vectors, buyers, depth, tifu.n_neighbours, tifu.alpha, item_mask=mask))
    add("item_knn", item_knn_candidates(gen.seen, gen.similarity, buyers, depth, mask))
    if gen.segment_popularity is not None:
        segments = gen.segments.reindex(gen.user_ids[rows]).to_numpy(dtype=object)
        add("segment_popular", popular_by_segment(gen.segment_popularity, segments, depth, users=rows,
                                                  item_mask=mask, min_buyers=gen.params.min_segment_buyers))  # fmt: skip
    else:
        add("segment_popular", baselines.most_popular(gen.popularity, rows, depth, item_mask=mask))
    if gen.profiles is not None:
        add("text", text_candidates(gen.profiles, gen.item_vectors, buyers, depth, exclude=gen.seen, item_mask=mask))
    if gen.model_lists is not None:
        lists = gen.model_lists(gen.user_ids[rows].to_numpy(dtype=object), depth)
        parts.append(lists[["user_id", "item_id", "score", "rank"]].assign(generator="model"))
    frame = pd.concat(parts, ignore_index=True)
    return frame.astype({"user_id": object, "item_id": object})


def item_knn_candidates(seen: sp.csr_matrix, similarity: sp.csr_matrix, users: np.ndarray, n: int,
                        item_mask: np.ndarray | None = None) -> Ranked:  # fmt: skip
    """The ``n`` items most similar to what each user bought (sum of item-kNN
    similarities), their own items and masked ones excluded. Sparse throughout: a user
    of four items has a few hundred scored neighbours, not a row of the whole catalogue
    (the dense product was most of the serving time at 50k items)."""
    scores = (seen[users] @ similarity).tocsr()
    scores = scores - scores.multiply(seen[users] > 0)
    if item_mask is not None:
        scores = scores @ sp.diags(np.asarray(item_mask, dtype=np.float64))
    scores = sp.csr_matrix(scores)
    scores.eliminate_zeros()
    return top_n_sparse(scores, users, n)


def _text_similarity(gen: Generators) -> Callable[[pd.DataFrame], np.ndarray] | None:
    if gen.profiles is None:
        return None

    def similarity(pairs: pd.DataFrame) -> np.ndarray:
        u, i = gen.user_ids.get_indexer(pairs["user_id"]), gen.item_ids.get_indexer(pairs["item_id"])
        known = (u >= 0) & (i >= 0)
        out = np.full(len(pairs), np.nan)
        out[known] = pair_similarity(gen.profiles, gen.item_vectors, u[known], i[known])
        return out

    return similarity


def features(gen: Generators, cands: pd.DataFrame) -> pd.DataFrame:
    """The ranker's rows for ``cands`` (one per user and item), from the purchases
    before the cut-off only."""
    return pair_features(cands, gen.history, gen.cutoff, generators=GENERATORS, item_prices=gen.item_prices,
                         text_similarity=_text_similarity(gen), items=gen.item_table)  # fmt: skip


def labelled_rows(gen: Generators, users: Sequence, purchases: pd.DataFrame, end: pd.Timestamp | str) -> pd.DataFrame:
    """Training rows: the features of ``users``' candidates and ``label`` = 1 where the
    user bought the item in [cut-off, ``end``)."""
    frame = features(gen, candidates(gen, users))
    frame["label"] = labels(frame, purchases, gen.cutoff, end)
    return frame


def user_blocks(users: Sequence, size: int) -> Iterator[np.ndarray]:
    users = np.asarray(list(users), dtype=object)
    for start in range(0, len(users), size):
        yield users[start : start + size]


def rank_users(gen: Generators, ranker: TrainedRanker, users: Sequence, n: int) -> pd.DataFrame:
    """The ranker's top ``n`` for every user id in ``users``, block by block: user_id,
    item_id, score, rank, generator, bought_before."""
    parts = []
    for block in user_blocks(users, gen.params.batch_users):
        rows = features(gen, candidates(gen, block))
        if rows.empty:
            continue
        ranked = rank_candidates(ranker, rows, n)
        bought = rows.set_index(["user_id", "item_id"])["bought_before"]
        ranked["bought_before"] = bought.reindex(pd.MultiIndex.from_frame(ranked[["user_id", "item_id"]])).to_numpy() > 0
        parts.append(ranked)
    if not parts:
        return pd.DataFrame(columns=["user_id", "item_id", "score", "rank", "generator", "bought_before"])
    return pd.concat(parts, ignore_index=True)


def candidate_recall(cands: pd.DataFrame, relevant: pd.DataFrame) -> pd.DataFrame:
    """generator, recall, n_relevant: the share of the ``relevant`` (user_id, item_id)
    pairs among each generator's candidates and among all of them ("union")."""
    relevant = relevant[["user_id", "item_id"]].drop_duplicates()
    keyed = relevant.assign(_hit=1)
    rows = []
    for name, part in [*cands.groupby("generator", sort=True), ("union", cands)]:
        pairs = part[["user_id", "item_id"]].drop_duplicates()
        hits = int(pairs.merge(keyed, on=["user_id", "item_id"], how="inner")["_hit"].sum())
        rows.append({"generator": name, "recall": hits / max(len(relevant), 1), "n_relevant": len(relevant)})
    return pd.DataFrame(rows)
