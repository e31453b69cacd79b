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
        epochs=params.epochs,
        num_threads=params.num_threads,
    )
    return model


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
            os.replace(directory, previous)
        os.replace(staging, directory)
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
