"""The two stages put together (recs_pipeline.ranking.stage) on a small generated shop:
every generator proposes, nothing after the cut-off leaks in, blocks do not change the
lists, and a saved ranker ranks like the one in memory."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recs_pipeline.ranking import stage
from recs_pipeline.ranking.ranker import RankerParams, load_ranker, save_ranker, sample_negatives, train_ranker
from recs_pipeline.ranking.tifu_knn import TifuParams

START = pd.Timestamp("2026-09-01")
CUTOFF = START + pd.Timedelta(days=40)
PARAMS = stage.StageParams(depth=8, tifu=TifuParams(n_neighbours=20), min_segment_buyers=3, batch_users=1000)
RANKER = RankerParams(n_estimators=30, num_leaves=7, min_child_samples=5)


def _shop(seed: int = 0, n_users: int = 120, n_items: int = 30, days: int = 50) -> stage.ShopHistory:
    """Users with a favourite block of items they keep buying, in baskets over 50 days."""
    rng = np.random.default_rng(seed)
    n = 4000
    users = rng.integers(0, n_users, n)
    favourite = (users * 7) % n_items
    items = np.where(rng.random(n) < 0.7, (favourite + rng.integers(0, 4, n)) % n_items, rng.integers(0, n_items, n))
    day = rng.integers(0, days, n)
    purchases = pd.DataFrame(
        {
            "user_id": [f"u{u:03d}" for u in users],
            "item_id": [f"i{i:02d}" for i in items],
            "event_ts": START + pd.to_timedelta(day * 86400 + rng.integers(0, 80000, n), unit="s"),
            "basket": [f"b{u}-{d}" for u, d in zip(users, day)],
            "price": 1.0 + items % 5,
        }
    ).sort_values(["user_id", "event_ts"], ignore_index=True)
    item_ids = pd.Index([f"i{i:02d}" for i in range(n_items)], dtype=object)
    vectors = np.zeros((n_items, 4), dtype=np.float32)
    vectors[np.arange(n_items), np.arange(n_items) % 4] = 1.0  # four "themes" of text
    segments = pd.Series(np.where(np.arange(n_users) % 2, "GB", "FR"), index=[f"u{u:03d}" for u in range(n_users)])
    return stage.ShopHistory(purchases=purchases, item_ids=item_ids, segments=segments, item_vectors=vectors)


def _users(shop: stage.ShopHistory) -> np.ndarray:
    return np.sort(shop.purchases["user_id"].unique())


def test_every_generator_proposes_its_depth_with_ranks_and_respects_the_stock_mask():
    shop = _shop()
    mask = np.ones(len(shop.item_ids), dtype=bool)
    mask[:3] = False  # i00, i01, i02 out of stock
    gen = stage.prepare(shop, CUTOFF, PARAMS, users=_users(shop), item_mask=mask)
    cands = stage.candidates(gen, _users(shop))
    assert set(cands["generator"]) == {"buy_again", "tifu_knn", "item_knn", "segment_popular", "text"}
    assert not cands["item_id"].isin(["i00", "i01", "i02"]).any()
    per_list = cands.groupby(["generator", "user_id"])["rank"]
    assert (per_list.max() <= PARAMS.depth).all() and (per_list.min() == 1).all()
    # Ranks count 1, 2, 3... within a list, best score first.
    ordered = cands.sort_values(["generator", "user_id", "rank"])
    assert (ordered.groupby(["generator", "user_id"])["score"].diff().dropna() <= 1e-12).all()
    # Buy-again proposes only the user's own purchases before the cut-off.
    own = gen.history[["user_id", "item_id"]].drop_duplicates().assign(own=True)
    again = cands[cands["generator"] == "buy_again"].merge(own, on=["user_id", "item_id"], how="left")
    assert again["own"].fillna(False).all()


def test_nothing_at_or_after_the_cutoff_changes_candidates_or_features():
    """Later purchases (here: every user buying i00 right after the cut-off) would show in
    buy-again, popularity and the pair counts if they leaked."""
    shop = _shop()
    later = pd.DataFrame({"user_id": _users(shop), "item_id": "i00", "event_ts": CUTOFF, "basket": "late", "price": 9.0})
    leaked = stage.ShopHistory(pd.concat([shop.purchases, later], ignore_index=True), shop.item_ids, shop.segments,
                               shop.item_vectors)  # fmt: skip
    frames = []
    for history in (shop, leaked):
        gen = stage.prepare(history, CUTOFF, PARAMS, users=_users(shop))
        frames.append(stage.features(gen, stage.candidates(gen, _users(shop))))
    pd.testing.assert_frame_equal(frames[0], frames[1])


def test_ranked_lists_do_not_depend_on_the_block_size_and_a_saved_ranker_ranks_the_same(tmp_path):
    shop = _shop()
    users = _users(shop)
    train_gen = stage.prepare(shop, CUTOFF - pd.Timedelta(days=7), PARAMS, users=users)
    rows = stage.labelled_rows(train_gen, users, shop.purchases, CUTOFF)
    assert rows["label"].sum() > 0
    ranker = train_ranker([rows], RANKER, generators=stage.GENERATORS)
    big = stage.prepare(shop, CUTOFF, PARAMS, users=users)
    small = stage.prepare(shop, CUTOFF, stage.StageParams(**{**PARAMS.__dict__, "batch_users": 7}), users=users)
    lists = stage.rank_users(big, ranker, users, 5)
    pd.testing.assert_frame_equal(lists, stage.rank_users(small, ranker, users, 5))
    assert (lists.groupby("user_id").size() == 5).all()
    assert set(lists["generator"]) <= set(stage.GENERATORS)

    loaded, meta = load_ranker(save_ranker(ranker, tmp_path / "r1", {"note": "x"}))
    assert meta["note"] == "x" and loaded.features == ranker.features
    pd.testing.assert_frame_equal(lists, stage.rank_users(big, loaded, users, 5))


def test_the_ranker_beats_each_generator_alone_on_the_next_days():
    """Trained on the cut-off a week earlier, the ranker's top 5 at the cut-off holds more
    of the next week's purchases than any single generator's top 5."""
    shop = _shop(seed=3, n_users=200)
    users = _users(shop)
    week = pd.Timedelta(days=7)
    training = [stage.labelled_rows(stage.prepare(shop, CUTOFF - k * week, PARAMS, users=users), users,
                                    shop.purchases, CUTOFF - (k - 1) * week) for k in (2, 1)]  # fmt: skip
    ranker = train_ranker(training, RANKER, generators=stage.GENERATORS)
    gen = stage.prepare(shop, CUTOFF, PARAMS, users=users)
    later = shop.purchases[(shop.purchases["event_ts"] >= CUTOFF) & (shop.purchases["event_ts"] < CUTOFF + week)]
    relevant = later[["user_id", "item_id"]].drop_duplicates()
    from recs_pipeline.ml.metrics import precision_at_k

    ranked = precision_at_k(stage.rank_users(gen, ranker, users, 5), relevant, 5)
    cands = stage.candidates(gen, users)
    alone = {g: precision_at_k(part, relevant, 5) for g, part in cands.groupby("generator")}
    assert ranked > max(alone.values()), (ranked, alone)


def test_candidate_recall_counts_each_relevant_pair_once_per_generator_and_for_the_union():
    cands = pd.DataFrame(
        [("u1", "a", "x"), ("u1", "b", "x"), ("u1", "b", "y"), ("u2", "c", "y"), ("u2", "c", "y")],
        columns=["user_id", "item_id", "generator"],
    )
    relevant = pd.DataFrame([("u1", "b"), ("u2", "c"), ("u2", "d"), ("u1", "b")], columns=["user_id", "item_id"])
    recall = stage.candidate_recall(cands, relevant).set_index("generator")["recall"]
    assert recall.to_dict() == pytest.approx({"x": 1 / 3, "y": 2 / 3, "union": 2 / 3})


def test_negative_sampling_keeps_every_positive_and_the_same_negatives_in_any_order():
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"user_id": np.repeat(["u1", "u2", "u3"], 50), "item_id": [f"i{k}" for k in range(150)],
                          "label": (rng.random(150) < 0.1).astype(int)})  # fmt: skip
    kept = sample_negatives(frame, 5)
    assert kept["label"].sum() == frame["label"].sum()
    assert (kept[kept["label"] == 0].groupby("user_id").size() == 5).all()
    shuffled = sample_negatives(frame.sample(frac=1, random_state=1), 5)
    assert set(map(tuple, kept[["user_id", "item_id"]].to_numpy())) == set(
        map(tuple, shuffled[["user_id", "item_id"]].to_numpy())
    )


def test_the_order_of_the_purchases_does_not_change_candidates_or_features():
    """A warehouse (or a file) may return the same rows in another order: float sums and
    so ties between scores must not depend on it."""
    shop = _shop(seed=5)
    shuffled = stage.ShopHistory(shop.purchases.sample(frac=1, random_state=2, ignore_index=True), shop.item_ids,
                                 shop.segments, shop.item_vectors)  # fmt: skip
    frames = []
    for history in (shop, shuffled):
        gen = stage.prepare(history, CUTOFF, PARAMS, users=_users(shop))
        cands = stage.candidates(gen, _users(shop))
        frames.append(stage.features(gen, cands))
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)  # to the last bit


def test_item_knn_candidates_match_the_dense_item_based_baseline():
    """The sparse item-kNN source ranks like baselines.item_based (dense) wherever the dense
    one scores above zero, and never proposes an owned or masked item."""
    import scipy.sparse as sp

    from recs_pipeline.ml import baselines

    seen = sp.random(60, 40, density=0.1, random_state=5, format="csr")
    seen.data[:] = 1.0
    similarity = baselines.item_cosine_similarity(seen, 10)
    users, mask = np.arange(60), np.arange(40) % 7 != 0
    sparse = stage.item_knn_candidates(seen, similarity, users, 5, mask).to_frame()
    dense = baselines.item_based(seen, similarity, users, 5, exclude=seen, item_mask=mask).to_frame()
    dense = dense[dense["score"] > 0]
    merged = dense.merge(sparse, on=["user_id", "rank"], suffixes=("_dense", "_sparse"))
    assert len(merged) == len(dense) and np.allclose(merged["score_dense"], merged["score_sparse"])
    # Each pick really has that score (ties between equal scores may go either way).
    truth = (seen @ similarity).toarray()[merged["user_id"].to_numpy(), merged["item_id_sparse"].to_numpy()]
    assert np.allclose(truth, merged["score_dense"])
    assert (merged["item_id_dense"] == merged["item_id_sparse"]).mean() > 0.95
    owned = pd.DataFrame({"user_id": seen.nonzero()[0], "item_id": seen.nonzero()[1], "own": True})
    assert not sparse.merge(owned, on=["user_id", "item_id"]).shape[0]
    assert mask[sparse["item_id"].to_numpy()].all()
