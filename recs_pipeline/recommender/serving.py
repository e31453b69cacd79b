"""Serving tables: every user's top-N with the strategy and a reason, and similar items.

Which path produced a row is recorded in ``strategy``. A shopper with history gets
the ranking stage's list (recs_pipeline.ranking) when the ranker serves; each row's
strategy is then the generator that proposed the item (the one ranking it highest):

- ``buy_again``: the shopper's own likely re-purchase (recency-weighted frequency);
- ``tifu_knn``: TIFU-KNN, the shopper's and similar shoppers' basket history;
- ``item_knn``: bought together with the shopper's items;
- ``segment_popular``: a best seller of the shopper's country this month;
- ``text``: an item whose description is close to what the shopper bought;
- ``model``: a LightFM discovery for a shopper with history;
- ``new_item_content``: a discovery of an item nobody has interacted with yet, scored
  through its content features (category, brand, price band, description words);
- ``cold_start_features``: a shopper without history, scored through their profile
  features (country, age band, gender);
- ``popular``: a shopper we know nothing about: the most popular items of the last 30 days.

When the ranker is refused (or turned off), known shoppers get the slot blend of
``buy_again`` and ``model`` rows instead, as before the ranking stage existed.

Everything here is batched matrix work and joins; there is no loop over users.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from recs_pipeline.ml import baselines, blend, scoring
from recs_pipeline.ml.matrices import (
    Mappings,
    TrainingData,
    build_feature_matrix,
    build_interaction_matrices,
    cold_feature_matrix,
)
from recs_pipeline.recommender.evaluation import purchased_matrix

SIMILARITY_REASON_THRESHOLD = 0.5
HISTORY_ITEMS_FOR_REASONS = 20
REASON_CHUNK_ROWS = 65_536
OUTPUT_COLUMNS = ["user_id", "rank", "item_id", "score", "strategy", "reason"]


def training_data_for(
    mappings: Mappings,
    interactions: pd.DataFrame,
    user_tokens: pd.DataFrame,
    item_tokens: pd.DataFrame,
    identity_weights: tuple[float, float] = (1.0, 1.0),
) -> TrainingData:
    """Today's interactions and features in the index space of a (possibly older) model.

    Users and items the model has never seen are left out here; they are served by
    the cold-start paths.
    """
    binary, weights = build_interaction_matrices(interactions, mappings)
    user_features = build_feature_matrix(
        mappings.user_ids, user_tokens, mappings.user_tokens, "user_id", mappings.user_identity, identity_weights[0]
    )
    item_features = build_feature_matrix(
        mappings.item_ids, item_tokens, mappings.item_tokens, "item_id", mappings.item_identity, identity_weights[1]
    )
    return TrainingData(mappings, binary, weights, user_features, item_features)


def _history_similarity_reasons(
    recs: pd.DataFrame, data: TrainingData, item_embeddings: np.ndarray, titles: pd.Series
) -> pd.Series:
    """For each model row, the title of the user's history item most similar to it (or NaN)."""
    if recs.empty:
        return pd.Series([], dtype=object)
    maps = data.mappings
    weights = data.weights.tocsr()
    users = maps.user_codes(recs["user_id"].unique())
    # The user's strongest history items, as a (users x H) index matrix (-1 = none).
    sub = weights[users]
    sub.data[sub.data <= 0] = 0.0
    sub.eliminate_zeros()
    h = HISTORY_ITEMS_FOR_REASONS
    history = np.full((len(users), h), -1, dtype=np.int64)
    strongest = scoring.top_n_sparse(sub, np.arange(len(users)), h)
    history[strongest.user, strongest.rank - 1] = strongest.item
    norms = np.linalg.norm(item_embeddings, axis=1, keepdims=True)
    unit = (item_embeddings / np.where(norms > 0, norms, 1.0)).astype(np.float32)
    row_of_user = pd.Series(np.arange(len(users)), index=maps.user_ids[users])
    rec_rows = row_of_user.reindex(recs["user_id"]).to_numpy()
    rec_items = maps.item_codes(recs["item_id"])
    hist = history[rec_rows]  # (n_recs, H)
    # In chunks: the (recs x H x dimensions) gather is ~8 GB for 200k users at once.
    sims = np.empty(hist.shape, dtype=np.float32)
    for start in range(0, len(hist), REASON_CHUNK_ROWS):
        part = slice(start, start + REASON_CHUNK_ROWS)
        sims[part] = np.einsum("rd,rhd->rh", unit[rec_items[part]], unit[np.maximum(hist[part], 0)])
    sims[hist < 0] = -np.inf
    sims[hist == rec_items[:, None]] = -np.inf  # never "similar to itself"
    best = sims.argmax(axis=1)
    best_sim = sims[np.arange(len(sims)), best]
    best_item = hist[np.arange(len(hist)), best]
    names = titles.reindex(maps.item_ids[np.maximum(best_item, 0)]).to_numpy()
    return pd.Series(np.where(best_sim >= SIMILARITY_REASON_THRESHOLD, names, None), index=recs.index)


