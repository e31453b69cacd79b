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


def _grown(data):
    """The same shop a day later: two new users, a new item, and user u0 gone (erased)."""
    interactions = pd.DataFrame(
        {
            "user_id": [u for u in data.mappings.user_ids if u != "u0"] + ["u_new1", "u_new2"],
            "item_id": ["i1"] * (data.mappings.n_users - 1) + ["i_new", "i2"],
            "weight": 1.0,
        }
    )
    item_tokens = pd.DataFrame(
        {"item_id": [f"i{i}" for i in range(25)] + ["i_new"], "feature": [f"c:{i % 4}" for i in range(25)] + ["c:9"], "weight": 1.0}
    )
    return build_training_data(interactions, item_tokens=item_tokens)


def test_warm_start_carries_every_known_row_over_by_id(data):
    from recs_pipeline.ml.model import warm_start

    base = _fit(data)
    grown = _grown(data)
    model, carried = warm_start(base, data.mappings, grown.mappings, PARAMS)
    assert model.user_embeddings.shape == (grown.mappings.n_user_features, PARAMS.no_components)
    old_row = data.mappings.user_index["u7"]
    new_row = grown.mappings.user_index["u7"]
    np.testing.assert_array_equal(model.user_embeddings[new_row], base.user_embeddings[old_row])
    np.testing.assert_array_equal(model.user_embedding_gradients[new_row], base.user_embedding_gradients[old_row])
    # A token keeps its row too, although the identity block in front of it grew.
    old_token = data.mappings.item_feature_index["c:2"]
    new_token = grown.mappings.item_feature_index["c:2"]
    np.testing.assert_array_equal(model.item_embeddings[new_token], base.item_embeddings[old_token])
    # New rows start as a fresh LightFM model's do: small embeddings, zero bias, adagrad state 1.
    fresh = grown.mappings.user_index["u_new1"]
    assert np.abs(model.user_embeddings[fresh]).max() <= 0.5 / PARAMS.no_components
    assert model.user_biases[fresh] == 0 and np.all(model.user_embedding_gradients[fresh] == 1)
    assert carried["user"] == pytest.approx((data.mappings.n_users - 1) / grown.mappings.n_users)


def test_warm_start_base_is_strictly_older_compatible_and_the_chain_is_cut(tmp_path, data):
    from recs_pipeline.ml.model import find_warm_start_base, fit_model

    context = {"role": "serving"}
    model, training = fit_model(data.interactions, PARAMS, data.mappings, data.user_features, data.item_features)
    assert training["chain"] == 0 and training["warm_start_of"] is None
    save_model(tmp_path / "v1", model, data.mappings, PARAMS, {"training": {**training, "horizon": "2026-10-01", "context": context}})

    base = find_warm_start_base(tmp_path, PARAMS, "2026-10-02", context, max_chain=3, epochs=2)
    assert base is not None and base.version == "v1" and base.epochs == 2
    # Re-running the day the model was trained for must not continue from it (repeatable re-runs).
    assert find_warm_start_base(tmp_path, PARAMS, "2026-10-01", context, 3, 2) is None
    # Other hyper-parameters or context: not a base.
    other = ModelParams(**{**PARAMS.__dict__, "no_components": 4})
    assert find_warm_start_base(tmp_path, other, "2026-10-02", context, 3, 2) is None
    assert find_warm_start_base(tmp_path, PARAMS, "2026-10-02", {"role": "evaluation"}, 3, 2) is None
    assert find_warm_start_base(tmp_path, PARAMS, "2026-10-02", context, 0, 2) is None

    grown = _grown(data)
    model2, training2 = fit_model(
        grown.interactions, PARAMS, grown.mappings, grown.user_features, grown.item_features, base=base
    )
    assert (training2["warm_start_of"], training2["chain"], training2["epochs"]) == ("v1", 1, 2)
    again, _ = fit_model(grown.interactions, PARAMS, grown.mappings, grown.user_features, grown.item_features, base=base)
    np.testing.assert_array_equal(model2.user_embeddings, again.user_embeddings)  # repeatable
    save_model(tmp_path / "v2", model2, grown.mappings, PARAMS, {"training": {**training2, "horizon": "2026-10-02", "context": context}})
    assert find_warm_start_base(tmp_path, PARAMS, "2026-10-03", context, 3, 2).version == "v2"
    # v2 is one warm start from scratch: with a chain limit of 1 only v1 qualifies.
    assert find_warm_start_base(tmp_path, PARAMS, "2026-10-03", context, 1, 2).version == "v1"


