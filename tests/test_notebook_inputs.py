"""What a researcher passes from a notebook: options and values that used to be taken silently or
to fail deep inside numpy/torch now raise an InputError naming the argument and the fix.
"""

from __future__ import annotations

import numpy as np
import pytest

import repsim
from repsim.errors import InputError


def _pair(rng, n=20, d=5):
    X = rng.normal(size=(n, d))
    return X, X @ rng.normal(size=(d, 7)) + 0.3 * rng.normal(size=(n, 7))


# ---------------------------------------------------------------------------------- options


@pytest.mark.parametrize("flag", ["no", "False", None, 0, 1])
def test_cka_unbiased_must_be_a_bool(rng, flag):
    # "no" is truthy: it used to run the unbiased estimator without a word
    X, Y = _pair(rng)
    with pytest.raises(InputError, match="unbiased must be True or False"):
        repsim.cka(X, Y, unbiased=flag)


@pytest.mark.parametrize("flag", ["yes", None, 1])
def test_procrustes_angular_must_be_a_bool(rng, flag):
    X, Y = _pair(rng)
    with pytest.raises(InputError, match="angular must be True or False"):
        repsim.procrustes(X, Y, angular=flag)


def test_numpy_bools_are_flags(rng):
    X, Y = _pair(rng)
    assert repsim.cka(X, Y, unbiased=np.False_) == repsim.cka(X, Y, unbiased=False)
    assert repsim.procrustes(X, Y, angular=np.True_) == repsim.procrustes(X, Y, angular=True)


@pytest.mark.parametrize("sigma", ["0.4", [0.4], True, b"1"])
def test_cka_sigma_must_be_a_number(rng, sigma):
    # a string used to fail inside np.isfinite, True was read as sigma = 1
    X, Y = _pair(rng)
    with pytest.raises(InputError, match="sigma must be a positive number"):
        repsim.cka(X, Y, kernel="rbf", sigma=sigma)


def test_cka_sigma_numpy_scalar_is_a_number(rng):
    X, Y = _pair(rng)
    assert repsim.cka(X, Y, kernel="rbf", sigma=np.float32(0.5)) == repsim.cka(
        X, Y, kernel="rbf", sigma=0.5
    )