def known_reasons(known: pd.DataFrame, similar_to: pd.Series, category: np.ndarray, country: np.ndarray) -> np.ndarray:
    """A human sentence per row of a known user's list (``known``: strategy, and the
    user's purchase ``size`` and last ``max`` of the item, NaN when never bought)."""
    strategy = known["strategy"].to_numpy()
    bought = known["size"].fillna(0).to_numpy() > 0
    category = pd.Series(category).fillna("items like these").astype(str).to_numpy()
    where = pd.Series(country).fillna("the shop").astype(str).to_numpy()
    bought_text = (
        "you bought this " + known["size"].fillna(0).astype(int).astype(str) + " time(s), last on "
        + pd.to_datetime(known["max"]).dt.strftime("%Y-%m-%d").fillna("?")
    ).to_numpy()  # fmt: skip
    return np.select(
        [
            bought,
            similar_to.notna().to_numpy(),
            strategy == "new_item_content",
            strategy == "tifu_knn",
            strategy == "item_knn",
            strategy == "segment_popular",
            strategy == "text",
        ],
        [
            bought_text,
            ("similar to " + similar_to.fillna("").astype(str) + " you showed interest in").to_numpy(),
            "new in " + pd.Series(category).str.replace("items like these", "the shop").to_numpy() + ", matches your taste",
            np.full(len(known), "shoppers who buy what you buy also buy this"),
            np.full(len(known), "often bought together with what you bought"),
            "popular in " + where + " this month",
            np.full(len(known), "its description is close to what you bought"),
        ],
        default="matches your interest in " + category,
    )


