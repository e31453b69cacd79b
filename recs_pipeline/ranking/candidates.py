"""From score matrices to candidate lists: the long format every generator returns.

A candidate generator scores a block of users against the catalogue, as a
dense array (EASE, broadcast popularity) or a sparse matrix whose stored entries
are the only candidates (TIFU-KNN, buy-again), and keeps the best ``n`` per user.
:func:`rank_scores` does that for both kinds with the selection code of
:mod:`recs_pipeline.ml.scoring` (``rank_score_batches``, the batch machinery behind
``top_n``, for dense rows; ``top_n_sparse`` for sparse ones), so every generator
ranks exactly like the model: best first, ties to the lower item index.

The result is a :class:`~recs_pipeline.ml.scoring.Ranked` (flat aligned arrays
``user, rank, item, score`` in index space); :func:`candidate_frame` turns it into
the long ``user_id, item_id, score, rank`` table the ranking stage consumes.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recs_pipeline.ml.scoring import Ranked, rank_score_batches, top_n_sparse

CANDIDATE_COLUMNS = ["user_id", "item_id", "score", "rank"]


def empty_ranked() -> Ranked:
    empty = np.array([], dtype=np.int64)
    return Ranked(empty, empty, empty, np.array([], dtype=np.float64))


def concat_ranked(parts: Iterable[Ranked]) -> Ranked:
    """One :class:`Ranked` from the lists of several user blocks (in order)."""
    parts = list(parts)
    if not parts:
        return empty_ranked()
    return Ranked(*(np.concatenate(column) for column in zip(*parts)))


def _drop_sparse_entries(
    scores: sp.csr_matrix, users: np.ndarray, exclude: sp.spmatrix | None, item_mask: np.ndarray | None
) -> sp.csr_matrix:
    """The stored entries of ``scores`` minus excluded (user, item) pairs and masked items."""
    coo = scores.tocoo()
    keep = np.ones(coo.nnz, dtype=bool)
    if item_mask is not None:
        keep &= np.asarray(item_mask, dtype=bool)[coo.col]
    if exclude is not None:
        n_items = scores.shape[1]
        ex_rows, ex_cols = sp.csr_matrix(exclude)[users].nonzero()
        excluded = ex_rows.astype(np.int64) * n_items + ex_cols
        keep &= ~np.isin(coo.row.astype(np.int64) * n_items + coo.col, excluded)
    if keep.all():
        return scores
    return sp.csr_matrix((coo.data[keep], (coo.row[keep], coo.col[keep])), shape=scores.shape)


def rank_scores(
    scores: np.ndarray | sp.spmatrix,
    users: np.ndarray,
    n: int,
    exclude: sp.spmatrix | None = None,
    item_mask: np.ndarray | None = None,
) -> Ranked:
    """Top-``n`` items of each row of ``scores``; row ``i`` belongs to user ``users[i]``.

    ``scores`` is dense (every item is a candidate; the array is modified in place)
    or sparse (only stored entries are candidates). ``exclude`` is a users x items
    matrix indexed by user (``exclude[users[i]]``): its non-zeros are never returned
    (e.g. the training items in an explore-only list); items where ``item_mask`` is
    False neither. Rows may come back shorter than ``n`` when fewer candidates exist.
    """
    users = np.asarray(users)
    if sp.issparse(scores):
        kept = _drop_sparse_entries(sp.csr_matrix(scores), users, exclude, item_mask)
        return top_n_sparse(kept, users, n)
    scores = np.asarray(scores)
    return rank_score_batches([(users, scores)], n, exclude, item_mask)


def candidate_frame(
    ranked: Ranked,
    user_ids: pd.Index | None = None,
    item_ids: pd.Index | None = None,
    generator: str | None = None,
) -> pd.DataFrame:
    """The long format: ``user_id, item_id, score, rank`` (plus ``generator`` when named).

    Indices are translated to ids when the id indexes are given.
    """
    frame = ranked.to_frame(user_ids, item_ids)[CANDIDATE_COLUMNS]
    if generator is not None:
        frame = frame.assign(generator=generator)
    return frame
