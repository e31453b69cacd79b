"""Erasing users from the stored models (``<model dir>/<version>/``, evaluation models
included).

A stored model holds each user it was trained on twice: the pseudonym in
``mappings.json`` and the user's own embedding row (identity feature) in ``model.npz``.
Both are removed in place, atomically (``save_model`` writes a temp folder and renames
it), so the serving model keeps serving everyone else with unchanged scores (a user's
representation is the sum of their own rows, never another user's).

What the user taught the shared rows (item embeddings, attribute tokens) cannot be
removed by editing: a scrubbed model is therefore never continued by a warm start
(its ``training.chain`` is removed, which ``find_warm_start_base`` reads as "at the
end of its chain"), so the next night trains from scratch on data without the user.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from recs_pipeline.ml.model import _STATE_ARRAYS, load_model, save_model

USER_ARRAYS = tuple(name for name in _STATE_ARRAYS if name.startswith("user_"))


def model_directories(model_dir: Path) -> list[Path]:
    """Every stored model under ``model_dir`` (any depth), temp folders excluded."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return []
    found = []
    for mappings in sorted(model_dir.rglob("mappings.json")):
        directory = mappings.parent
        if any(part.startswith(".") for part in directory.relative_to(model_dir).parts):
            continue
        if (directory / "model.npz").is_file():
            found.append(directory)
    return found


def scrub_models(model_dir: Path, pseudonyms: set[str]) -> dict[str, list[str]]:
    """Remove ``pseudonyms`` from every stored model; returns pseudonym -> model folders
    (relative to ``model_dir``) they were removed from."""
    removed: dict[str, list[str]] = {p: [] for p in pseudonyms}
    for directory in model_directories(model_dir):
        user_ids = json.loads((directory / "mappings.json").read_text()).get("user_ids", [])
        present = sorted(set(user_ids) & pseudonyms)
        if not present:
            continue
        model, mappings, params, metrics = load_model(directory)
        drop = mappings.user_ids.isin(present)
        if mappings.user_identity:
            rows = np.flatnonzero(drop)  # the identity block comes first: row i is user i
            for name in USER_ARRAYS:
                setattr(model, name, np.delete(getattr(model, name), rows, axis=0))
        training = dict(metrics.get("training", {}))
        training.pop("chain", None)  # never a warm-start base again: retrain from scratch
        erasure = dict(metrics.get("erasure", {}))
        erasure["users_removed"] = int(erasure.get("users_removed", 0)) + len(present)
        erasure["last_erasure_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        metrics = {**metrics, "training": training, "erasure": erasure}
        save_model(directory, model, replace(mappings, user_ids=mappings.user_ids[~drop]), params, metrics)
        relative = str(directory.relative_to(model_dir))
        for p in present:
            removed[p].append(relative)
    return removed
