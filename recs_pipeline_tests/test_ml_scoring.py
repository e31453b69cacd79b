"""Batched top-N scoring agrees with LightFM's own predict and honours exclusions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recs_pipeline.ml.matrices import build_training_data, cold_feature_matrix
from recs_pipeline.ml.model import ModelParams, train
from recs_pipeline.ml.scoring import score_cold_users, similar_items, top_n

N_USERS, N_ITEMS = 40, 30


@pytest.fixture(scope="module")
def trained():
    rng = np.random.default_rng(3)
    users = rng.integers(0, N_USERS, 400)
    items = (users % 3) * 10 + rng.integers(0, 10, 400)  # three taste groups
    interactions = pd.DataFrame(
        {"user_id": [f"u{u:02d}" for u in users], "item_id": [f"i{i:02d}" for i in items], "weight": 1.0}
    ).drop_duplicates(["user_id", "item_id"])
    user_tokens = pd.DataFrame(
        {"user_id": [f"u{u:02d}" for u in range(N_USERS)], "feature": [f"group:{u % 3}" for u in range(N_USERS)], "weight": 1.0}
    )
    item_tokens = pd.DataFrame(
        {"item_id": [f"i{i:02d}" for i in range(N_ITEMS)], "feature": [f"shelf:{i // 10}" for i in range(N_ITEMS)], "weight": 1.0}
    )
    data = build_training_data(interactions, user_tokens, item_tokens)
    model = train(
        data.interactions, ModelParams(no_components=8, epochs=5), data.user_features, data.item_features
    )
    return model, data


def _predict_ranking(model, data, user, excluded=()):
    """LightFM's own scores for one user, best first, excluded items removed."""
    items = np.arange(data.mappings.n_items)
    scores = model.predict(
        np.full(len(items), user), items, user_features=data.user_features, item_features=data.item_features
    )
    order = [item for item in np.argsort(-scores, kind="stable") if item not in set(excluded)]
    return order, scores


def test_top_n_equals_lightfm_predict_ranking(trained):
    model, data = trained
    ranked = top_n(model, 10, data.user_features, data.item_features, batch_size=7)
    assert len(ranked.user) == N_USERS * 10
    for user in range(N_USERS):
        expected, scores = _predict_ranking(model, data, user)
        mine = ranked.user == user
        assert list(ranked.item[mine]) == expected[:10]
        assert list(ranked.rank[mine]) == list(range(1, 11))
        np.testing.assert_allclose(ranked.score[mine], scores[expected[:10]], rtol=1e-5, atol=1e-5)


def test_top_n_excludes_seen_items_and_masked_items(trained):
    model, data = trained
    seen = data.interactions.tocsr()
    in_stock = np.ones(N_ITEMS, dtype=bool)
    in_stock[[0, 11, 22]] = False
    ranked = top_n(model, 10, data.user_features, data.item_features, exclude=seen, item_mask=in_stock)
    assert not np.asarray(seen[ranked.user, ranked.item]).any()
    assert not np.isin(ranked.item, [0, 11, 22]).any()
    for user in (0, 17, 39):
        excluded = set(seen[user].indices) | {0, 11, 22}
        expected, _ = _predict_ranking(model, data, user, excluded)
        assert list(ranked.item[ranked.user == user]) == expected[:10]


def test_top_n_drops_positions_when_fewer_candidates_than_n(trained):
    model, data = trained
    everything_but_two = sp.csr_matrix(np.ones((N_USERS, N_ITEMS)))
    everything_but_two[:, [4, 5]] = 0
    everything_but_two.eliminate_zeros()
    ranked = top_n(model, 10, data.user_features, data.item_features, users=np.array([3]), exclude=everything_but_two)
    assert sorted(ranked.item) == [4, 5] and list(ranked.rank) == [1, 2]


def test_top_n_for_a_subset_of_users_matches_the_full_run(trained):
    model, data = trained
    full = top_n(model, 5, data.user_features, data.item_features).to_frame()
    subset = top_n(model, 5, data.user_features, data.item_features, users=np.array([5, 2])).to_frame()
    expected = full[full["user_id"].isin([5, 2])]
    pd.testing.assert_frame_equal(
        subset.sort_values(["user_id", "rank"]).reset_index(drop=True),
        expected.sort_values(["user_id", "rank"]).reset_index(drop=True),
    )


