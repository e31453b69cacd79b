"""The second stage: a LightGBM lambdarank model that orders the candidates of several
generators from features of the user, the item and the pair.

Production recommenders (the winning H&M solutions, RecTools' CandidateRankingModel)
work in two stages: cheap generators propose a few hundred items per user, and a
gradient-boosted ranker, trained on a time split, learns each shopper's mix of
re-purchases and discoveries instead of a fixed number of slots.

Leakage is the classic bug of this stage: every feature here is computed from the
events strictly before the cut-off it is given (``pair_features`` filters them itself,
whatever it is passed), and labels from the events at or after it.

Everything is vectorised (pandas merges and group-bys, no loop over users or rows).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

# A candidates frame: one row per (user, item, generator) - candidate_frame's columns
# plus ``generator``. An events frame: user_id, item_id, event_ts (a purchase each).


@dataclass(frozen=True)
class RankerParams:
    """LightGBM lambdarank settings. One thread and ``deterministic``: the same data and
    seed give the same model, as every part of the pipeline must."""

    n_estimators: int = 300
    learning_rate: float = 0.05
    num_leaves: int = 31
    min_child_samples: int = 20
    feature_fraction: float = 0.9
    bagging_fraction: float = 0.8
    bagging_freq: int = 1
    lambdarank_truncation_level: int = 20
    # Negatives kept per user and cut-off for training (0 = all): a fixed sample by a hash
    # of the pair. Fewer rows train several times faster at about the same precision.
    negatives_per_user: int = 0
    seed: int = 42
    num_threads: int = 1


@dataclass
class TrainedRanker:
    model: object  # lightgbm.LGBMRanker
    features: list[str]
    generators: list[str]
    params: RankerParams
    compiled: object | None = None  # lleaves.Model: the same trees as machine code (compiled_ranker)

    @property
    def booster(self):
        """The lightgbm.Booster (a fitted LGBMRanker holds one; a loaded ranker is one)."""
        return getattr(self.model, "booster_", self.model)

    def predict(self, rows: pd.DataFrame) -> np.ndarray:
        """The score of each row (its ``features`` columns), on every core: a row's score
        does not depend on how rows are split over threads (training is what needs one
        thread to be repeatable)."""
        if self.compiled is not None:
            return self.compiled.predict(rows[self.features].to_numpy(np.float64), n_jobs=os.cpu_count() or 1)
        return self.booster.predict(rows[self.features], num_threads=0)

    def importance(self) -> pd.DataFrame:
        """Gain importance per feature, largest first."""
        gain = self.booster.feature_importance(importance_type="gain")
        frame = pd.DataFrame({"feature": self.features, "gain": gain})
        return frame.sort_values(["gain", "feature"], ascending=[False, True], ignore_index=True)


def _before(events: pd.DataFrame, cutoff: pd.Timestamp) -> pd.DataFrame:
    return events[events["event_ts"] < cutoff]


def _days(delta: pd.Series) -> pd.Series:
    return delta.dt.total_seconds() / 86400.0


def item_features_table(events: pd.DataFrame, cutoff: pd.Timestamp | str) -> pd.DataFrame:
    """The item features of :func:`pair_features` (index item_id) from ``events`` before
    ``cutoff``: popularity over 7 and 30 days and its trend, age, repeat rate."""
    cutoff = pd.Timestamp(cutoff)
    history = _before(events, cutoff)

    def popularity(window_days: int) -> pd.Series:
        recent = history[history["event_ts"] >= cutoff - pd.Timedelta(days=window_days)]
        return recent.groupby("item_id")["user_id"].nunique()

    items = pd.DataFrame({"item_pop_7": popularity(7), "item_pop_30": popularity(30)})
    first_seen = history.groupby("item_id")["event_ts"].min()
    items = items.reindex(items.index.union(first_seen.index)).fillna(0)
    items["item_trend"] = (items["item_pop_7"] * 30 / 7 + 1) / (items["item_pop_30"] + 1)
    items["item_age_days"] = _days(cutoff - first_seen).reindex(items.index)
    # How often the item is bought again by those who bought it: consumables vs one-offs.
    days = history.assign(day=history["event_ts"].dt.floor("D"))
    per_pair = days.groupby(["user_id", "item_id"])["day"].nunique()
    items["item_repeat_rate"] = (per_pair > 1).groupby(level="item_id").mean().reindex(items.index)
    return items


def pair_features(
    candidates: pd.DataFrame,
    events: pd.DataFrame,
    cutoff: pd.Timestamp | str,
    *,
    generators: Sequence[str],
    item_prices: pd.Series | None = None,
    text_similarity: Callable[[pd.DataFrame], np.ndarray] | None = None,
    items: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per candidate (user, item) with the ranker's features, from ``events``
    before ``cutoff`` only (later events are ignored, whatever is passed).

    ``events``: user_id, item_id, event_ts (a purchase each), optionally price.
    ``candidates``: user_id, item_id, generator, score, rank; a pair proposed by several generators is one row with
    each source's score and rank (NaN where a generator did not propose it).
    ``text_similarity``: given the (user_id, item_id) pairs, the cosine of the item's
    text to the user's history (also computed from events before the cut-off).
    ``items``: :func:`item_features_table` of the same events and cut-off, when the
    caller ranks in user batches (computed here otherwise); the user and pair features
    only need the candidates' own users' events, so a batch may pass just those.
    """
    cutoff = pd.Timestamp(cutoff)
    history = _before(events, cutoff)
    if items is None:
        items = item_features_table(history, cutoff)
    history = history[history["user_id"].isin(candidates["user_id"].unique())]
    wide = candidates.pivot_table(index=["user_id", "item_id"], columns="generator", values=["score", "rank"],
                                  aggfunc="first")  # fmt: skip
    wide.columns = [f"{generator}_{what}" for what, generator in wide.columns]
    for generator in generators:  # a generator that proposed nothing still has its columns
        for what in ("score", "rank"):
            if f"{generator}_{what}" not in wide.columns:
                wide[f"{generator}_{what}"] = np.nan
    frame = wide.reset_index()
    frame["n_generators"] = frame[[f"{s}_rank" for s in generators]].notna().sum(axis=1).astype(np.float32)

    # The pair: how often and how recently the user bought the item, and whether it is due
    # (days since the last purchase over the user's usual gap between purchases of it).
    days = history.assign(day=history["event_ts"].dt.floor("D"))
    pair = days.groupby(["user_id", "item_id"]).agg(
        ui_count=("event_ts", "size"), ui_days=("day", "nunique"), first=("event_ts", "min"), last=("event_ts", "max")
    ).reset_index()
    pair["ui_days_since_last"] = _days(cutoff - pair["last"])
    span = _days(pair["last"] - pair["first"])
    pair["ui_usual_gap"] = np.where(pair["ui_days"] > 1, span / (pair["ui_days"] - 1).clip(lower=1), np.nan)
    pair["ui_due_ratio"] = pair["ui_days_since_last"] / pair["ui_usual_gap"]
    frame = frame.merge(pair[["user_id", "item_id", "ui_count", "ui_days_since_last", "ui_usual_gap", "ui_due_ratio"]],
                        on=["user_id", "item_id"], how="left")  # fmt: skip
    frame["ui_count"] = frame["ui_count"].fillna(0)
    frame["bought_before"] = (frame["ui_count"] > 0).astype(np.float32)

    frame = frame.merge(items, left_on="item_id", right_index=True, how="left")
    frame[["item_pop_7", "item_pop_30"]] = frame[["item_pop_7", "item_pop_30"]].fillna(0)

    # The user: activity, recency, and the price they usually pay.
    user = history.groupby("user_id").agg(
        user_events=("event_ts", "size"), user_items=("item_id", "nunique"), user_last=("event_ts", "max")
    )
    user["user_days_since_last"] = _days(cutoff - user.pop("user_last"))
    # The user's own mix: the share of the items they bought that they bought again.
    user["user_repeat_share"] = (pair["ui_days"] > 1).groupby(pair["user_id"]).mean()
    user["user_active_days"] = days.groupby("user_id")["day"].nunique()
    if "price" in history.columns:
        user["user_median_price"] = history.groupby("user_id")["price"].median()
    frame = frame.merge(user, left_on="user_id", right_index=True, how="left")
    if item_prices is not None:
        frame["price"] = frame["item_id"].map(item_prices).astype(np.float64)
        if "user_median_price" in frame.columns:
            frame["price_relative"] = frame["price"] / frame["user_median_price"]
    if text_similarity is not None:
        frame["text_similarity"] = text_similarity(frame[["user_id", "item_id"]])
    return frame.sort_values(["user_id", "item_id"], ignore_index=True)


