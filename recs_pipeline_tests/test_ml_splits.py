"""Splits: sizes, no leakage, determinism, and the Microsoft Recommenders semantics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recs_pipeline.ml.splits import stratified_split, time_holdout


@pytest.fixture
def ratings() -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows_per_user = {"u1": 1, "u2": 2, "u3": 3, "u4": 4, "u5": 6, "u6": 10, "u7": 41}
    users = np.repeat(list(rows_per_user), list(rows_per_user.values()))
    return pd.DataFrame(
        {"user_id": users, "item_id": [f"i{k}" for k in range(len(users))], "rating": rng.integers(1, 6, len(users))}
    )


def _reference_stratified_split(data, ratio, seed):
    """Microsoft Recommenders' python_stratified_split, written out group by group."""
    parts = []
    for _, group in data.sample(frac=1, random_state=seed).groupby("user_id"):
        cut = round(ratio * len(group))
        parts.append((group.iloc[:cut], group.iloc[cut:]))
    return pd.concat(p[0] for p in parts), pd.concat(p[1] for p in parts)


def test_stratified_split_sizes_follow_round_half_even(ratings):
    train, test = stratified_split(ratings, ratio=0.75, seed=42)
    train_sizes = train.groupby("user_id").size()
    # round(0.75 * n): 1 -> 1, 2 -> 2 (1.5 rounds to even), 3 -> 2, 4 -> 3, 6 -> 4 (4.5), 10 -> 8 (7.5), 41 -> 31
    assert train_sizes.to_dict() == {"u1": 1, "u2": 2, "u3": 2, "u4": 3, "u5": 4, "u6": 8, "u7": 31}
    assert len(train) + len(test) == len(ratings)


def test_stratified_split_has_no_overlap_and_loses_no_row(ratings):
    train, test = stratified_split(ratings, seed=1)
    assert set(train.index).isdisjoint(test.index)
    assert sorted(train.index.append(test.index)) == sorted(ratings.index)


def test_stratified_split_is_deterministic_per_seed(ratings):
    first, _ = stratified_split(ratings, seed=42)
    again, _ = stratified_split(ratings, seed=42)
    other, _ = stratified_split(ratings, seed=43)
    assert set(first.index) == set(again.index)
    assert set(first.index) != set(other.index)


@pytest.mark.parametrize("seed", [42, 7])
def test_stratified_split_selects_the_same_rows_as_microsoft_recommenders(ratings, seed):
    train, test = stratified_split(ratings, ratio=0.75, seed=seed)
    ref_train, ref_test = _reference_stratified_split(ratings, 0.75, seed)
    assert set(train.index) == set(ref_train.index)
    assert set(test.index) == set(ref_test.index)


def test_stratified_split_drops_users_below_min_rows(ratings):
    train, test = stratified_split(ratings, min_rows=4)
    assert set(train["user_id"]) | set(test["user_id"]) == {"u4", "u5", "u6", "u7"}


@pytest.fixture
def events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "user_id": ["a", "a", "b", "a", "b", "c", "c"],
            "item_id": ["x", "y", "x", "z", "y", "x", "z"],
            "event_ts": pd.to_datetime(
                [
                    "2024-01-01 10:00",
                    "2024-01-05 12:00",
                    "2024-01-06 09:00",
                    "2024-01-08 00:00",  # exactly at the cutoff: test
                    "2024-01-09 18:00",
                    "2024-01-09 20:00",  # c first appears in the test period: cold start
                    "2024-01-10 23:59",
                ]
            ),
        }
    )


def test_time_holdout_splits_at_cutoff_without_leakage(events):
    split = time_holdout(events, cutoff="2024-01-08")
    assert split.train["event_ts"].max() < split.cutoff <= split.test["event_ts"].min()
    assert len(split.train) == 3 and len(split.test) == 2 and len(split.cold_test) == 2
    assert set(split.test["user_id"]) <= set(split.train["user_id"])
    assert list(split.cold_users) == ["c"]
    assert not set(split.cold_users) & set(split.train["user_id"])


def test_time_holdout_test_days_counts_back_from_the_last_day(events):
    split = time_holdout(events, test_days=3)
    assert split.cutoff == pd.Timestamp("2024-01-08")
    assert len(split.train) + len(split.test) + len(split.cold_test) == len(events)


def test_time_holdout_respects_time_zones(events):
    utc_events = events.assign(event_ts=events["event_ts"].dt.tz_localize("UTC"))
    split = time_holdout(utc_events, cutoff="2024-01-08")
    assert split.cutoff == pd.Timestamp("2024-01-08", tz="UTC")
    assert len(split.train) == 3


def test_time_holdout_needs_exactly_one_boundary(events):
    with pytest.raises(ValueError):
        time_holdout(events)
    with pytest.raises(ValueError):
        time_holdout(events, cutoff="2024-01-08", test_days=3)
