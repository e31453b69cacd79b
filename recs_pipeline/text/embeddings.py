"""WordLlama embeddings of the catalogue's text, and what is computed from them.

WordLlama (``wordllama`` on PyPI) is a token-embedding model distilled from LLaMA 2's
token embeddings: a text's vector is the pooled embeddings of its tokens, 256
dimensions, 16 MB of weights shipped inside the package. It runs on the CPU in
well under a second for tens of thousands of descriptions and never downloads
anything here: its default ``load()`` looks for the tokenizer in the wrong folder
and then tries the internet, so it is loaded from the package's own folder with
downloads disabled.

Every vector is L2-normalised, so a dot product is a cosine similarity, and every
computation over users or items is a matrix product in batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recs_pipeline.ml.scoring import DEFAULT_BATCH_SIZE, Ranked, rank_score_batches

EMBEDDING_DIM = 256
PAIR_CHUNK = 65_536  # pairs per chunk of pair_similarity


@lru_cache(maxsize=1)
def _model():
    import wordllama
    from wordllama import WordLlama

    return WordLlama.load(cache_dir=Path(wordllama.__file__).parent, disable_download=True, dim=EMBEDDING_DIM)


def item_texts(titles: pd.Series, descriptions: pd.Series) -> list[str]:
    """The text embedded for each item: its title, and its description when that says more."""
    title = titles.fillna("").astype(str).str.strip()
    description = descriptions.fillna("").astype(str).str.strip()
    same = description.str.lower() == title.str.lower()
    return (title.where(same | (description == ""), title + ". " + description)).str.lower().tolist()


def embed_texts(texts: Sequence[str]) -> np.ndarray:
    """One L2-normalised float32 vector per text (zeros for an empty text)."""
    vectors = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
    present = np.flatnonzero([bool(str(t).strip()) for t in texts])
    if len(present):
        vectors[present] = np.asarray(_model().embed([texts[i] for i in present], norm=True), dtype=np.float32)
    return vectors


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def user_profiles(history: sp.csr_matrix, item_vectors: np.ndarray) -> np.ndarray:
    """Each user's text profile: the weighted mean of the vectors of the items in their
    ``history`` row (users x items, e.g. recency-decayed purchase counts), normalised."""
    return _normalise(np.asarray(history @ item_vectors, dtype=np.float32))


def text_candidates(
    profiles: np.ndarray,
    item_vectors: np.ndarray,
    users: np.ndarray,
    n: int,
    exclude: sp.csr_matrix | None = None,
    item_mask: np.ndarray | None = None,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Ranked:
    """The ``n`` items whose text is closest (cosine) to each user's profile. Users with
    no history (a zero profile) get no candidates from this source."""
    active = users[np.abs(profiles[users]).sum(axis=1) > 0]

    def batches():
        for start in range(0, len(active), batch_size):
            batch = active[start : start + batch_size]
            yield batch, profiles[batch] @ item_vectors.T

    return rank_score_batches(batches(), n, exclude=exclude, item_mask=item_mask)


def pair_similarity(profiles: np.ndarray, item_vectors: np.ndarray, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """Cosine of item ``items[k]`` to the profile of user ``users[k]``, for each k (in
    chunks: the two gathered matrices of a million pairs would take 2 GB)."""
    out = np.empty(len(users), dtype=np.float32)
    for start in range(0, len(users), PAIR_CHUNK):
        part = slice(start, start + PAIR_CHUNK)
        out[part] = np.einsum("ij,ij->i", profiles[users[part]], item_vectors[items[part]])
    return out


# k-means++ picks its first centres from this many points per theme (a sample by the
# seed), then Lloyd's iterations run on every item: k-means++ over all 50,000 items of
# the L shop and 200 themes took 140 s (scipy) or 19 s (scikit-learn), the sample 3 s,
# for a within-theme spread 1% above the full k-means++ one.
KMEANS_INIT_POINTS_PER_THEME = 20


def text_clusters(item_vectors: np.ndarray, k: int, seed: int = 42) -> np.ndarray:
    """A theme (0..k-1) per item by k-means on the text vectors (spherical: on the unit
    sphere, so by cosine); items without text get -1. Same vectors and seed, same themes."""
    import warnings

    from sklearn.cluster import KMeans, kmeans_plusplus
    from sklearn.exceptions import ConvergenceWarning

    has_text = np.abs(item_vectors).sum(axis=1) > 0
    labels = np.full(len(item_vectors), -1, dtype=np.int64)
    k = min(k, int(has_text.sum()))
    if k == 0:
        return labels
    points = np.ascontiguousarray(item_vectors[has_text], dtype=np.float64)
    rng = np.random.default_rng(seed)
    n_init_points = min(len(points), KMEANS_INIT_POINTS_PER_THEME * k)
    sample = points[np.sort(rng.choice(len(points), n_init_points, replace=False))]
    with warnings.catch_warnings():
        # Fewer distinct texts than themes (a tiny catalogue): some themes stay empty.
        warnings.simplefilter("ignore", ConvergenceWarning)
        centres, _ = kmeans_plusplus(sample, k, random_state=seed)
        labels[has_text] = KMeans(n_clusters=k, init=centres, n_init=1, random_state=seed).fit_predict(points)
    return labels


# --- Text themes as LightFM item features ----------------------------------------------

THEME_SEED = 42
THEME_TOKEN_PREFIX = "text_theme:"
# One token summarising the whole text, weighted like the category token (1.0; a
# description word weighs 0.5): item feature rows are normalised to sum 1, so this
# fixes the theme's share of an item's representation next to its other tokens.
THEME_TOKEN_WEIGHT = 1.0
MIN_THEMES, MAX_THEMES = 2, 200


def default_n_themes(n_items_with_text: int) -> int:
    """How many text themes a catalogue gets: about ``sqrt(n)``, between 2 and 200.

    Why sqrt: a theme is a LightFM feature token, useful only when it is shared by
    enough items for its embedding to be learned from their interactions, and
    informative only when it is narrower than the catalogue. ``sqrt(n)`` themes of
    ``sqrt(n)`` items each balance the two as the catalogue grows (150 items: 12
    themes of ~12; 4,000: 63 of ~63; 40,000: 200 of ~200). The cap keeps k-means
    (items x k x 256 per iteration) to seconds on the largest catalogues, and the
    categories already give the coarse grouping.
    """
    if n_items_with_text <= 0:
        return 0
    k = int(round(float(np.sqrt(n_items_with_text))))
    return int(min(max(k, MIN_THEMES), MAX_THEMES, n_items_with_text))


def text_themes(item_vectors: np.ndarray, k: int | None = None, seed: int = THEME_SEED) -> np.ndarray:
    """A theme per item (-1 without text), ``k`` themes (default :func:`default_n_themes`
    of the items with text). Same vectors, ``k`` and seed: same themes."""
    has_text = np.abs(item_vectors).sum(axis=1) > 0
    if k is None:
        k = default_n_themes(int(has_text.sum()))
    return text_clusters(item_vectors, k, seed=seed)


def theme_tokens(item_ids, themes: np.ndarray, weight: float = THEME_TOKEN_WEIGHT) -> pd.DataFrame:
    """``item_id, feature, weight`` rows for LightFM item features: one ``text_theme:<k>``
    token per item with a theme; items with theme -1 (no text) get none. Same columns
    as ``features.item_feature_tokens``, ready to concatenate to it."""
    ids = np.asarray(item_ids, dtype=object)
    themes = np.asarray(themes)
    if len(ids) != len(themes):
        raise ValueError(f"{len(ids)} item ids but {len(themes)} themes")
    keep = themes >= 0
    return pd.DataFrame(
        {
            "item_id": ids[keep],
            "feature": (THEME_TOKEN_PREFIX + pd.Series(themes[keep].astype(np.int64)).astype(str)).to_numpy(object),
            "weight": np.full(int(keep.sum()), float(weight)),
        }
    )


def theme_summary(themes: np.ndarray, titles: pd.Series, top: int = 10, examples: int = 3) -> pd.DataFrame:
    """The ``top`` largest themes (ties: lower theme first): ``theme, n_items, examples``
    with the first ``examples`` titles of the theme in item order."""
    frame = pd.DataFrame({"theme": np.asarray(themes), "title": titles.fillna("").astype(str).to_numpy()})
    frame = frame[frame["theme"] >= 0]
    grouped = frame.groupby("theme", sort=True)["title"]
    summary = pd.DataFrame(
        {"n_items": grouped.size(), "examples": grouped.agg(lambda t: "; ".join(t.head(examples)))}
    ).reset_index()
    return summary.sort_values(["n_items", "theme"], ascending=[False, True], kind="stable").head(top).reset_index(drop=True)
