"""Top-N recommendation lists from a trained model, computed in user batches.

LightFM's own ``predict`` scores one (user, item) pair per call; to rank a
whole catalogue for every user we take the learned representations once
(``get_user_representations`` / ``get_item_representations`` fold the feature
matrices into one embedding and one bias per entity) and score a batch of
users with one matrix product. Memory is bounded by ``batch_size x n_items``.
Only the N best of each row are sorted, after an exact bound from group maxima has
left a few dozen candidates per row (:func:`top_n_rows`).

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


# Wide rows are ranked through a group-maximum bound (see ``top_n_rows``). Its parameters:
# columns per level-1 group, level-2 groups per requested item, rows per block (a block's
# scores stay in cache between its passes: 64 x 50k float32 = 12.8 MB).
_GROUP_COLUMNS = 8
_GROUPS_PER_ITEM = 8
_BLOCK_ROWS = 64
# Rows opening more groups or keeping more candidates than these (many ties at the bound,
# or most items excluded) are ranked by ``_top_n_above`` instead.
_MAX_OPEN_GROUPS_PER_ITEM = 4
_MAX_CANDIDATES_PER_ITEM = 8
# Entries per chunk of rows in the exact fallbacks (bounds their temporaries).
_CHUNK_ENTRIES = 1 << 20
# Columns searched first for the lowest-column entries tied with the n-th largest value.
_TIE_WINDOW = 1024


def _sorted_rows(candidates: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort each row's candidates by value descending, ties by column ascending."""
    order = np.lexsort((candidates, -values), axis=1) if candidates.size else np.zeros(candidates.shape, int)
    return np.take_along_axis(candidates, order, axis=1), np.take_along_axis(values, order, axis=1)


