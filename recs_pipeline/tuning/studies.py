"""The three Optuna studies and the ``tuned.json`` document.

Each study samples with TPE from a fixed seed, and the objectives are deterministic
(LightFM on one thread with a fixed random state, LightGBM ``deterministic`` on one
thread), so the same data give the same trials. Trial 0 of every study is the current
settings (enqueued), so ``default`` is the current settings' value on the same split,
and a study's best parameters are kept only when they beat it: tuning never makes
the stored parameters worse on the validation split.

The studies run in order and each uses what the earlier ones kept: TIFU-KNN and the
ranker see the kept LightFM (the ranker's ``model`` generator), the ranker the kept
TIFU-KNN parameters.

Search spaces are small ranges around the current values (so repeated tuning walks
from wherever the last one stopped); a regularisation of 0 stays 0 (no log range
holds it). Parameter names are those of ``[model]`` and ``[ranking]`` in the TOML file.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd

from recs_pipeline.ml.model import ModelParams
from recs_pipeline.ranking import stage
from recs_pipeline.ranking.ranker import RankerParams
from recs_pipeline.ranking.tifu_knn import TifuParams
from recs_pipeline.settings import TUNED_KEYS
from recs_pipeline.tuning.validation import ModelListsFactory, TuningData, Validation

STUDIES = ("lightfm", "tifu_knn", "ranker")
SECTION = {"lightfm": "model", "tifu_knn": "ranking", "ranker": "ranking"}
TRIAL_COLUMNS = ["study", "trial", "value", "params", "state"]
# [ranking] names of the TIFU-KNN parameters -> TifuParams fields.
TIFU_NAMES = {"tifu_neighbours": "n_neighbours", "tifu_within_decay": "within_decay",
              "tifu_group_decay": "group_decay", "tifu_alpha": "alpha", "tifu_groups": "n_groups"}  # fmt: skip


@dataclass(frozen=True)
class Param:
    """One dimension of a search space; ``low <= current <= high``."""

    name: str
    kind: str  # "int" or "float"
    low: float
    high: float
    log: bool = False

    def suggest(self, trial) -> int | float:
        if self.kind == "int":
            return trial.suggest_int(self.name, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.name, float(self.low), float(self.high), log=self.log)


def _int(name: str, current: int, down: float, up: float, floor: int = 1, log: bool = False) -> Param | None:
    low = min(current, max(floor, math.floor(current * down)))
    high = max(current, math.ceil(current * up))
    return Param(name, "int", low, high, log) if high > low else None


def _float(name: str, current: float, down: float, up: float, log: bool = False,
           bounds: tuple[float, float] = (-math.inf, math.inf)) -> Param | None:  # fmt: skip
    if log and current <= 0:
        return None  # 0 (no regularisation) has no log range: held fixed
    low = min(current, max(bounds[0], current * down))
    high = max(current, min(bounds[1], current * up))
    return Param(name, "float", low, high, log) if high > low else None


def _space(*params: Param | None) -> list[Param]:
    return [p for p in params if p is not None]


def lightfm_space(current: ModelParams) -> list[Param]:
    return _space(
        _int("no_components", current.no_components, 0.5, 1.5, floor=4),
        _float("learning_rate", current.learning_rate, 0.25, 2.0, log=True, bounds=(1e-4, 2.0)),
        _float("item_alpha", current.item_alpha, 0.01, 100.0, log=True),
        _float("user_alpha", current.user_alpha, 0.01, 100.0, log=True),
        _int("epochs", current.epochs, 0.5, 1.5, floor=1),
    )


def tifu_space(current: TifuParams) -> list[Param]:
    return _space(
        _int("tifu_neighbours", current.n_neighbours, 1 / 3, 2.0, floor=5, log=True),
        Param("tifu_within_decay", "float", min(0.5, current.within_decay), max(1.0, current.within_decay)),
        Param("tifu_group_decay", "float", min(0.4, current.group_decay), max(1.0, current.group_decay)),
        Param("tifu_alpha", "float", min(0.0, current.alpha), max(1.0, current.alpha)),
        Param("tifu_groups", "int", min(current.n_groups, max(1, current.n_groups - 4)), current.n_groups + 6),
    )


def ranker_space(current: RankerParams) -> list[Param]:
    negatives = current.negatives_per_user
    return _space(
        _int("n_estimators", current.n_estimators, 1 / 3, 1.5, floor=20, log=True),
        _float("learning_rate", current.learning_rate, 1 / 3, 3.0, log=True, bounds=(1e-3, 0.5)),
        _int("num_leaves", current.num_leaves, 0.25, 2.0, floor=4, log=True),
        _int("min_child_samples", current.min_child_samples, 0.25, 4.0, floor=1, log=True),
        # 0 (every negative) stays 0: a sample is a different kind of training set.
        _int("negatives_per_user", negatives, 0.25, 2.0, floor=5) if negatives > 0 else None,
    )


def current_values(space: list[Param], params: object, names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The current value of every dimension (``names``: setting name -> field of ``params``)."""
    names = names or {}
    return {p.name: getattr(params, names.get(p.name, p.name)) for p in space}


