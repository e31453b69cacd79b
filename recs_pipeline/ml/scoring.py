"""Top-N recommendation lists from a trained model, computed in user batches.

LightFM's own ``predict`` scores one (user, item) pair per call; to rank a
whole catalogue for every user we take the learned representations once
(``get_user_representations`` / ``get_item_representations`` fold the feature
matrices into one embedding and one bias per entity) and score a batch of
users with one matrix product. Memory is bounded by ``batch_size x n_items``.
Only the N best of each row are sorted (``argpartition`` first).

Every ranking function returns :class:`Ranked`: four aligned flat arrays
``(user, rank, item, score)``, ranks starting at 1, best first. Baselines use
the same machinery through :func:`rank_score_batches`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa
import scipy.sparse as sp
from lightfm import LightFM

DEFAULT_BATCH_SIZE = 1024


class Ranked(NamedTuple):
    """Top-N lists as flat aligned arrays (one element per recommendation)."""

    user: np.ndarray  # user row index
    rank: np.ndarray  # 1 = best
    item: np.ndarray  # item column index
    score: np.ndarray

    def to_frame(self, user_ids: pd.Index | None = None, item_ids: pd.Index | None = None) -> pd.DataFrame:
        """As a DataFrame; indices are translated to ids when the id indexes are given."""
        return pd.DataFrame(
            {
                "user_id": self.user if user_ids is None else user_ids[self.user],
                "rank": self.rank,
                "item_id": self.item if item_ids is None else item_ids[self.item],
                "score": self.score,
            }
        )


# Rows wider than this use the threshold pre-filter below; narrower ones a plain argpartition.
_PREFILTER_MIN_COLUMNS = 4096
_PREFILTER_SAMPLE_COLUMNS = 2048


def _sorted_rows(candidates: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row's candidates by value descending, ties by column ascending."""
    order = np.lexsort((candidates, -values), axis=1) if candidates.size else np.zeros(candidates.shape, int)
    return np.take_along_axis(candidates, order, axis=1), np.take_along_axis(values, order, axis=1)


