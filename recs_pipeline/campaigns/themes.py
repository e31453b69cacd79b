"""Catalogue themes from text embeddings, named from their own words, and each user's
favourite themes.

A theme is a k-means cluster of the items' (WordLlama) text vectors on the unit sphere,
so items are grouped by cosine. Its name is the two or three words that best tell its
items apart from the rest of the catalogue, e.g. "Candle · Holder · Glass".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recs_pipeline.campaigns._frames import utc_naive

# Function words only: product words ("set", "gift") are left to the "common to most
# themes" rule, which knows this catalogue.
STOPWORDS = frozenset(
    """about above after again all also and any are because been before being below between both but
    can could did does doing down during each few for from further had has have having her here hers
    him his how into its itself just more most myself nor not now off once only other our ours out over
    own same she should some such than that the their theirs them then there these they this those
    through too under until very was were what when where which while who whom why will with would
    you your yours""".split()
)
TOKEN_PATTERN = r"(?u)\b[^\W\d_]{3,}\b"  # alphabetic tokens of 3+ letters
NAME_SEPARATOR = " · "
# A word present in at least this share of a theme's items counts as "in" that theme;
# one that is in more than half the themes says nothing about any of them.
COMMON_WORD_ITEM_SHARE = 0.2
# The third word of a name is kept only when it scores at least this share of the first
# (two words always, when there are two): a weak third word makes a name noisier.
THIRD_WORD_MIN_SCORE = 0.5
TOP_WORDS = 10  # words listed per theme in Themes.themes.top_words
DEFAULT_N_INIT = 4


@dataclass(frozen=True)
class Themes:
    """The fitted themes.

    ``item_themes``: item_id, theme_id, theme_name, similarity (cosine of the item's
    vector to its theme's centroid), one row per item with text (items whose vector is
    zero have no theme and no row). ``themes``: theme_id, theme_name, n_items,
    top_words (comma-separated, best first). ``centroids``: one unit vector per theme,
    row ``theme_id``. Theme ids run from 0, largest theme first.
    """

    item_themes: pd.DataFrame
    themes: pd.DataFrame
    centroids: np.ndarray


def _normalise(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return np.divide(matrix, norms, out=np.zeros_like(matrix), where=norms > 0)


def _empty_themes(item_ids, dim: int) -> Themes:
    ids = pd.Series(np.asarray(item_ids)[:0])
    return Themes(
        item_themes=pd.DataFrame({"item_id": ids, "theme_id": pd.Series([], dtype=np.int64),
                                  "theme_name": pd.Series([], dtype=object), "similarity": pd.Series([], dtype=float)}),
        themes=pd.DataFrame({"theme_id": pd.Series([], dtype=np.int64), "theme_name": pd.Series([], dtype=object),
                             "n_items": pd.Series([], dtype=np.int64), "top_words": pd.Series([], dtype=object)}),
        centroids=np.zeros((0, dim), dtype=np.float32),
    )


def word_scores(texts: Sequence[str], labels: np.ndarray, weights: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """How well each word characterises each theme: ``(scores k x words, words)``.

    The score is a TF-IDF over themes: the weighted share of the theme's items whose text
    has the word (each item weighted by ``weights``, so items typical of the theme count
    more than stragglers at its edge), times a smoothed inverse of the number of themes
    the word appears in. Words common to most themes score 0.
    """
    from sklearn.feature_extraction.text import CountVectorizer

    vectorizer = CountVectorizer(lowercase=True, token_pattern=TOKEN_PATTERN, stop_words=sorted(STOPWORDS), binary=True)
    try:
        present = vectorizer.fit_transform([str(t) if t is not None else "" for t in texts]).tocsr()
    except ValueError:  # no word at all in any text
        return np.zeros((k, 0)), np.array([], dtype=object)
    words = vectorizer.get_feature_names_out().astype(object)
    membership = sp.csr_matrix((np.ones(len(labels)), (labels, np.arange(len(labels)))), shape=(k, len(labels)))
    weighted = membership @ sp.diags(weights) @ present  # k x words
    term_share = np.asarray(weighted.todense()) / np.maximum(np.asarray(membership @ weights).reshape(-1, 1), 1e-12)
    item_share = np.asarray((membership @ present).todense()) / np.maximum(
        np.asarray(membership.sum(axis=1)).reshape(-1, 1), 1
    )
    n_themes_with_word = (item_share > 0).sum(axis=0)
    idf = np.log((1 + k) / (1 + n_themes_with_word)) + 1
    scores = term_share * idf
    if k >= 2:
        common = (item_share >= COMMON_WORD_ITEM_SHARE).sum(axis=0) > k / 2
        scores[:, common] = 0.0
    return scores, words


def _names(scores: np.ndarray, words: np.ndarray, n_words: int) -> tuple[list[str], list[str]]:
    k = scores.shape[0]
    if scores.shape[1] == 0:
        return [f"Theme {t + 1}" for t in range(k)], ["" for _ in range(k)]
    # Stable sort on the negated scores: ties go to the alphabetically first word
    # (CountVectorizer's vocabulary is sorted), so names are reproducible.
    order = np.argsort(-scores, axis=1, kind="stable")[:, :TOP_WORDS]
    ranked = np.take_along_axis(scores, order, axis=1)
    keep = (ranked > 0) & (
        (np.arange(order.shape[1]) < min(2, n_words)) | (ranked >= THIRD_WORD_MIN_SCORE * ranked[:, :1])
    )
    keep[:, n_words:] = False
    names, top, used = [], [], set()
    for theme in range(k):  # one string join per theme, not per item
        ranked_words = list(words[order[theme][ranked[theme] > 0]])
        chosen = list(words[order[theme][keep[theme]]])
        # Two themes may share their best words; the smaller one (a later id) takes
        # its next words until its name is its own.
        extra = iter(ranked_words[len(chosen):])
        name = NAME_SEPARATOR.join(w.title() for w in chosen) if chosen else f"Theme {theme + 1}"
        while name in used:
            word = next(extra, None)
            name = name + NAME_SEPARATOR + word.title() if word else f"{name} ({theme + 1})"
        used.add(name)
        names.append(name)
        top.append(", ".join(ranked_words))
    return names, top


def fit_themes(
    item_ids,
    vectors: np.ndarray,
    texts: Sequence[str],
    k: int,
    seed: int,
    n_init: int = DEFAULT_N_INIT,
    n_words: int = 3,
) -> Themes:
    """``k`` themes of the catalogue by k-means on the L2-normalised text ``vectors``
    (one row per item of ``item_ids``, aligned with ``texts``), each named after its
    most characteristic words (see :func:`word_scores`). ``k`` is capped at the number
    of distinct non-zero vectors. Same inputs and seed, same themes, ids and names."""
    from sklearn.cluster import KMeans

    ids = np.asarray(item_ids)
    vectors = np.asarray(vectors, dtype=np.float32)
    if not (len(ids) == len(vectors) == len(texts)):
        raise ValueError(f"{len(ids)} item ids, {len(vectors)} vectors and {len(texts)} texts")
    if pd.Series(ids).duplicated().any():
        raise ValueError("item_ids must be unique")
    has_text = np.abs(vectors).sum(axis=1) > 0
    unit = _normalise(vectors[has_text])
    k = min(int(k), len(np.unique(unit, axis=0)) if len(unit) else 0)
    if k <= 0:
        return _empty_themes(ids, vectors.shape[1])
    found = KMeans(n_clusters=k, n_init=n_init, random_state=seed).fit(unit).labels_
    # Ids by size, largest first (ties: the theme of the earlier item), so theme 0 is
    # always the biggest whatever label k-means happened to give it.
    sizes = np.bincount(found, minlength=k)
    first_item = np.full(k, len(found))
    np.minimum.at(first_item, found, np.arange(len(found)))
    relabel = np.empty(k, dtype=np.int64)
    relabel[np.lexsort((first_item, -sizes))] = np.arange(k)
    labels = relabel[found]
    centroids = _normalise(np.asarray(sp.csr_matrix(
        (np.ones(len(labels)), (labels, np.arange(len(labels)))), shape=(k, len(labels))
    ) @ unit, dtype=np.float32))
    similarity = np.einsum("ij,ij->i", unit, centroids[labels])

    typicality = np.clip(similarity, 0.0, 1.0) ** 2 + 1e-6
    scores, words = word_scores([texts[i] for i in np.flatnonzero(has_text)], labels, typicality, k)
    names, top_words = _names(scores, words, n_words)
    names = np.asarray(names, dtype=object)
    item_themes = pd.DataFrame(
        {"item_id": ids[has_text], "theme_id": labels, "theme_name": names[labels], "similarity": similarity.astype(float)}
    )
    themes = pd.DataFrame(
        {"theme_id": np.arange(k, dtype=np.int64), "theme_name": names,
         "n_items": np.bincount(labels, minlength=k).astype(np.int64), "top_words": np.asarray(top_words, dtype=object)}
    )
    return Themes(item_themes=item_themes, themes=themes, centroids=centroids)


def user_themes(
    purchases: pd.DataFrame,
    item_themes: pd.DataFrame,
    top: int = 3,
    half_life_days: float | None = None,
    now: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """Each user's ``top`` themes from their purchases: ``user_id, rank, theme_id,
    theme_name, share``.

    A purchase counts its ``weight`` (1 without that column), halved every
    ``half_life_days`` before ``now`` when a half-life is given (``now`` defaults to the
    newest ``event_ts``; later purchases count fully). ``share`` is the theme's part of
    the user's weight over items that have a theme, so a user's shares sum to at most 1.
    Ties go to the lower theme id.
    """
    columns = ["user_id", "rank", "theme_id", "theme_name", "share"]
    frame = purchases[["user_id", "item_id"]].copy()
    frame["weight"] = purchases["weight"].astype(float) if "weight" in purchases else 1.0
    if half_life_days is not None:
        if "event_ts" not in purchases:
            raise ValueError("a half-life needs purchases.event_ts")
        ts = utc_naive(purchases["event_ts"])
        now = ts.max() if now is None else utc_naive(now)
        age_days = ((now - ts).dt.total_seconds() / 86400.0).clip(lower=0.0)
        frame["weight"] = frame["weight"] * np.power(0.5, age_days.to_numpy() / float(half_life_days))
    frame = frame[frame["weight"] > 0].merge(item_themes[["item_id", "theme_id", "theme_name"]], on="item_id")
    if frame.empty:
        return pd.DataFrame({c: pd.Series([], dtype=t) for c, t in
                             zip(columns, (object, np.int64, np.int64, object, float))})
    per_theme = frame.groupby(["user_id", "theme_id"], as_index=False, sort=False).agg(
        weight=("weight", "sum"), theme_name=("theme_name", "first")
    )
    per_theme["share"] = per_theme["weight"] / per_theme.groupby("user_id")["weight"].transform("sum")
    per_theme = per_theme.sort_values(["user_id", "weight", "theme_id"], ascending=[True, False, True], kind="stable")
    per_theme["rank"] = per_theme.groupby("user_id").cumcount().astype(np.int64) + 1
    return per_theme[per_theme["rank"] <= top][columns].reset_index(drop=True)
