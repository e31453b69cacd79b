"""Popularity per segment and buy-again, as candidate generators.

Both reuse :mod:`recs_pipeline.ml.baselines` (``item_popularity``,
``purchase_frequency``, ``buy_again``): this module only adds segments (country,
age band...) to popularity and keeps buy-again's lists to the user's own purchases.

- :func:`segment_popularity` counts distinct buyers per item in a recent window,
  overall and per segment; :func:`popular_by_segment` gives each user their
  segment's best sellers, the overall ones filling the rest of the list, and the
  overall list to users whose segment is unknown or too small.
- :func:`buy_again_candidates`: the user's own purchases scored by frequency
  decayed with the days since each purchase (``0.5 ** (age / half_life_days)``
  per purchase), so frequent and recent repeats come first.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recs_pipeline.ml import baselines
from recs_pipeline.ml.scoring import DEFAULT_BATCH_SIZE, Ranked
from recs_pipeline.ranking.candidates import concat_ranked, rank_scores


@dataclass(frozen=True)
class SegmentPopularity:
    """Distinct buyers per item in the window: overall and per segment."""

    segments: pd.Index  # segment values, row order of ``by_segment``
    by_segment: sp.csr_matrix  # segments x items
    buyers: np.ndarray  # distinct buyers per segment in the window
    overall: np.ndarray  # items

    def codes(self, segments) -> np.ndarray:
        """Row of each segment value; -1 for unknown or missing values."""
        return self.segments.get_indexer(pd.Index(segments))


def segment_popularity(
    events: pd.DataFrame,
    item_ids: pd.Index,
    segment_col: str,
    since: pd.Timestamp | str | None = None,
    ts_col: str = "event_ts",
) -> SegmentPopularity:
    """Count distinct users per (segment, item) among events at or after ``since``.

    ``segment_col`` is a column of ``events`` (e.g. the order's country, or a user
    attribute joined on). A user who bought in two segments counts in both.
    """
    if since is not None:
        events = events[events[ts_col] >= pd.Timestamp(since)]
    overall = baselines.item_popularity(events, item_ids)
    known = events[events[segment_col].notna()]
    pairs = known[["user_id", segment_col, "item_id"]].drop_duplicates()
    segments = pd.Index(np.sort(pairs[segment_col].unique()))
    rows = segments.get_indexer(pairs[segment_col])
    cols = item_ids.get_indexer(pairs["item_id"])
    inside = cols >= 0
    by_segment = sp.csr_matrix(
        (np.ones(int(inside.sum())), (rows[inside], cols[inside])), shape=(len(segments), len(item_ids))
    )
    buyers = pairs[[segment_col, "user_id"]].drop_duplicates()[segment_col].value_counts()
    return SegmentPopularity(
        segments=segments,
        by_segment=by_segment,
        buyers=buyers.reindex(segments, fill_value=0).to_numpy(dtype=np.int64),
        overall=overall,
    )


def _score_table(popularity: SegmentPopularity, min_buyers: int) -> tuple[np.ndarray, np.ndarray]:
    """Dense scores per segment row plus a last row for "overall"; which segments fall back."""
    overall = popularity.overall.astype(np.float64)
    tie_break = overall / (overall.max(initial=0.0) + 1.0)  # < 1: only orders equal segment counts
    table = np.vstack([popularity.by_segment.toarray() + tie_break[None, :], overall[None, :]])
    falls_back = popularity.buyers < min_buyers
    return table, falls_back


def popular_by_segment(
    popularity: SegmentPopularity,
    user_segments,
    n: int,
    users: np.ndarray | None = None,
    exclude: sp.spmatrix | None = None,
    item_mask: np.ndarray | None = None,
    min_buyers: int = 1,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Ranked:
    """The ``n`` best sellers of each user's segment, filled up with overall best sellers.

    ``user_segments`` holds one segment value per query user (NaN or an unseen value:
    the overall list); a segment with fewer than ``min_buyers`` buyers in the window
    also gets the overall list. ``Ranked.user`` is ``users[i]`` (default ``i``, the
    position in ``user_segments``); ``exclude`` (users x items, indexed like ``users``)
    removes e.g. the user's own purchases. A segment list scores its distinct buyers
    plus the overall count scaled below 1 (fill-ups score below 1); the overall list
    scores the overall count.
    """
    codes = popularity.codes(user_segments)
    users = np.arange(len(codes)) if users is None else np.asarray(users)
    table, falls_back = _score_table(popularity, min_buyers)
    overall_row = len(popularity.segments)
    known = codes >= 0
    known[known] = ~falls_back[codes[known]]
    codes = np.where(known, codes, overall_row)
    if exclude is not None:  # per user: the user's own items differ
        parts = []
        for start in range(0, len(users), batch_size):
            batch = slice(start, start + batch_size)
            parts.append(rank_scores(table[codes[batch]], users[batch], n, exclude, item_mask))
        return concat_ranked(parts)

    # Same list for every user of a segment: rank each segment once, then copy.
    present = np.unique(codes)
    lists = rank_scores(table[present], np.arange(len(present)), n, item_mask=item_mask)
    lengths = np.bincount(lists.user, minlength=len(present))
    starts = np.cumsum(lengths) - lengths
    which = np.searchsorted(present, codes)
    sizes = lengths[which]
    picks = np.repeat(starts[which], sizes) + np.arange(sizes.sum()) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    return Ranked(np.repeat(users, sizes), lists.rank[picks], lists.item[picks], lists.score[picks])


def buy_again_candidates(
    purchases: pd.DataFrame,
    user_ids: pd.Index,
    item_ids: pd.Index,
    users: np.ndarray,
    n: int,
    now: pd.Timestamp | str,
    half_life_days: float = 90.0,
    popularity: np.ndarray | None = None,
    popularity_exponent: float = 0.0,
    item_mask: np.ndarray | None = None,
    ts_col: str = "event_ts",
) -> Ranked:
    """The user's own purchases, most frequent and recent first (``baselines.buy_again``
    without the popular fill-ups: a candidate list holds real repeat candidates only).

    Score = sum over the user's purchases of the item of ``0.5 ** (days before now /
    half_life_days)``, times ``(1 + popularity) ** popularity_exponent``; ties go to
    the more popular item when ``popularity`` is given, then to the lower index.
    """
    frequency = baselines.purchase_frequency(purchases, user_ids, item_ids, now, half_life_days, ts_col=ts_col)
    popularity = np.zeros(len(item_ids)) if popularity is None else np.asarray(popularity, dtype=np.float64)
    ranked = baselines.buy_again(frequency, popularity, np.asarray(users), n, popularity_exponent, item_mask)
    own = ranked.score > 0
    return Ranked(*(column[own] for column in ranked))
