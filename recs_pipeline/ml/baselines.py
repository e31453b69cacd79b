"""Non-learned recommenders a model has to beat, in the model's index space.

- most popular: what many customers bought recently (same list for everyone);
- buy again: the customer's own purchases, frequent and recent first, which is
  very strong in shops of consumables and repeat orders;
- item-based co-occurrence: items bought by the same customers as the
  customer's own items (item-item cosine), the classic "people who bought X
  also bought Y".

All of them are sparse matrix products scored in user batches and return
:class:`~recs_pipeline.ml.scoring.Ranked`, like the model.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recs_pipeline.ml.scoring import DEFAULT_BATCH_SIZE, Ranked, rank_score_batches, top_n_sparse

# Popularity only breaks ties between equal buy-again frequencies: scaled into
# [0, _TIE_BREAK) it can never outweigh a real difference in frequency.
_TIE_BREAK = 1e-6


def user_item_matrix(
    events: pd.DataFrame, user_ids: pd.Index, item_ids: pd.Index, values: np.ndarray | None = None
) -> sp.csr_matrix:
    """Sum ``values`` (default 1 per event) into a users x items matrix.

    Events whose user or item is outside the index space are ignored.
    """
    if values is None:
        values = np.ones(len(events))
    rows = user_ids.get_indexer(events["user_id"])
    cols = item_ids.get_indexer(events["item_id"])
    known = (rows >= 0) & (cols >= 0)
    return sp.csr_matrix(
        (values[known], (rows[known], cols[known])), shape=(len(user_ids), len(item_ids)), dtype=np.float64
    )


def item_popularity(
    events: pd.DataFrame,
    item_ids: pd.Index,
    since: pd.Timestamp | str | None = None,
    ts_col: str = "event_ts",
) -> np.ndarray:
    """Distinct users per item (optionally only events at or after ``since``).

    Distinct users rather than rows, so one wholesaler's hundred orders of an
    item do not make it a best seller.
    """
    if since is not None:
        events = events[events[ts_col] >= pd.Timestamp(since)]
    pairs = events[["user_id", "item_id"]].drop_duplicates()
    counts = pairs["item_id"].value_counts()
    return counts.reindex(item_ids, fill_value=0).to_numpy(dtype=np.float64)


def _broadcast_batches(
    item_scores: np.ndarray, users: np.ndarray, batch_size: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        yield batch, np.tile(item_scores, (len(batch), 1))


def most_popular(
    popularity: np.ndarray,
    users: np.ndarray,
    n: int,
    exclude: sp.csr_matrix | None = None,
    item_mask: np.ndarray | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Ranked:
    """The ``n`` most popular items for each user, minus the user's excluded items."""
    users = np.asarray(users)
    if exclude is None:  # one list for everyone: rank once
        first = rank_score_batches(_broadcast_batches(popularity.astype(np.float64), users[:1], 1), n, None, item_mask)
        size = len(first.item)
        return Ranked(
            np.repeat(users, size), np.tile(first.rank, len(users)), np.tile(first.item, len(users)),
            np.tile(first.score, len(users)),
        )
    return rank_score_batches(
        _broadcast_batches(popularity.astype(np.float64), np.asarray(users), batch_size), n, exclude, item_mask
    )


def purchase_frequency(
    purchases: pd.DataFrame,
    user_ids: pd.Index,
    item_ids: pd.Index,
    now: pd.Timestamp | str,
    half_life_days: float = 90.0,
    ts_col: str = "event_ts",
) -> sp.csr_matrix:
    """Recency-weighted purchase counts (users x items).

    Each purchase counts ``0.5 ** (age_days / half_life_days)``: a purchase
    ``half_life_days`` old counts half as much as one made ``now``.
    """
    age_days = (pd.Timestamp(now) - purchases[ts_col]).dt.total_seconds().to_numpy() / 86400.0
    decay = np.power(0.5, np.clip(age_days, 0.0, None) / half_life_days)
    return user_item_matrix(purchases, user_ids, item_ids, decay)


