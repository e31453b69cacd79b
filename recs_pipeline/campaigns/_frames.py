"""Small helpers the campaign modules share: naive-UTC timestamps and a fast isin."""

from __future__ import annotations

import numpy as np
import pandas as pd


def utc_naive(values):
    """``values`` (a Series or one timestamp) as naive UTC: tz-aware values are
    converted, naive ones are taken to be UTC already (as the warehouse stores them)."""
    if isinstance(values, pd.Series):
        # One resolution everywhere: merge_asof refuses keys of different units.
        return pd.to_datetime(values, utc=True).dt.tz_localize(None).astype("datetime64[ns]")
    ts = pd.Timestamp(values)
    return (ts.tz_convert("UTC").tz_localize(None) if ts.tzinfo is not None else ts).as_unit("ns")


def isin(values, universe) -> np.ndarray:
    """``values`` in ``universe``, elementwise, as a boolean array. Both go through
    object Series: pandas 3's Arrow-backed strings test membership in a Python loop
    (20x slower on ids)."""
    as_objects = pd.Series(np.asarray(values, dtype=object), dtype=object)
    return as_objects.isin(pd.Series(np.asarray(list(universe) if isinstance(universe, (set, frozenset)) else universe,
                                                dtype=object), dtype=object)).to_numpy()