def top_n_rows(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of the ``n`` largest entries of each row, sorted descending,
    ties broken by the lower column index (the result is that of a full stable sort).

    When fewer than ``n`` other entries are left, a row ends with its lowest-column
    ``-inf`` entries (excluded items; ``nan`` counts as ``-inf``); callers drop them.

    Wide rows are ranked exactly through a lower bound of each row's ``n``-th largest
    value: split the columns into disjoint groups and take each group's maximum; the
    ``n``-th largest of those maxima is such a bound, because each of those ``n`` groups
    holds an entry at least that large. Two levels of groups keep every step cheap:
    level-1 groups of 8 columns (one reduction pass, the only pass over all the scores)
    and ``8 n`` level-2 groups of level-1 groups (a pass over an eighth of them) give the
    bound; only the level-1 groups whose maximum reaches it are opened, about ``1.1 n``
    entries per row survive, and only those are sorted. Groups are strided (group ``k``
    holds columns ``k, k + groups, ...``), so each reduction is an elementwise maximum
    of contiguous slices, and rows go in blocks that stay in cache.
    """
    n_rows, n_cols = scores.shape
    n = min(n, n_cols)
    if n_rows == 0 or n == 0:
        return np.zeros((n_rows, n), dtype=np.int64), np.zeros((n_rows, n), dtype=scores.dtype)
    level2 = _GROUPS_PER_ITEM * n
    if n_cols // _GROUP_COLUMNS < 2 * level2 or not np.issubdtype(scores.dtype, np.floating):
        return _top_n_plain(scores, n)
    items = np.empty((n_rows, n), dtype=np.int64)
    values = np.empty((n_rows, n), dtype=scores.dtype)
    for start in range(0, n_rows, _BLOCK_ROWS):
        block = np.ascontiguousarray(scores[start : start + _BLOCK_ROWS])
        items[start : start + len(block)], values[start : start + len(block)] = _top_n_block(block, n, level2)
    return items, values


def _group_max(matrix: np.ndarray, groups: int) -> np.ndarray:
    """Per row, the maximum of each of ``groups`` strided groups of columns: group ``k`` is
    columns ``k, k + groups, k + 2 groups, ...`` (``nan`` ignored unless a whole group is)."""
    n_rows, n_cols = matrix.shape
    size = n_cols // groups
    maxima = np.fmax.reduce(matrix[:, : size * groups].reshape(n_rows, size, groups), axis=1)
    rest = n_cols - size * groups  # the last columns: one more member for the first groups
    if rest:
        np.fmax(maxima[:, :rest], matrix[:, size * groups :], out=maxima[:, :rest])
    return maxima


def _open_groups(
    block: np.ndarray, rows: np.ndarray, firsts: np.ndarray, n_groups: int, bound: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and values of the entries ``>= bound[row]`` of the groups of a
    C-contiguous ``block`` (grouped as by ``_group_max`` with ``n_groups``) whose first
    entries are at the flat positions ``firsts`` (in rows ``rows``), in that order."""
    n_cols = block.shape[1]
    size, rest = divmod(n_cols, n_groups)
    flat = firsts[:, None] + np.arange(size + (rest > 0)) * n_groups
    if rest:  # only the first ``rest`` groups of a row have the last member
        short = (firsts - rows * n_cols) >= rest
        flat[short, -1] = firsts[short]
    entries = block.reshape(-1)[flat]
    keep = entries >= bound[rows][:, None]
    if rest:
        keep[short, -1] = False
    picked = np.flatnonzero(keep)
    rows = rows[picked // flat.shape[1]]
    return rows, flat.reshape(-1)[picked] - rows * n_cols, entries.reshape(-1)[picked]


def _top_n_block(block: np.ndarray, n: int, level2: int) -> tuple[np.ndarray, np.ndarray]:
    """``top_n_rows`` of a C-contiguous block of rows, by the two-level group bound."""
    n_rows, n_cols = block.shape
    level1 = n_cols // _GROUP_COLUMNS
    maxima1 = _group_max(block, level1)
    maxima2 = _group_max(maxima1, level2)
    all_nan = np.isnan(maxima2)
    if all_nan.any():
        maxima2[all_nan] = -np.inf
    # The n-th largest group maximum (selecting from the top: np.partition is slow to
    # select near the end of rows with many equal values).
    bound = -np.partition(-maxima2, n - 1, axis=1)[:, n - 1]
    opened = np.flatnonzero(maxima1 >= bound[:, None])  # row * level1 + group
    rows = opened // level1
    counts = np.bincount(rows, minlength=n_rows)
    # A -inf bound: fewer than n groups hold a finite entry (most items excluded).
    fallback = (bound == -np.inf) | (counts > _MAX_OPEN_GROUPS_PER_ITEM * n)
    if fallback.any():
        kept = ~fallback[rows]
        rows, opened = rows[kept], opened[kept]
    firsts = opened + rows * (n_cols - level1)  # flat position of each group's first column
    rows, columns, values = _open_groups(block, rows, firsts, level1, bound)
    counts = np.bincount(rows, minlength=n_rows)
    crowded = counts > _MAX_CANDIDATES_PER_ITEM * n
    if crowded.any():
        fallback |= crowded
        kept = ~crowded[rows]
        rows, columns, values = rows[kept], columns[kept], values[kept]
        counts[crowded] = 0
    # At least n candidates per row (each of the n groups reaching the bound holds one).
    items, best = _best_candidates(block, rows, columns, values, counts, n)
    if fallback.any():
        where = np.flatnonzero(fallback)
        items[where], best[where] = _top_n_above(block[where], bound[where], n)
    return items, best


def _best_candidates(
    block: np.ndarray, rows: np.ndarray, columns: np.ndarray, values: np.ndarray, counts: np.ndarray, n: int
) -> tuple[np.ndarray, np.ndarray]:
    """The ``n`` best of each row's candidates (``rows`` grouped, ``counts`` per row, at
    least ``n`` in a row unless it has none, then its result is meaningless), sorted in
    a matrix padded to the widest row.

    float32 candidates sort as one uint64 key each: the value's bits, ordered so that
    larger values come first, above the column (about 5x faster than ``np.lexsort``)."""
    n_rows, n_cols = block.shape
    position = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    width = max(int(counts.max()), n)
    if block.dtype != np.float32 or n_cols >= 1 << 32:
        padded_values = np.full((n_rows, width), -np.inf, dtype=block.dtype)
        padded_columns = np.full((n_rows, width), n_cols, dtype=np.int64)
        padded_values[rows, position] = values
        padded_columns[rows, position] = columns
        items, best = _sorted_rows(padded_columns, padded_values)
        return items[:, :n], best[:, :n]
    bits = (values + np.float32(0)).view(np.uint32)  # + 0: -0.0 as 0.0, they tie
    descending = np.where(bits >> 31 == 1, bits, ~bits & np.uint32(0x7FFFFFFF))
    keys = np.full((n_rows, width), np.iinfo(np.uint64).max, dtype=np.uint64)
    keys[rows, position] = (descending.astype(np.uint64) << np.uint64(32)) | columns.astype(np.uint64)
    keys.sort(axis=1)
    items = (keys[:, :n] & np.uint64(0xFFFFFFFF)).astype(np.int64)
    items[counts == 0] = 0  # rows without candidates (ranked apart): padding only
    return items, np.take_along_axis(block, items, axis=1)


def _top_n_plain(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``top_n_rows`` through a full ``np.partition`` of each row (narrow rows)."""
    n_rows, n_cols = scores.shape
    if n >= n_cols:
        columns = np.broadcast_to(np.arange(n_cols), scores.shape)
        return _sorted_rows(columns, _without_nan(scores))
    return _top_n_above(scores, None, n)


def _top_n_above(scores: np.ndarray, bound: np.ndarray | None, n: int) -> tuple[np.ndarray, np.ndarray]:
    """``top_n_rows`` (``n < n_cols``) given a lower bound of each row's ``n``-th largest
    value (``None``: none known), exactly, in chunks of rows.

    When fewer than ``n`` entries exceed the bound, the bound is the ``n``-th largest
    value: the top ``n`` are those entries and the lowest-column entries equal to it
    (cheap even when most entries are equal, e.g. popularity scores). Otherwise the
    ``n``-th largest value comes from ``np.partition`` and the same selection follows.
    """
    n_rows, n_cols = scores.shape
    items = np.empty((n_rows, n), dtype=np.int64)
    values = np.empty((n_rows, n), dtype=scores.dtype)
    chunk = max(1, _CHUNK_ENTRIES // n_cols)
    for start in range(0, n_rows, chunk):
        part = _without_nan(scores[start : start + chunk])
        nth = _nth_largest(part, n) if bound is None else bound[start : start + chunk].copy()
        above = part > nth[:, None]
        counts = np.bincount(np.flatnonzero(above) // n_cols, minlength=len(part))
        loose = np.flatnonzero(counts >= n)
        if len(loose):
            nth[loose] = _nth_largest(part[loose], n)
            above[loose] = part[loose] > nth[loose, None]
            counts[loose] = np.count_nonzero(above[loose], axis=1)
        above.reshape(-1)[_first_ties(part, nth, n - counts)] = True
        columns = (np.flatnonzero(above) % n_cols).reshape(len(part), n)  # n per row, ascending
        items[start : start + len(part)], values[start : start + len(part)] = _sorted_rows(
            columns, np.take_along_axis(part, columns, axis=1)
        )
    return items, values


def _first_ties(part: np.ndarray, nth: np.ndarray, needed: np.ndarray) -> np.ndarray:
    """Flat indices into ``part`` of the ``needed[row]`` lowest-column entries of each row
    equal to ``nth[row]``; a first window of columns usually holds enough of them."""
    n_rows, n_cols = part.shape
    width = min(n_cols, _TIE_WINDOW)
    flat = np.flatnonzero(part[:, :width] == nth[:, None])
    rows = flat // width
    flat += rows * (n_cols - width)
    short = np.flatnonzero(np.bincount(rows, minlength=n_rows) < needed)
    if len(short) and width < n_cols:
        window_rows = np.isin(rows, short, invert=True)
        more = np.flatnonzero(part[short] == nth[short, None])
        more_rows = short[more // n_cols]
        rows = np.concatenate([rows[window_rows], more_rows])
        flat = np.concatenate([flat[window_rows], more_rows * n_cols + more % n_cols])
        order = np.argsort(rows, kind="stable")
        rows, flat = rows[order], flat[order]
    counts = np.bincount(rows, minlength=n_rows)
    rank = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
    return flat[rank < needed[rows]]


def _nth_largest(scores: np.ndarray, n: int) -> np.ndarray:
    """Each row's ``n``-th largest value (``nan``-free rows)."""
    if np.issubdtype(scores.dtype, np.floating):
        # From the top: np.partition is slow to select near the end of rows with many equal values.
        return -np.partition(-scores, n - 1, axis=1)[:, n - 1]
    return np.partition(scores, scores.shape[1] - n, axis=1)[:, scores.shape[1] - n]


def _without_nan(scores: np.ndarray) -> np.ndarray:
    """``scores`` with ``nan`` entries as ``-inf`` (a copy only when there are any)."""
    if np.issubdtype(scores.dtype, np.floating) and np.isnan(scores).any():
        return np.where(np.isnan(scores), -np.inf, scores).astype(scores.dtype, copy=False)
    return scores


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
    blocked = None if item_mask is None else ~item_mask
    for users, scores in batches:
        if exclude is not None:
            rows, cols = exclude[users].nonzero()
            scores[rows, cols] = -np.inf
        if blocked is not None:
            scores[:, blocked] = -np.inf
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


# A sparse matrix of positive scores with at least this share of its entries stored (an
# item's co-purchases in a catalogue of popular items, a user's neighbours among all users)
# is ranked as dense rows by :func:`top_n_rows`, whose group bound is several times faster
# than sorting the stored entries.
_DENSE_SHARE = 0.05
_DENSE_CHUNK_ENTRIES = 1 << 22  # rows x columns per dense chunk (32 MB of float64)


def _top_n_sparse_as_dense(scores: sp.csr_matrix, users: np.ndarray, n: int) -> Ranked | None:
    """:func:`top_n_sparse` of a matrix whose stored entries are all positive, through dense
    chunks of rows: an absent entry is a 0 there, below every stored one, so the positive
    values of each row's top ``n`` are the same list. None when an entry is stored twice
    (the dense chunk would sum the two)."""
    n_rows, n_cols = scores.shape
    users = np.asarray(users)
    chunk = max(1, _DENSE_CHUNK_ENTRIES // max(n_cols, 1))
    buffer = np.empty((min(chunk, n_rows), n_cols), dtype=scores.dtype)  # reused: no page faults per chunk
    parts = []
    for start in range(0, n_rows, chunk):
        stop = min(start + chunk, n_rows)
        lo, hi = scores.indptr[start], scores.indptr[stop]
        rows = sp.csr_matrix((scores.data[lo:hi], scores.indices[lo:hi], scores.indptr[start : stop + 1] - lo),
                             shape=(stop - start, n_cols))  # fmt: skip
        dense = buffer[: stop - start]
        dense.fill(0.0)
        rows.toarray(out=dense)
        if np.count_nonzero(dense) != hi - lo:
            return None
        items, values = top_n_rows(dense, n)
        keep = values > 0
        ranks = np.broadcast_to(np.arange(1, items.shape[1] + 1), items.shape)
        parts.append((np.broadcast_to(users[start:stop, None], items.shape)[keep], ranks[keep],
                      items[keep].astype(np.int64), values[keep]))  # fmt: skip
    return Ranked(*(np.concatenate(column) for column in zip(*parts)))


def top_n_sparse(scores: sp.csr_matrix, users: np.ndarray, n: int) -> Ranked:
    """Top-N of each row of a sparse score matrix whose row ``i`` belongs to ``users[i]``.

    Only stored entries are candidates; ties go to the lower column, as in
    :func:`top_n_rows`. Rows with many entries are pre-filtered exactly: the N-th best
    of an evenly spread sample of the row's entries bounds the row's N-th best, so only
    entries at or above it are sorted. A matrix of positive scores with at least
    ``_DENSE_SHARE`` of its entries stored goes through :func:`top_n_rows` in dense
    chunks of rows instead (the same lists).
    """
    scores = sp.csr_matrix(scores)
    n_rows, n_cols = scores.shape
    if n > 0 and scores.nnz and scores.nnz >= _DENSE_SHARE * n_rows * n_cols and scores.data.min() > 0:  # nan: no
        dense = _top_n_sparse_as_dense(scores, users, n)
        if dense is not None:
            return dense
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
    users_plus, items_plus_t = _plus_factors(user_biases, user_embeddings, item_biases, item_embeddings)
    if map_batches is not None:
        shared = {"items_plus_t": items_plus_t.astype(np.float32, copy=False), "n": n, "exclude": exclude}
        rows = map_batches(user_factor_frame(users_plus, users), top_n_of_factor_batch, RANKED_SCHEMA, shared)
        # Executors return partitions in any order: put the users back in the order asked
        # (a user's rows stay together and in rank order, so a stable sort by position
        # suffices; in-process batches come back in order and skip it).
        position = pd.Index(users).get_indexer(rows["user"].to_numpy())
        columns = [rows[c].to_numpy() for c in ("user", "rank", "item", "score")]
        if len(position) > 1 and (np.diff(position) < 0).any():
            order = np.argsort(position, kind="stable")
            columns = [column[order] for column in columns]
        return exact_scores(Ranked(*columns), users_plus, items_plus_t)
    batches = score_batches(user_biases, user_embeddings, item_biases, item_embeddings, users, batch_size)
    return exact_scores(rank_score_batches(batches, n, exclude), users_plus, items_plus_t)


def exact_scores(ranked: Ranked, users_plus: np.ndarray, items_plus_t: np.ndarray, chunk: int = 65_536) -> Ranked:
    """The chosen items' scores recomputed one dot product each, in float64, and each
    user's items re-ordered by them (ties to the lower item).

    A float32 matrix product rounds a score by how BLAS splits the batch it is in, and
    batches differ between engines (Spark's partitions) and machines: the last digits of
    a list's scores, and the order of near-ties, would differ with them. A row-wise sum
    over the factors does not depend on the batch. Chunks of ``chunk`` recommendations
    bound the memory."""
    if len(ranked.user) == 0:
        return ranked
    items_plus = items_plus_t.T
    score = np.empty(len(ranked.user), dtype=np.float64)
    for start in range(0, len(score), chunk):
        part = slice(start, start + chunk)
        u = users_plus[ranked.user[part]].astype(np.float64)
        v = items_plus[ranked.item[part]].astype(np.float64)
        score[part] = (u * v).sum(axis=1)
    # A masked item (a -inf bias) keeps the product's -inf; nothing else is non-finite.
    score = np.where(np.isfinite(ranked.score), score, ranked.score).astype(np.float32)
    # Rows of a user are contiguous and in rank order: sort within each user's block.
    block = np.concatenate([[0], np.cumsum(ranked.user[1:] != ranked.user[:-1])])
    order = np.lexsort((ranked.item, -score.astype(np.float64), block))
    return Ranked(ranked.user[order], ranked.rank, ranked.item[order], score[order])


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
