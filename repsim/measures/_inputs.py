"""Input checks shared by the single-pair measures and the engine."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from repsim.errors import (
    ComplexInputError,
    InputError,
    NonNumericInputError,
    RaggedInputError,
    UndefinedMeasureError,
)


def as_matrix(X: Any, name: str = "X") -> np.ndarray:
    """Return ``X`` (numpy, torch or array-like, shape (n, d)) as a finite float64 numpy array.

    Raises :class:`InputError` naming ``name`` and the first bad row if ``X`` holds NaN or Inf, and
    naming the fix if its magnitude is outside the range the measures compute in (:data:`MAX_MAGNITUDE`).
    """
    A = to_float64(X, name)
    row, count = first_bad_row(A)
    if row is not None:
        raise InputError(
            f"{name} holds NaN or Inf ({count} rows, first bad row {row}); "
            "re-extract the features or drop those stimuli from every model"
        )
    why = magnitude_problem(A)
    if why is not None:
        raise InputError(f"{name} {why}; {RESCALE_FIX.format(name=name)}")
    return A


#: Largest absolute feature value the measures accept (and 1 / it the smallest nonzero one). CKA
#: multiplies two self-HSICs, eighth powers of the features: beyond about 1e37 they overflow and
#: linear CKA returned 0.0, below about 1e-40 they underflow and it lost digits, then returned inf;
#: row norms overflow near 1e154, where mutual kNN returned 0.1 and Procrustes 0.0. Within +-1e30
#: every measure keeps its digits at any realistic n and d; no network's features come near.
MAX_MAGNITUDE = 1e30
RESCALE_FIX = (
    "rescale it, e.g. {name} / np.abs({name}).max() (linear and median-bandwidth RBF CKA, RSA, "
    "mutual kNN and Procrustes do not change under scaling; for an absolute RBF sigma choose sigma "
    "for the rescaled features)"
)


def magnitude_problem(A: np.ndarray) -> str | None:
    """Why the finite array ``A`` is too large or too small to compute with, or None if it is not."""
    m = max(abs(float(A.max())), abs(float(A.min())))  # no |A| copy of a large feature matrix
    if m > MAX_MAGNITUDE:
        return (
            f"has values up to {m:.3g} in magnitude, beyond {MAX_MAGNITUDE:g}, "
            "where products of features overflow float64"
        )
    if 0 < m < 1 / MAX_MAGNITUDE:
        return (
            f"has no value larger than {m:.3g} in magnitude, below {1 / MAX_MAGNITUDE:g}, "
            "where products of features underflow float64"
        )
    return None


_NONE = object()


def real_array(X: Any, name: str = "X") -> Any:
    """``X`` checked to hold real numbers: a torch tensor is returned as is, anything else as numpy.

    Raises :class:`NonNumericInputError` (strings, None, objects), :class:`RaggedInputError` (rows of
    different lengths), :class:`ComplexInputError` (complex values are refused, never truncated)
    or :class:`InputError` (a masked array with masked values, whose mask numpy would drop).
    """
    if hasattr(X, "detach"):  # torch tensor, without importing torch
        if X.is_complex():
            raise _complex(name, X.dtype)
        return X
    if isinstance(X, np.ma.MaskedArray) and np.ma.getmaskarray(X).any():
        # np.asarray drops the mask: the masked values would be used as if they were data
        raise InputError(
            f"{name} is a masked array with {int(np.ma.getmaskarray(X).sum())} masked value(s), "
            "which a measure would use as data; drop the rows that hold them, or fill them with "
            "NaN (.filled(np.nan)) to have those rows named"
        )
    try:
        A = np.asarray(X)
    except ValueError as err:
        if "inhomogeneous" in str(err) or "sequence" in str(err):
            raise RaggedInputError(
                f"{name} is a ragged nested list (rows of different lengths); pass a rectangular "
                "array (n_stimuli, n_features) with one feature vector of the same length per row"
            ) from None
        raise _non_numeric(name, err) from None
    if A.dtype.kind == "c":
        raise _complex(name, A.dtype)
    if A.dtype.kind == "O":
        if any(isinstance(v, (list, tuple, np.ndarray)) for v in A.ravel()):
            raise RaggedInputError(
                f"{name} is a ragged nested list (rows of different lengths); pass a rectangular "
                "array (n_stimuli, n_features) with one feature vector of the same length per row"
            )
        if any(isinstance(v, complex) for v in A.ravel()):
            raise _complex(name, "complex objects")
        bad = next((v for v in A.ravel() if not isinstance(v, numbers.Real)), _NONE)
        if bad is not _NONE:
            raise _non_numeric(name, f"e.g. {bad!r}")
        A = A.astype(np.float64)
    elif A.dtype.kind not in "biuf":
        raise _non_numeric(name, f"dtype {A.dtype}")
    return A


def _non_numeric(name: str, why: object) -> NonNumericInputError:
    return NonNumericInputError(
        f"{name} holds values that are not real numbers ({why}); pass a numeric array "
        "(n_stimuli, n_features), e.g. features read with repsim.store or np.asarray(..., float)"
    )


def _complex(name: str, dtype: object) -> ComplexInputError:
    return ComplexInputError(
        f"{name} is complex ({dtype}); measures are defined for real features and the imaginary part "
        "is not dropped silently: pass X.real or np.abs(X) if that is what you mean"
    )


def to_float64(X: Any, name: str = "X") -> np.ndarray:
    """``X`` as a 2-D float64 numpy array (no finiteness check); raise :class:`InputError` on bad shape.

    Non-numeric, ragged and complex input raise the :class:`InputError` subclasses of :func:`real_array`.
    """
    X = real_array(X, name)
    if hasattr(X, "detach"):
        X = X.detach().to("cpu").double().numpy()
    A = np.asarray(X, dtype=np.float64)
    if A.ndim == 1:
        raise InputError(
            f"{name} has shape {A.shape}; pass a 2-D array (n_stimuli, n_features), e.g. x[:, None]"
        )
    if A.ndim != 2 or A.shape[0] == 0 or A.shape[1] == 0:
        raise InputError(
            f"{name} has shape {A.shape}; pass a non-empty 2-D array (n_stimuli, n_features)"
        )
    return A


def check_flag(value: Any, name: str) -> bool:
    """``value`` as a bool; anything but True/False (a string such as ``"no"``, None, 0/1) raises.

    A truthy string would otherwise select the other estimator without a word.
    """
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InputError(f"{name} must be True or False, got {value!r}")


def first_bad_row(A: np.ndarray) -> tuple[int | None, int]:
    """Index of the first row holding NaN or Inf (None if all finite) and the number of such rows."""
    bad = ~np.isfinite(A).all(axis=1)
    if not bad.any():
        return None, 0
    return int(np.flatnonzero(bad)[0]), int(bad.sum())


def check_pair(
    X: np.ndarray, Y: np.ndarray, min_n: int, what: str, names: tuple[str, str] = ("X", "Y")
) -> int:
    """Check aligned rows and enough stimuli; return n."""
    if X.shape[0] != Y.shape[0]:
        raise InputError(
            f"{names[0]} has {X.shape[0]} stimuli but {names[1]} has {Y.shape[0]}; rows must be the same "
            "stimuli in the same order (read both with the same stimulus ids)"
        )
    n = X.shape[0]
    if n < min_n:
        raise InputError(f"{what} needs at least {min_n} stimuli, got {n}; use more stimuli")
    return n


def is_constant(X: np.ndarray) -> bool:
    """True if every stimulus has the same representation (zero variance across stimuli)."""
    return bool((X == X[0]).all())


def require_variance(X: np.ndarray, name: str, what: str) -> None:
    """Raise :class:`UndefinedMeasureError` if ``X`` has zero variance across stimuli."""
    if is_constant(X):
        raise UndefinedMeasureError(
            f"{what} is undefined: {name} is the same vector for every stimulus (zero variance); "
            "check that the model and layer produce input-dependent features"
        )
