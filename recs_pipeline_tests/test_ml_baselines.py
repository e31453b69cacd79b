"""Baselines on a tiny shop whose right answers can be read off by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recs_pipeline.ml.baselines import (
    buy_again,
    item_based,
    item_cosine_similarity,
    item_popularity,
    most_popular,
    purchase_frequency,
    user_item_matrix,
)

USERS = pd.Index(["ann", "bob", "cat"])
ITEMS = pd.Index(["milk", "bread", "jam", "tea"])
NOW = pd.Timestamp("2024-03-31")

PURCHASES = pd.DataFrame(
    [
        ("ann", "milk", "2024-03-30"),
        ("ann", "milk", "2024-03-01"),
        ("ann", "bread", "2024-03-30"),
        ("bob", "milk", "2024-01-01"),
        ("bob", "jam", "2024-03-29"),
        ("bob", "jam", "2024-03-29"),  # bob's repeat orders count for him, not for popularity
        ("cat", "tea", "2023-12-01"),
        ("dan", "bread", "2024-03-30"),  # not in the user index: ignored in user matrices
    ],
    columns=["user_id", "item_id", "event_ts"],
).assign(event_ts=lambda d: pd.to_datetime(d["event_ts"]))


def _lists(ranked) -> dict[str, list[str]]:
    frame = ranked.to_frame(USERS, ITEMS).sort_values(["user_id", "rank"])
    return frame.groupby("user_id")["item_id"].apply(list).to_dict()


def test_user_item_matrix_counts_events_and_ignores_unknown_users():
    matrix = user_item_matrix(PURCHASES, USERS, ITEMS).toarray()
    assert matrix[1, 2] == 2  # bob's two jam orders
    assert matrix.sum() == len(PURCHASES) - 1  # dan is not in the user index


def test_item_popularity_counts_distinct_users_in_the_window():
    np.testing.assert_array_equal(item_popularity(PURCHASES, ITEMS), [2, 2, 1, 1])
    np.testing.assert_array_equal(item_popularity(PURCHASES, ITEMS, since="2024-03-15"), [1, 2, 1, 0])


def test_most_popular_gives_everyone_the_same_list_minus_their_own_items():
    popularity = np.array([3.0, 1.0, 2.0, 0.5])
    seen = sp.csr_matrix(np.array([[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1]]))
    lists = _lists(most_popular(popularity, np.arange(3), 2, exclude=seen))
    assert lists == {"ann": ["jam", "bread"], "bob": ["milk", "jam"], "cat": ["milk", "bread"]}


def test_purchase_frequency_decays_with_age():
    frequency = purchase_frequency(PURCHASES, USERS, ITEMS, now=NOW, half_life_days=30).toarray()
    # ann's milk: bought 1 day and 30 days (one half-life) before NOW.
    assert frequency[0, 0] == pytest.approx(0.5 ** (1 / 30) + 0.5)
    assert frequency[1, 2] == pytest.approx(2 * 0.5 ** (2 / 30))
    assert frequency[2, 3] == pytest.approx(0.5 ** (121 / 30))
    assert frequency[2, 1] == 0.0
    assert frequency.sum(axis=1)[1] == pytest.approx(0.5 ** (90 / 30) + 2 * 0.5 ** (2 / 30))


def test_buy_again_ranks_own_purchases_then_fills_with_popular_items():
    frequency = sp.csr_matrix(np.array([[3.0, 1.0, 0, 0], [0, 0, 2.0, 0], [0, 0, 0, 0]]))
    popularity = np.array([5.0, 1.0, 2.0, 9.0])
    ranked = buy_again(frequency, popularity, np.arange(3), 3)
    assert _lists(ranked) == {
        "ann": ["milk", "bread", "tea"],
        "bob": ["jam", "tea", "milk"],
        "cat": ["tea", "milk", "jam"],
    }
    frame = ranked.to_frame(USERS, ITEMS)
    assert frame.loc[frame["user_id"] == "ann", "score"].tolist() == [3.0, 1.0, 0.0]  # fill-ups score 0


def test_buy_again_breaks_frequency_ties_by_popularity():
    frequency = sp.csr_matrix(np.array([[1.0, 1.0, 1.0, 0]]))
    ranked = buy_again(frequency, np.array([1.0, 3.0, 2.0, 100.0]), np.array([0]), 3)
    assert list(ranked.item) == [1, 2, 0]


def test_buy_again_popularity_exponent_favours_items_selling_now():
    frequency = sp.csr_matrix(np.array([[2.0, 1.0, 0, 0]]))
    popularity = np.array([0.0, 8.0, 1.0, 1.0])
    classic = buy_again(frequency, popularity, np.array([0]), 2)
    boosted = buy_again(frequency, popularity, np.array([0]), 2, popularity_exponent=0.5)
    assert list(classic.item) == [0, 1]
    assert list(boosted.item) == [1, 0]  # 1 * 9 ** 0.5 = 3 beats 2 * 1 ** 0.5 = 2
    assert boosted.score == pytest.approx([3.0, 2.0])


@pytest.mark.parametrize("exponent", [0.0, 0.5])
def test_sparse_buy_again_equals_scoring_every_item(exponent):
    rng = np.random.default_rng(7)
    n_users, n_items, n = 300, 120, 10
    frequency = sp.random(n_users, n_items, density=0.04, random_state=7, format="csr") * 3
    popularity = np.floor(rng.pareto(1.5, n_items) * 3)  # many ties, some zeros
    item_mask = rng.random(n_items) > 0.1
    users = rng.permutation(n_users)[:200]
    ranked = buy_again(frequency, popularity, users, n, popularity_exponent=exponent, item_mask=item_mask)

    # The reference: score the whole catalogue densely, ties to the lower item index.
    boost = (1.0 + popularity) ** exponent
    dense = frequency[users].multiply(boost).toarray() + 1e-6 * popularity / (popularity.max() + 1.0)
    dense[:, ~item_mask] = -np.inf
    expected = np.lexsort((np.broadcast_to(np.arange(n_items), dense.shape), -dense), axis=1)[:, :n]
    got = pd.DataFrame({"user": ranked.user, "rank": ranked.rank, "item": ranked.item})
    for row, user in enumerate(users):
        mine = got[got["user"] == user].sort_values("rank")
        assert list(mine["rank"]) == list(range(1, n + 1))
        assert list(mine["item"]) == list(expected[row])


def test_item_cosine_similarity_matches_hand_computation():
    # milk bought by ann and bob, bread by ann, jam by bob, tea by cat.
    interactions = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]]))
    similarity = item_cosine_similarity(interactions).toarray()
    expected = np.zeros((4, 4))
    expected[0, 1] = expected[1, 0] = expected[0, 2] = expected[2, 0] = 1 / math.sqrt(2)
    np.testing.assert_allclose(similarity, expected)


# Dense co-occurrence (rows pre-filtered before sorting) and sparse.
@pytest.mark.parametrize("n_items, density", [(25, 0.2), (400, 0.004)])
def test_item_similarity_in_blocks_and_pruned_to_neighbours_matches_the_dense_product(n_items, density):
    rng = np.random.default_rng(3)
    interactions = sp.csr_matrix(rng.random((300, n_items)) < density, dtype=np.float64)
    whole = item_cosine_similarity(interactions, block_items=1000).toarray()
    np.testing.assert_allclose(item_cosine_similarity(interactions, block_items=4).toarray(), whole)
    assert np.all(np.diag(whole) == 0) and whole.any()
    pruned = item_cosine_similarity(interactions, neighbours=3, block_items=7).toarray()
    for row, full_row in zip(pruned, whole):
        kept = np.flatnonzero(row)
        assert len(kept) == min(3, np.count_nonzero(full_row))
        np.testing.assert_allclose(row[kept], full_row[kept])
        # nothing dropped is more similar than what was kept
        assert full_row[np.setdiff1d(np.arange(n_items), kept)].max(initial=0) <= row[kept].min(initial=1) + 1e-12


def test_item_based_recommends_co_bought_items_not_already_owned():
    interactions = sp.csr_matrix(np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 1]]))
    similarity = item_cosine_similarity(interactions)
    ranked = item_based(interactions, similarity, np.array([0, 1]), 1, exclude=interactions)
    # ann owns milk and bread: jam is co-bought with milk; bob owns milk and jam: bread.
    assert _lists(ranked) == {"ann": ["jam"], "bob": ["bread"]}
    assert ranked.score == pytest.approx([1 / math.sqrt(2)] * 2)
