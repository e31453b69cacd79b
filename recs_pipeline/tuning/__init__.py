"""Hyper-parameter tuning of LightFM, TIFU-KNN and the LightGBM ranker with Optuna.

Everything is scored on a validation split carved out of the training days only
(:mod:`.validation`): the last ``holdout_days`` before the hold-out are the
validation labels, and nothing at or after the hold-out's first day reaches a
trial. :mod:`.studies` runs the three Optuna studies (TPE with a fixed seed: the
same data give the same trials) and builds the ``tuned.json`` document that
:func:`recs_pipeline.settings.load_settings` applies to later runs. Nothing here
imports Dagster (the asset is ``recs_pipeline.defs.tuning``).
"""

from recs_pipeline.tuning.studies import StudyResult, TuningResult, tune, tuned_document
from recs_pipeline.tuning.validation import TuningData, Validation, ValidationSplit, validation_split

__all__ = [
    "StudyResult",
    "TuningData",
    "TuningResult",
    "Validation",
    "ValidationSplit",
    "tune",
    "tuned_document",
    "validation_split",
]
