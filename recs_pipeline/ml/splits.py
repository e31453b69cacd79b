"""Train/test splits for offline evaluation.

Two protocols:

- :func:`time_holdout`: everything before a cutoff trains, the period after it
  tests. This is how the model is used (trained on the past, serving the
  future) and the honest one for a shop. Test users are split into *known*
  users (seen in training: the model has their history) and *cold-start*
  users (first seen in the test period: only their features are known).
- :func:`stratified_split`: a per-user random split, the protocol of the
  Microsoft Recommenders benchmarks (``python_stratified_split``), so our
  MovieLens numbers are comparable with their published table.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class TimeSplit:
    train: pd.DataFrame
    test: pd.DataFrame  # test-period rows of users seen in train
    cold_test: pd.DataFrame  # test-period rows of users first seen in the test period
    cutoff: pd.Timestamp

    @property
    def cold_users(self) -> np.ndarray:
        return self.cold_test["user_id"].unique()


def time_holdout(
    events: pd.DataFrame,
    cutoff: str | pd.Timestamp | None = None,
    test_days: int | None = None,
    ts_col: str = "event_ts",
    user_col: str = "user_id",
) -> TimeSplit:
    """Split at ``cutoff``, or ``test_days`` before the end of the last day.

    Rows with ``ts < cutoff`` train; rows at or after it test. Exactly one of
    ``cutoff`` and ``test_days`` must be given.
    """
    if (cutoff is None) == (test_days is None):
        raise ValueError("give exactly one of cutoff and test_days")
    ts = events[ts_col]
    if cutoff is None:
        cutoff = ts.max().normalize() + pd.Timedelta(days=1) - pd.Timedelta(days=test_days)
    cutoff = pd.Timestamp(cutoff)
    if ts.dt.tz is not None and cutoff.tzinfo is None:
        cutoff = cutoff.tz_localize(ts.dt.tz)
    in_train = (ts < cutoff).to_numpy()
    train, later = events[in_train], events[~in_train]
    known = later[user_col].isin(train[user_col].unique()).to_numpy()
    return TimeSplit(train=train, test=later[known], cold_test=later[~known], cutoff=cutoff)


def stratified_split(
    data: pd.DataFrame,
    ratio: float = 0.75,
    seed: int = 42,
    min_rows: int = 1,
    user_col: str = "user_id",
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-user random split: each user's rows go ``ratio`` to train, the rest to test.

    Same semantics (and, for the same input order and seed, the same rows) as
    Microsoft Recommenders' ``python_stratified_split``: shuffle all rows with
    ``seed``, then the first ``round(ratio * n_user_rows)`` rows of each user
    (round half to even, like Python's ``round``) train. Users with fewer than
    ``min_rows`` rows are dropped; a user with a single row keeps it in train
    (there is nothing to learn from a test row without history).
    """
    if not 0 < ratio < 1:
        raise ValueError("ratio must be between 0 and 1")
    counts = data.groupby(user_col, sort=False)[user_col].transform("size")
    data = data[counts >= min_rows]
    shuffled = data.sample(frac=1, random_state=seed)
    position = shuffled.groupby(user_col, sort=False).cumcount().to_numpy()
    n_rows = shuffled.groupby(user_col, sort=False)[user_col].transform("size").to_numpy()
    in_train = position < np.round(ratio * n_rows)
    return shuffled[in_train], shuffled[~in_train]
