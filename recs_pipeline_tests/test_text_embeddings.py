"""WordLlama embeddings, loaded offline from the package, and what is built from them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recs_pipeline.text.embeddings import (
    embed_texts,
    item_texts,
    pair_similarity,
    text_candidates,
    text_clusters,
    user_profiles,
)

CATALOGUE = pd.DataFrame({
    "title": ["WHITE HANGING HEART T-LIGHT HOLDER", "RED HEART CANDLE HOLDER", "SET OF 6 SPICE TINS",
              "SPICE JARS SET", "GLASS STAR LANTERN", None],
    "description": ["WHITE HANGING HEART T-LIGHT HOLDER", "a candle holder with hearts", "", None, None, None],
})  # fmt: skip


def test_descriptions_embed_offline_and_similar_texts_are_close():
    texts = item_texts(CATALOGUE["title"], CATALOGUE["description"])
    assert texts[0] == "white hanging heart t-light holder"  # a description equal to the title adds nothing
    assert texts[1] == "red heart candle holder. a candle holder with hearts"
    vectors = embed_texts(texts)
    assert vectors.shape == (6, 256) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors[:5], axis=1), 1, atol=1e-4) and not vectors[5].any()
    cosine = vectors @ vectors.T
    # The two heart holders are closer to each other than to the spice tins; so are the spice containers.
    assert cosine[0, 1] > cosine[0, 2] + 0.2 and cosine[2, 3] > cosine[2, 0]
    assert np.array_equal(vectors, embed_texts(texts))  # repeatable


def test_text_candidates_follow_the_users_history():
    e = np.eye(4, dtype=np.float32)
    vectors = np.stack([e[0], 0.8 * e[0] + 0.6 * e[1], e[1], e[2], 0.6 * e[2] + 0.8 * e[3]])
    history = sp.csr_matrix(np.array([[1, 0, 0, 0, 0], [0, 0, 0, 2, 0], [0, 0, 0, 0, 0]], dtype=np.float32))
    profiles = user_profiles(history, vectors)
    assert np.allclose(profiles[:2], [e[0], e[2]]) and not profiles[2].any()
    frame = text_candidates(profiles, vectors, np.arange(3), n=2, exclude=history).to_frame()
    # user 0 bought item 0: the nearest other text is item 1 (cosine 0.8); user 1 bought
    # item 3: item 4 (0.6); user 2 has no history, so no text candidates.
    assert frame.groupby("user_id").item_id.first().to_dict() == {0: 1, 1: 4}
    assert frame[frame.user_id == 0].score.iloc[0] == np.float32(0.8)
    assert np.allclose(pair_similarity(profiles, vectors, np.array([0, 1]), np.array([1, 4])), [0.8, 0.6])


def test_text_clusters_group_the_catalogue_repeatably():
    vectors = embed_texts(item_texts(CATALOGUE["title"], CATALOGUE["description"]))
    labels = text_clusters(vectors, k=2, seed=1)
    assert labels[5] == -1 and set(labels[:5]) <= {0, 1}
    assert labels[0] == labels[1]  # the heart holders share a theme
    assert np.array_equal(labels, text_clusters(vectors, k=2, seed=1))
