"""Training LightFM and storing a trained model.

A stored model is a directory with four files: ``model.npz`` (embeddings and
biases plus the optimiser state, so training can resume), ``mappings.json``
(the index space), ``params.json`` and ``metrics.json``. It is written to a
temporary sibling directory first and renamed into place, so a reader never
sees a half-written model.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from lightfm import LightFM

from recs_pipeline.ml.matrices import Mappings

# Every array LightFM learns: embeddings and biases with their adagrad/adadelta state.
_STATE_ARRAYS = tuple(
    f"{side}_{name}"
    for side in ("user", "item")
    for name in (
        "embeddings",
        "embedding_gradients",
        "embedding_momentum",
        "biases",
        "bias_gradients",
        "bias_momentum",
    )
)


@dataclass(frozen=True)
class ModelParams:
    """LightFM hyper-parameters. With ``num_threads=1`` and a fixed
    ``random_state`` training is deterministic (Hogwild threads are not)."""

    loss: str = "warp"
    no_components: int = 64
    epochs: int = 30
    learning_rate: float = 0.05
    item_alpha: float = 0.0
    user_alpha: float = 0.0
    max_sampled: int = 10
    num_threads: int = 1
    random_state: int = 42
    learning_schedule: str = "adagrad"
    # At most this many interaction updates (interactions x epochs) per training from
    # scratch: big shops get fewer epochs (0 = always ``epochs``). See epochs_for.
    max_updates: int = 0

    def epochs_for(self, n_interactions: int) -> int:
        """``epochs``, cut so that ``n_interactions x epochs`` stays within ``max_updates``."""
        if self.max_updates <= 0 or n_interactions <= 0:
            return self.epochs
        return max(1, min(self.epochs, round(self.max_updates / n_interactions)))

    def new_model(self) -> LightFM:
        """An untrained LightFM configured with these parameters."""
        return LightFM(
            no_components=self.no_components,
            loss=self.loss,
            learning_rate=self.learning_rate,
            learning_schedule=self.learning_schedule,
            item_alpha=self.item_alpha,
            user_alpha=self.user_alpha,
            max_sampled=self.max_sampled,
            random_state=self.random_state,
        )


def train(
    interactions: sp.coo_matrix,
    params: ModelParams,
    user_features: sp.csr_matrix | None = None,
    item_features: sp.csr_matrix | None = None,
    sample_weight: sp.coo_matrix | None = None,
) -> LightFM:
    """Fit a fresh LightFM model on the interactions."""
    model = params.new_model()
    model.fit(
        interactions,
        user_features=user_features,
        item_features=item_features,
        sample_weight=sample_weight,
        epochs=params.epochs_for(interactions.nnz),
        num_threads=params.num_threads,
    )
    return model


def feature_keys(mappings: Mappings, side: str) -> pd.Index:
    """A label for every row of a side's feature embeddings, in row order: the identity
    block (``id\t<user or item id>``) then the tokens (``token\t<feature>``)."""
    ids = mappings.user_ids if side == "user" else mappings.item_ids
    tokens = mappings.user_tokens if side == "user" else mappings.item_tokens
    identity = mappings.user_identity if side == "user" else mappings.item_identity
    parts = ([("id\t" + ids.astype(str)).to_numpy(dtype=object)] if identity else []) + [
        ("token\t" + tokens.astype(str)).to_numpy(dtype=object)
    ]
    return pd.Index(np.concatenate(parts) if parts else np.array([], dtype=object), dtype=object)


def warm_start(
    base: LightFM,
    base_mappings: Mappings,
    mappings: Mappings,
    params: ModelParams,
) -> tuple[LightFM, dict[str, float]]:
    """A model in ``mappings``' index space that starts from ``base``'s learned state.

    Every feature row (an entity's own embedding or an attribute token) that ``base``
    knows keeps its embedding, bias and optimiser state; new rows are initialised as
    LightFM initialises a fresh model; rows that disappeared (e.g. an erased user) are
    dropped. Returns the model and the share of rows carried over per side.
    """
    if base.no_components != params.no_components:
        raise ValueError(f"cannot warm-start: base has {base.no_components} components, settings {params.no_components}")
    model = params.new_model()
    # LightFM's own initialiser, so new rows look exactly like a fresh model's.
    model._initialize(
        params.no_components, mappings.n_item_features, mappings.n_user_features
    )
    carried: dict[str, float] = {}
    for side in ("user", "item"):
        source = feature_keys(base_mappings, side).get_indexer(feature_keys(mappings, side))
        found = source >= 0
        for name in _STATE_ARRAYS:
            if name.startswith(side):
                getattr(model, name)[found] = getattr(base, name)[source[found]]
        carried[side] = float(found.mean()) if len(found) else 1.0
    return model, carried


def fit_more(
    model: LightFM,
    interactions: sp.coo_matrix,
    params: ModelParams,
    epochs: int,
    user_features: sp.csr_matrix | None = None,
    item_features: sp.csr_matrix | None = None,
    sample_weight: sp.coo_matrix | None = None,
) -> LightFM:
    """Continue training ``model`` (e.g. from :func:`warm_start`) for ``epochs`` epochs."""
    model.fit_partial(
        interactions,
        user_features=user_features,
        item_features=item_features,
        sample_weight=sample_weight,
        epochs=epochs,
        num_threads=params.num_threads,
    )
    return model


@dataclass(frozen=True)
class WarmStartBase:
    """A stored model to continue from, and how many warm starts led to it."""

    model: LightFM
    mappings: Mappings
    version: str
    chain: int  # warm starts since the last training from scratch (0 = trained from scratch)
    epochs: int  # epochs to continue for
    horizon: str = ""  # the last day of the data it was trained on


def fit_model(
    interactions: sp.coo_matrix,
    params: ModelParams,
    mappings: Mappings,
    user_features: sp.csr_matrix | None = None,
    item_features: sp.csr_matrix | None = None,
    sample_weight: sp.coo_matrix | None = None,
    base: WarmStartBase | None = None,
    recent: np.ndarray | None = None,
    replay: float = 1.0,
) -> tuple[LightFM, dict]:
    """Train from scratch, or continue from ``base`` for ``base.epochs`` epochs.

    A warm start given ``recent`` (a boolean per stored interaction: touched by events
    newer than the base's data) trains on those and on a fixed random ``replay`` share
    of them drawn from the others (what the base already learned, replayed so that it
    is not forgotten) instead of every interaction: one new day of sixty then costs a
    few percent of an epoch.

    Returns the model and its training record (stored with the model):
    ``warm_start_of`` (base version or None), ``chain``, ``epochs`` and, for a warm
    start on recent interactions, ``recent_pairs`` and ``replayed_pairs``.
    """
    if base is None:
        model = train(interactions, params, user_features, item_features, sample_weight)
        return model, {"warm_start_of": None, "chain": 0, "epochs": params.epochs_for(interactions.nnz)}
    model, carried = warm_start(base.model, base.mappings, mappings, params)
    record = {
        "warm_start_of": base.version,
        "chain": base.chain + 1,
        "epochs": base.epochs,
        "carried_user_rows": carried["user"],
        "carried_item_rows": carried["item"],
    }
    if recent is not None:
        chosen = recent_and_replayed(recent, replay, params.random_state + base.chain)
        interactions, sample_weight = _subset(interactions, chosen), _subset(sample_weight, chosen)
        record |= {"recent_pairs": int(recent.sum()), "replayed_pairs": int((chosen & ~recent).sum())}
    fit_more(model, interactions, params, base.epochs, user_features, item_features, sample_weight)
    return model, record


def recent_and_replayed(recent: np.ndarray, replay: float, seed: int) -> np.ndarray:
    """Every recent entry and about ``replay`` times as many of the others, at random."""
    recent = np.asarray(recent, dtype=bool)
    older = int((~recent).sum())
    share = min(1.0, replay * int(recent.sum()) / older) if older else 0.0
    return recent | (np.random.default_rng(seed).random(len(recent)) < share)


def _subset(matrix: sp.coo_matrix | None, keep: np.ndarray) -> sp.coo_matrix | None:
    if matrix is None:
        return None
    matrix = matrix.tocoo()
    return sp.coo_matrix((matrix.data[keep], (matrix.row[keep], matrix.col[keep])), shape=matrix.shape)


def recent_mask(interactions: sp.coo_matrix, mappings: Mappings, pairs: pd.DataFrame) -> np.ndarray:
    """Per stored interaction: is its (user_id, item_id) among ``pairs``?"""
    interactions = interactions.tocoo()
    rows = mappings.user_codes(pairs["user_id"])
    cols = mappings.item_codes(pairs["item_id"])
    known = (rows >= 0) & (cols >= 0)
    n_items = interactions.shape[1]
    wanted = rows[known].astype(np.int64) * n_items + cols[known]
    return np.isin(interactions.row.astype(np.int64) * n_items + interactions.col, wanted)


def _comparable(params: ModelParams) -> dict:
    """The parameters two models must share for one to continue the other."""
    return {k: v for k, v in asdict(params).items() if k not in ("epochs", "num_threads", "max_updates")}


def find_warm_start_base(
    root: str | Path,
    params: ModelParams,
    horizon: str,
    context: dict,
    max_chain: int,
    epochs: int,
) -> WarmStartBase | None:
    """The newest stored model trained on data ending strictly before ``horizon``.

    Candidates must have the same hyper-parameters (but epochs) and the same
    ``context`` (feature settings, split), and be fewer than ``max_chain`` warm
    starts away from a training from scratch, so the chain is cut regularly.
    "Strictly before" keeps re-runs repeatable: re-materialising the same day
    finds the same base, never the model it is replacing.
    """
    root = Path(root)
    if max_chain <= 0 or not root.is_dir():
        return None
    best: tuple[str, str, dict] | None = None
    for directory in root.iterdir():
        if directory.name.startswith(".") or not (directory / "metrics.json").is_file():
            continue
        try:
            stored = json.loads((directory / "params.json").read_text())
            training = json.loads((directory / "metrics.json").read_text()).get("training", {})
        except (OSError, ValueError):
            continue  # a foreign or damaged folder is never a base
        if (
            training.get("horizon", "9999") < horizon
            and training.get("context") == context
            and training.get("chain", max_chain) < max_chain
            and _comparable(ModelParams(**stored)) == _comparable(params)
            and (best is None or (training["horizon"], directory.name) > best[:2])
        ):
            best = (training["horizon"], directory.name, training)
    if best is None:
        return None
    model, mappings, _, _ = load_model(root / best[1])
    return WarmStartBase(model, mappings, best[1], int(best[2]["chain"]), epochs, best[0])


def newest_base(*bases: WarmStartBase | None) -> WarmStartBase | None:
    """The base trained on the most recent data (the first one given on a tie)."""
    found = [b for b in bases if b is not None]
    return max(found, key=lambda b: b.horizon) if found else None


def prune_models(root: str | Path, keep: int, protect: set[str] = frozenset()) -> list[str]:
    """Delete all but the ``keep`` newest model folders (by training horizon, then
    modification time), never those in ``protect``. Returns the deleted versions."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for directory in root.iterdir():
        if directory.name.startswith(".") or not (directory / "model.npz").is_file():
            continue
        try:
            horizon = json.loads((directory / "metrics.json").read_text()).get("training", {}).get("horizon", "")
        except (OSError, ValueError):
            horizon = ""
        found.append((horizon, directory.stat().st_mtime, directory))
    found.sort(reverse=True)
    deleted = []
    for _, _, directory in found[keep:]:
        if directory.name not in protect:
            shutil.rmtree(directory, ignore_errors=True)
            deleted.append(directory.name)
    return deleted


def save_model(
    directory: str | Path,
    model: LightFM,
    mappings: Mappings,
    params: ModelParams,
    metrics: dict | None = None,
) -> Path:
    """Write the model to ``directory``, replacing any previous model there.

    The files go to a temporary directory next to the target, which is then
    renamed into place (``os.replace``). Readers see either the old or the new
    complete model; a previous model is moved aside first and deleted after.
    """
    directory = Path(directory)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.", dir=directory.parent))
    try:
        np.savez(staging / "model.npz", **{name: getattr(model, name) for name in _STATE_ARRAYS})
        (staging / "mappings.json").write_text(json.dumps(mappings.to_dict()))
        (staging / "params.json").write_text(json.dumps(asdict(params), indent=2))
        (staging / "metrics.json").write_text(json.dumps(metrics or {}, indent=2, default=float))
        previous = None
        if directory.exists():
            previous = directory.with_name(f"{staging.name}.previous")
            try:
                os.replace(directory, previous)
            except FileNotFoundError:  # another process moved it first
                previous = None
        try:
            os.replace(staging, directory)
        except OSError:
            if not (directory / "model.npz").exists():
                raise
            # An overlapping run wrote the same version (same data, settings and base)
            # between our two renames: keep its copy.
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if previous is not None:
        shutil.rmtree(previous, ignore_errors=True)
    return directory


def load_model(directory: str | Path) -> tuple[LightFM, Mappings, ModelParams, dict]:
    """Read a model written by :func:`save_model`: (model, mappings, params, metrics)."""
    directory = Path(directory)
    params = ModelParams(**json.loads((directory / "params.json").read_text()))
    mappings = Mappings.from_dict(json.loads((directory / "mappings.json").read_text()))
    metrics = json.loads((directory / "metrics.json").read_text())
    model = params.new_model()
    with np.load(directory / "model.npz") as arrays:
        for name in _STATE_ARRAYS:
            setattr(model, name, arrays[name])
    return model, mappings, params, metrics
