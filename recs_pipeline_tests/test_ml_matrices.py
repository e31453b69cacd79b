"""Mappings and matrices: cold-start entities, identity blocks, normalisation, modes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recs_pipeline.ml.matrices import (
    Mappings,
    build_interaction_matrices,
    build_training_data,
    cold_feature_matrix,
)

INTERACTIONS = pd.DataFrame(
    {
        "user_id": ["u1", "u1", "u2", "u2"],
        "item_id": ["i1", "i2", "i2", "i2"],  # u2-i2 twice: weights add up
        "weight": [1.0, 2.0, 0.5, 1.5],
    }
)
USER_TOKENS = pd.DataFrame(
    {
        "user_id": ["u1", "u1", "u3"],  # u3: features but no interactions (cold start)
        "feature": ["country:GB", "age_band:25-34", "country:FR"],
        "weight": [1.0, 1.0, 1.0],
    }
)
ITEM_TOKENS = pd.DataFrame(
    {
        "item_id": ["i1", "i1", "i2", "i9"],  # i9: new item never bought
        "feature": ["category:coffee", "word:dark", "category:tea", "category:coffee"],
        "weight": [1.0, 0.5, 1.0, 1.0],
    }
)


def test_mappings_include_entities_known_only_by_features():
    data = build_training_data(INTERACTIONS, USER_TOKENS, ITEM_TOKENS)
    assert list(data.mappings.user_ids) == ["u1", "u2", "u3"]
    assert list(data.mappings.item_ids) == ["i1", "i2", "i9"]
    assert data.mappings.user_index == {"u1": 0, "u2": 1, "u3": 2}
    assert data.interactions.shape == (3, 3)
    assert data.interactions.tocsr()[2].nnz == 0


def test_interaction_matrix_is_binary_and_weights_are_summed():
    data = build_training_data(INTERACTIONS, USER_TOKENS, ITEM_TOKENS)
    np.testing.assert_array_equal(data.interactions.toarray(), [[1, 1, 0], [0, 1, 0], [0, 0, 0]])
    np.testing.assert_allclose(data.weights.toarray(), [[1, 2, 0], [0, 2, 0], [0, 0, 0]])
    # LightFM needs sample weights in the interactions' exact order.
    np.testing.assert_array_equal(data.interactions.row, data.weights.row)
    np.testing.assert_array_equal(data.interactions.col, data.weights.col)


def test_interactions_outside_the_mappings_are_dropped():
    mappings = Mappings(
        user_ids=pd.Index(["u1"]), item_ids=pd.Index(["i1"]), user_tokens=pd.Index([]), item_tokens=pd.Index([])
    )
    binary, weights = build_interaction_matrices(INTERACTIONS, mappings)
    assert binary.nnz == 1 and weights.toarray()[0, 0] == 1.0


def test_hybrid_features_are_identity_then_tokens_with_rows_summing_to_one():
    data = build_training_data(INTERACTIONS, USER_TOKENS, ITEM_TOKENS)
    m = data.mappings
    assert data.item_features.shape == (3, 3 + 3)
    i1 = data.item_features.toarray()[0]
    coffee, dark = m.item_feature_index["category:coffee"], m.item_feature_index["word:dark"]
    assert coffee >= m.n_items and dark >= m.n_items
    # i1: identity 1, coffee 1, dark 0.5 -> divided by 2.5
    assert i1[0] == pytest.approx(0.4) and i1[coffee] == pytest.approx(0.4) and i1[dark] == pytest.approx(0.2)
    np.testing.assert_allclose(data.user_features.sum(axis=1).A1, 1.0)
    np.testing.assert_allclose(data.item_features.sum(axis=1).A1, 1.0)


def test_identity_weight_shifts_the_balance_towards_the_own_embedding():
    data = build_training_data(INTERACTIONS, USER_TOKENS, ITEM_TOKENS, user_identity_weight=2.0)
    u1 = data.user_features.toarray()[0]
    assert u1[0] == pytest.approx(0.5)  # 2 / (2 + 1 + 1)


def test_cf_mode_has_identity_features_only():
    data = build_training_data(INTERACTIONS, USER_TOKENS, ITEM_TOKENS, mode="cf")
    assert data.mappings.n_user_features == data.mappings.n_users
    np.testing.assert_array_equal(data.user_features.toarray(), np.eye(data.mappings.n_users))


def test_content_mode_has_tokens_only():
    data = build_training_data(INTERACTIONS, USER_TOKENS, ITEM_TOKENS, mode="content")
    m = data.mappings
    assert data.item_features.shape == (m.n_items, len(m.item_tokens))
    assert m.item_feature_index["category:coffee"] == 0
    # i1 and i9 share "category:coffee"; i9 is described by it alone.
    np.testing.assert_allclose(data.item_features.toarray()[2], [1.0, 0.0, 0.0])


def test_cold_feature_rows_have_model_width_and_ignore_unknown_tokens():
    data = build_training_data(INTERACTIONS, USER_TOKENS, ITEM_TOKENS)
    m = data.mappings
    newcomers = pd.DataFrame(
        {"user_id": ["n1", "n1", "n2"], "feature": ["country:GB", "country:XX", "country:FR"], "weight": 1.0}
    )
    rows = cold_feature_matrix(newcomers, pd.Index(["n1", "n2", "n3"]), m, side="user").toarray()
    assert rows.shape == (3, m.n_user_features)
    assert rows[:, : m.n_users].sum() == 0  # no identity of their own
    assert rows[0, m.user_feature_index["country:GB"]] == pytest.approx(1.0)
    assert rows[1, m.user_feature_index["country:FR"]] == pytest.approx(1.0)
    assert rows[2].sum() == 0  # no known feature at all


def test_mappings_round_trip_through_json_form():
    mappings = build_training_data(INTERACTIONS, USER_TOKENS, ITEM_TOKENS).mappings
    restored = Mappings.from_dict(mappings.to_dict())
    assert restored.user_index == mappings.user_index
    assert restored.item_feature_index == mappings.item_feature_index
    assert restored.n_item_features == mappings.n_item_features


def test_weak_negatives_are_minus_one_and_skip_positives():
    from recs_pipeline.ml.matrices import build_training_data, with_weak_negatives

    interactions = pd.DataFrame({"user_id": ["u1", "u2"], "item_id": ["a", "b"], "weight": [2.0, 3.0]})
    item_tokens = pd.DataFrame({"item_id": ["a", "b", "c"], "feature": ["f", "f", "g"], "weight": 1.0})
    data = build_training_data(interactions, None, item_tokens)
    negatives = pd.DataFrame({"user_id": ["u1", "u1", "u2", "zz"], "item_id": ["c", "a", "a", "a"]})
    out = with_weak_negatives(data, negatives, weight=0.25)
    dense = out.interactions.toarray()
    weights = out.weights.toarray()
    u, i = data.mappings.user_index, data.mappings.item_index
    assert dense[u["u1"], i["a"]] == 1 and dense[u["u2"], i["b"]] == 1  # positives kept
    assert dense[u["u1"], i["c"]] == -1 and dense[u["u2"], i["a"]] == -1  # shown, ignored
    assert weights[u["u1"], i["c"]] == 0.25 and weights[u["u1"], i["a"]] == 2.0
    assert (out.interactions.row == out.weights.row).all() and (out.interactions.col == out.weights.col).all()
    assert out.interactions.nnz == 4  # the unknown user and the positive pair were skipped
