"""Candidate generators for the ranking stage: pure functions, no Dagster.

Each generator scores users against the catalogue with sparse/dense matrix
products in user blocks and returns its top-N per user as
:class:`~recs_pipeline.ml.scoring.Ranked` (index space), which
:func:`candidate_frame` turns into the long ``user_id, item_id, score, rank``
table:

- :mod:`.tifu_knn`: TIFU-KNN (Hu et al., SIGIR 2020), time-decayed personal item
  frequencies over baskets, smoothed by the most similar users;
- :mod:`.ease`: EASE (Steck 2019), a closed-form item-item model;
- :mod:`.popular`: popularity per segment in a recent window, and buy-again by
  recency-decayed frequency (both on top of :mod:`recs_pipeline.ml.baselines`).

LightFM and item-kNN lists stay in :mod:`recs_pipeline.ml` (``scoring.top_n``,
``baselines.item_based``); they already return ``Ranked``.
"""

from recs_pipeline.ranking.candidates import CANDIDATE_COLUMNS, candidate_frame, concat_ranked, rank_scores
from recs_pipeline.ranking.ease import DEFAULT_LAMBDA, ease_candidates, ease_weights
from recs_pipeline.ranking.popular import (
    SegmentPopularity,
    buy_again_candidates,
    popular_by_segment,
    segment_popularity,
)
from recs_pipeline.ranking.tifu_knn import (
    TifuParams,
    basket_weights,
    neighbour_average,
    tifu_knn_candidates,
    tifu_scores,
    user_vectors,
)

__all__ = [
    "CANDIDATE_COLUMNS",
    "DEFAULT_LAMBDA",
    "SegmentPopularity",
    "TifuParams",
    "basket_weights",
    "buy_again_candidates",
    "candidate_frame",
    "concat_ranked",
    "ease_candidates",
    "ease_weights",
    "neighbour_average",
    "popular_by_segment",
    "rank_scores",
    "segment_popularity",
    "tifu_knn_candidates",
    "tifu_scores",
    "user_vectors",
]
