"""The all-pairs engine equals the single-pair functions, blocks under a budget, isolates bad models."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from helpers_features import pairwise, zoo
from hypothesis import example, given
from hypothesis import strategies as st
from scipy.stats import rankdata

import repsim
from repsim.errors import InputError, UndefinedMeasureError
from repsim.measures import MEASURES, similarity_matrices, similarity_matrix
from repsim.measures._ranks import doubled_ranks
from repsim.measures._stats import Kernel, feature_path, gram_path

TINY = 2e-5  # GiB: forces many row blocks, column slices and the on-disk rank store


ALL = [*MEASURES, "cka_rbf_median_0.7_biased", "mutual_knn_3"]


@pytest.mark.parametrize("budget", [None, TINY])
def test_engine_equals_single_pair_for_every_measure(rng, budget):
    feats = zoo(rng)
    ds = similarity_matrices(feats, ALL, memory_budget_gb=budget, device="cpu")
    for name in ALL:
        got = ds[name].values
        np.testing.assert_allclose(
            got, pairwise(MEASURES[name], feats), rtol=1e-9, atol=1e-11, err_msg=name
        )
        np.testing.assert_array_equal(got, got.T)
        np.testing.assert_array_equal(np.diagonal(got), 1.0)


def test_linear_paths_agree(rng):
    feats = zoo(rng, n=30, dims=(2, 9, 45))
    X = [torch.from_numpy(a - a.mean(0)) for a in feats.values()]
    f = feature_path(X, budget_bytes=2000.0)
    (g,) = gram_path(X, [Kernel("linear")], budget_bytes=5000.0)
    for a, b in ((f.G, g.G), (f.R, g.R), (f.D, g.D)):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_dataarray_layout_and_torch_inputs(rng):
    feats = {k: torch.from_numpy(v).float() for k, v in zoo(rng).items()}
    da = repsim.similarity_matrix(feats, "cka_rbf_0.4")
    assert da.dims == ("model_a", "model_b") and da.name == "cka_rbf_0.4"
    assert list(da.model_a.values) == list(feats) == list(da.model_b.values)
    assert da.attrs["measure"] == "cka_rbf_0.4" and da.dtype == np.float64
    assert da.values[0, 2] == pytest.approx(
        repsim.cka(feats["m0"], feats["m2"], kernel="rbf", sigma=0.4), rel=1e-9
    )
    assert set(similarity_matrices(feats, ["rsa_spearman", "mutual_knn_5"]).data_vars) == {
        "rsa_spearman",
        "mutual_knn_5",
    }


@pytest.mark.parametrize("bad", ["nan", "constant"])
def test_broken_model_gets_nan_and_a_warning(rng, bad):
    feats = zoo(rng)
    broken = feats["m1"].copy()
    if bad == "nan":
        broken[7, 2] = np.nan
    else:
        broken[:] = broken[0]
    feats["m1"] = broken
    names = ["cka_linear", "cka_rbf_0.4", "rsa_spearman", "rsa_pearson", "mutual_knn_5"]
    with pytest.warns(RuntimeWarning, match="'m1'"):
        ds = similarity_matrices(feats, names, memory_budget_gb=TINY)
    good = [k for k in feats if k != "m1"]
    for name in names:
        v = ds[name]
        assert np.isnan(v.sel(model_a="m1")).all() and np.isnan(v.sel(model_b="m1")).all()
        sub = v.sel(model_a=good, model_b=good).values
        np.testing.assert_allclose(
            sub, pairwise(MEASURES[name], {k: feats[k] for k in good}), rtol=1e-9, atol=1e-11
        )


def test_model_undefined_for_one_measure_only(rng):
    feats = zoo(rng)
    feats["m2"] = feats["m2"].copy()
    feats["m2"][3] = 0.0  # a zero row: kNN and RSA undefined for m2, CKA fine
    with pytest.warns(RuntimeWarning, match="'m2': stimulus row 3"):
        ds = similarity_matrices(feats, ["cka_linear", "mutual_knn_5", "rsa_spearman"])
    assert (
        np.isnan(ds["mutual_knn_5"].values[2]).all()
        and np.isnan(ds["rsa_spearman"].values[:, 2]).all()
    )
    assert np.isfinite(ds["cka_linear"].values).all()


def test_tiny_bandwidth_makes_rbf_undefined_not_fatal(rng):
    feats = zoo(rng)
    feats["m3"] = 100 * feats["m3"]
    with pytest.warns(RuntimeWarning, match="cka_rbf_0.4 is undefined for model 'm3'") as record:
        da = similarity_matrix(feats, "cka_rbf_0.4")
    assert len(record) == 1
    assert np.isnan(da.values[3]).all() and np.isfinite(da.values[:3, :3]).all()


def test_engine_errors(rng):
    feats = zoo(rng)
    with pytest.raises(InputError, match="different numbers of stimuli"):
        similarity_matrix({"a": feats["m0"], "b": feats["m1"][:-1]})
    with pytest.raises(InputError, match="lower k"):
        similarity_matrix(feats, "mutual_knn_36")
    with pytest.raises(InputError, match="at least 4 stimuli"):
        similarity_matrix({k: v[:3] for k, v in feats.items()}, "cka_linear")
    with pytest.raises(InputError, match="unknown measure"):
        similarity_matrix(feats, "cka_cosine")
    with pytest.raises(InputError, match="'cka_rbf_0.4' and 'cka_rbf_.4' are two spellings"):
        similarity_matrices(feats, ["cka_rbf_0.4", "cka_rbf_.4"])
    with pytest.raises(InputError, match="non-empty mapping"):
        similarity_matrix({}, "cka_linear")
    with pytest.raises(InputError, match="memory_budget_gb"):
        similarity_matrix(feats, memory_budget_gb=0)


def test_doubled_ranks_with_ties(rng):
    v = rng.integers(0, 5, size=200).astype(np.float64)
    got = doubled_ranks(torch.from_numpy(v)).numpy()
    np.testing.assert_array_equal(got, (2 * rankdata(v)).astype(np.int64))


def test_no_warning_for_healthy_models(rng):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        similarity_matrices(zoo(rng), ["cka_linear", "rsa_spearman", "mutual_knn_5"])


# ------------------------------------------------------------------- numerics at the edges (issue 11)


@pytest.mark.parametrize("n,d", [(5, 1), (5, 8), (9, 3), (50, 1), (50, 8), (60, 70)])
@pytest.mark.parametrize("eps,centre", [(2**-14, 0.0), (1e-6, 3.0), (1e-9, -7.0)])
def test_engine_near_degenerate_matches_exact(n, d, eps, centre):
    """One outlier and the rest within eps: the engine keeps the digits the expansion cancels."""
    from test_measures import near_degenerate
    from test_measures_reference import cka_exact

    X, Y = near_degenerate(n, d, eps, centre, seed=n * 100 + d)
    X2, _ = near_degenerate(n, d, eps, -centre, seed=n * 100 + d + 1, y_degenerate=True)
    feats = {"x": X, "y": Y, "x2": X2}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = similarity_matrix(feats, "cka_linear", device="cpu").values
    for a, b in ((0, 1), (0, 2), (1, 2)):
        names = list(feats)
        expected = cka_exact(feats[names[a]], feats[names[b]])
        assert got[a, b] == pytest.approx(expected, rel=1e-10), (names[a], names[b])


def _cluster_and_outlier(n, eps, seed):
    """``n - 1`` stimuli within ``eps`` of one point far from the origin, one outlier: the median
    distance between stimuli is of order ``eps``, so the median-bandwidth RBF kernel carries O(1)
    structure that squared distances expanded about the mean (|x|^2 + |y|^2 - 2 x.y) lose."""
    rng = np.random.default_rng(seed)
    X = eps * rng.normal(size=(n, 4)) + np.array([0.0, 1.0, 0.0, 0.0])
    X[0] = [1.0, 0.0, 0.0, 0.0]
    return X


@pytest.mark.parametrize("eps", [1e-5, 1e-7, 1e-10])
@pytest.mark.parametrize("unbiased", [True, False])
def test_engine_median_rbf_on_a_tight_cluster_matches_reference(eps, unbiased):
    from test_measures_reference import cka_ref, median_distance, rbf_kernel

    X = _cluster_and_outlier(9, eps, seed=1)
    Y = X + 0.5 * eps * np.random.default_rng(2).normal(size=X.shape)
    Y[0] = X[0]
    K, L = (rbf_kernel(A, 0.5 * median_distance(A)) for A in (X, Y))
    expected = cka_ref(K, L, unbiased)
    name = "cka_rbf_median_0.5" + ("" if unbiased else "_biased")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = similarity_matrix({"x": X, "y": Y}, name, device="cpu").values[0, 1]
    pair = repsim.cka(X, Y, kernel="rbf", sigma=0.5, sigma_mode="median", unbiased=unbiased)
    assert got == pytest.approx(expected, rel=1e-9)
    assert got == pytest.approx(pair, rel=1e-9)


@pytest.mark.parametrize("measure", ["cka_rbf_median_0.5", "cka_rbf_median_0.5_biased"])
def test_engine_median_rbf_with_most_stimuli_duplicated_is_undefined(measure):
    """More than half of the pairs are duplicates: the median distance is 0 and the median bandwidth
    does not exist, as the pair function says (the engine gave a finite value from rounding)."""
    rng = np.random.default_rng(2)
    V = rng.normal(size=(3, 64))
    V /= np.linalg.norm(V, axis=1, keepdims=True)
    X, Y = V[[0] * 8 + [1, 2]], rng.normal(size=(10, 64))
    with pytest.raises(UndefinedMeasureError, match="median distance between stimuli is 0"):
        repsim.cka(X, Y, kernel="rbf", sigma=0.5, sigma_mode="median")
    with pytest.warns(RuntimeWarning, match=f"{measure} is undefined for model 'x'"):
        da = similarity_matrix({"x": X, "y": Y, "z": Y[::-1].copy()}, measure, device="cpu")
    assert np.isnan(da.values[0]).all() and np.isfinite(da.values[1:, 1:]).all()


def test_engine_recomputes_nothing_for_healthy_models(rng, monkeypatch):
    """The accurate second pass runs only for models whose self-HSIC cancelled: no cost otherwise."""
    import repsim.measures.batched as batched

    calls = []
    real = batched.gram_path
    monkeypatch.setattr(
        batched, "gram_path", lambda *a, **k: calls.append(k.get("rows")) or real(*a, **k)
    )
    feats = zoo(rng, n=200, dims=(3, 7, 20))  # the feature path: gram_path only on a redo
    similarity_matrix(feats, "cka_linear", device="cpu")
    assert calls == []
    wide = zoo(rng, n=60, dims=(80, 120))  # the Gram path, linear and RBF, small and large sigma
    similarity_matrices(wide, ["cka_linear", "cka_rbf_0.2", "cka_rbf_0.8", "cka_rbf_median_1.0"])
    assert calls == [None]  # one first pass for all kernels, no redo
    calls.clear()
    feats["bad"] = np.vstack([np.full((199, 5), 0.25), np.ones((1, 5))]) + 1e-7 * rng.normal(
        size=(200, 5)
    )
    similarity_matrix(feats, "cka_linear", device="cpu")
    assert calls == [[3]]


def test_engine_rbf_isotropic_unit_rows_is_defined():
    """Issue 11: the unit diagonal of the RBF kernel no longer decides that CKA is undefined."""
    from test_measures import isotropic_pair

    X, Y = isotropic_pair()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        da = similarity_matrix({"x": X, "y": Y}, "cka_rbf_0.2", device="cpu")
    assert da.values[0, 1] == pytest.approx(repsim.cka(X, Y, kernel="rbf", sigma=0.2), rel=1e-10)


@pytest.mark.parametrize("measure", ["cka_linear", "cka_rbf_0.7"])
def test_engine_all_but_one_identical_is_undefined(rng, measure):
    feats = zoo(rng, n=30)
    X = np.repeat(rng.normal(size=(1, 6)), 30, axis=0)
    X[4] += 1.0
    feats["flat"] = X
    with pytest.warns(RuntimeWarning, match=f"{measure} is undefined for model 'flat'"):
        da = similarity_matrix(feats, measure, device="cpu")
    assert np.isnan(da.values[4]).all() and np.isfinite(da.values[:4, :4]).all()


def test_engine_underflowing_kernel_is_undefined_as_the_pair_function_says(rng):
    # the only off-diagonal kernel entry of this model is 3e-159; its square underflows float64,
    # and the engine returned -0.29812237 where the exact value is -0.29812226 (the pair function
    # -0.29812189): both now call it undefined, as the property test of test_measures.py found
    X = np.array([[2.91804467e-153], [1e-6], [0.0], [0.0], [0.0]])
    Y = rng.normal(size=(5, 1))
    with pytest.raises(UndefinedMeasureError, match="underflows float64"):
        repsim.cka(X, Y)
    with pytest.warns(RuntimeWarning, match="cka_linear is undefined for model 'x'"):
        da = similarity_matrix({"x": X, "y": Y}, "cka_linear", device="cpu")
    assert np.isnan(da.values[0, 1])


# the study's measures, their biased and Pearson variants, and the local ones beside them
PROPERTY_MEASURES = [
    "cka_linear",
    "cka_linear_biased",
    "cka_rbf_0.4",
    "cka_rbf_0.4_biased",
    "cka_rbf_median_1",
    "rsa_spearman",
    "rsa_pearson",
    "mutual_knn_3",
    "procrustes",
]


# RBF at sigma 0.4 on rows of norm 0.01: every kernel entry near 1, the engine's sums cancelled
# (2e-8 off the pair function, which is exact to 1e-13) until the entries were stored shifted
@example(n=8, dims=(3, 3), duplicates=0, log_scale=-2, seed=0)
@example(n=8, dims=(3, 5), duplicates=1, log_scale=0, seed=1)  # RSA missed a duplicate's ties
@given(
    n=st.integers(8, 24),
    dims=st.tuples(st.integers(3, 6), st.integers(3, 6)),
    duplicates=st.integers(0, 4),
    log_scale=st.integers(-3, 3),
    seed=st.integers(0, 2**16),
)
def test_engine_and_pair_functions_agree_property(n, dims, duplicates, log_scale, seed):
    """Random pairs of models, some stimuli repeated (a dataset's duplicate images), rows scaled
    to unit norm as the store does and then by 10^log_scale: the engine gives what each pair
    function gives, NaN where the pair function says undefined, and the same value for the
    stimuli in any order. Below d = 3 every input is tied all over: unit rows of d = 1 are +-1, so
    mutual kNN's ties between stimuli that are not duplicates depend on their order (no order-free
    choice among them exists), and two stimuli of d = 2 correlate at +-1, so RSA's RDM holds two
    values whose ties rounding breaks differently in the engine and the pair function."""
    rng = np.random.default_rng(seed)
    feats = {f"m{i}": rng.normal(size=(n, d)) for i, d in enumerate(dims)}
    for src, dst in rng.integers(0, n, size=(duplicates, 2)):
        for A in feats.values():
            A[dst] = A[src]
    feats = {
        k: 10.0**log_scale * A / np.linalg.norm(A, axis=1, keepdims=True) for k, A in feats.items()
    }
    perm = rng.permutation(n)
    X, Y = feats.values()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an undefined model's warning
        ds = similarity_matrices(feats, PROPERTY_MEASURES, device="cpu")
        shuffled = similarity_matrices({k: A[perm] for k, A in feats.items()}, PROPERTY_MEASURES)
    for name in PROPERTY_MEASURES:
        try:
            expected = MEASURES[name](X, Y)
        except UndefinedMeasureError:
            expected = np.nan
        for got in (ds[name].values[0, 1], shuffled[name].values[0, 1]):
            if np.isnan(expected):
                assert np.isnan(got), name
            else:
                assert got == pytest.approx(expected, rel=1e-9, abs=1e-9), name


# -- mutation audit (session 35): each test below kills a change that no other test noticed ------
def test_mutual_knn_with_several_k_matches_the_pair_function_on_duplicates(rng):
    # duplicates in threes: for k = 3 the next tied group straddles the 3rd place inside the
    # k = 8 neighbour lists the engine computes once; ties must still go to the lower index
    base = rng.normal(size=(40, 8))
    X = np.repeat(base, 3, axis=0)
    Y = np.repeat(base + 0.3 * rng.normal(size=base.shape), 3, axis=0)
    ds = similarity_matrices({"x": X, "y": Y}, ["mutual_knn_3", "mutual_knn_8"], device="cpu")
    for k in (3, 8):
        got = float(ds[f"mutual_knn_{k}"].values[0, 1])
        assert got == pytest.approx(repsim.mutual_knn(X, Y, k=k), abs=1e-12)


@pytest.mark.parametrize("scale", [1e35, 1e-35])
def test_model_of_unusable_magnitude_gets_nan_and_a_warning(rng, scale):
    feats = zoo(rng)
    feats["m1"] = feats["m1"] * scale
    names = ["cka_linear", "rsa_spearman", "mutual_knn_5", "procrustes"]
    with pytest.warns(RuntimeWarning, match="'m1' has .* magnitude"):
        ds = similarity_matrices(feats, names, memory_budget_gb=TINY)
    for name in names:
        v = ds[name]
        assert np.isnan(v.sel(model_a="m1")).all() and np.isnan(v.sel(model_b="m1")).all()


def test_model_ids_that_read_alike_are_refused(rng):
    X = rng.normal(size=(10, 3))
    with pytest.raises(InputError, match="distinct name"):
        similarity_matrix({1: X, "1": X + 1.0}, "cka_linear")


def test_similarity_matrix_takes_one_measure_name(rng):
    with pytest.raises(InputError, match="similarity_matrices"):
        similarity_matrix(zoo(rng), ["cka_linear", "rsa_spearman"])
    # cka(X, Y, sigma=0.4) takes a bandwidth as a keyword; the engine takes it in the name
    with pytest.raises(
        InputError, match=r"parameters in its name, not as sigma=: e\.g\. 'cka_rbf_0\.4'"
    ):
        similarity_matrix(zoo(rng), "cka_rbf", sigma=0.4)
    with pytest.raises(InputError, match=r"'cka_rbf_median': give .* e\.g\. cka_rbf_median_1 \("):
        similarity_matrix(zoo(rng), "cka_rbf_median")
    with pytest.raises(TypeError, match="unexpected keyword argument 'memory_budget'"):
        similarity_matrix(zoo(rng), "cka_linear", memory_budget=4)  # a misspelt engine option


def test_similarity_attrs_say_larger_is_more_similar(rng):
    ds = similarity_matrices(zoo(rng), ["cka_linear", "rsa_spearman", "mutual_knn_5"])
    for name in ds.data_vars:
        assert ds[name].attrs["larger_is_more_similar"] == 1


@pytest.mark.parametrize("unbiased", [True, False])
def test_engine_and_pair_function_agree_where_a_wide_rbf_kernel_becomes_undefined(rng, unbiased):
    # a wide RBF kernel (sigma far above the distances) is stored minus its typical entry
    # (GramStats.shift); the scale of the "undefined" rule must be that of the kernel as
    # defined, so the engine must call the same bandwidths undefined as the pair function
    n = 5
    X, Y = rng.normal(size=(n, 3)), rng.normal(size=(n, 4))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    suffix = "" if unbiased else "_biased"
    for sigma in np.unique([float(f"{s:.4g}") for s in np.geomspace(100, 5000, 200)]):
        try:
            want = repsim.cka(X, Y, kernel="rbf", sigma=sigma, unbiased=unbiased)
        except UndefinedMeasureError:
            want = np.nan
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            da = similarity_matrix({"x": X, "y": Y}, f"cka_rbf_{sigma:.4g}{suffix}", device="cpu")
        got = float(da.values[0, 1])
        assert np.isnan(got) == np.isnan(want), sigma
        if not np.isnan(want):
            assert got == pytest.approx(want, rel=1e-6, abs=1e-9)


def test_engine_centres_features_far_from_the_origin(rng):
    """Features offset by 1e3: the engine's feature-space path must centre them (unbiased CKA
    recovers without centring; biased CKA became NaN), as the float64 pair function does."""
    from repsim import cka
    from repsim.measures.engine import similarity_matrices

    base = rng.normal(size=(60, 8))
    feats = {
        "a": base + 1e3,
        "b": base @ rng.normal(size=(8, 5)) + rng.normal(size=(60, 5)) - 1e3,
        "c": rng.normal(size=(60, 6)) + 100.0,
    }
    ds = similarity_matrices(feats, ["cka_linear_biased"], device="cpu")
    got = ds["cka_linear_biased"].values
    for i, x in enumerate(feats):
        for j, y in enumerate(feats):
            if i != j:
                want = cka(feats[x], feats[y], unbiased=False)
                assert got[i, j] == pytest.approx(want, abs=1e-9), (x, y)
