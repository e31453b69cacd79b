"""Training determinism and the model store round trip."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from recs_pipeline.ml.matrices import build_training_data
from recs_pipeline.ml.model import ModelParams, load_model, save_model, train

PARAMS = ModelParams(no_components=8, epochs=4, item_alpha=1e-6, random_state=11)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(5)
    interactions = pd.DataFrame(
        {
            "user_id": [f"u{u}" for u in rng.integers(0, 30, 300)],
            "item_id": [f"i{i}" for i in rng.integers(0, 25, 300)],
            "weight": rng.uniform(0.5, 3.0, 300),
        }
    )
    item_tokens = pd.DataFrame({"item_id": [f"i{i}" for i in range(25)], "feature": [f"c:{i % 4}" for i in range(25)], "weight": 1.0})
    return build_training_data(interactions, item_tokens=item_tokens)


def _fit(data, params=PARAMS):
    return train(data.interactions, params, data.user_features, data.item_features, sample_weight=data.weights)


def test_training_is_deterministic_with_one_thread_and_a_seed(data):
    first, second = _fit(data), _fit(data)
    np.testing.assert_array_equal(first.item_embeddings, second.item_embeddings)
    np.testing.assert_array_equal(first.user_embeddings, second.user_embeddings)
    np.testing.assert_array_equal(first.item_biases, second.item_biases)


def test_a_different_seed_gives_a_different_model(data):
    first = _fit(data)
    other = _fit(data, ModelParams(**{**PARAMS.__dict__, "random_state": 12}))
    assert not np.array_equal(first.item_embeddings, other.item_embeddings)


def test_params_reach_the_model():
    model = PARAMS.new_model()
    assert (model.no_components, model.loss, model.item_alpha) == (8, "warp", 1e-6)


def test_save_and_load_round_trip(tmp_path, data):
    model = _fit(data)
    target = tmp_path / "models" / "current"
    save_model(target, model, data.mappings, PARAMS, {"precision@10": 0.25})
    loaded, mappings, params, metrics = load_model(target)
    assert params == PARAMS
    assert metrics == {"precision@10": 0.25}
    assert mappings.item_index == data.mappings.item_index
    users, items = np.repeat(np.arange(5), 25), np.tile(np.arange(25), 5)
    np.testing.assert_array_equal(
        loaded.predict(users, items, data.item_features, data.user_features),
        model.predict(users, items, data.item_features, data.user_features),
    )
    # The optimiser state is kept, so training can resume from the stored model.
    loaded.fit_partial(data.interactions, data.user_features, data.item_features, epochs=1)


def test_save_replaces_the_previous_model_and_leaves_no_temporary_files(tmp_path, data):
    target = tmp_path / "current"
    save_model(target, _fit(data), data.mappings, PARAMS, {"run": 1})
    save_model(target, _fit(data), data.mappings, PARAMS, {"run": 2})
    assert json.loads((target / "metrics.json").read_text()) == {"run": 2}
    assert [p.name for p in tmp_path.iterdir()] == ["current"]
    assert sorted(p.name for p in target.iterdir()) == ["mappings.json", "metrics.json", "model.npz", "params.json"]


def test_failed_save_keeps_the_previous_model(tmp_path, data):
    target = tmp_path / "current"
    save_model(target, _fit(data), data.mappings, PARAMS, {"run": 1})
    with pytest.raises(TypeError):
        save_model(target, _fit(data), data.mappings, PARAMS, {"run": object()})
    assert json.loads((target / "metrics.json").read_text()) == {"run": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["current"]
