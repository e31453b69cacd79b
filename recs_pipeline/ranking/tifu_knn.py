"""TIFU-KNN: temporal item frequencies of the user, smoothed by similar users.

Hu, He, Gao and Zhang, "Modeling Personalized Item Frequency Information for
Next-basket Recommendation", SIGIR 2020. A user is the vector of how often and
how recently they bought each item, built from their baskets (an invoice, a
session or a day: the caller names the basket column) in time order:

1. the ``n`` baskets are split into ``m`` groups in time order; the last group
   holds the most recent baskets (group index ``k = 1..m``, 1 = oldest);
2. inside a group of ``n_k`` baskets, basket ``j`` (1 = oldest in the group)
   contributes its multi-hot item vector weighted ``r_b ** (n_k - j)`` (its
   distance to the group's last basket), averaged over the group:
   ``g_k = sum_j r_b ** (n_k - j) * b_j / n_k``;
3. the user vector averages the groups weighted ``r_g ** (m - k)``:
   ``u = sum_k r_g ** (m - k) * g_k / (number of groups)``;
4. the score of every item is ``alpha * u + (1 - alpha) * mean(u of the k most
   similar users)``, similarity = cosine of the user vectors, the user itself
   excluded.

How baskets are grouped follows the authors' public implementation
(``group_history_list`` in github.com/HaojiHu/TIFUKNN): with ``n >= m`` every
group gets ``n // m`` baskets and the ``n % m`` most recent groups one more, so
the older groups are the short ones and every basket is used. With ``n < m``
each basket is its own group and the groups are counted back from the most
recent one (its weight is ``r_g ** 0``); the public code counts them from the
oldest instead, which shrinks short histories by ``r_g ** (m - n)``. Two further
differences from that code, both on purpose: the within-group decay counts from
the group's last basket, as the paper defines it (the code counts from the
user's last basket), and the neighbours' vectors are averaged item by item (the
code's ``np.mean`` without ``axis=0`` turns them into one number for every item,
so neighbours never change the ranking). Neighbours are only users with a
positive similarity (at most ``k``), averaged over how many there are.

Everything is vectorised: each basket's weight comes from its rank in the
user's basket sequence with numpy operations, the user vectors are one sparse
matrix, and the neighbour averages are sparse matrix products over blocks of
users (memory bounded by the block, not by users x users).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recs_pipeline.ml.scoring import Ranked, top_n_sparse
from recs_pipeline.ranking.candidates import concat_ranked, rank_scores

_BLOCK_ENTRIES = 1 << 24  # query users x all users of one block's similarity product


@dataclass(frozen=True)
class TifuParams:
    """The paper's defaults (its Ta-Feng setting)."""

    n_neighbours: int = 300  # k
    within_decay: float = 0.9  # r_b
    group_decay: float = 0.7  # r_g
    alpha: float = 0.7
    n_groups: int = 7  # m