def test_scores_do_not_depend_on_how_the_users_are_batched(trained):
    """The lists and their scores are bit for bit the same whatever the batch size (as on
    Spark, whose partitions split the users elsewhere), and each score is the model's
    u.v + b_u + b_i to float32 rounding, in rank order."""
    model, data = trained
    whole = top_n(model, 10, data.user_features, data.item_features, batch_size=4096)
    for batch_size in (1, 7, 64):
        split = top_n(model, 10, data.user_features, data.item_features, batch_size=batch_size)
        for field in ("user", "rank", "item", "score"):
            np.testing.assert_array_equal(getattr(split, field), getattr(whole, field))
    user_biases, user_embeddings = model.get_user_representations(data.user_features)
    item_biases, item_embeddings = model.get_item_representations(data.item_features)
    expected = (user_embeddings[whole.user].astype(np.float64) * item_embeddings[whole.item]).sum(axis=1)
    expected += user_biases[whole.user].astype(np.float64) + item_biases[whole.item]
    np.testing.assert_allclose(whole.score, expected, rtol=1e-6)
    same_user = whole.user[1:] == whole.user[:-1]
    assert (whole.score[1:][same_user] <= whole.score[:-1][same_user]).all()


def test_to_frame_translates_indices_to_ids(trained):
    model, data = trained
    frame = top_n(model, 3, data.user_features, data.item_features, users=np.array([1])).to_frame(
        data.mappings.user_ids, data.mappings.item_ids
    )
    assert set(frame["user_id"]) == {"u01"} and frame["item_id"].str.startswith("i").all()


def test_cold_users_are_scored_from_their_features(trained):
    model, data = trained
    tokens = pd.DataFrame({"user_id": ["new"], "feature": ["group:1"], "weight": 1.0})
    cold = cold_feature_matrix(tokens, pd.Index(["new"]), data.mappings, side="user")
    ranked = score_cold_users(model, cold, 10, item_features=data.item_features)
    scores = model.predict(
        np.zeros(N_ITEMS, dtype=np.int32), np.arange(N_ITEMS), user_features=cold, item_features=data.item_features
    )
    assert list(ranked.item) == list(np.argsort(-scores, kind="stable")[:10])


def test_similar_items_are_cosine_neighbours_without_the_item_itself(trained):
    model, data = trained
    neighbours = similar_items(model, 3, data.item_features, batch_size=4)
    _, embeddings = model.get_item_representations(data.item_features)
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    cosine = unit @ unit.T
    np.fill_diagonal(cosine, -np.inf)
    assert (neighbours["item"] != neighbours["similar_item"]).all()
    for item in (0, 15, 29):
        rows = neighbours[neighbours["item"] == item]
        assert list(rows["similar_item"]) == list(np.argsort(-cosine[item], kind="stable")[:3])
        np.testing.assert_allclose(rows["score"], np.sort(cosine[item])[::-1][:3], rtol=1e-5)


@pytest.mark.parametrize("n", [1, 10, 50])
def test_prefiltered_top_n_rows_equals_a_full_sort_on_wide_rows(n):
    from recs_pipeline.ml.scoring import top_n_rows

    rng = np.random.default_rng(n)
    scores = rng.standard_normal((64, 20_000)).astype(np.float32)
    scores[0, :] = -np.inf  # every item excluded: nothing to recommend
    scores[1, :-3] = -np.inf  # three candidates left, fewer than n for n > 3
    scores[2, ::5] = -np.inf  # a fifth excluded
    scores[3, 17_000:] += 5  # the best items all at the end, far from the sample's spread
    items, values = top_n_rows(scores.copy(), n)

    expected = np.argsort(-scores, axis=1, kind="stable")[:, :n]
    expected_values = np.take_along_axis(scores, expected, axis=1)
    np.testing.assert_array_equal(values, expected_values)
    finite = np.isfinite(expected_values)
    np.testing.assert_array_equal(items[finite], expected[finite])
    assert not finite[0].any() and finite[1].sum() == min(n, 3)