def buy_again(
    frequency: sp.csr_matrix,
    popularity: np.ndarray,
    users: np.ndarray,
    n: int,
    popularity_exponent: float = 0.0,
    item_mask: np.ndarray | None = None,
) -> Ranked:
    """The user's own most frequent/recent purchases, then popular items to fill ``n``.

    The score of an item the user bought is ``frequency * (1 + popularity) **
    popularity_exponent``. With exponent 0 popularity only breaks ties; above
    0 it also favours the user's items that sell well right now (seasonal or
    discontinued items fade). Popular fill-ups score 0, so callers can tell a
    real repeat candidate from a filler.

    Sparse: the candidates of a user are their own purchases and the shop's 2n most
    popular items (the fill-ups can only come from those), so the cost does not grow
    with the catalogue. The same lists as scoring every item, as long as an own
    purchase outscores the tie-break (any purchase younger than about five years).
    """
    users = np.asarray(users)
    n_items = frequency.shape[1]
    allowed = np.ones(n_items, dtype=bool) if item_mask is None else np.asarray(item_mask, dtype=bool)
    boost = np.power(1.0 + popularity, popularity_exponent)
    tie_break = _TIE_BREAK * popularity / (popularity.max() + 1.0) if len(popularity) else popularity
    by_popularity = np.lexsort((np.arange(n_items), -tie_break))
    fillers = by_popularity[allowed[by_popularity]][: 2 * n]

    own = frequency[users].tocoo()
    rows = np.concatenate([own.row, np.repeat(np.arange(len(users)), len(fillers))])
    cols = np.concatenate([own.col, np.tile(fillers, len(users))])
    values = np.concatenate([own.data * boost[own.col], np.zeros(len(users) * len(fillers))])
    # An own purchase that is also a filler counts once, as the purchase (listed first).
    _, first = np.unique(rows.astype(np.int64) * n_items + cols, return_index=True)
    first = first[allowed[cols[first]]]
    candidates = sp.csr_matrix(
        (values[first] + tie_break[cols[first]], (rows[first], cols[first])), shape=(len(users), n_items)
    )
    ranked = top_n_sparse(candidates, users, n)
    own_score = np.asarray(frequency[ranked.user, ranked.item]).ravel() * boost[ranked.item]
    return ranked._replace(score=own_score)


_BLOCK_ENTRIES = 1 << 25  # rows x items of one block of the similarity product (bounds its memory)


def item_cosine_similarity(
    interactions: sp.spmatrix, neighbours: int | None = None, block_items: int | None = None
) -> sp.csr_matrix:
    """Item-item cosine similarity over users (items x items, zero diagonal).

    Binary co-occurrence: two items are similar when the same users interact
    with both, normalised so that popular items are not similar to everything.
    With ``neighbours``, each item keeps only its that many most similar items
    (item-kNN, ties to the lower item index): the full product of a 50k-item
    catalogue has hundreds of millions of entries. Computed in blocks of
    ``block_items`` rows (default: at most 32M potential entries per block), so memory
    is bounded by the block, not the catalogue.
    """
    binary = sp.csr_matrix(interactions, dtype=np.float64)
    binary.data[:] = 1.0
    norms = np.sqrt(np.asarray(binary.sum(axis=0)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    normalised = (binary @ sp.diags(scale)).tocsr()
    by_item = normalised.T.tocsr()  # items x users
    n_items = normalised.shape[1]
    block_items = block_items or max(1, min(4096, _BLOCK_ENTRIES // max(n_items, 1)))
    blocks = []
    for start in range(0, n_items, block_items):
        block = (by_item[start : start + block_items] @ normalised).tocsr()
        rows = np.repeat(np.arange(block.shape[0]), np.diff(block.indptr))
        block.data[block.indices == rows + start] = 0.0  # an item is not its own neighbour
        block.eliminate_zeros()
        if neighbours is not None:
            block = _keep_row_top(block, neighbours)
        blocks.append(block)
    if not blocks:
        return sp.csr_matrix((n_items, n_items))
    return sp.vstack(blocks, format="csr")


def _keep_row_top(matrix: sp.csr_matrix, k: int) -> sp.csr_matrix:
    """The ``k`` largest entries of each row (ties to the lower column)."""
    best = top_n_sparse(matrix, np.arange(matrix.shape[0]), k)
    return sp.csr_matrix((best.score, (best.user, best.item)), shape=matrix.shape)


def item_based(
    history: sp.csr_matrix,
    similarity: sp.csr_matrix,
    users: np.ndarray,
    n: int,
    exclude: sp.csr_matrix | None = None,
    item_mask: np.ndarray | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Ranked:
    """Score items by their similarity to the user's history (``history @ similarity``)."""
    users = np.asarray(users)

    def batches() -> Iterator[tuple[np.ndarray, np.ndarray]]:
        for start in range(0, len(users), batch_size):
            batch = users[start : start + batch_size]
            yield batch, (history[batch] @ similarity).toarray()

    return rank_score_batches(batches(), n, exclude, item_mask)