def feature_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c not in ("user_id", "item_id", "label")]


def labels(frame: pd.DataFrame, events: pd.DataFrame, start: pd.Timestamp | str, end: pd.Timestamp | str) -> np.ndarray:
    """1 where the user bought the item in [start, end), else 0 (aligned with ``frame``)."""
    window = events[(events["event_ts"] >= pd.Timestamp(start)) & (events["event_ts"] < pd.Timestamp(end))]
    bought = window[["user_id", "item_id"]].drop_duplicates().assign(label=1)
    return frame[["user_id", "item_id"]].merge(bought, how="left", on=["user_id", "item_id"])["label"].fillna(0).to_numpy(np.int32)


def sample_negatives(frame: pd.DataFrame, per_user: int, seed: int = 42) -> pd.DataFrame:
    """Every positive row and at most ``per_user`` negative rows of each user: those
    with the smallest hash of (seed, user, item), so the same rows whatever the order."""
    keys = pd.util.hash_array((str(seed) + "|" + frame["user_id"].astype(str) + "|" + frame["item_id"].astype(str))
                              .to_numpy(dtype=object))  # fmt: skip
    negatives = frame["label"].to_numpy() == 0
    order = pd.DataFrame({"user_id": frame["user_id"].to_numpy(), "key": keys, "row": np.arange(len(frame))})[negatives]
    order = order.sort_values(["user_id", "key"], kind="stable")
    chosen = order["row"].to_numpy()[order.groupby("user_id", sort=False).cumcount().to_numpy() < per_user]
    keep = ~negatives
    keep[chosen] = True
    return frame[keep]