def basket_weights(
    position: np.ndarray, n_baskets: np.ndarray, n_groups: int, within_decay: float, group_decay: float
) -> np.ndarray:
    """Weight of each basket in its user's vector, from its ``position`` (0 = oldest)
    in a sequence of ``n_baskets`` (both per basket, same length).

    ``r_g ** (m - k) * r_b ** (n_k - j) / n_k / n_groups_of_user`` with the grouping
    described in the module docstring.
    """
    p = np.asarray(position, dtype=np.int64)
    n = np.asarray(n_baskets, dtype=np.int64)
    m = int(n_groups)
    if m < 1:
        raise ValueError("n_groups must be at least 1")
    base, extra = n // m, n % m  # n >= m: m - extra groups of `base`, then `extra` groups of base + 1
    short = m - extra
    in_short = p < short * base
    safe_base = np.maximum(base, 1)
    later = p - short * base
    group = np.where(in_short, p // safe_base, short + later // (base + 1))  # 0-based, m - 1 = newest
    offset = np.where(in_short, p % safe_base, later % (base + 1))  # position inside the group
    size = np.where(in_short, base, base + 1)
    # n < m: one basket per group, counted back from the newest group.
    few = n < m
    group = np.where(few, m - n + p, group)
    offset = np.where(few, 0, offset)
    size = np.where(few, 1, size)
    n_user_groups = np.minimum(n, m)
    return (
        np.power(group_decay, (m - 1 - group).astype(np.float64))
        * np.power(within_decay, (size - 1 - offset).astype(np.float64))
        / size
        / n_user_groups
    )


def user_vectors(
    events: pd.DataFrame,
    user_ids: pd.Index,
    item_ids: pd.Index,
    basket_col: str,
    ts_col: str | None = "event_ts",
    n_groups: int = TifuParams.n_groups,
    within_decay: float = TifuParams.within_decay,
    group_decay: float = TifuParams.group_decay,
) -> sp.csr_matrix:
    """The TIFU user vectors (users x items, sparse) of ``events`` (``user_id, item_id``,
    ``basket_col`` and ``ts_col``).

    A basket is the set of distinct items of one ``(user_id, basket_col)`` (multi-hot:
    quantities and repeated lines do not count); baskets are ordered by their first
    timestamp, ties (and everything when ``ts_col`` is None) by basket id. Events of
    users or items outside the index space are ignored.
    """
    rows = user_ids.get_indexer(events["user_id"])
    cols = item_ids.get_indexer(events["item_id"])
    known = (rows >= 0) & (cols >= 0)
    lines = pd.DataFrame(
        {
            "user": rows[known],
            "item": cols[known],
            "basket": pd.factorize(events[basket_col].to_numpy()[known], sort=True)[0],
        }
    )
    if ts_col is not None:
        lines["ts"] = events[ts_col].to_numpy()[known]
    else:
        lines["ts"] = lines["basket"]
    baskets = lines.groupby(["user", "basket"], sort=False)["ts"].min().reset_index()
    baskets = baskets.sort_values(["user", "ts", "basket"], kind="stable")
    by_user = baskets.groupby("user", sort=False)
    position = by_user.cumcount().to_numpy()  # 0 = the user's oldest basket
    n_baskets = by_user["basket"].transform("size").to_numpy()
    baskets["weight"] = basket_weights(position, n_baskets, n_groups, within_decay, group_decay)
    pairs = lines[["user", "basket", "item"]].drop_duplicates()
    weighted = pairs.merge(baskets[["user", "basket", "weight"]], on=["user", "basket"], how="inner")
    return sp.csr_matrix(
        (weighted["weight"].to_numpy(), (weighted["user"].to_numpy(), weighted["item"].to_numpy())),
        shape=(len(user_ids), len(item_ids)),
        dtype=np.float64,
    )


def _unit_rows(vectors: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(vectors.multiply(vectors).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    return sp.csr_matrix(sp.diags(scale) @ vectors)


def neighbour_average(
    vectors: sp.csr_matrix, users: np.ndarray, n_neighbours: int, unit: sp.csr_matrix | None = None
) -> sp.csr_matrix:
    """Mean vector of each query user's ``n_neighbours`` most similar users (cosine,
    positive similarity only, the user itself excluded); rows follow ``users``."""
    users = np.asarray(users)
    unit = _unit_rows(vectors) if unit is None else unit
    similarity = sp.csr_matrix(unit[users] @ unit.T)
    rows = np.repeat(np.arange(len(users)), np.diff(similarity.indptr))
    # A user is not their own neighbour. Zeroed and pruned in place: rebuilding the
    # matrix from coordinates would sort every block's millions of entries again.
    similarity.data[(similarity.indices == users[rows]) | (similarity.data <= 0)] = 0.0
    similarity.eliminate_zeros()
    best = top_n_sparse(similarity, np.arange(len(users)), n_neighbours)  # ties to the lower user index
    counts = np.bincount(best.user, minlength=len(users)).astype(np.float64)
    weights = sp.csr_matrix((1.0 / counts[best.user], (best.user, best.item)), shape=(len(users), vectors.shape[0]))
    return sp.csr_matrix(weights @ vectors)


def tifu_scores(
    vectors: sp.csr_matrix,
    users: np.ndarray,
    n_neighbours: int = TifuParams.n_neighbours,
    alpha: float = TifuParams.alpha,
    unit: sp.csr_matrix | None = None,
) -> sp.csr_matrix:
    """``alpha * u + (1 - alpha) * neighbour mean`` for the query ``users`` (sparse, rows follow ``users``)."""
    users = np.asarray(users)
    own = vectors[users]
    if alpha >= 1.0:
        return sp.csr_matrix(own)
    return sp.csr_matrix(alpha * own + (1.0 - alpha) * neighbour_average(vectors, users, n_neighbours, unit))


def tifu_knn_candidates(
    vectors: sp.csr_matrix,
    users: np.ndarray,
    n: int,
    n_neighbours: int = TifuParams.n_neighbours,
    alpha: float = TifuParams.alpha,
    exclude: sp.spmatrix | None = None,
    item_mask: np.ndarray | None = None,
    block_size: int | None = None,
) -> Ranked:
    """Top-``n`` TIFU-KNN candidates of ``users`` (rows of ``vectors``, from :func:`user_vectors`).

    Neighbours come from every row of ``vectors``. Scored in blocks of ``block_size``
    query users (default: at most 16M similarity entries per block). ``exclude``'s
    non-zeros (users x items) are never returned: pass the training matrix for an
    explore-only list. Only items in the user's or a neighbour's history are candidates.
    """
    users = np.asarray(users)
    vectors = sp.csr_matrix(vectors)
    unit = _unit_rows(vectors)
    block_size = block_size or max(1, min(4096, _BLOCK_ENTRIES // max(vectors.shape[0], 1)))
    parts = []
    for start in range(0, len(users), block_size):
        block = users[start : start + block_size]
        scores = tifu_scores(vectors, block, n_neighbours, alpha, unit)
        parts.append(rank_scores(scores, block, n, exclude, item_mask))
    return concat_ranked(parts)