@pytest.mark.parametrize("n", [1, 3, 10])
@pytest.mark.parametrize("width", [500, 20_000])
@pytest.mark.parametrize("path", ["sorted", "dense"])
def test_top_n_sparse_equals_sorting_every_stored_entry(n, width, path, monkeypatch):
    from recs_pipeline.ml import scoring
    from recs_pipeline.ml.scoring import top_n_sparse

    # Either way of ranking (sorting the stored entries, or dense chunks of rows of few
    # rows each through top_n_rows' group bound at 20k columns) gives the definition's lists.
    monkeypatch.setattr(scoring, "_DENSE_SHARE", 2.0 if path == "sorted" else 0.0)
    monkeypatch.setattr(scoring, "_DENSE_CHUNK_ENTRIES", 7 * width)
    rng = np.random.default_rng(n)
    # Wide rows (pre-filtered), narrow rows and empty rows; rounded values make ties.
    dense = np.where(rng.random((40, width)) < rng.random((40, 1)), np.round(rng.random((40, width)), 2) + 0.01, 0.0)
    dense[5] = 0.0
    matrix = sp.csr_matrix(dense)
    users = np.arange(100, 140)
    ranked = top_n_sparse(matrix, users, n)
    for row in range(40):
        stored = np.flatnonzero(dense[row])
        expected = stored[np.lexsort((stored, -dense[row, stored]))][:n]
        mine = ranked.rank[ranked.user == users[row]]
        assert list(mine) == list(range(1, len(expected) + 1))
        assert list(ranked.item[ranked.user == users[row]]) == list(expected)


def test_top_n_sparse_of_negative_twice_stored_and_no_entries():
    from recs_pipeline.ml.scoring import top_n_sparse

    # A negative score (the dense chunks read absent entries as 0) and a CSR that stores
    # one entry twice (the dense chunks would sum them) are ranked by sorting the entries.
    negative = sp.csr_matrix(np.array([[0.5, -0.2, 0.0, 0.1], [0.0, 0.0, -1.0, 0.0]]))
    ranked = top_n_sparse(negative, np.array([7, 8]), 3)
    assert list(zip(ranked.user, ranked.item, ranked.rank)) == [(7, 0, 1), (7, 3, 2), (7, 1, 3), (8, 2, 1)]
    twice = sp.csr_matrix((np.array([0.3, 0.4, 0.2]), np.array([1, 1, 0]), np.array([0, 3])), shape=(1, 3))
    ranked = top_n_sparse(twice, np.array([0]), 2)
    assert list(ranked.item) == [1, 1] and list(ranked.score) == [0.4, 0.3]
    # Nothing stored (a block of users without a neighbour): empty lists, no error.
    assert len(top_n_sparse(sp.csr_matrix((3, 5)), np.arange(3), 2).item) == 0
    assert len(top_n_sparse(sp.csr_matrix((0, 5)), np.array([], dtype=np.int64), 2).item) == 0


