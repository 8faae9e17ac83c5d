"""What a researcher passes from a notebook: options and values that used to be taken silently or
to fail deep inside numpy/torch now raise an InputError naming the argument and the fix.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

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


# ------------------------------------------------------------------------------- magnitudes

SINGLE = {
    "cka": repsim.cka,
    "rsa": repsim.rsa,
    "mutual_knn": lambda X, Y: repsim.mutual_knn(X, Y, k=3),
    "procrustes": repsim.procrustes,
}


@pytest.mark.parametrize("scale", [1e38, 1e-45, 1e160, 1e-160])
@pytest.mark.parametrize("measure", list(SINGLE))
def test_measures_refuse_features_whose_products_leave_float64(rng, measure, scale):
    # linear CKA of two such representations returned 0.0 (1e38) or inf (1e-45); at 1e160 mutual kNN
    # returned 0.1 and Procrustes 0.0 (the row norms overflowed), CKA and RSA called it undefined
    X, Y = _pair(rng)
    with pytest.raises(InputError, match=r"^X has .*rescale it, e\.g\. X / np\.abs\(X\)\.max\(\)"):
        SINGLE[measure](X * scale, Y)
    with pytest.raises(InputError, match="^Y has"):
        SINGLE[measure](X, Y * scale)


@pytest.mark.parametrize("measure", list(SINGLE))
def test_measures_keep_their_value_at_large_and_small_but_usable_scales(rng, measure):
    X, Y = _pair(rng)
    base = SINGLE[measure](X, Y)
    for scale in (2.0**95, 2.0**-95):  # about 4e28, 2.5e-29; powers of two: exact
        assert SINGLE[measure](X * scale, Y * scale) == pytest.approx(base, rel=1e-12)
        assert SINGLE[measure](X * scale, Y) == pytest.approx(base, rel=1e-12)


@pytest.mark.parametrize("measure", ["mutual_knn_3", "procrustes", "cka_linear", "rsa_spearman"])
def test_engine_gives_nan_and_names_a_model_of_unusable_magnitude(rng, measure):
    X, Y = _pair(rng)
    Z = rng.normal(size=(20, 4))
    with pytest.warns(RuntimeWarning, match="model 'big' has values up to .* rescale it"):
        S = repsim.similarity_matrix({"big": X * 1e38, "b": Y, "c": Z}, measure, device="cpu")
    assert np.isnan(S.values[0]).all() and np.isnan(S.values[:, 0]).all()
    want = repsim.similarity_matrix({"b": Y, "c": Z}, measure, device="cpu").values
    np.testing.assert_array_equal(S.values[1:, 1:], want)


# ------------------------------------------------------------------------- similarity_matrix


@pytest.mark.parametrize("measure", [["cka_linear"], ("cka_linear", "rsa_spearman"), None])
def test_similarity_matrix_takes_one_measure_name(rng, measure):
    # a list used to fail with "unhashable type: 'list'" inside the registry
    X, Y = _pair(rng)
    with pytest.raises(InputError, match="similarity_matrices"):
        repsim.similarity_matrix({"a": X, "b": Y}, measure, device="cpu")


# ------------------------------------------------------------------------------ linear_probe

FAST = {"lrs": (0.1,), "wds": (0.0, 1e-3), "epochs": 1, "device": "cpu"}


def _probe_data(rng):
    X = rng.normal(size=(90, 5))
    y = np.tile([0, 1, 2], 30)
    return X[:60], y[:60].copy(), X[60:], y[60:].copy()


@pytest.mark.parametrize(
    "option, value, match",
    [
        ("lrs", (np.nan,), "finite"),  # NaN and inf learning rates trained to chance, silently
        ("lrs", (np.inf, 0.1), "finite"),
        ("wds", (np.nan,), "finite"),
        ("lrs", "0.1", "lrs must be a number"),
        ("seeds", (1.5,), "non-negative integers"),  # was truncated to seed 1
        ("seeds", ("a",), "non-negative integers"),  # raised ValueError from int()
        ("seeds", (-1,), "non-negative integers"),  # raised inside numpy's generator
        ("seeds", (True,), "non-negative integers"),
        ("epochs", 2.7, "epochs must be an integer"),  # raised TypeError inside the schedule
        ("batch_size", 16.5, "batch_size must be an integer"),  # raised inside torch.expand
        ("normalize", "no", "normalize must be True or False"),  # a truthy "no" normalised
        ("shared_search", "no", "shared_search must be True or False"),
    ],
)
def test_probe_refuses_bad_options_naming_them(rng, option, value, match):
    Xtr, ytr, Xte, yte = _probe_data(rng)
    with pytest.raises(InputError, match=match):
        repsim.linear_probe(Xtr, ytr, Xte, yte, **{**FAST, "seeds": (0,), option: value})


def test_probe_takes_one_number_as_a_grid_of_one_and_one_int_as_one_seed(rng):
    # a scalar lrs/wds raised IndexError on a 0-d array, seeds=0 "'int' object is not iterable"
    Xtr, ytr, Xte, yte = _probe_data(rng)
    kw = {**FAST, "wds": 0.0}
    one = repsim.linear_probe(Xtr, ytr, Xte, yte, **{**kw, "lrs": 0.1, "seeds": 0})
    ref = repsim.linear_probe(Xtr, ytr, Xte, yte, **{**kw, "lrs": (0.1,), "seeds": (0,)})
    np.testing.assert_array_equal(one.accuracy, ref.accuracy)
    assert one.seeds.tolist() == [0] and one.lrs.tolist() == [0.1] and one.wds.tolist() == [0.0]


@pytest.mark.parametrize("kind", ["float", "object"])
def test_probe_refuses_missing_labels(rng, kind):
    # a NaN label used to become one more class
    Xtr, ytr, Xte, yte = _probe_data(rng)
    y = ytr.astype(float if kind == "float" else object)
    y[7] = np.nan if kind == "float" else None
    with pytest.raises(InputError, match="y_train has 1 missing labels .* first at row 7"):
        repsim.linear_probe(Xtr, y, Xte, yte, **FAST)


def test_probe_refuses_labels_that_cannot_be_sorted(rng):
    # ints mixed with strings raised TypeError inside np.unique
    Xtr, ytr, Xte, yte = _probe_data(rng)
    y = np.array([0, "a", 1] * 20, dtype=object)
    with pytest.raises(InputError, match="one sortable kind"):
        repsim.linear_probe(Xtr, y, Xte, np.array([0, "a", 1] * 10, dtype=object), **FAST)


# ------------------------------------------------------------------------------- consistency


def _sim(rng, models=("m0", "m1", "m2", "m3", "m4", "m5"), n_datasets=4):
    M = len(models)
    S = rng.uniform(0, 1, (n_datasets, M, M))
    S = (S + S.transpose(0, 2, 1)) / 2
    for d in range(n_datasets):
        np.fill_diagonal(S[d], 1.0)
    coords = {"dataset": [f"d{i}" for i in range(n_datasets)], "model_a": list(models)}
    return xr.DataArray(
        S, dims=("dataset", "model_a", "model_b"), coords={**coords, "model_b": list(models)}
    )


def test_consistency_refuses_infinite_similarities(rng):
    # an inf was dropped like a NaN, without the NaN rule's warning
    sim = _sim(rng)
    sim[1, 0, 2] = sim[1, 2, 0] = np.inf
    with pytest.raises(InputError, match=r"1 infinite values|2 infinite values"):
        repsim.consistency(sim)


def test_consistency_refuses_a_repeated_model_id(rng):
    # the repeat's pairs counted twice, and the model with itself as one more pair
    sim = _sim(rng, models=("m0", "m0", "m2", "m3", "m4", "m5"))
    with pytest.raises(InputError, match=r"unique, but \['m0'\]"):
        repsim.consistency(sim)
    with pytest.raises(InputError, match="unique"):
        repsim.grouped_consistency(sim, by={"m0": "a", "m2": "a", "m3": "b", "m4": "b", "m5": "b"})


def test_one_model_id_as_a_string_is_a_set_of_one(rng):
    # "m0" was read as the models "m" and "0"
    sim = _sim(rng)
    a = repsim.consistency(sim, models_a="m0")
    b = repsim.consistency(sim, models_a=["m0"])
    np.testing.assert_array_equal(a.values, b.values)
    np.testing.assert_array_equal(
        repsim.anchor_consistency(sim, anchors="m1").values,
        repsim.anchor_consistency(sim, anchors=["m1"]).values,
    )


def test_similarity_matrix_refuses_ids_that_collide_as_strings(rng):
    # {1: X, "1": Y} gave a matrix labelled ["1", "1"]
    X, Y = _pair(rng)
    with pytest.raises(InputError, match=r"model ids \['1'\]"):
        repsim.similarity_matrix({1: X, "1": Y}, device="cpu")


@pytest.mark.parametrize("budget", ["2", True, [2]])
def test_similarity_matrix_memory_budget_must_be_a_number(rng, budget):
    # "2" failed with TypeError in a comparison, True was read as 1 GiB
    X, Y = _pair(rng)
    with pytest.raises(InputError, match="memory_budget_gb must be a number"):
        repsim.similarity_matrix({"a": X, "b": Y}, memory_budget_gb=budget, device="cpu")
