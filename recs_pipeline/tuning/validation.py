"""The validation split and the three objectives of the tuning studies.

The hold-out (the last ``holdout_days`` = H days, from ``first_holdout`` on) is what
ml/evaluation and ml/ranker report on, so tuning must not look at it: tuning on it
would make those numbers optimistic. The validation split is carved from the
training days instead:

- validation cut-off ``v = first_holdout - H``; labels: what known users bought in
  ``[v, first_holdout)``; everything a trial learns from is before ``v``;
- the ranker learns, as ml/ranker does before the hold-out, from earlier cut-offs
  ``v - H``, ``v - 2H``... (labels: the H days after each), and is scored at ``v``.

:class:`Validation` drops every purchase at or after ``first_holdout`` whatever it is
given, and the interactions it trains on are those of the events before each cut-off
(all before ``v``), so nothing at or after ``first_holdout`` reaches a trial.

Objectives (all precision@k on the same validation users, a fixed hashed sample of
at most ``evaluation_users`` known users who bought in the validation days; a user
without a list counts as all misses):

- ``lightfm``: LightFM alone, excluding what the user bought before ``v`` (the
  ``lightfm`` strategy of ml/evaluation);
- ``tifu_knn``: TIFU-KNN's candidate list (rank <= k; repeats allowed, as the
  generator proposes them);
- ``ranker``: the LightGBM ranker over the candidates of every generator.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from recs_pipeline.ml import scoring
from recs_pipeline.ml.matrices import TrainingData, build_training_data
from recs_pipeline.ml.metrics import precision_at_k
from recs_pipeline.ml.model import ModelParams, fit_model
from recs_pipeline.ranking import stage
from recs_pipeline.ranking.candidates import candidate_frame
from recs_pipeline.ranking.ranker import RankerParams, rank_candidates, train_ranker
from recs_pipeline.ranking.tifu_knn import TifuParams, tifu_knn_candidates, user_vectors
from recs_pipeline.recommender.evaluation import purchased_matrix, sample_users

# LightFM's lists as the ranker's ``model`` generator, from a fitted model and its data
# (recs_pipeline.defs.ranking.model_lists, passed in by the caller).
ModelListsFactory = Callable[[object, TrainingData], stage.ModelLists]


@dataclass(frozen=True)
class ValidationSplit:
    """``cutoff`` (v) = ``first_holdout - days``; labels in ``[cutoff, first_holdout)``.
    ``training_cutoffs``: the ranker's cut-offs before v, oldest first, each with its H
    days of labels ending at or before v."""

    first_holdout: pd.Timestamp
    cutoff: pd.Timestamp
    days: int
    training_cutoffs: tuple[pd.Timestamp, ...] = ()

    @property
    def cutoffs(self) -> tuple[pd.Timestamp, ...]:
        """Every cut-off a LightFM is trained at: the training cut-offs and v."""
        return (*self.training_cutoffs, self.cutoff)


def validation_split(
    first_holdout: pd.Timestamp | str, holdout_days: int, training_cutoffs: Sequence[pd.Timestamp] = ()
) -> ValidationSplit:
    """The split before the hold-out starting at ``first_holdout``. ``training_cutoffs``
    (e.g. ``training_cutoffs(v, first_event, H, n)`` of recs_pipeline.defs.ranking) are
    kept when their labels end by v."""
    if holdout_days < 1:
        raise ValueError(f"holdout_days must be at least 1: {holdout_days}")
    first_holdout = pd.Timestamp(first_holdout)
    days = pd.Timedelta(days=holdout_days)
    v = first_holdout - days
    kept = tuple(sorted(pd.Timestamp(c) for c in training_cutoffs if pd.Timestamp(c) + days <= v))
    return ValidationSplit(first_holdout=first_holdout, cutoff=v, days=holdout_days, training_cutoffs=kept)


@dataclass(frozen=True)
class TuningData:
    """What the studies read, all from the days before ``split.first_holdout``.

    ``shop``: the purchase history (rows at or after ``first_holdout`` are dropped by
    :class:`Validation`) and the catalogue. ``interactions``: for each cut-off of
    ``split.cutoffs``, the weighted interactions (user_id, item_id, weight) of the events
    before it, as ml/training_set computes them. ``user_tokens`` / ``item_tokens``:
    LightFM's features (user_id or item_id, feature, weight).
    """

    split: ValidationSplit
    shop: stage.ShopHistory
    interactions: Mapping[pd.Timestamp, pd.DataFrame]
    user_tokens: pd.DataFrame
    item_tokens: pd.DataFrame
    identity_weights: tuple[float, float] = (1.0, 1.0)
    evaluation_users: int = 20_000  # validation users (a fixed hashed sample; 0 = all)
    train_users: int = 20_000  # labelled users per ranker training cut-off
    k: int = 10


@dataclass
class RankerFrames:
    """The ranker study's rows, built once: they do not depend on the ranker's
    parameters, so a trial is one LightGBM fit and one prediction."""

    training: list[pd.DataFrame]  # labelled rows of each training cut-off with a positive
    test: pd.DataFrame  # the validation users' candidates at v with their features
    cutoffs: list[str] = field(default_factory=list)  # what each training frame holds


class Validation:
    """The validation users and labels, and the objectives scored on them."""

    def __init__(self, data: TuningData):
        split = data.split
        missing = [str(c) for c in split.cutoffs if c not in data.interactions]
        if missing:
            raise ValueError(f"TuningData.interactions has no frame for the cut-off(s) {', '.join(missing)}")
        if split.cutoff >= split.first_holdout:
            raise ValueError("the validation cut-off must be before the hold-out")
        purchases = data.shop.purchases
        purchases = purchases[purchases["event_ts"] < split.first_holdout]
        self.data = data
        self.split = split
        self.k = data.k
        self.shop = replace(data.shop, purchases=purchases)
        window = purchases[purchases["event_ts"] >= split.cutoff]
        known = pd.Index(data.interactions[split.cutoff]["user_id"].unique())
        users = np.sort(window.loc[window["user_id"].isin(known), "user_id"].unique()).astype(object)
        self.users = sample_users(users, data.evaluation_users)
        self.relevant = (
            window.loc[window["user_id"].isin(self.users), ["user_id", "item_id"]]
            .drop_duplicates()
            .sort_values(["user_id", "item_id"], ignore_index=True)
        )
        self._training: dict[pd.Timestamp, TrainingData] = {}
        self._bought = None

    # --- LightFM ---------------------------------------------------------------------
    def training_data(self, cutoff: pd.Timestamp) -> TrainingData:
        """LightFM's matrices of the interactions before ``cutoff`` (built once)."""
        if cutoff not in self._training:
            self._training[cutoff] = build_training_data(
                self.data.interactions[cutoff], self.data.user_tokens, self.data.item_tokens, "hybrid",
                *self.data.identity_weights,
            )  # fmt: skip
        return self._training[cutoff]

    def fit_lightfm(self, cutoff: pd.Timestamp, params: ModelParams) -> tuple[object, TrainingData]:
        """A LightFM hybrid trained from scratch on the interactions before ``cutoff``."""
        data = self.training_data(cutoff)
        model, _ = fit_model(data.interactions, params, data.mappings, data.user_features, data.item_features,
                             data.weights)  # fmt: skip
        return model, data

    def lightfm_precision(self, model, data: TrainingData) -> float:
        """precision@k at v of LightFM alone (``data``: the matrices of v), excluding
        what each user bought before v."""
        if self._bought is None:
            before = self.shop.purchases[self.shop.purchases["event_ts"] < self.split.cutoff]
            self._bought = purchased_matrix(before, data).tocsr() if len(before) else data.interactions.tocsr()
        maps = data.mappings
        rows = maps.user_codes(self.users)
        ranked = scoring.top_n(model, self.k, data.user_features, data.item_features, users=rows[rows >= 0],
                               exclude=self._bought)  # fmt: skip
        return precision_at_k(ranked.to_frame(maps.user_ids, maps.item_ids), self.relevant, self.k)

    # --- the generators ----------------------------------------------------------------
    def generators(self, cutoff: pd.Timestamp, params: stage.StageParams, users: Sequence,
                   model_lists: stage.ModelLists | None = None) -> stage.Generators:  # fmt: skip
        return stage.prepare(self.shop, cutoff, params, users=users, model_lists=model_lists)

    def tifu_vectors(self, gen: stage.Generators, tifu: TifuParams):
        return user_vectors(gen.history, gen.user_ids, gen.item_ids, basket_col="basket", n_groups=tifu.n_groups,
                            within_decay=tifu.within_decay, group_decay=tifu.group_decay)  # fmt: skip

    def tifu_precision(self, gen: stage.Generators, tifu: TifuParams) -> float:
        """precision@k at v of TIFU-KNN's candidates (``gen``: :meth:`generators` at v)
        with ``tifu``: the ``tifu_knn`` generator of :func:`stage.candidates`."""
        rows = gen.user_ids.get_indexer(pd.Index(self.users, dtype=object))
        rows = np.unique(rows[rows >= 0])
        buyers = rows[np.diff(gen.frequency.indptr)[rows] > 0]
        ranked = tifu_knn_candidates(self.tifu_vectors(gen, tifu), buyers, self.k, tifu.n_neighbours, tifu.alpha,
                                     item_mask=gen.item_mask)  # fmt: skip
        return precision_at_k(candidate_frame(ranked, gen.user_ids, gen.item_ids), self.relevant, self.k)

    def with_tifu(self, gen: stage.Generators, tifu: TifuParams) -> stage.Generators:
        """``gen`` with other TIFU-KNN parameters (only its user vectors change)."""
        if tifu == gen.params.tifu:
            return gen
        return replace(gen, params=replace(gen.params, tifu=tifu), tifu_vectors=self.tifu_vectors(gen, tifu))

    # --- the ranker ----------------------------------------------------------------------
    def ranker_frames(self, params: stage.StageParams, at_v: stage.Generators,
                      model_lists_at: Callable[[pd.Timestamp], stage.ModelLists | None]) -> RankerFrames:  # fmt: skip
        """The training rows of every training cut-off (candidates and features from the
        purchases before it, labels from the H days after it; users: a fixed sample of
        those who bought in those days and before) and the test rows at v (``at_v``)."""
        purchases = self.shop.purchases
        days = pd.Timedelta(days=self.split.days)
        training, described = [], []
        for cutoff in self.split.training_cutoffs:
            end = cutoff + days
            period = purchases[(purchases["event_ts"] >= cutoff) & (purchases["event_ts"] < end)]
            known = pd.Index(purchases.loc[purchases["event_ts"] < cutoff, "user_id"].unique())
            users = sample_users(np.sort(period.loc[period["user_id"].isin(known), "user_id"].unique()).astype(object),
                                 self.data.train_users)  # fmt: skip
            if not len(users):
                continue
            gen = self.generators(cutoff, params, users, model_lists_at(cutoff))
            frame = stage.labelled_rows(gen, users, purchases, end)
            described.append(f"{cutoff.date()} ({len(users):,} users, {len(frame):,} rows, "
                             f"{int(frame['label'].sum()):,} positives)")  # fmt: skip
            if frame["label"].any():
                training.append(frame)
        test = stage.features(at_v, stage.candidates(at_v, self.users))
        return RankerFrames(training=training, test=test, cutoffs=described)

    def ranker_precision(self, frames: RankerFrames, params: RankerParams) -> float:
        """precision@k at v of the ranker trained on ``frames.training`` with ``params``."""
        ranker = train_ranker(frames.training, params, generators=stage.GENERATORS)
        return precision_at_k(rank_candidates(ranker, frames.test, self.k), self.relevant, self.k)
