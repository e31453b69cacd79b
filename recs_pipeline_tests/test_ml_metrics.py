"""Ranking metrics against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from recs_pipeline.ml import metrics


def _recs(lists: dict[str, list[str]]) -> pd.DataFrame:
    return pd.DataFrame(
        [(user, rank, item) for user, items in lists.items() for rank, item in enumerate(items, start=1)],
        columns=["user_id", "rank", "item_id"],
    )


def _relevant(sets: dict[str, list[str]]) -> pd.DataFrame:
    return pd.DataFrame([(user, item) for user, items in sets.items() for item in items], columns=["user_id", "item_id"])


# a: hits at ranks 1 and 3 out of 3 relevant; b: hit at rank 3 out of 1 relevant;
# c: relevant item but no recommendations (all misses); d: recommendations but
# nothing relevant (not evaluated).
RECS = _recs({"a": ["i1", "i2", "i3", "i4"], "b": ["j1", "j2", "j3"], "d": ["i1", "i2", "i3"]})
RELEVANT = _relevant({"a": ["i1", "i3", "i5"], "b": ["j3"], "c": ["x"]})

NDCG_A = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
NDCG_B = (1 / math.log2(4)) / 1


@pytest.mark.parametrize(
    ("function", "expected"),
    [
        (metrics.precision_at_k, (2 / 3 + 1 / 3 + 0) / 3),
        (metrics.recall_at_k, (2 / 3 + 1 + 0) / 3),
        (metrics.f1_at_k, (2 / 3 + 0.5 + 0) / 3),  # a: P = R = 2/3; b: 2 * (1/3 * 1) / (4/3)
        (metrics.ndcg_at_k, (NDCG_A + NDCG_B + 0) / 3),
        (metrics.map_at_k, ((1 + 2 / 3) / 3 + (1 / 3) / 1 + 0) / 3),
    ],
)
def test_metric_at_3_matches_hand_computation(function, expected):
    assert function(RECS, RELEVANT, k=3) == pytest.approx(expected)


def test_ranking_metrics_reports_all_metrics_from_one_pass():
    result = metrics.ranking_metrics(RECS, RELEVANT, k=3)
    assert result["precision@3"] == pytest.approx(1 / 3)
    assert result["map@3"] == pytest.approx(8 / 27)
    assert result["n_users"] == 3


def test_positions_beyond_k_do_not_count():
    assert metrics.precision_at_k(RECS, _relevant({"a": ["i4"]}), k=3) == 0.0
    assert metrics.precision_at_k(RECS, _relevant({"a": ["i4"]}), k=4) == pytest.approx(1 / 4)


def test_map_normalises_by_the_smaller_of_k_and_relevant_count():
    # Two relevant items at ranks 1 and 2 with 5 relevant in total: AP@2 = (1 + 1) / min(2, 5).
    relevant = _relevant({"a": ["i1", "i2", "x1", "x2", "x3"]})
    assert metrics.map_at_k(RECS, relevant, k=2) == pytest.approx(1.0)
    assert metrics.ndcg_at_k(RECS, relevant, k=2) == pytest.approx(1.0)


def test_per_user_auc_counts_ordered_pairs_and_half_ties():
    scores = np.array([[0.9, 0.1, 0.5, 0.3], [0.5, 0.5, 0.2, 0.2]])
    positives = sp.csr_matrix(np.array([[1, 0, 0, 1], [1, 0, 0, 0]]))
    # Row 0: positive pairs (0>1, 0>2, 3>1, 3<2) -> 3/4. Row 1: 0 ties 1, beats 2 and 3 -> 2.5/3.
    np.testing.assert_allclose(metrics.per_user_auc(scores, positives), [0.75, 2.5 / 3])


def test_auc_ignores_excluded_items_and_rows_without_negatives():
    scores = np.array([[0.9, 0.1, 0.5, 0.3], [0.1, 0.2, 0.3, 0.4]])
    positives = sp.csr_matrix(np.array([[1, 0, 0, 1], [1, 1, 1, 1]]))
    exclude = sp.csr_matrix(np.array([[0, 0, 1, 0], [0, 0, 0, 0]]))
    auc = metrics.per_user_auc(scores, positives, exclude)
    assert auc[0] == pytest.approx(1.0)  # without item 2 both positives beat the only negative
    assert np.isnan(auc[1])
    assert metrics.mean_auc(scores, positives, exclude) == pytest.approx(1.0)


def test_auc_by_counting_equals_the_rank_sum_over_whole_rows():
    from scipy.stats import rankdata

    rng = np.random.default_rng(0)
    scores = np.round(rng.random((30, 200)), 2)  # rounded: many ties
    positives = sp.csr_matrix(rng.random((30, 200)) < 0.05)
    exclude = sp.csr_matrix(rng.random((30, 200)) < 0.1)
    expected = []
    for row in range(30):
        keep = ~exclude[row].toarray().ravel()
        pos = positives[row].toarray().ravel()[keep]
        ranks = rankdata(scores[row, keep])
        n_pos, n_neg = pos.sum(), (~pos).sum()
        expected.append((ranks[pos].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg) if n_pos and n_neg else np.nan)
    np.testing.assert_allclose(metrics.per_user_auc(scores, positives, exclude, chunk=7), expected)


def test_catalogue_coverage_is_share_of_distinct_recommended_items():
    assert metrics.catalogue_coverage(RECS, n_catalogue_items=20) == pytest.approx(7 / 20)


def test_popularity_bias_compares_recommended_with_catalogue_popularity():
    popularity = pd.Series({"a": 10, "b": 5, "c": 1, "d": 0})
    recs = pd.DataFrame({"item_id": ["a", "a", "b"]})
    bias = metrics.popularity_bias(recs, popularity)
    assert bias["mean_popularity_percentile"] == pytest.approx((1.0 + 1.0 + 0.75) / 3)
    assert bias["mean_log_popularity"] == pytest.approx((2 * math.log(11) + math.log(6)) / 3)
    assert bias["catalogue_mean_log_popularity"] == pytest.approx((math.log(11) + math.log(6) + math.log(2)) / 4)


def test_repeat_and_explore_precision_add_up_to_precision_and_recall_splits_by_kind():
    from recs_pipeline.ml.metrics import precision_at_k, repeat_explore_metrics

    recs = pd.DataFrame({"user_id": ["a", "a", "b", "b"], "item_id": ["x", "y", "x", "z"], "rank": [1, 2, 1, 2]})
    relevant = pd.DataFrame({"user_id": ["a", "a", "b"], "item_id": ["x", "w", "z"]})
    bought = pd.DataFrame({"user_id": ["a", "b"], "item_id": ["x", "x"]})  # x is a repeat for both
    m = repeat_explore_metrics(recs, relevant, bought, 2)
    # a: x is a repeat hit, y a miss; b: x a repeat miss, z an explore hit.
    assert m["repeat_precision@2"] == 0.25 and m["explore_precision@2"] == 0.25
    assert m["repeat_precision@2"] + m["explore_precision@2"] == precision_at_k(recs, relevant, 2)
    assert m["repeat_recall@2"] == 1.0  # only a has a relevant repeat (x), found
    assert m["explore_recall@2"] == 0.5  # a misses w, b finds z
    assert m["repeat_share@2"] == 0.5
