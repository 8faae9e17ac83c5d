"""Errors raised by repsim.

Every error is a :class:`RepsimError`; each message says what went wrong *and* what to do about it,
so that a failed 64-model run tells the user how to continue rather than just where it stopped.
"""

from __future__ import annotations

import math
from numbers import Integral, Real


class RepsimError(Exception):
    """Base class of every error raised on purpose by repsim.

    ``exit_code`` is what the ``repsim`` command exits with: 2 for errors found before or instead of
    the work (a bad config, model, dataset or folder); subclasses that mean "the work ran, partly"
    say so with another code.
    """

    exit_code = 2


class UndefinedDatasetWarning(RuntimeWarning):
    """The NaN rule's warning (:mod:`repsim.consistency`) when every NaN similarity it drops lies
    on datasets with no defined similarity at all: their consistency is NaN and no value is
    computed over fewer pairs. The book's chapters leave such datasets out and name them, so
    :func:`repsim.chapter.setup` ignores this warning there (it leaked into chapters 04, 12 and 13
    as stderr); a ``RuntimeWarning`` filter (``"error"`` to refuse NaN) still catches it."""


class ConfigError(RepsimError, ValueError):
    """A config file or spec is malformed (unknown loader, duplicate id, missing field, ...)."""


class InputError(RepsimError, ValueError):
    """Arrays handed to a measure or analysis are unusable (shape mismatch, NaN, too few rows)."""


def check_count(name: str, value: object, minimum: int = 1) -> int:
    """``value`` as an int, or an InputError that names the parameter: counts (epochs, draws,
    repeats, models per category) come from configs and notebook parameters, where a 0 or a
    float would otherwise fail deep inside as an IndexError or give an empty result."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}; got {value!r}.")
    return int(value)


def check_positive(name: str, value: object) -> float:
    """``value`` as a float, or an InputError that names the parameter: a tolerance of 0 or below
    (or NaN) in a notebook's parameters would give a true sentence about nothing."""
    if (
        isinstance(value, bool)
        or not isinstance(value, Real)
        or not (math.isfinite(value) and value > 0)
    ):
        raise InputError(f"{name} must be a finite number above 0; got {value!r}.")
    return float(value)


def brief(text: str, limit: int = 600) -> str:
    """``text`` on one line, cut to its first ``limit`` characters (`` ...`` marks a cut): a
    library's error that lists every key of a state dict would bury the model, file and fix of
    the message it is quoted in."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit] + " ..."


class UndefinedMeasureError(InputError):
    """A measure is undefined for this input (e.g. CKA of a zero-variance representation)."""


class NonNumericInputError(InputError):
    """An array holds values that are not real numbers (strings, None, arbitrary objects)."""


class RaggedInputError(InputError):
    """A nested list is ragged: its rows have different lengths, so it is not a matrix."""


class ComplexInputError(InputError):
    """An array is complex; features and similarities are real, and the imaginary part is not dropped."""


class AsymmetricSimilarityError(InputError):
    """A similarity array is not symmetric in (model_a, model_b), as every measure here is."""


class ConstantFeaturesError(InputError):
    """Features are the same vector for every sample (e.g. all zero): there is nothing to learn."""


class DatasetError(RepsimError):
    """A stimulus dataset cannot be read, or its contents are invalid."""


class ModelError(RepsimError):
    """A model cannot be built, or a requested layer does not exist."""


class MissingWeightsError(ModelError, FileNotFoundError):
    """Pretrained weights are not available locally and cannot be downloaded (offline)."""


class UnknownArchitectureError(ModelError):
    """A model's architecture is read from a config that is neither local nor cached, so it cannot
    be built (nor its width known) before that config is downloaded."""


class StoreError(RepsimError):
    """A feature store or result file is missing, inconsistent or corrupt."""


class PathError(RepsimError):
    """A path given to a command cannot be used: a name in it or the whole path is too long, or
    the files the command writes there cannot be written (a full disk, no permission)."""


class RunFolderError(StoreError):
    """A run folder cannot be used: not writable, full, mixed, locked by another run, or corrupt."""


class NoSpaceError(RunFolderError):
    """The run folder's disk has less free space than the run will write."""


class RunLockedError(RunFolderError):
    """Another process is running in the same run folder."""


class RunFailedError(RepsimError):
    """Some tasks of a run failed; the others finished and are cached in the run folder.

    The command exits 3 (not 2, a config or folder error): the run folder holds cached work and a
    rerun after fixing the cause does only what is missing.
    """

    exit_code = 3


class BookError(RepsimError):
    """A notebook failed to execute or the book failed to build."""


__all__ = [
    "RepsimError",
    "ConfigError",
    "InputError",
    "UndefinedMeasureError",
    "NonNumericInputError",
    "RaggedInputError",
    "ComplexInputError",
    "AsymmetricSimilarityError",
    "ConstantFeaturesError",
    "DatasetError",
    "ModelError",
    "MissingWeightsError",
    "UnknownArchitectureError",
    "StoreError",
    "PathError",
    "RunFolderError",
    "NoSpaceError",
    "RunLockedError",
    "RunFailedError",
    "BookError",
]
