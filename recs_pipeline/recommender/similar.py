"""Similar items by the text of the catalogue: the neighbours of items the model cannot
place yet.

``serving.similar_items`` ranks neighbours by the cosine of LightFM item
representations. An item no one has interacted with has only its content tokens
there (category, brand, price band, a few words), so its neighbours are coarse. Its
WordLlama text vector (``recs_pipeline.text.embeddings``) places it at once: this
module ranks, for chosen query items, the nearest candidate items by the cosine of
their text vectors, with the same batched scoring as every other top-N list
(``recs_pipeline.ml.scoring.rank_score_batches``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recs_pipeline.ml.scoring import DEFAULT_BATCH_SIZE, rank_score_batches

SIMILAR_COLUMNS = ["item_id", "rank", "similar_item_id", "score"]


def text_similar_items(
    item_vectors: np.ndarray,
    item_ids,
    query_items_mask: np.ndarray | None = None,
    candidate_mask: np.ndarray | None = None,
    n: int = 10,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> pd.DataFrame:
    """``item_id, rank, similar_item_id, score``: for each query item, the ``n`` nearest
    candidate items by the cosine of their text vectors, best first, ranks 1..n.

    ``item_vectors`` are L2-normalised rows (``embed_texts``), aligned with ``item_ids``.
    ``query_items_mask`` (default: every item) selects the items to list neighbours
    for, e.g. items without interactions; ``candidate_mask`` (default: every item) the
    items that may be listed, e.g. in stock. An item is never its own neighbour, and
    items without text (zero vectors) are neither queried nor listed: their cosine
    means nothing. Ties go to the item earlier in ``item_ids``. Scores are computed a
    batch of query items at a time (``batch_size x n_items`` floats in memory).
    """
    vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
    ids = pd.Index(item_ids)
    n_items = len(vectors)
    if len(ids) != n_items:
        raise ValueError(f"{len(ids)} item ids but {n_items} vectors")
    has_text = np.abs(vectors).sum(axis=1) > 0 if n_items else np.zeros(0, dtype=bool)
    queries = has_text if query_items_mask is None else has_text & np.asarray(query_items_mask, dtype=bool)
    candidates = has_text if candidate_mask is None else has_text & np.asarray(candidate_mask, dtype=bool)
    query_rows = np.flatnonzero(queries)
    vectors_t = np.ascontiguousarray(vectors.T)

    def batches():
        for start in range(0, len(query_rows), batch_size):
            batch = query_rows[start : start + batch_size]
            yield batch, vectors[batch] @ vectors_t

    itself = sp.identity(n_items, dtype=np.float32, format="csr")
    ranked = rank_score_batches(batches(), max(int(n), 0), exclude=itself, item_mask=candidates)
    return pd.DataFrame(
        {
            "item_id": ids[ranked.user].to_numpy(),
            "rank": ranked.rank.astype(np.int64),
            "similar_item_id": ids[ranked.item].to_numpy(),
            "score": ranked.score.astype(np.float64),
        },
        columns=SIMILAR_COLUMNS,
    )


def with_text_neighbours(similar: pd.DataFrame, text_similar: pd.DataFrame) -> pd.DataFrame:
    """``similar`` (``item_id, rank, similar_item_id, score``, e.g. from the model) with the
    lists of the items in ``text_similar`` replaced by their text neighbours; sorted by
    item and rank. Extra columns of ``similar`` are dropped."""
    kept = similar.loc[~similar["item_id"].isin(text_similar["item_id"]), SIMILAR_COLUMNS]
    combined = pd.concat([kept, text_similar[SIMILAR_COLUMNS]], ignore_index=True)
    return combined.sort_values(["item_id", "rank"], kind="stable").reset_index(drop=True)
