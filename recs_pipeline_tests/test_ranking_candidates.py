"""Candidate generators of the ranking stage, on shops small enough to check by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recs_pipeline.ranking import (
    CANDIDATE_COLUMNS,
    basket_weights,
    buy_again_candidates,
    candidate_frame,
    ease_candidates,
    ease_weights,
    neighbour_average,
    popular_by_segment,
    rank_scores,
    segment_popularity,
    tifu_knn_candidates,
    tifu_scores,
    user_vectors,
)

USERS = pd.Index(["ann", "bob", "cat"])
ITEMS = pd.Index(["a", "b", "c", "d"])


def _lists(ranked, user_ids=USERS, item_ids=ITEMS) -> dict[str, list[str]]:
    frame = ranked.to_frame(user_ids, item_ids).sort_values(["user_id", "rank"])
    return frame.groupby("user_id")["item_id"].apply(list).to_dict()


# --- the shared helper -------------------------------------------------------------------


def test_rank_scores_dense_and_sparse_agree_and_honour_exclude_and_mask():
    dense = np.array([[0.5, 0.9, 0.0, 0.2], [0.1, 0.0, 0.7, 0.7]])
    exclude = sp.csr_matrix(np.array([[0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 0, 0]]))
    mask = np.array([True, True, True, False])
    users = np.array([3, 4])  # rows of ``exclude``
    from_dense = rank_scores(dense.copy(), users, 3, exclude=exclude, item_mask=mask)
    from_sparse = rank_scores(sp.csr_matrix(dense), users, 3, exclude=exclude, item_mask=mask)
    # user 3: b excluded, d masked -> a (0.5), c (0.0; dense only: a stored zero is no candidate)
    # user 4: a excluded, d masked -> c (0.7), b (0.0 dense only)
    assert list(from_dense.user) == [3, 3, 4, 4]
    assert list(from_dense.item) == [0, 2, 2, 1]
    assert list(from_sparse.user) == [3, 4] and list(from_sparse.item) == [0, 2]
    assert from_sparse.score == pytest.approx([0.5, 0.7])
    assert list(from_sparse.rank) == [1, 1]


def test_rank_scores_breaks_ties_to_the_lower_item_and_candidate_frame_is_long():
    ranked = rank_scores(sp.csr_matrix(np.array([[0.0, 0.7, 0.7, 0.1]])), np.array([2]), 2)
    frame = candidate_frame(ranked, USERS, ITEMS, generator="x")
    assert list(frame.columns) == [*CANDIDATE_COLUMNS, "generator"]
    assert frame.to_dict("list") == {
        "user_id": ["cat", "cat"], "item_id": ["b", "c"], "score": [0.7, 0.7], "rank": [1, 2], "generator": ["x", "x"]
    }


# --- TIFU-KNN ----------------------------------------------------------------------------

# Three customers, four items, baskets = invoices (dates only order them).
BASKETS = pd.DataFrame(
    [
        ("ann", "i1", "2024-01-01", "a"),
        ("ann", "i2", "2024-01-02", "a"),
        ("ann", "i2", "2024-01-02", "b"),
        ("ann", "i2", "2024-01-02", "b"),  # a repeated line: the basket vector is multi-hot
        ("ann", "i3", "2024-01-03", "a"),
        ("ann", "i3", "2024-01-03", "c"),
        ("bob", "i4", "2024-01-02", "c"),
        ("bob", "i4", "2024-01-02", "d"),
        ("cat", "i6", "2024-01-05", "b"),  # listed first, bought last: time decides the order
        ("cat", "i6", "2024-01-05", "d"),
        ("cat", "i5", "2024-01-01", "b"),
        ("dan", "i7", "2024-01-01", "a"),  # not in the user index: ignored
    ],
    columns=["user_id", "invoice", "event_ts", "item_id"],
).assign(event_ts=lambda d: pd.to_datetime(d["event_ts"]))

# m = 2 groups, r_b = r_g = 0.5. By hand:
# ann, 3 baskets -> groups [i1] and [i2, i3] (the older group is the short one):
#   g1 = {a: 1}
#   g2 = (0.5 * {a, b} + 1 * {a, c}) / 2 = {a: 0.75, b: 0.25, c: 0.5}
#   u  = (0.5 ** (2 - 1) * g1 + 0.5 ** 0 * g2) / 2 = {a: 0.625, b: 0.125, c: 0.25}
# bob, 1 basket (fewer than m): its own group, the newest one (weight 1), 1 group:
#   u  = {c: 1, d: 1}
# cat, 2 baskets [i5], [i6]: g1 = {b: 1}, g2 = {b: 1, d: 1}
#   u  = (0.5 * g1 + g2) / 2 = {b: 0.75, d: 0.5}
EXPECTED_VECTORS = np.array(
    [
        [0.625, 0.125, 0.25, 0.0],
        [0.0, 0.0, 1.0, 1.0],
        [0.0, 0.75, 0.0, 0.5],
    ]
)
HAND_PARAMS = {"n_groups": 2, "within_decay": 0.5, "group_decay": 0.5}


def _hand_vectors() -> sp.csr_matrix:
    return user_vectors(BASKETS, USERS, ITEMS, basket_col="invoice", **HAND_PARAMS)


def test_tifu_user_vectors_match_the_hand_computation():
    np.testing.assert_allclose(_hand_vectors().toarray(), EXPECTED_VECTORS)


def test_tifu_basket_weights_group_the_most_recent_baskets_last():
    # 10 baskets in m = 3 groups: sizes 3, 3, 4 (the n % m newest groups get the extra one).
    weights = basket_weights(np.arange(10), np.full(10, 10), 3, 0.5, 0.5)
    # r_g ** (m - k) * r_b ** (n_k - j) / n_k / m, with k and j counted from 1:
    expected = [
        0.25 * 0.25 / 3 / 3, 0.25 * 0.5 / 3 / 3, 0.25 * 1 / 3 / 3,  # group 1: oldest, 3 baskets
        0.5 * 0.25 / 3 / 3, 0.5 * 0.5 / 3 / 3, 0.5 * 1 / 3 / 3,  # group 2
        1 * 0.125 / 4 / 3, 1 * 0.25 / 4 / 3, 1 * 0.5 / 4 / 3, 1 * 1 / 4 / 3,  # group 3: newest, 4 baskets
    ]
    np.testing.assert_allclose(weights, expected)
    # 2 baskets, m = 3: one basket per group, the newest in group m (weight 1), averaged over 2 groups.
    np.testing.assert_allclose(basket_weights(np.arange(2), np.full(2, 2), 3, 0.5, 0.5), [0.5 / 2, 1 / 2])
    # m = 1: plain within-basket decay over the whole history.
    np.testing.assert_allclose(basket_weights(np.arange(3), np.full(3, 3), 1, 0.5, 0.9), [0.25 / 3, 0.5 / 3, 1 / 3])


def test_tifu_knn_mixes_the_user_with_the_item_wise_mean_of_the_neighbours():
    # Cosine of the hand vectors: ann-bob 0.25 / (0.6847 * 1.4142) = 0.258,
    # ann-cat 0.09375 / (0.6847 * 0.9014) = 0.152, bob-cat 0.5 / (1.4142 * 0.9014) = 0.392.
    vectors = _hand_vectors()
    # k = 1, alpha = 0.5: ann's neighbour is bob, bob's is cat, cat's is bob.
    # ann: 0.5 * {a: .625, b: .125, c: .25} + 0.5 * {c: 1, d: 1} = {a: .3125, b: .0625, c: .625, d: .5}
    scores = tifu_scores(vectors, np.arange(3), n_neighbours=1, alpha=0.5).toarray()
    np.testing.assert_allclose(scores[0], [0.3125, 0.0625, 0.625, 0.5])
    np.testing.assert_allclose(scores[1], 0.5 * EXPECTED_VECTORS[1] + 0.5 * EXPECTED_VECTORS[2])
    ranked = tifu_knn_candidates(vectors, np.arange(3), 4, n_neighbours=1, alpha=0.5)
    assert _lists(ranked)["ann"] == ["c", "d", "a", "b"]
    # The public code's np.mean without axis=0 would add one number, mean({c: 1, d: 1}) = 0.5,
    # times 0.5 to every item: {a: .5625, b: .3125, c: .375, d: .25}, ranked a, c, b, d.
    assert _lists(ranked)["ann"] != ["a", "c", "b", "d"]
    # k = 2: ann's neighbours bob and cat, averaged item by item: {b: .375, c: .5, d: .75}.
    two = neighbour_average(vectors, np.array([0]), 2).toarray()
    np.testing.assert_allclose(two[0], [0.0, 0.375, 0.5, 0.75])


def test_tifu_knn_never_uses_the_user_as_their_own_neighbour():
    vectors = _hand_vectors()
    # With alpha = 0 a user's score is the neighbours' mean only. bob's own items are c, d;
    # his single neighbour (k = 1) is cat, so c must score 0 (cat never bought c).
    scores = tifu_scores(vectors, np.array([1]), n_neighbours=1, alpha=0.0).toarray()
    np.testing.assert_allclose(scores[0], EXPECTED_VECTORS[2])


def test_tifu_knn_explore_only_removes_the_training_items():
    vectors = _hand_vectors()
    seen = sp.csr_matrix(EXPECTED_VECTORS > 0, dtype=np.float64)
    ranked = tifu_knn_candidates(vectors, np.arange(3), 10, n_neighbours=1, alpha=0.5, exclude=seen)
    # ann never bought d (bob did); bob never bought b (cat did); cat never bought a or c, and
    # her neighbour bob bought c.
    assert _lists(ranked) == {"ann": ["d"], "bob": ["b"], "cat": ["c"]}


def _dense_tifu_reference(vectors: np.ndarray, k: int, alpha: float) -> np.ndarray:
    """Row by row: cosine, self excluded, the k best positive neighbours (ties to the lower user)."""
    norms = np.linalg.norm(vectors, axis=1)
    out = np.zeros_like(vectors)
    for u in range(len(vectors)):
        sims = vectors @ vectors[u] / np.where(norms * norms[u] > 0, norms * norms[u], 1.0)
        sims[u] = 0.0
        order = np.lexsort((np.arange(len(vectors)), -sims))
        best = [v for v in order[:k] if sims[v] > 0]
        mean = vectors[best].mean(axis=0) if best else np.zeros(vectors.shape[1])
        out[u] = alpha * vectors[u] + (1 - alpha) * mean
    return out


def test_tifu_knn_in_blocks_matches_a_dense_reference():
    rng = np.random.default_rng(11)
    n_users, n_items = 60, 40
    rows = []
    for user in range(n_users):
        for basket in range(rng.integers(1, 12)):
            items = rng.choice(n_items, size=rng.integers(1, 5), replace=False)
            rows += [(f"u{user:02d}", f"{user}-{basket}", basket, f"i{item:02d}") for item in items]
    events = pd.DataFrame(rows, columns=["user_id", "basket", "day", "item_id"])
    user_ids = pd.Index(sorted(events["user_id"].unique()))
    item_ids = pd.Index(sorted(events["item_id"].unique()))
    vectors = user_vectors(events, user_ids, item_ids, basket_col="basket", ts_col="day", n_groups=3)
    expected = _dense_tifu_reference(vectors.toarray(), k=5, alpha=0.7)
    users = rng.permutation(n_users)[:40]
    np.testing.assert_allclose(tifu_scores(vectors, users, 5, 0.7).toarray(), expected[users], atol=1e-12)
    whole = tifu_knn_candidates(vectors, users, 8, n_neighbours=5, alpha=0.7)
    blocked = tifu_knn_candidates(vectors, users, 8, n_neighbours=5, alpha=0.7, block_size=7)
    for mine, theirs in zip(whole, blocked):
        np.testing.assert_array_equal(mine, theirs)
    # The top of each list is the reference's best item.
    firsts = whole.rank == 1
    np.testing.assert_allclose(whole.score[firsts], expected[whole.user[firsts]].max(axis=1))


# --- EASE --------------------------------------------------------------------------------


def test_ease_on_a_symmetric_toy_matrix():
    # Items 0 and 1 always bought together (by 2 users), item 2 alone. lambda = 1:
    # G + lambda I = [[3, 2, 0], [2, 3, 0], [0, 0, 2]]; the 0/1 block inverts to
    # [[3, -2], [-2, 3]] / 5, so B_01 = -P_01 / P_11 = (2/5) / (3/5) = 2/3 = B_10; item 2
    # has no co-purchases: its weights are 0.
    x = sp.csr_matrix(np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]]))
    weights = ease_weights(x, lam=1.0)
    np.testing.assert_allclose(weights, [[0, 2 / 3, 0], [2 / 3, 0, 0], [0, 0, 0]], atol=1e-12)
    ranked = ease_candidates(sp.csr_matrix(np.array([[1, 0, 0]])), weights, np.array([0]), 1)
    assert list(ranked.item) == [1] and ranked.score == pytest.approx([2 / 3])


def test_ease_weights_have_a_zero_diagonal_and_satisfy_the_closed_form():
    rng = np.random.default_rng(5)
    x = sp.csr_matrix((rng.random((80, 12)) < 0.3).astype(np.float64))
    lam = 7.0
    weights = ease_weights(x, lam)
    assert np.all(np.diag(weights) == 0)
    gram = (x.T @ x).toarray()
    precision = np.linalg.inv(gram + lam * np.eye(12))
    np.testing.assert_allclose(weights, np.eye(12) - precision @ np.diag(1 / np.diag(precision)), atol=1e-12)
    # Optimality of the constrained least squares: (G + lambda I) B - G is diagonal
    # (only the zero-diagonal constraint's multipliers remain).
    residual = (gram + lam * np.eye(12)) @ weights - gram
    np.testing.assert_allclose(residual - np.diag(np.diag(residual)), 0.0, atol=1e-9)


def test_ease_lists_exclude_the_training_items_in_batches():
    rng = np.random.default_rng(6)
    x = sp.csr_matrix((rng.random((50, 15)) < 0.25).astype(np.float64))
    weights = ease_weights(x, 10.0)
    users = np.arange(50)
    ranked = ease_candidates(x, weights, users, 5, exclude=x, batch_size=8)
    assert not np.asarray(x[ranked.user, ranked.item]).any()
    scores = (x @ weights)[ranked.user, ranked.item]
    np.testing.assert_allclose(ranked.score, scores)
    assert ranked.score[ranked.rank == 1] == pytest.approx(np.where(x.toarray() > 0, -np.inf, x @ weights).max(axis=1))


# --- popularity per segment, buy-again -------------------------------------------------------

SHOP = pd.DataFrame(
    [
        ("ann", "a", "GB", "2024-03-20"),
        ("bob", "a", "GB", "2024-03-21"),
        ("bob", "b", "GB", "2024-03-21"),
        ("cat", "c", "FR", "2024-03-25"),
        ("dan", "c", "FR", "2024-03-26"),
        ("dan", "c", "FR", "2024-03-27"),  # dan's repeat counts once
        ("eve", "d", "DE", "2024-03-28"),
        ("fay", "b", "GB", "2024-01-01"),  # before the window
    ],
    columns=["user_id", "item_id", "country", "event_ts"],
).assign(event_ts=lambda d: pd.to_datetime(d["event_ts"]))


def test_segment_popularity_counts_distinct_buyers_in_the_window():
    pop = segment_popularity(SHOP, ITEMS, "country", since="2024-03-01")
    assert list(pop.segments) == ["DE", "FR", "GB"]
    np.testing.assert_array_equal(pop.by_segment.toarray(), [[0, 0, 0, 1], [0, 0, 2, 0], [2, 1, 0, 0]])
    np.testing.assert_array_equal(pop.overall, [2, 1, 2, 1])
    np.testing.assert_array_equal(pop.buyers, [1, 2, 2])


def test_popular_by_segment_gives_the_segment_list_then_overall_fill_ups_and_falls_back():
    pop = segment_popularity(SHOP, ITEMS, "country", since="2024-03-01")
    segments = ["GB", "FR", "US", None, "DE"]
    ranked = popular_by_segment(pop, segments, 3)
    frame = ranked.to_frame(item_ids=ITEMS).sort_values(["user_id", "rank"])
    lists = frame.groupby("user_id")["item_id"].apply(list).to_dict()
    # GB: a (2 buyers), b (1), then the overall best seller left (c: 2 overall).
    # FR: c, then a (2 overall), then b (1 overall, lower index than d).
    # unknown country and no country: the overall list a, c (2 each), b.
    assert lists == {0: ["a", "b", "c"], 1: ["c", "a", "b"], 2: ["a", "c", "b"], 3: ["a", "c", "b"], 4: ["d", "a", "c"]}
    gb = frame[frame["user_id"] == 0]["score"].to_numpy()
    assert gb[0] == pytest.approx(2 + 2 / 3) and gb[2] < 1  # the fill-up scores below one buyer
    # DE has a single buyer: with min_buyers = 2 it gets the overall list.
    small = popular_by_segment(pop, ["DE"], 3, min_buyers=2)
    assert list(small.item) == [0, 2, 1] and small.score == pytest.approx([2, 2, 1])


def test_popular_by_segment_with_exclusions_matches_copying_lists():
    pop = segment_popularity(SHOP, ITEMS, "country", since="2024-03-01")
    segments = np.array(["GB", "FR", "GB", "XX", "DE", "FR"], dtype=object)
    copied = popular_by_segment(pop, segments, 4, users=np.arange(10, 16))
    nothing = sp.csr_matrix((16, 4))
    batched = popular_by_segment(pop, segments, 4, users=np.arange(10, 16), exclude=nothing, batch_size=4)
    for mine, theirs in zip(copied, batched):
        np.testing.assert_allclose(mine, theirs)
    own = sp.csr_matrix(([1.0, 1.0], ([10, 11], [0, 2])), shape=(16, 4))
    explore = popular_by_segment(pop, segments, 4, users=np.arange(10, 16), exclude=own)
    assert 0 not in explore.item[explore.user == 10] and 2 not in explore.item[explore.user == 11]


def test_buy_again_candidates_are_own_purchases_by_decayed_frequency():
    now = pd.Timestamp("2024-03-31")
    purchases = pd.DataFrame(
        [
            ("ann", "a", "2024-03-01"),  # 30 days: 0.5
            ("ann", "a", "2024-01-31"),  # 60 days: 0.25
            ("ann", "b", "2024-03-30"),  # 1 day: 0.5 ** (1 / 30) = 0.977
            ("ann", "c", "2023-12-01"),  # 121 days: 0.061
            ("bob", "d", "2024-03-31"),
        ],
        columns=["user_id", "item_id", "event_ts"],
    ).assign(event_ts=lambda d: pd.to_datetime(d["event_ts"]))
    ranked = buy_again_candidates(purchases, USERS, ITEMS, np.arange(3), 10, now, half_life_days=30)
    assert _lists(ranked) == {"ann": ["b", "a", "c"], "bob": ["d"]}  # cat bought nothing: no fillers
    ann = ranked.user == 0
    assert ranked.score[ann] == pytest.approx([0.5 ** (1 / 30), 0.75, 0.5 ** (121 / 30)])
    # A short half-life makes recency win over frequency; a very long one, frequency.
    frequent = buy_again_candidates(purchases, USERS, ITEMS, np.array([0]), 1, now, half_life_days=1e9)
    assert list(frequent.item) == [0] and frequent.score == pytest.approx([2.0])
    assert math.isclose(frequent.rank[0], 1)