def top_n_rows(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of the ``n`` largest entries of each row, sorted descending
    (ties broken by the lower column index, so the result is deterministic).

    Entries equal to ``-inf`` (excluded items) may appear at the end of a row
    when fewer than ``n`` candidates are left; callers drop them.

    Wide rows are pre-filtered, exactly: the ``n``-th largest value of a fixed
    sample of columns is a lower bound of the row's ``n``-th largest value, so
    only entries at or above it can be in the top ``n``. One comparison pass
    over the batch replaces a full ``argpartition`` (which costs ~30 ns per
    entry and dominated scoring), and only the few hundred survivors per row
    are sorted.
    """
    n_rows, n_cols = scores.shape
    n = min(n, n_cols)
    if n_rows == 0 or n == 0:
        return np.zeros((n_rows, n), dtype=np.int64), np.zeros((n_rows, n), dtype=scores.dtype)
    if n_cols < _PREFILTER_MIN_COLUMNS or n * 8 > _PREFILTER_SAMPLE_COLUMNS:
        return _top_n_plain(scores, n)

    # A fixed, evenly spread sample of columns (deterministic; exactness does not depend on it).
    sample = np.linspace(0, n_cols - 1, _PREFILTER_SAMPLE_COLUMNS).astype(np.int64)
    threshold = -np.partition(-scores[:, sample], n - 1, axis=1)[:, n - 1]
    keep = scores >= threshold[:, None]
    flat = np.flatnonzero(keep)  # row-major: grouped by row, columns ascending
    rows, cols = np.divmod(flat, n_cols)
    counts = np.bincount(rows, minlength=n_rows)
    # Rows whose threshold is -inf (most items excluded) keep almost everything: those go
    # through the plain path, so that the survivors of the others fit a narrow matrix.
    dense = counts <= 8 * n * n_cols // _PREFILTER_SAMPLE_COLUMNS
    out_items = np.zeros((n_rows, n), dtype=np.int64)
    out_values = np.full((n_rows, n), -np.inf, dtype=scores.dtype)
    if not dense.all():
        wide = np.flatnonzero(~dense)
        out_items[wide], out_values[wide] = _top_n_plain(scores[wide], n)
        light = dense[rows]
        rows, cols = rows[light], cols[light]
        counts[wide] = 0
    position = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    width = max(int(counts.max()), n)
    survivors = np.full((n_rows, width), -np.inf, dtype=scores.dtype)
    survivor_cols = np.zeros((n_rows, width), dtype=np.int64)
    survivors[rows, position] = scores[rows, cols]
    survivor_cols[rows, position] = cols
    narrow = np.flatnonzero(dense)
    best, best_values = _top_n_plain(survivors[narrow], n)
    out_items[narrow] = np.take_along_axis(survivor_cols[narrow], best, axis=1)
    out_values[narrow] = best_values
    return out_items, out_values


def _top_n_plain(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``top_n_rows`` by ``argpartition`` of every entry (for narrow rows)."""
    if n < scores.shape[1]:
        candidates = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    else:
        candidates = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    return _sorted_rows(candidates, np.take_along_axis(scores, candidates, axis=1))


def rank_score_batches(
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    n: int,
    exclude: sp.csr_matrix | None = None,
    item_mask: np.ndarray | None = None,
) -> Ranked:
    """Turn batches of dense scores into top-N lists.

    ``batches`` yields ``(user_indices, scores)`` with ``scores`` of shape
    ``(len(user_indices), n_items)`` (modified in place). Items in the user's
    row of ``exclude`` (e.g. already bought) and items where ``item_mask`` is
    False (e.g. out of stock) are never recommended.
    """
    parts: list[tuple[np.ndarray, ...]] = []
    for users, scores in batches:
        if exclude is not None:
            rows, cols = exclude[users].nonzero()
            scores[rows, cols] = -np.inf
        if item_mask is not None:
            scores[:, ~item_mask] = -np.inf
        items, values = top_n_rows(scores, n)
        ranks = np.broadcast_to(np.arange(1, items.shape[1] + 1), items.shape)
        keep = np.isfinite(values)
        parts.append(
            (np.broadcast_to(users[:, None], items.shape)[keep], ranks[keep], items[keep], values[keep])
        )
    if not parts:
        empty_int = np.array([], dtype=np.int64)
        return Ranked(empty_int, empty_int, empty_int, np.array([], dtype=np.float32))
    return Ranked(*(np.concatenate(column) for column in zip(*parts)))


def top_n_sparse(scores: sp.csr_matrix, users: np.ndarray, n: int) -> Ranked:
    """Top-N of each row of a sparse score matrix whose row ``i`` belongs to ``users[i]``.

    Only stored entries are candidates; ties go to the lower column, as in
    :func:`top_n_rows`. Rows with many entries are pre-filtered exactly like
    :func:`top_n_rows` does: the N-th best of an evenly spread sample of the row's
    entries bounds the row's N-th best, so only entries at or above it are sorted.
    """
    scores = sp.csr_matrix(scores)
    n_rows = scores.shape[0]
    counts = np.diff(scores.indptr)
    rows = np.repeat(np.arange(n_rows), counts)
    data, cols = scores.data, scores.indices
    wide = np.flatnonzero(counts > 8 * n) if n > 0 else np.array([], dtype=np.int64)
    if len(wide):
        spread = np.linspace(0.0, 1.0, 8 * n)
        picks = scores.indptr[wide, None] + (spread[None, :] * (counts[wide, None] - 1)).astype(np.int64)
        threshold = np.full(n_rows, -np.inf, dtype=data.dtype)
        threshold[wide] = -np.partition(-data[picks], n - 1, axis=1)[:, n - 1]
        keep = data >= threshold[rows]
        rows, data, cols = rows[keep], data[keep], cols[keep]
        counts = np.bincount(rows, minlength=n_rows)
    starts = np.cumsum(counts) - counts
    order = np.lexsort((cols, -data, rows))
    position = np.arange(len(order)) - starts[rows[order]]
    best = order[position < n]
    return Ranked(np.asarray(users)[rows[best]], position[position < n] + 1, cols[best].astype(np.int64), data[best])


def representations(
    model: LightFM,
    user_features: sp.csr_matrix | None = None,
    item_features: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(user_biases, user_embeddings, item_biases, item_embeddings) with features folded in."""
    user_biases, user_embeddings = model.get_user_representations(user_features)
    item_biases, item_embeddings = model.get_item_representations(item_features)
    return user_biases, user_embeddings, item_biases, item_embeddings


def _plus_factors(
    user_biases: np.ndarray, user_embeddings: np.ndarray, item_biases: np.ndarray, item_embeddings: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Users' ``[u, b_u, 1]`` rows and the items' ``[v, 1, b_i]`` columns: their product
    is ``u.v + b_u + b_i``, LightFM's score, in one matrix product."""
    ones_u = np.ones((len(user_embeddings), 1), dtype=user_embeddings.dtype)
    ones_i = np.ones((len(item_embeddings), 1), dtype=item_embeddings.dtype)
    users_plus = np.hstack([user_embeddings, user_biases[:, None].astype(user_embeddings.dtype), ones_u])
    items_plus_t = np.ascontiguousarray(
        np.hstack([item_embeddings, ones_i, item_biases[:, None].astype(item_embeddings.dtype)]).T
    )
    return users_plus, items_plus_t


def score_batches(
    user_biases: np.ndarray,
    user_embeddings: np.ndarray,
    item_biases: np.ndarray,
    item_embeddings: np.ndarray,
    users: np.ndarray,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Dense model scores ``u.v + b_u + b_i`` (LightFM's ``predict``), batch by batch.

    The biases ride in the product: ``[u, b_u, 1] . [v, 1, b_i]``, so each batch is one
    matrix product and no extra passes over its ``batch x items`` scores."""
    users_plus, items_plus_t = _plus_factors(user_biases, user_embeddings, item_biases, item_embeddings)
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        yield batch, users_plus[batch] @ items_plus_t


# Rows of the frame a mapped scorer (``top_n(..., map_batches=...)``) works on: the user's
# row index and its factors as plain float columns (Arrow moves them without copies).
_FACTOR_PREFIX = "f"
RANKED_SCHEMA = pa.schema(
    [("user", pa.int64()), ("rank", pa.int64()), ("item", pa.int64()), ("score", pa.float32())]
)


def user_factor_frame(users_plus: np.ndarray, users: np.ndarray) -> pd.DataFrame:
    """One row per user of ``users``: ``user`` and the columns ``f0..fk`` of its factors."""
    factors = pd.DataFrame(
        users_plus[users].astype(np.float32, copy=False),
        columns=[f"{_FACTOR_PREFIX}{i}" for i in range(users_plus.shape[1])],
    )
    return pd.concat([pd.DataFrame({"user": users.astype(np.int64)}), factors], axis=1)


def top_n_of_factor_batch(batch: pd.DataFrame, shared) -> pd.DataFrame:
    """Top-N rows (``RANKED_SCHEMA``) of a batch of ``user_factor_frame`` rows against
    the items' factors in ``shared`` (``items_plus_t``, ``n``, optional ``exclude``):
    a pure function of its inputs, so it runs the same on Spark's executors."""
    users = batch["user"].to_numpy(dtype=np.int64)
    factors = batch[[c for c in batch.columns if c != "user"]].to_numpy(dtype=np.float32)
    items_plus_t = shared["items_plus_t"]
    batches = (
        (users[start : start + DEFAULT_BATCH_SIZE], factors[start : start + DEFAULT_BATCH_SIZE] @ items_plus_t)
        for start in range(0, len(users), DEFAULT_BATCH_SIZE)
    )
    ranked = rank_score_batches(batches, shared["n"], shared.get("exclude"))
    return pd.DataFrame(
        {"user": ranked.user.astype(np.int64), "rank": ranked.rank.astype(np.int64),
         "item": ranked.item.astype(np.int64), "score": ranked.score.astype(np.float32)}  # fmt: skip
    )


def top_n(
    model: LightFM,
    n: int,
    user_features: sp.csr_matrix | None = None,
    item_features: sp.csr_matrix | None = None,
    users: np.ndarray | None = None,
    exclude: sp.csr_matrix | None = None,
    item_mask: np.ndarray | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    map_batches: Callable | None = None,
) -> Ranked:
    """Top-N items for ``users`` (row indices; default all rows of the user features).

    ``exclude`` is a users x items matrix whose non-zeros are never
    recommended (typically the training interactions); ``item_mask`` a boolean
    per item, False for items that must not be recommended. ``map_batches`` (an
    engine's :meth:`~recs_pipeline.engine.base.Engine.map_batches`) scores the users
    there, on Spark's executors, with the items' factors broadcast; the lists are the
    same as scoring here.
    """
    user_biases, user_embeddings, item_biases, item_embeddings = representations(model, user_features, item_features)
    if users is None:
        users = np.arange(len(user_biases))
    if item_mask is not None:
        # A -inf bias masks the item inside the product (cheaper than masking every batch).
        item_biases = np.where(item_mask, item_biases, -np.inf).astype(item_biases.dtype)
    users = np.asarray(users)
    if map_batches is not None:
        users_plus, items_plus_t = _plus_factors(user_biases, user_embeddings, item_biases, item_embeddings)
        shared = {"items_plus_t": items_plus_t.astype(np.float32, copy=False), "n": n, "exclude": exclude}
        rows = map_batches(user_factor_frame(users_plus, users), top_n_of_factor_batch, RANKED_SCHEMA, shared)
        # Executors return partitions in any order: put the users back in the order asked.
        position = pd.Index(users).get_indexer(rows["user"].to_numpy())
        rows = rows.assign(position=position).sort_values(["position", "rank"], kind="stable")
        return Ranked(*(rows[c].to_numpy() for c in ("user", "rank", "item", "score")))
    batches = score_batches(user_biases, user_embeddings, item_biases, item_embeddings, users, batch_size)
    return rank_score_batches(batches, n, exclude)


def score_cold_users(
    model: LightFM,
    cold_user_features: sp.csr_matrix,
    n: int,
    item_features: sp.csr_matrix | None = None,
    item_mask: np.ndarray | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Ranked:
    """Top-N for users known only by features (rows built with ``cold_feature_matrix``).

    ``Ranked.user`` is the row of ``cold_user_features``. Nothing is excluded:
    these users have no history.
    """
    return top_n(
        model,
        n,
        user_features=cold_user_features,
        item_features=item_features,
        item_mask=item_mask,
        batch_size=batch_size,
    )


def similar_items(
    model: LightFM,
    n: int,
    item_features: sp.csr_matrix | None = None,
    items: np.ndarray | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> pd.DataFrame:
    """The ``n`` nearest items of each item by cosine of their embeddings.

    Biases are left out: they encode popularity, not likeness. Returns
    columns ``item, rank, similar_item, score`` (item column indices).
    """
    _, embeddings = model.get_item_representations(item_features)
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    unit = embeddings / np.where(norms > 0, norms, 1.0)
    if items is None:
        items = np.arange(len(unit))
    zero_biases = np.zeros(len(unit), dtype=unit.dtype)
    batches = score_batches(zero_biases, unit, zero_biases, unit, np.asarray(items), batch_size)
    itself = sp.identity(len(unit), format="csr")
    ranked = rank_score_batches(batches, n, exclude=itself)
    return pd.DataFrame(
        {"item": ranked.user, "rank": ranked.rank, "similar_item": ranked.item, "score": ranked.score}
    )
