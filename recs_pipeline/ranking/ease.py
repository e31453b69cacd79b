"""EASE: a closed-form linear item-item model (Steck, "Embarrassingly Shallow
Autoencoders for Sparse Data", WWW 2019).

The item weights ``B`` minimise ``||X - X B||^2 + lambda ||B||^2`` subject to a
zero diagonal (an item may not predict itself), which has the closed form

    P = (X^T X + lambda I)^-1,    B = I - P diag(1 / diag P)

i.e. ``B_ij = -P_ij / P_jj`` off the diagonal and 0 on it. A user's scores are
``x_u B``. One dense items x items inverse: cheap up to ~10-20k items (MovieLens
100K has 1,682, Online Retail ~3,600), not meant for a 50k catalogue.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from recs_pipeline.ml.scoring import DEFAULT_BATCH_SIZE, Ranked
from recs_pipeline.ranking.candidates import concat_ranked, rank_scores

DEFAULT_LAMBDA = 500.0  # Steck's order of magnitude for MovieLens-sized data


def ease_weights(interactions: sp.spmatrix, lam: float = DEFAULT_LAMBDA) -> np.ndarray:
    """The EASE item-item matrix ``B`` (items x items, dense, zero diagonal)."""
    x = sp.csr_matrix(interactions, dtype=np.float64)
    gram = (x.T @ x).toarray()
    gram[np.diag_indices_from(gram)] += lam
    precision = np.linalg.inv(gram)
    weights = -precision / np.diag(precision)[None, :]
    np.fill_diagonal(weights, 0.0)
    return weights


def ease_candidates(
    history: sp.spmatrix,
    weights: np.ndarray,
    users: np.ndarray,
    n: int,
    exclude: sp.spmatrix | None = None,
    item_mask: np.ndarray | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Ranked:
    """Top-``n`` items of ``history[users] @ weights`` (dense scores, in user batches).

    ``exclude``'s non-zeros (users x items) are never returned: pass the training
    matrix for lists of new items only.
    """
    users = np.asarray(users)
    history = sp.csr_matrix(history, dtype=np.float64)
    parts = []
    for start in range(0, len(users), batch_size):
        batch = users[start : start + batch_size]
        parts.append(rank_scores(np.asarray(history[batch] @ weights), batch, n, exclude, item_mask))
    return concat_ranked(parts)