@dataclass
class StudyResult:
    name: str
    trials: pd.DataFrame  # study, trial, value, params (JSON), state
    current: dict[str, Any]  # the current settings (trial 0)
    default_value: float | None
    best_params: dict[str, Any]
    best_value: float | None
    improved: bool
    decision: str
    seconds: float = 0.0

    @property
    def kept(self) -> dict[str, Any]:
        """The parameters later studies and runs use: the best if it beat the current ones."""
        return {**self.current, **self.best_params} if self.improved else dict(self.current)


def skipped(name: str, reason: str) -> StudyResult:
    return StudyResult(name, pd.DataFrame(columns=TRIAL_COLUMNS), {}, None, {}, None, False, f"skipped: {reason}")


def run_study(name: str, space: list[Param], current: dict[str, Any], objective: Callable[[dict[str, Any]], float],
              n_trials: int, seed: int, metric: str = "precision@10") -> StudyResult:  # fmt: skip
    """Maximise ``objective(params)`` over ``space`` in ``n_trials`` trials, trial 0 being
    ``current``. A trial that raises is recorded as ``fail`` (trial 0 failing raises)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    started = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, n_trials // 2))
        study = optuna.create_study(study_name=name, direction="maximize", sampler=sampler)
        study.enqueue_trial(current)
        study.optimize(lambda trial: objective({p.name: p.suggest(trial) for p in space}), n_trials=n_trials,
                       catch=(Exception,))  # fmt: skip
    trials = pd.DataFrame(
        [{"study": name, "trial": t.number, "value": t.value if t.values else None,
          "params": json.dumps(t.params, sort_keys=True), "state": t.state.name.lower()} for t in study.trials],
        columns=TRIAL_COLUMNS,
    )  # fmt: skip
    baseline = study.trials[0]
    if baseline.state != optuna.trial.TrialState.COMPLETE:
        reason = baseline.system_attrs.get("fail_reason", baseline.state.name)
        raise RuntimeError(f"{name}: the current settings' trial failed: {reason}")
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = min(complete, key=lambda t: (-t.value, t.number))  # ties: the earliest (trial 0 first)
    default = float(baseline.value)
    improved = best.value > default
    if improved:
        decision = (f"best {metric} {best.value:.4f} (trial {best.number}) beats the current settings' {default:.4f}: "
                    "written")  # fmt: skip
    else:
        decision = f"no trial beats the current settings' {metric} {default:.4f}: the current settings stay"
    return StudyResult(name, trials, dict(current), default, dict(best.params), float(best.value), improved, decision,
                       time.perf_counter() - started)  # fmt: skip


@dataclass(frozen=True)
class TuningBase:
    """The current settings as the components take them."""

    model: ModelParams
    stage: stage.StageParams
    ranker: RankerParams


@dataclass
class TuningResult:
    validation: Validation
    studies: dict[str, StudyResult]
    model: ModelParams  # what was kept
    stage: stage.StageParams
    ranker: RankerParams
    ranker_cutoffs: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)  # preparation steps and studies

    @property
    def trials(self) -> pd.DataFrame:
        frames = [s.trials for s in self.studies.values() if len(s.trials)]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=TRIAL_COLUMNS)

    @property
    def metric(self) -> str:
        return f"precision@{self.validation.k}"


def tune(data: TuningData, base: TuningBase, n_trials: Mapping[str, int], model_lists: ModelListsFactory,
         seed: int = 42, log: Callable[[str], None] = lambda _: None) -> TuningResult:  # fmt: skip
    """Run the studies (``n_trials``: study -> trials, 0 skips it) on ``data``'s split."""
    val = Validation(data)
    if not len(val.users):
        raise ValueError(f"no known user bought anything in the validation days [{val.split.cutoff}, "
                         f"{val.split.first_holdout}): nothing to tune on")  # fmt: skip
    metric = f"precision@{val.k}"
    seconds: dict[str, float] = {}
    studies: dict[str, StudyResult] = {}
    v = val.split.cutoff
    log(f"validation cut-off {v}: {len(val.users):,} users, {len(val.relevant):,} relevant pairs")

    # LightFM. The models of trial 0 and of the best trial so far are kept: the ranker's
    # `model` generator at v is whichever is kept.
    models: dict[str, tuple] = {}

    def lightfm_objective(values: dict[str, Any]) -> float:
        model, mdata = val.fit_lightfm(v, replace(base.model, **values))
        value = val.lightfm_precision(model, mdata)
        if not models:
            models["current"] = (model, mdata)
        if value > models.get("best_value", -1.0):
            models["best"], models["best_value"] = (model, mdata), value
        return value

    space = lightfm_space(base.model)
    if n_trials.get("lightfm", 0) > 0:
        studies["lightfm"] = run_study("lightfm", space, current_values(space, base.model), lightfm_objective,
                                       n_trials["lightfm"], seed, metric)  # fmt: skip
    else:
        studies["lightfm"] = skipped("lightfm", "0 trials")
    lightfm = studies["lightfm"]
    model_params = replace(base.model, **lightfm.best_params) if lightfm.improved else base.model
    log(f"lightfm: {lightfm.decision}")

    fitted: dict[pd.Timestamp, tuple] = {}
    if lightfm.improved:
        fitted[v] = models["best"]
    elif "current" in models:
        fitted[v] = models["current"]
    models.clear()

    def lists_at(cutoff: pd.Timestamp) -> stage.ModelLists:
        if cutoff not in fitted:
            fitted[cutoff] = val.fit_lightfm(cutoff, model_params)
        return model_lists(*fitted[cutoff])

    # TIFU-KNN on the generators at v (prepared once; a trial rebuilds the user vectors).
    started = time.perf_counter()
    at_v = val.generators(v, base.stage, val.users, lists_at(v))
    seconds["generators at v"] = time.perf_counter() - started
    space = tifu_space(base.stage.tifu)

    def tifu_params(values: dict[str, Any]) -> TifuParams:
        return replace(base.stage.tifu, **{TIFU_NAMES[name]: value for name, value in values.items()})

    if n_trials.get("tifu_knn", 0) > 0:
        studies["tifu_knn"] = run_study("tifu_knn", space, current_values(space, base.stage.tifu, TIFU_NAMES),
                                        lambda values: val.tifu_precision(at_v, tifu_params(values)),
                                        n_trials["tifu_knn"], seed, metric)  # fmt: skip
    else:
        studies["tifu_knn"] = skipped("tifu_knn", "0 trials")
    tifu = studies["tifu_knn"]
    stage_params = replace(base.stage, tifu=tifu_params(tifu.best_params)) if tifu.improved else base.stage
    log(f"tifu_knn: {tifu.decision}")

    # The ranker: rows built once, a trial is a LightGBM fit and a prediction.
    space = ranker_space(base.ranker)
    ranker_params, described = base.ranker, []
    if n_trials.get("ranker", 0) <= 0:
        studies["ranker"] = skipped("ranker", "0 trials")
    elif not val.split.training_cutoffs:
        studies["ranker"] = skipped("ranker", f"too little history before {v.date()} for a training cut-off")
    else:
        started = time.perf_counter()
        frames = val.ranker_frames(stage_params, val.with_tifu(at_v, stage_params.tifu), lists_at)
        seconds["ranker rows"] = time.perf_counter() - started
        described = frames.cutoffs
        if not frames.training:
            studies["ranker"] = skipped("ranker", "no training cut-off has a labelled candidate")
        else:
            studies["ranker"] = run_study("ranker", space, current_values(space, base.ranker),
                                          lambda values: val.ranker_precision(frames, replace(base.ranker, **values)),
                                          n_trials["ranker"], seed, metric)  # fmt: skip
            if studies["ranker"].improved:
                ranker_params = replace(base.ranker, **studies["ranker"].best_params)
    log(f"ranker: {studies['ranker'].decision}")
    seconds |= {f"study {name}": s.seconds for name, s in studies.items()}
    return TuningResult(val, studies, model_params, stage_params, ranker_params, described, seconds)