def _reference_top_n_rows(scores: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The definition: a full sort of each row by value descending, then column ascending
    (``nan`` counted as ``-inf``)."""
    n = min(n, scores.shape[1])
    cleaned = np.where(np.isnan(scores), -np.inf, scores) if scores.dtype.kind == "f" else scores
    columns = np.arange(scores.shape[1])
    orders = [np.lexsort((columns, -row.astype(np.float64)))[:n] for row in cleaned]
    items = np.array(orders, dtype=np.int64).reshape(len(scores), n)
    return items, np.take_along_axis(cleaned, items, axis=1)


def _awkward_rows(rng: np.random.Generator, n_rows: int, n_cols: int, n: int, dtype) -> np.ndarray:
    """Random rows with every case the selection treats apart."""
    scores = rng.standard_normal((n_rows, n_cols)).astype(dtype)
    cases = [
        lambda row: row.fill(-np.inf),  # everything excluded
        lambda row: row.__setitem__(slice(None, -3), -np.inf),  # fewer than n left
        lambda row: row.__setitem__(rng.random(n_cols) < 0.999, -np.inf),  # a few left, spread out
        lambda row: row.__setitem__(slice(None, None, 5), -np.inf),
        lambda row: row.__setitem__(slice(-n_cols // 7, None), row[-n_cols // 7 :] + 5),  # best at the end
        lambda row: row.__setitem__(slice(None), np.round(row, 1)),  # ties everywhere
        lambda row: row.__setitem__(slice(None), rng.integers(0, 3, n_cols)),  # mostly equal values
        lambda row: row.__setitem__(slice(None), 0.0),  # all equal
        lambda row: row.__setitem__(slice(None), np.where(rng.random(n_cols) < 0.001, 1.0, 0.0)),  # popularity-like
        lambda row: row.__setitem__(slice(None), np.where(np.arange(n_cols) % 3, 0.0, -0.0)),  # signed zeros
        lambda row: row.__setitem__(rng.random(n_cols) < 0.3, np.nan),
        lambda row: row.__setitem__(slice(None), np.nan),
        lambda row: row.__setitem__(rng.integers(0, n_cols, 2 * n + 3), np.inf),
        lambda row: row.__setitem__(slice(None), np.where(np.isin(np.arange(n_cols), rng.integers(0, n_cols, n)), 9, 7.25)),
    ]
    for case, row in zip(cases, scores):
        case(row)
    if 0 < n and n_cols // 8 >= 16 * n:
        # Entries above the cut-off crowded into a few of the selection's groups of columns
        # (columns k, k + 8n, k + 16n, ... of the level-1 maxima), the rest tied or excluded.
        from recs_pipeline.ml.scoring import _GROUP_COLUMNS, _GROUPS_PER_ITEM

        level1, level2 = n_cols // _GROUP_COLUMNS, _GROUPS_PER_ITEM * n
        few_groups = (np.arange(n_cols) % level1) % level2 < 3
        scores[-1] = np.where(few_groups, rng.random(n_cols) + 1, 0.0)
        scores[-2] = np.where(few_groups, rng.random(n_cols) + 1, -np.inf)
        scores[-3] = np.where(few_groups, np.round(rng.random(n_cols), 1) + 1, -np.inf)
        # Whole groups tied at the cut-off: few groups opened, but many candidates in them.
        scores[-4] = np.where(np.arange(n_cols) % level1 < 3 * n, 1.0, 0.0)
    return scores


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "n_rows, n_cols, n",
    [
        (40, 1, 1), (40, 7, 3), (40, 7, 7), (40, 7, 12), (40, 300, 10), (40, 4096, 50),  # narrow
        (150, 20_000, 1), (150, 20_000, 10), (40, 20_011, 50), (40, 50_000, 50), (40, 12_801, 50),  # wide
        (40, 50_000, 200), (40, 50_000, 0), (0, 50_000, 50),
    ],
)
def test_top_n_rows_equals_a_full_stable_sort(n_rows, n_cols, n, dtype):
    from recs_pipeline.ml.scoring import top_n_rows

    rng = np.random.default_rng(n_cols + n)
    scores = _awkward_rows(rng, n_rows, n_cols, n, dtype) if n_rows >= 20 else np.zeros((n_rows, n_cols), dtype)
    original = scores.copy()
    items, values = top_n_rows(scores, n)
    expected_items, expected_values = _reference_top_n_rows(original, n)
    assert items.shape == values.shape == (n_rows, min(n, n_cols))
    assert items.dtype == np.int64 and values.dtype == dtype
    np.testing.assert_array_equal(items, expected_items)
    np.testing.assert_array_equal(values, expected_values)
    # The same float values (bit for bit, signed zeros included) as the entries named.
    cleaned = np.where(np.isnan(original), -np.inf, original)
    assert np.array_equal(np.signbit(values), np.signbit(np.take_along_axis(cleaned, items, axis=1)))
    np.testing.assert_array_equal(np.isnan(scores), np.isnan(original))
    np.testing.assert_array_equal(scores[~np.isnan(scores)], original[~np.isnan(original)])  # not modified


def test_top_n_rows_of_a_non_contiguous_view_equals_a_full_stable_sort():
    from recs_pipeline.ml.scoring import top_n_rows

    rng = np.random.default_rng(5)
    scores = np.round(rng.standard_normal((90, 30_000)), 2).astype(np.float32)[::3, 5:]
    items, values = top_n_rows(scores, 20)
    expected_items, expected_values = _reference_top_n_rows(scores, 20)
    np.testing.assert_array_equal(items, expected_items)
    np.testing.assert_array_equal(values, expected_values)


@pytest.mark.parametrize("dtype", [np.uint8, np.int32])
def test_top_n_rows_of_integers_equals_a_full_stable_sort(dtype):
    from recs_pipeline.ml.scoring import top_n_rows

    scores = np.random.default_rng(6).integers(0, 4, (30, 9000)).astype(dtype)
    items, values = top_n_rows(scores, 25)
    expected_items, expected_values = _reference_top_n_rows(scores, 25)
    np.testing.assert_array_equal(items, expected_items)
    np.testing.assert_array_equal(values, expected_values)