def train_ranker(frames: Sequence[pd.DataFrame], params: RankerParams = RankerParams(),
                 generators: Sequence[str] = ()) -> TrainedRanker:  # fmt: skip
    """Fit lambdarank on one or more labelled feature frames (one per cut-off), grouped
    by (cut-off, user). Users without a single positive among their candidates carry no
    ranking signal and are left out of training."""
    import lightgbm as lgb

    parts = []
    for k, frame in enumerate(frames):
        positives = frame.groupby("user_id")["label"].transform("max") > 0
        kept = frame[positives]
        if params.negatives_per_user > 0:
            kept = sample_negatives(kept, params.negatives_per_user, params.seed)
        parts.append(kept.assign(_cutoff=k))
    data = pd.concat(parts, ignore_index=True).sort_values(["_cutoff", "user_id", "item_id"], ignore_index=True)
    features = feature_columns(data.drop(columns="_cutoff"))
    groups = data.groupby(["_cutoff", "user_id"], sort=False).size().to_numpy()
    settings = asdict(params)
    settings.pop("negatives_per_user")
    model = lgb.LGBMRanker(
        objective="lambdarank",
        n_estimators=settings.pop("n_estimators"),
        learning_rate=settings.pop("learning_rate"),
        num_leaves=settings.pop("num_leaves"),
        min_child_samples=settings.pop("min_child_samples"),
        random_state=settings.pop("seed"),
        n_jobs=settings.pop("num_threads"),
        deterministic=True,
        force_row_wise=True,
        verbose=-1,
        **settings,
    )
    model.fit(data[features], data["label"], group=groups)
    return TrainedRanker(model, features, list(generators), params)