def tuned_document(result: TuningResult, previous: dict | None, tuned_at: str) -> dict:
    """The ``tuned.json`` content: the kept parameters of every study that beat the
    current settings, and, for the others, what ``previous`` (the file the current
    settings were loaded with, if any) held for their keys."""
    sections: dict[str, dict[str, Any]] = {}
    for section, keys in TUNED_KEYS.items():
        sections[section] = {k: v for k, v in ((previous or {}).get(section) or {}).items() if k in keys}
    for name, study in result.studies.items():
        if study.improved:
            sections[SECTION[name]].update(study.best_params)
    studies = result.studies
    return {
        "tuned_at": tuned_at,
        "validation_cutoff": str(result.validation.split.cutoff),
        "first_holdout": str(result.validation.split.first_holdout),
        "metric": result.metric,
        "validation_users": int(len(result.validation.users)),
        "model": dict(sorted(sections["model"].items())),
        "ranking": dict(sorted(sections["ranking"].items())),
        "trials": int(sum(len(s.trials) for s in studies.values())),
        "values": {name: s.best_value for name, s in studies.items()},
        "defaults": {name: s.default_value for name, s in studies.items()},
        "written": {name: s.improved for name, s in studies.items()},
        "decisions": {name: s.decision for name, s in studies.items()},
        "best_params": {name: s.best_params for name, s in studies.items()},
        "current_params": {name: s.current for name, s in studies.items()},
    }
