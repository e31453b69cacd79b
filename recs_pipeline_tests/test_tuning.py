"""Tuning: the validation split never reads the hold-out, the studies are repeatable,
tuned.json is applied by load_settings below explicit configuration, and tuning_job
(never the nightly job) materialises ml/tuned_parameters on a small generated shop."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import warnings

import dagster as dg
import pandas as pd
import pytest

from recs_pipeline.definitions import build_defs
from recs_pipeline.engine.duckdb import DuckDBEngine
from recs_pipeline.defs.tuning import TUNED_KEY, load_tuning_data, run_tuning
from recs_pipeline.ml.model import ModelParams
from recs_pipeline.ranking.ranker import RankerParams
from recs_pipeline.ranking.tifu_knn import TifuParams
from recs_pipeline.settings import TUNED_FILE, RankingSettings, load_settings
from recs_pipeline.tuning import tuned_document, validation_split
from recs_pipeline.tuning.studies import lightfm_space, ranker_space, tifu_space
from recs_pipeline.warehouse import connection

from .conftest import settings_for

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
TRIALS = {"lightfm": 3, "tifu_knn": 4, "ranker": 3}
RUN_CONFIG = {"ops": {"ml__tuned_parameters": {"config": {
    "lightfm_trials": TRIALS["lightfm"], "tifu_knn_trials": TRIALS["tifu_knn"], "ranker_trials": TRIALS["ranker"]}}}}  # fmt: skip


# --- pure parts ---------------------------------------------------------------------


def test_validation_split_lies_before_the_holdout():
    split = validation_split("2026-09-09", 2, [pd.Timestamp("2026-09-03"), pd.Timestamp("2026-09-05"),
                                               pd.Timestamp("2026-09-06")])  # fmt: skip
    assert split.cutoff == pd.Timestamp("2026-09-07")
    # A training cut-off's labels [c, c + H) must end by v: 09-06 would label 09-06..09-07 and 09-07 is v.
    assert split.training_cutoffs == (pd.Timestamp("2026-09-03"), pd.Timestamp("2026-09-05"))
    assert split.cutoffs[-1] == split.cutoff < split.first_holdout
    with pytest.raises(ValueError):
        validation_split("2026-09-09", 0)


def test_search_spaces_hold_the_current_values():
    for space, current in (
        (lightfm_space(ModelParams(no_components=48, epochs=20, learning_rate=0.5, item_alpha=1e-6, user_alpha=1e-6)),
         dict(no_components=48, epochs=20, learning_rate=0.5, item_alpha=1e-6, user_alpha=1e-6)),
        (tifu_space(TifuParams()), dict(tifu_neighbours=300, tifu_within_decay=0.9, tifu_group_decay=0.7,
                                        tifu_alpha=0.7, tifu_groups=7)),
        (ranker_space(RankerParams(negatives_per_user=40)), dict(n_estimators=300, learning_rate=0.05, num_leaves=31,
                                                                 min_child_samples=20, negatives_per_user=40)),
    ):  # fmt: skip
        assert {p.name for p in space} == set(current)
        for p in space:
            assert p.low <= current[p.name] <= p.high and p.low < p.high, p
    # No log range holds 0: no regularisation, or every negative, stays as it is.
    assert "item_alpha" not in {p.name for p in lightfm_space(ModelParams(item_alpha=0.0))}
    assert "negatives_per_user" not in {p.name for p in ranker_space(RankerParams(negatives_per_user=0))}


def test_tuned_file_is_applied_below_explicit_configuration(tmp_path):
    models = tmp_path / "models"
    models.mkdir()
    (models / TUNED_FILE).write_text(json.dumps({
        "model": {"learning_rate": 0.9, "no_components": 32.0, "holdout_days": 1},
        "ranking": {"num_leaves": 63, "n_estimators": 120, "tifu_alpha": 0.4, "enabled": False},
    }))  # fmt: skip
    config = tmp_path / "recs.toml"
    config.write_text("[model]\nlearning_rate = 0.3\n\n[ranking]\nnum_leaves = 15\n")
    env = {"RECS_DATA_DIR": str(tmp_path), "RECS_MODEL_DIR": str(models), "RECS_CONFIG": str(config)}

    settings = load_settings(env)
    assert settings.model.learning_rate == 0.3  # the TOML file sets it: explicit wins
    assert settings.model.no_components == 32 and isinstance(settings.model.no_components, int)
    assert settings.model.holdout_days == 7  # not a tunable key
    assert settings.ranking.num_leaves == 15
    assert settings.ranking.n_estimators == 120 and settings.ranking.tifu_alpha == 0.4
    assert settings.ranking.enabled is True  # not a tunable key

    ignored = load_settings({**env, "RECS_IGNORE_TUNED": "1"})
    assert (ignored.model.no_components, ignored.ranking.n_estimators) == (48, RankingSettings().n_estimators)

    (models / TUNED_FILE).write_text("{not json")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        damaged = load_settings(env)
    assert damaged.model.no_components == 48 and any(TUNED_FILE in str(w.message) for w in caught)


def test_only_tuning_job_selects_the_tuning_asset(tmp_path):
    defs = build_defs(settings_for(tmp_path))
    nightly = defs.resolve_job_def("nightly_job").asset_layer.selected_asset_keys
    tuning = defs.resolve_job_def("tuning_job").asset_layer.selected_asset_keys
    assert TUNED_KEY not in nightly
    assert tuning == {TUNED_KEY}
    # The nightly job still runs everything else, the model and the ranker included.
    everything = set(defs.resolve_asset_graph().get_all_asset_keys())
    assert nightly == everything - {TUNED_KEY}
    assert defs.resolve_schedule_def("nightly_schedule").job_name == "nightly_job"


def test_the_tuning_package_does_not_import_dagster():
    code = "import sys, recs_pipeline.tuning; print('dagster' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


# --- on a small generated shop ------------------------------------------------------


@pytest.fixture(scope="module")
def built(small_shop, tmp_path_factory):
    """What tuning reads, materialised by the nightly job over every day, then
    tuning_job with a few trials. Two hold-out days, so that the ten days leave two
    ranker training cut-offs before the validation cut-off."""
    root, _ = small_shop
    settings = settings_for(tmp_path_factory.mktemp("tuning"), RECS_LANDING_DIR=str(root / "landing"),
                            RECS_HOLDOUT_DAYS="2")  # fmt: skip
    from recs_pipeline.sources.adapters import build_source

    days = build_source(settings).event_days()
    defs = build_defs(settings)
    graph = defs.resolve_asset_graph()
    # Upstream of the tuning asset, and the quality tables the blocking checks on the way read.
    needed = ((dg.AssetSelection.assets(TUNED_KEY).upstream() | dg.AssetSelection.groups("quality").upstream())
              - dg.AssetSelection.assets(TUNED_KEY)).resolve(graph)  # fmt: skip
    nightly = defs.resolve_job_def("nightly_job").execute_in_process(
        asset_selection=list(needed), tags={RANGE_START: days[0].isoformat(), RANGE_END: days[-1].isoformat()},
        raise_on_error=False,
    )  # fmt: skip
    assert nightly.success
    result = defs.resolve_job_def("tuning_job").execute_in_process(run_config=RUN_CONFIG, raise_on_error=False)
    return settings, result


def stored_trials(settings, warehouse=None) -> pd.DataFrame:
    with connection(warehouse or settings.warehouse_path, read_only=True) as con:
        return con.execute("SELECT * FROM ml.tuning_trials ORDER BY study, trial").df()


def normalised(trials: pd.DataFrame) -> pd.DataFrame:
    frame = trials.astype({"trial": "int64", "value": "float64"})
    return frame.sort_values(["study", "trial"], ignore_index=True)[["study", "trial", "value", "params", "state"]]


def tune_on(settings, warehouse, trials=TRIALS, seed=42):
    with DuckDBEngine(warehouse).session(read_only=True) as db:
        data = load_tuning_data(db, settings)
    return data, run_tuning(data, settings, trials, seed)


def test_tuning_job_stores_trials_best_parameters_and_metadata(built):
    settings, result = built
    assert result.success
    trials = stored_trials(settings)
    with connection(settings.warehouse_path, read_only=True) as con:
        types = dict(con.execute("SELECT column_name, data_type FROM information_schema.columns "
                                 "WHERE table_schema = 'ml' AND table_name = 'tuning_trials'").fetchall())  # fmt: skip
    assert types == {"study": "VARCHAR", "trial": "INTEGER", "value": "DOUBLE", "params": "VARCHAR", "state": "VARCHAR"}
    assert trials.groupby("study").size().to_dict() == TRIALS
    assert set(trials["state"]) == {"complete"}

    tuned = json.loads((settings.model_dir / TUNED_FILE).read_text())
    assert tuned["validation_cutoff"] == str(pd.Timestamp(tuned["first_holdout"]) - pd.Timedelta(days=2))
    assert tuned["trials"] == sum(TRIALS.values())
    sections = {"lightfm": "model", "tifu_knn": "ranking", "ranker": "ranking"}
    for study, rows in trials.groupby("study"):
        # Trial 0 is the current settings; "values" is the best trial; written only when it beats trial 0.
        assert tuned["defaults"][study] == pytest.approx(rows.loc[rows["trial"] == 0, "value"].item())
        assert tuned["values"][study] == pytest.approx(rows["value"].max())
        assert tuned["written"][study] == (tuned["values"][study] > tuned["defaults"][study])
        best = tuned["best_params"][study]
        section = tuned[sections[study]]
        if tuned["written"][study]:
            assert {k: section[k] for k in best} == best
    written_keys = {k for s, w in tuned["written"].items() if w for k in tuned["best_params"][s]}
    assert set(tuned["model"]) | set(tuned["ranking"]) == written_keys  # nothing else (no earlier file)

    # Later runs load what was written (the TOML file sets nothing here).
    later = load_settings({"RECS_DATA_DIR": str(settings.data_dir), "RECS_HOLDOUT_DAYS": "2"})
    for key, value in tuned["model"].items():
        assert getattr(later.model, key) == pytest.approx(value)
    for key, value in tuned["ranking"].items():
        assert getattr(later.ranking, key) == pytest.approx(value)

    [materialization] = result.asset_materializations_for_node("ml__tuned_parameters")
    meta = materialization.metadata
    assert meta["dagster/row_count"].value == len(trials)
    assert "data:image/png;base64," in meta["optimisation_history"].value
    summary = meta["best_vs_current"].value
    assert all(study in summary for study in TRIALS)
    assert {f"{s}/decision" for s in TRIALS} <= set(meta)


def test_same_data_and_seed_give_the_same_trials(built):
    settings, _ = built
    _, again = tune_on(settings, settings.warehouse_path)
    pd.testing.assert_frame_equal(normalised(again.trials), normalised(stored_trials(settings)))
    # ...and the seed is what decides them.
    _, other = tune_on(settings, settings.warehouse_path, {"tifu_knn": 3}, seed=7)
    stored = stored_trials(settings)
    assert other.trials["params"].iloc[1] != stored.loc[stored["study"] == "tifu_knn", "params"].iloc[1]


def mutate(warehouse, start: str, end: str) -> None:
    """Drop about half of the purchases in [start, end) (never the newest event, which
    fixes the split), copy earlier purchases into it, and add a user and an item that
    appear only there (with the feature rows dbt would give them)."""
    with connection(warehouse) as con:
        last = con.execute("SELECT max(event_ts) FROM staging.stg_events").fetchall()[0][0]
        window = f"event_ts >= TIMESTAMP '{start}' AND event_ts < TIMESTAMP '{end}'"
        con.execute(f"DELETE FROM staging.stg_events WHERE {window} AND event_type = 'purchase' "
                    f"AND hash(event_id) % 2 = 0 AND event_ts < TIMESTAMP '{last}'")  # fmt: skip
        shift = (pd.Timestamp(end) - pd.Timestamp(start)).days
        con.execute(f"""INSERT INTO staging.stg_events SELECT * REPLACE (event_id || '-copy' AS event_id,
                            event_ts + INTERVAL {shift} DAY AS event_ts)
                        FROM staging.stg_events WHERE event_type = 'purchase'
                          AND event_ts >= TIMESTAMP '{start}' - INTERVAL {shift} DAY AND event_ts < TIMESTAMP '{start}'
                          AND event_ts + INTERVAL {shift} DAY < TIMESTAMP '{last}'""")  # fmt: skip
        con.execute(f"""INSERT INTO staging.stg_events SELECT * REPLACE ('U-NEW' AS user_id,
                            CASE WHEN hash(event_id) % 2 = 0 THEN 'I-NEW' ELSE item_id END AS item_id)
                        FROM staging.stg_events WHERE event_type = 'purchase' AND {window} LIMIT 5""")  # fmt: skip
        con.execute("INSERT INTO features.item_features BY NAME SELECT 'I-NEW' AS item_id, false AS in_catalogue, "
                    "true AS in_stock")  # fmt: skip
        con.execute("INSERT INTO features.user_features BY NAME SELECT 'U-NEW' AS user_id, 'ZZ' AS country")
        con.execute("INSERT INTO features.user_feature_tokens SELECT 'U-NEW', 'country:ZZ', 1.0")


def test_no_trial_reads_the_holdout(built, tmp_path):
    settings, _ = built
    stored = normalised(stored_trials(settings))
    tuned = json.loads((settings.model_dir / TUNED_FILE).read_text())
    first_holdout, v = pd.Timestamp(tuned["first_holdout"]), pd.Timestamp(tuned["validation_cutoff"])
    with connection(settings.warehouse_path, read_only=True) as con:
        last = con.execute("SELECT max(event_ts) FROM staging.stg_events").fetchall()[0][0]

    changed_holdout = tmp_path / "holdout.duckdb"
    shutil.copy(settings.warehouse_path, changed_holdout)
    mutate(changed_holdout, str(first_holdout), str(pd.Timestamp(last) + pd.Timedelta(seconds=1)))
    with connection(changed_holdout, read_only=True) as con:
        assert con.execute("SELECT count(*) FROM staging.stg_events WHERE user_id = 'U-NEW'").fetchall()[0][0] > 0
    data, result = tune_on(settings, changed_holdout)
    assert data.split.first_holdout == first_holdout
    assert data.shop.purchases["event_ts"].max() < first_holdout
    assert "I-NEW" not in set(data.shop.item_ids) and "U-NEW" not in set(data.user_tokens["user_id"])
    pd.testing.assert_frame_equal(normalised(result.trials), stored)

    # The same change to the validation days does change the trials: the check above can fail.
    changed_validation = tmp_path / "validation.duckdb"
    shutil.copy(settings.warehouse_path, changed_validation)
    mutate(changed_validation, str(v), str(first_holdout))
    _, control = tune_on(settings, changed_validation)
    assert not normalised(control.trials)["value"].equals(stored["value"])


def test_tuned_document_keeps_earlier_values_of_studies_that_did_not_improve(built):
    settings, _ = built
    _, result = tune_on(settings, settings.warehouse_path, {"lightfm": 1, "tifu_knn": 0, "ranker": 0})
    assert not result.studies["lightfm"].improved  # one trial: the current settings themselves
    assert result.studies["tifu_knn"].decision.startswith("skipped")
    previous = {"model": {"epochs": 17, "max_sampled": 3}, "ranking": {"tifu_alpha": 0.2, "enabled": False}}
    document = tuned_document(result, previous, "2026-01-01T00:00:00+00:00")
    assert document["model"] == {"epochs": 17} and document["ranking"] == {"tifu_alpha": 0.2}
    assert document["written"] == {"lightfm": False, "tifu_knn": False, "ranker": False}
    assert document["values"]["tifu_knn"] is None and document["trials"] == 1
