"""The LightGBM ranker on small hand-built candidates: no leakage, learns, repeatable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recs_pipeline.ranking.ranker import RankerParams, labels, pair_features, rank_candidates, train_ranker

CUTOFF = pd.Timestamp("2026-09-10")


def ts(day: int) -> pd.Timestamp:
    return pd.Timestamp("2026-09-01") + pd.Timedelta(days=day)


def candidates(rows: list[tuple]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["user_id", "item_id", "generator", "score", "rank"])


def test_features_come_only_from_events_before_the_cutoff():
    """u1 buys X twice before the cut-off and Y only after it (in the label period): were
    later events leaking in, Y would look bought before and label == bought_before."""
    events = pd.DataFrame(
        [("u1", "X", ts(1)), ("u1", "X", ts(3)), ("u1", "Y", ts(10)), ("u1", "Y", ts(12)), ("u2", "Y", ts(3))],
        columns=["user_id", "item_id", "event_ts"],
    )
    cands = candidates([("u1", "X", "buy_again", 2.0, 1), ("u1", "Y", "popular", 2.0, 1), ("u2", "X", "popular", 1.0, 1)])
    frame = pair_features(cands, events, CUTOFF, generators=["buy_again", "popular"])
    truncated = pair_features(cands, events[events["event_ts"] < CUTOFF], CUTOFF, generators=["buy_again", "popular"])
    pd.testing.assert_frame_equal(frame, truncated)
    row = frame.set_index(["user_id", "item_id"])
    assert row.loc[("u1", "Y"), "ui_count"] == 0 and row.loc[("u1", "Y"), "bought_before"] == 0
    # X: bought on 09-02 and 09-04 (a gap of 2 days), 6 days before the cut-off: due 3x over.
    assert row.loc[("u1", "X"), "ui_count"] == 2
    assert row.loc[("u1", "X"), "ui_usual_gap"] == pytest.approx(2.0)
    assert row.loc[("u1", "X"), "ui_due_ratio"] == pytest.approx(6 / 2)
    # Y's popularity counts u2's purchase before the cut-off only, not u1's after it.
    assert row.loc[("u1", "Y"), "item_pop_30"] == 1
    # The missing source of a pair is NaN, not 0.
    assert np.isnan(row.loc[("u1", "X"), "popular_rank"]) and row.loc[("u1", "X"), "buy_again_rank"] == 1
    assert list(labels(frame, events, CUTOFF, CUTOFF + pd.Timedelta(days=7))) == [0, 1, 0]


def _shop(seed: int, n_users: int = 300, n_items: int = 40) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Candidates from two sources; what users buy next follows source B's score plus
    whether they bought the item before, never source A (noise)."""
    rng = np.random.default_rng(seed)
    users = np.repeat([f"u{k:03d}" for k in range(n_users)], n_items)
    items = np.tile([f"i{k:02d}" for k in range(n_items)], n_users)
    a, b = rng.random(len(users)), rng.random(len(users))
    frame = pd.DataFrame({"user_id": users, "item_id": items})
    cands = pd.concat([
        frame.assign(generator="a", score=a), frame.assign(generator="b", score=b),
    ], ignore_index=True)  # fmt: skip
    cands["rank"] = cands.groupby(["user_id", "generator"])["score"].rank(ascending=False, method="first")
    history = frame.sample(frac=0.1, random_state=seed).assign(event_ts=ts(2))
    bought = frame.merge(history.assign(seen=1), how="left", on=["user_id", "item_id"])["seen"].fillna(0).to_numpy()
    utility = 3 * b + 2 * bought + rng.normal(0, 0.3, len(b))
    buys = frame[utility > np.quantile(utility, 0.95)].assign(event_ts=CUTOFF + pd.Timedelta(days=1))
    return cands, pd.concat([history, buys], ignore_index=True)


def _labelled(seed: int) -> pd.DataFrame:
    cands, events = _shop(seed)
    frame = pair_features(cands, events, CUTOFF, generators=["a", "b"])
    return frame.assign(label=labels(frame, events, CUTOFF, CUTOFF + pd.Timedelta(days=7)))


def _precision_at(frame: pd.DataFrame, order: pd.Series, n: int = 3) -> float:
    ranked = frame.assign(_order=order).sort_values(["user_id", "_order", "item_id"], ascending=[True, False, True])
    return float(ranked.groupby("user_id").head(n)["label"].mean())


