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

from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np
import pandas as pd
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


def top_n_rows(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Column indices and values of the ``n`` largest entries of each row, sorted descending.

    Entries equal to ``-inf`` (excluded items) may appear at the end of a row
    when fewer than ``n`` candidates are left; callers drop them.
    """
    n = min(n, scores.shape[1])
    if n < scores.shape[1]:
        candidates = np.argpartition(-scores, n - 1, axis=1)[:, :n]
    else:
        candidates = np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    candidate_scores = np.take_along_axis(scores, candidates, axis=1)
    order = np.argsort(-candidate_scores, axis=1, kind="stable")
    return np.take_along_axis(candidates, order, axis=1), np.take_along_axis(candidate_scores, order, axis=1)


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


def representations(
    model: LightFM,
    user_features: sp.csr_matrix | None = None,
    item_features: sp.csr_matrix | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(user_biases, user_embeddings, item_biases, item_embeddings) with features folded in."""
    user_biases, user_embeddings = model.get_user_representations(user_features)
    item_biases, item_embeddings = model.get_item_representations(item_features)
    return user_biases, user_embeddings, item_biases, item_embeddings


def score_batches(
    user_biases: np.ndarray,
    user_embeddings: np.ndarray,
    item_biases: np.ndarray,
    item_embeddings: np.ndarray,
    users: np.ndarray,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Dense model scores ``u.v + b_u + b_i`` (LightFM's ``predict``), batch by batch."""
    item_embeddings_t = np.ascontiguousarray(item_embeddings.T)
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        scores = user_embeddings[batch] @ item_embeddings_t
        scores += item_biases
        scores += user_biases[batch, None]
        yield batch, scores


def top_n(
    model: LightFM,
    n: int,
    user_features: sp.csr_matrix | None = None,
    item_features: sp.csr_matrix | None = None,
    users: np.ndarray | None = None,
    exclude: sp.csr_matrix | None = None,
    item_mask: np.ndarray | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Ranked:
    """Top-N items for ``users`` (row indices; default all rows of the user features).

    ``exclude`` is a users x items matrix whose non-zeros are never
    recommended (typically the training interactions); ``item_mask`` a boolean
    per item, False for items that must not be recommended.
    """
    representation = representations(model, user_features, item_features)
    if users is None:
        users = np.arange(len(representation[0]))
    return rank_score_batches(
        score_batches(*representation, np.asarray(users), batch_size), n, exclude, item_mask
    )


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