def rank_candidates(ranker: TrainedRanker, frame: pd.DataFrame, n: int) -> pd.DataFrame:
    """The ``n`` best candidates per user by the ranker's score: user_id, item_id, score,
    rank (1 = best), and ``generator`` = the one that ranked the item highest."""
    scored = frame[["user_id", "item_id"]].copy()
    scored["score"] = ranker.predict(frame)
    if ranker.generators:
        ranks = frame[[f"{s}_rank" for s in ranker.generators]].to_numpy(np.float64)
        best = np.nanargmin(np.where(np.isnan(ranks), np.inf, ranks), axis=1)
        scored["generator"] = np.asarray(ranker.generators, dtype=object)[best]
    scored = scored.sort_values(["user_id", "score", "item_id"], ascending=[True, False, True], ignore_index=True)
    scored["rank"] = scored.groupby("user_id").cumcount() + 1
    return scored[scored["rank"] <= n].reset_index(drop=True)


def save_ranker(ranker: TrainedRanker, directory: str | Path, extra: dict | None = None) -> Path:
    """Write ``ranker.txt`` (LightGBM's own text format) and ``ranker.json`` (features,
    generators, parameters and ``extra``) to a temporary sibling, then rename it into
    place: a reader never sees half a ranker."""
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=directory.parent, prefix=f".{directory.name}."))
    ranker.booster.save_model(str(tmp / "ranker.txt"))
    meta = {"features": ranker.features, "generators": ranker.generators, "params": asdict(ranker.params),
            **(extra or {})}  # fmt: skip
    (tmp / "ranker.json").write_text(json.dumps(meta, indent=2, default=str))
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    return directory


def compiled_ranker(ranker: TrainedRanker, directory: str | Path) -> TrainedRanker:
    """``ranker`` (saved in ``directory`` by :func:`save_ranker`) scoring through its trees
    compiled to machine code by lleaves: the same scores as LightGBM's predict (to
    ~1e-14; a test compares the lists), ~3x faster for 150 trees. Compiling takes seconds per
    hundred trees, so the library is cached in ``directory``, once per machine type
    (named by lleaves' version and the CPU it was compiled for: it runs only there)."""
    import lleaves
    import llvmlite.binding as llvm
    from importlib.metadata import version

    directory = Path(directory)
    llvm.initialize_native_target()
    host = f"{version('lleaves')}|{llvm.get_host_cpu_name()}|{llvm.get_host_cpu_features().flatten()}"
    cache = directory / f"ranker.{hashlib.sha256(host.encode()).hexdigest()[:12]}.so"
    model = lleaves.Model(model_file=str(directory / "ranker.txt"))
    if cache.exists():
        model.compile(cache=str(cache))
    else:
        # Written under a temporary name and renamed: another process never loads half a library.
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".ranker.", suffix=".so")
        os.close(fd)
        os.unlink(tmp)
        model.compile(cache=tmp)
        os.replace(tmp, cache)
    return replace(ranker, compiled=model)


def load_ranker(directory: str | Path) -> tuple[TrainedRanker, dict]:
    """A ranker written by :func:`save_ranker`, and its ``ranker.json``."""
    import lightgbm as lgb

    directory = Path(directory)
    meta = json.loads((directory / "ranker.json").read_text())
    booster = lgb.Booster(model_file=str(directory / "ranker.txt"))
    return TrainedRanker(booster, meta["features"], meta["generators"], RankerParams(**meta["params"])), meta