def test_the_ranker_learns_which_source_and_feature_matter_and_is_repeatable():
    params = RankerParams(n_estimators=60, num_leaves=7, min_child_samples=5)
    ranker = train_ranker([_labelled(1), _labelled(2)], params, generators=["a", "b"])
    test = _labelled(3)
    ranked = rank_candidates(ranker, test, n=3)
    hits = ranked.merge(test[["user_id", "item_id", "label"]], on=["user_id", "item_id"])
    p_ranker = float(hits["label"].mean())
    p_a, p_b = _precision_at(test, test["a_score"]), _precision_at(test, test["b_score"])
    # B alone is good, A is noise; the ranker adds "bought before" on top of B.
    assert p_ranker > p_b > p_a and p_ranker > 1.2 * p_b, (p_ranker, p_b, p_a)
    gain = ranker.importance().set_index("feature")["gain"]
    signal = {"b_score", "b_rank", "ui_count", "bought_before"}
    assert set(gain.index[:2]) <= signal and gain[["a_score", "a_rank"]].sum() < 0.1 * gain.sum(), gain
    assert set(ranked["generator"]) <= {"a", "b"} and ranked.groupby("user_id").size().eq(3).all()
    again = rank_candidates(train_ranker([_labelled(1), _labelled(2)], params, generators=["a", "b"]), test, n=3)
    pd.testing.assert_frame_equal(ranked, again)


def test_a_training_cutoffs_lightfm_is_the_same_model_for_a_week_of_nights():
    """Rolling cut-offs share the model of the grid step that holds them: it starts on
    or before the cut-off (never after: it would see the cut-off's labels), within
    ``days`` of it, and changes once every ``days`` nights."""
    from itertools import groupby

    from recs_pipeline.defs.ranking import model_cutoff

    nights = pd.date_range("2026-10-01 06:00", periods=30, freq="D")
    starts = [model_cutoff(night, 7) for night in nights]
    assert all(s <= night < s + pd.Timedelta(days=7) for s, night in zip(starts, nights))
    assert {s.day_name() for s in starts} == {"Monday"} and all(s == s.normalize() for s in starts)
    assert [len(list(run)) for _, run in groupby(starts)][1:-1] == [7, 7, 7]
    assert model_cutoff(pd.Timestamp("2026-10-05"), 7) == pd.Timestamp("2026-10-05")  # a Monday is its own start


def test_the_rankers_are_trained_as_of_the_start_of_their_retraining_period():
    """Each hold-out's rankers are trained as of a day at or before it (so the evaluated
    ranker never saw the hold-out's labels), the same day for every hold-out of a
    period, and the hold-out itself when the rankers are retrained every run."""
    from recs_pipeline.defs.ranking import ranker_anchor

    holdouts = pd.date_range("2026-10-01", periods=21, freq="D")
    anchors = [ranker_anchor(h, 7) for h in holdouts]
    assert all(a <= h < a + pd.Timedelta(days=7) for a, h in zip(anchors, holdouts))
    assert len(set(anchors)) == 4  # Thursday 1st .. Tuesday 21st: four weeks from Mondays
    assert [ranker_anchor(h, 1) for h in holdouts] == list(holdouts)
    assert [ranker_anchor(h, 0) for h in holdouts] == list(holdouts)


def test_a_change_to_the_ranking_code_changes_the_key_of_the_stored_rankers(tmp_path, monkeypatch):
    """A stored ranker is reused only by the code that made its features."""
    import shutil
    from pathlib import Path

    from recs_pipeline.defs import ranking as ranking_assets
    from recs_pipeline.ranking import stage

    package = Path(stage.__file__).parent
    copy = tmp_path / "ranking"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(stage, "__file__", str(copy / "stage.py"))
    version = ranking_assets.ranking_code_version.__wrapped__
    before = version()
    assert version() == before  # a pure function of the files
    (copy / "ranker.py").write_text((copy / "ranker.py").read_text() + "\n# one more feature\n")
    assert version() != before


def test_the_compiled_ranker_gives_lightgbms_lists_and_is_compiled_once(tmp_path):
    from recs_pipeline.ranking.ranker import compiled_ranker, load_ranker, save_ranker

    params = RankerParams(n_estimators=40, num_leaves=7, min_child_samples=5)
    save_ranker(train_ranker([_labelled(1), _labelled(2)], params, generators=["a", "b"]), tmp_path / "r")
    ranker, _ = load_ranker(tmp_path / "r")
    test = _labelled(3)
    compiled = compiled_ranker(ranker, tmp_path / "r")
    assert compiled.compiled is not None and ranker.compiled is None
    np.testing.assert_allclose(compiled.predict(test), ranker.predict(test), rtol=0, atol=1e-9)
    pd.testing.assert_frame_equal(
        rank_candidates(compiled, test, n=3).drop(columns="score"), rank_candidates(ranker, test, n=3).drop(columns="score")
    )
    [library] = (tmp_path / "r").glob("ranker.*.so")  # cached for this machine, then loaded
    before = library.stat().st_mtime_ns
    again = compiled_ranker(ranker, tmp_path / "r")
    assert library.stat().st_mtime_ns == before and list((tmp_path / "r").glob("*.so")) == [library]
    np.testing.assert_array_equal(again.predict(test), compiled.predict(test))