def test_prune_keeps_the_newest_and_the_protected_versions(tmp_path, data):
    from recs_pipeline.ml.model import prune_models

    model = _fit(data)
    for day in range(1, 6):
        save_model(tmp_path / f"v{day}", model, data.mappings, PARAMS, {"training": {"horizon": f"2026-10-0{day}"}})
    deleted = prune_models(tmp_path, keep=2, protect={"v1"})
    assert sorted(deleted) == ["v2", "v3"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1", "v4", "v5"]


def test_warm_start_on_recent_pairs_trains_only_those_and_a_replayed_share(data):
    from recs_pipeline.ml.model import WarmStartBase, fit_model, recent_and_replayed, recent_mask

    coo = data.interactions.tocoo()
    pairs = pd.DataFrame(
        {"user_id": data.mappings.user_ids[coo.row[:20]], "item_id": data.mappings.item_ids[coo.col[:20]]}
    )
    pairs = pd.concat([pairs, pd.DataFrame({"user_id": ["nobody"], "item_id": ["i1"]})])  # unknown: ignored
    recent = recent_mask(data.interactions, data.mappings, pairs)
    assert recent.sum() == 20 and recent[:20].all()

    chosen = recent_and_replayed(recent, 1.0, seed=3)
    assert chosen[recent].all() and 5 < (chosen & ~recent).sum() < 40  # about as many replayed as recent
    np.testing.assert_array_equal(chosen, recent_and_replayed(recent, 1.0, seed=3))
    assert recent_and_replayed(recent, 0.0, seed=3).sum() == 20
    assert recent_and_replayed(recent, 1e9, seed=3).all()

    base_model = _fit(data)
    base = WarmStartBase(base_model, data.mappings, "v1", 0, 2, "2026-10-01")
    warm, record = fit_model(
        data.interactions, PARAMS, data.mappings, data.user_features, data.item_features, data.weights, base,
        recent=recent, replay=0.0,
    )
    assert (record["recent_pairs"], record["replayed_pairs"]) == (20, 0)
    # Users without a recent interaction were not trained: their own rows did not move.
    trained_users = set(coo.row[:20])
    untouched = [u for u in range(data.mappings.n_users) if u not in trained_users]
    assert untouched
    np.testing.assert_array_equal(warm.user_embeddings[untouched], base_model.user_embeddings[untouched])
    assert not np.array_equal(warm.user_embeddings[sorted(trained_users)], base_model.user_embeddings[sorted(trained_users)])


def test_epochs_are_cut_to_the_update_budget_for_big_training_sets(data):
    from recs_pipeline.ml.model import fit_model

    params = ModelParams(**{**PARAMS.__dict__, "epochs": 20, "max_updates": 30_000_000})
    assert params.epochs_for(600_000) == 20  # the make-run shop keeps its epochs
    assert params.epochs_for(5_900_000) == 5  # the 10M-event shop
    assert params.epochs_for(100_000_000) == 1
    assert ModelParams(**{**PARAMS.__dict__, "epochs": 20}).epochs_for(10**9) == 20  # no budget
    small = ModelParams(**{**PARAMS.__dict__, "max_updates": data.interactions.nnz * 2})
    _, record = fit_model(data.interactions, small, data.mappings, data.user_features, data.item_features)
    assert record["epochs"] == 2