def recommend_all(
    data: TrainingData,
    model,
    purchases: pd.DataFrame,
    items: pd.DataFrame,
    users: pd.DataFrame,
    repeat_share: float,
    n: int,
    now: pd.Timestamp,
    user_tokens: pd.DataFrame | None = None,
    ranked: pd.DataFrame | None = None,
    map_batches=None,
) -> pd.DataFrame:
    """Top-``n`` rows for every user in ``users`` (user_id, country, age_band).

    ``user_tokens`` (user_id, feature, weight) lets users the model has never seen
    (signed up after it was trained) be scored through their profile features.

    ``items`` has item_id, title, category, in_stock; ``purchases`` user_id, item_id,
    event_ts (all history). Out-of-stock items are never recommended.

    ``ranked``: the ranking stage's lists (user_id, item_id, score, rank, generator),
    served instead of the slot blend to the users it covers; ``strategy`` is then the
    generator that proposed the item.

    ``map_batches``: the engine's, to score the users where the engine computes (on
    Spark, the executors); see :func:`recs_pipeline.ml.scoring.top_n`.
    """
    maps = data.mappings
    in_stock = items.set_index("item_id")["in_stock"].astype(bool)
    titles = items.set_index("item_id")["title"]
    categories = items.set_index("item_id")["category"]
    item_mask = in_stock.reindex(maps.item_ids).fillna(True).to_numpy(dtype=bool)
    history = data.interactions.tocsr()
    has_history = np.asarray(history.sum(axis=1)).ravel() > 0
    item_seen = np.asarray(history.sum(axis=0)).ravel() > 0

    # Known users: blend of buy-again and model discoveries.
    known_rows = np.flatnonzero(has_history)
    bought = purchased_matrix(purchases, data).tocsr() if len(purchases) else history
    recent = purchases[purchases["event_ts"] >= now - pd.Timedelta(days=30)] if len(purchases) else purchases
    popularity = baselines.item_popularity(recent, maps.item_ids) if len(recent) else np.asarray(
        history.sum(axis=0)
    ).ravel().astype(float)
    frequency = baselines.purchase_frequency(purchases, maps.user_ids, maps.item_ids, now)
    again = baselines.buy_again(frequency, popularity, known_rows, n, item_mask=item_mask).to_frame(
        maps.user_ids, maps.item_ids
    )
    discoveries = scoring.top_n(
        model, n, data.user_features, data.item_features, users=known_rows, exclude=bought, item_mask=item_mask,
        map_batches=map_batches,
    ).to_frame(maps.user_ids, maps.item_ids)
    known = blend.blend(again, discoveries, n, repeat_share)
    if ranked is not None and len(ranked):
        lists = ranked[ranked["rank"] <= n].rename(columns={"generator": "strategy"})
        known = pd.concat([lists[["user_id", "item_id", "score", "rank", "strategy"]],
                           known[~known["user_id"].isin(lists["user_id"])]], ignore_index=True)  # fmt: skip
    new_item = ~pd.Series(item_seen, index=maps.item_ids).reindex(known["item_id"]).fillna(False).to_numpy(bool)
    known.loc[(known["strategy"] == "model").to_numpy() & new_item, "strategy"] = "new_item_content"

    # Reasons for the known users' rows.
    counts = (
        purchases.groupby(["user_id", "item_id"])["event_ts"].agg(["size", "max"]).reset_index()
        if len(purchases)
        else pd.DataFrame(columns=["user_id", "item_id", "size", "max"])
    )
    known = known.merge(counts, on=["user_id", "item_id"], how="left")
    _, item_embeddings = model.get_item_representations(data.item_features)
    # "Similar to ..." for the model's rows (items the model knows); other sources say why themselves.
    modelled = known["strategy"].isin(["model", "new_item_content"]).to_numpy() & (
        maps.item_codes(known["item_id"]) >= 0
    )
    similar_to = pd.Series(None, index=known.index, dtype=object)
    if modelled.any():
        similar_to[modelled] = _history_similarity_reasons(known[modelled], data, item_embeddings, titles)
    country = users.set_index("user_id")["country"].reindex(known["user_id"]).to_numpy()
    known["reason"] = known_reasons(known, similar_to, categories.reindex(known["item_id"]).to_numpy(), country)

    # Users without history: their profile features, or plain popularity.
    profile = users.set_index("user_id")
    rest = profile.index.difference(maps.user_ids[known_rows])
    cold_rows = maps.user_codes(rest)
    has_features = cold_rows >= 0
    # A row holding only the (untrained) identity feature carries no profile information.
    n_tokens = np.diff(data.user_features.indptr) - int(maps.user_identity)
    has_features[has_features] = n_tokens[cold_rows[has_features]] > 0
    cold = scoring.top_n(
        model, n, data.user_features, data.item_features, users=cold_rows[has_features], item_mask=item_mask,
        map_batches=map_batches,
    ).to_frame(maps.user_ids, maps.item_ids)
    unseen = rest[cold_rows < 0]
    if user_tokens is not None and len(unseen):
        # Users newer than the model: their tokens alone (the ones the model knows).
        tokens = user_tokens[user_tokens["user_id"].isin(unseen)]
        ids = pd.Index(np.sort(tokens["user_id"].unique()), dtype=object)
        matrix = cold_feature_matrix(tokens, ids, maps, side="user")
        scored = np.flatnonzero(np.diff(matrix.indptr) > 0)
        if len(scored):
            newer = scoring.score_cold_users(model, matrix[scored], n, data.item_features, item_mask)
            cold = pd.concat([cold, newer.to_frame(ids[scored], maps.item_ids)], ignore_index=True)
    cold["strategy"] = "cold_start_features"
    who = profile.reindex(cold["user_id"])
    profile_parts = who[["country", "age_band"]].fillna("").astype(str)
    described = (
        (profile_parts["country"] + ", " + profile_parts["age_band"]).str.strip(", ").replace("", "your profile")
        if len(who)
        else pd.Series([], dtype=object)
    )
    cold["reason"] = ("popular with shoppers like you (" + described + ")").to_numpy()

    anonymous = rest.difference(pd.Index(cold["user_id"].unique()))
    pop_items = np.argsort(-np.where(item_mask, popularity, -np.inf), kind="stable")[:n]
    popular = pd.DataFrame(
        {
            "user_id": np.repeat(np.asarray(anonymous, dtype=object), len(pop_items)),
            "rank": np.tile(np.arange(1, len(pop_items) + 1), len(anonymous)),
            "item_id": np.tile(maps.item_ids[pop_items].to_numpy(dtype=object), len(anonymous)),
            "score": np.tile(popularity[pop_items], len(anonymous)),
            "strategy": "popular",
            "reason": "popular in the shop this month",
        }
    )
    out = pd.concat([known[OUTPUT_COLUMNS], cold[OUTPUT_COLUMNS], popular[OUTPUT_COLUMNS]], ignore_index=True)
    out["score"] = out["score"].astype(float)
    return out.sort_values(["user_id", "rank"], kind="stable").reset_index(drop=True)


def similar_item_table(data: TrainingData, model, items: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """``item_id, rank, similar_item_id, score``: nearest in-stock items by embedding cosine."""
    maps = data.mappings
    in_stock = items.set_index("item_id")["in_stock"].astype(bool).reindex(maps.item_ids).fillna(True).to_numpy()
    table = scoring.similar_items(model, n + 10, data.item_features)
    table = table[in_stock[table["similar_item"].to_numpy()]]
    table = table.sort_values(["item", "rank"], kind="stable")
    table["rank"] = table.groupby("item", sort=False).cumcount() + 1
    table = table[table["rank"] <= n]
    return pd.DataFrame(
        {
            "item_id": maps.item_ids[table["item"].to_numpy()],
            "rank": table["rank"].to_numpy(),
            "similar_item_id": maps.item_ids[table["similar_item"].to_numpy()],
            "score": table["score"].to_numpy(dtype=float),
        }
    )

