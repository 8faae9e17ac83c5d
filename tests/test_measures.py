"""Single-pair measures and the registry, against slow float64 references with explicit H and loops."""

from __future__ import annotations

import re
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy.stats import ortho_group
from test_measures_reference import (
    cka_exact,
    cka_ref,
    hsic_u_exact,
    hsic_u_loops,
    hsic_u_trace,
    kernel,
    measure_ref,
    median_distance,
)

import repsim
from repsim.errors import InputError, UndefinedMeasureError
from repsim.measures import FAMILIES, INVARIANCES, MEASURES, cka, mutual_knn, parse_measure, rsa
from repsim.measures.cka import SCALE_FLOOR, gram, u_centre


def unit(A):
    return A / np.linalg.norm(A, axis=1, keepdims=True)


def related(rng, n, dx, dy, noise=0.5):
    """Two unit-norm representations of the same stimuli sharing a latent structure."""
    Z = rng.normal(size=(n, 4))
    X = Z @ rng.normal(size=(4, dx)) + noise * rng.normal(size=(n, dx))
    Y = np.tanh(Z @ rng.normal(size=(4, dy))) + noise * rng.normal(size=(n, dy))
    return unit(X), unit(Y)


# ------------------------------------------------------------------------------- references


def test_trace_formula_is_the_u_statistic(rng):
    X, Y = related(rng, 7, 3, 4)
    for K, L in ((kernel(X), kernel(Y)), (kernel(X, "rbf", 0.7), kernel(Y, "rbf", 0.5))):
        assert hsic_u_trace(K, L) == pytest.approx(hsic_u_loops(K, L), rel=1e-10, abs=1e-14)


def test_u_centring_gives_unbiased_hsic(rng):
    X, Y = related(rng, 25, 6, 9)
    for K, L in ((kernel(X), kernel(Y)), (kernel(X, "rbf", 0.4), kernel(Y, "rbf", 0.4))):
        n = K.shape[0]
        UK, UL = u_centre(K), u_centre(L)
        assert np.sum(UK * UL) / (n * (n - 3)) == pytest.approx(hsic_u_trace(K, L), rel=1e-10)
        # U-centring is a projection: <U(K), U(L)> = <U(K), L~>
        Lt = L - np.diag(np.diag(L))
        assert np.sum(UK * UL) == pytest.approx(np.sum(UK * Lt), rel=1e-10)


@pytest.mark.parametrize("dims", [(3, 5), (60, 80), (4, 90)])  # feature path, Gram path, mixed
@pytest.mark.parametrize("unbiased", [True, False])
def test_linear_cka_matches_reference(rng, dims, unbiased):
    X, Y = related(rng, 30, *dims)
    expected = cka_ref(kernel(X), kernel(Y), unbiased)
    assert cka(X, Y, unbiased=unbiased) == pytest.approx(expected, rel=1e-10, abs=1e-12)


@pytest.mark.parametrize(
    "sigma_mode,sigma", [("absolute", 0.4), ("absolute", 0.8), ("median", 0.5), ("median", 1.0)]
)
@pytest.mark.parametrize("unbiased", [True, False])
def test_rbf_cka_matches_reference(rng, sigma_mode, sigma, unbiased):
    X, Y = related(rng, 20, 5, 7)
    K, L = kernel(X, "rbf", sigma, sigma_mode), kernel(Y, "rbf", sigma, sigma_mode)
    got = cka(X, Y, kernel="rbf", sigma=sigma, sigma_mode=sigma_mode, unbiased=unbiased)
    assert got == pytest.approx(cka_ref(K, L, unbiased), rel=1e-10, abs=1e-12)


def test_rbf_convention_is_explicit(rng):
    X = rng.normal(size=(6, 3))
    K = gram(X, "rbf", 0.7)
    assert K[0, 1] == pytest.approx(np.exp(-np.sum((X[0] - X[1]) ** 2) / (2 * 0.7**2)))
    Km = gram(X, "rbf", 0.5, "median")
    bw = 0.5 * median_distance(X)
    assert Km[2, 4] == pytest.approx(np.exp(-np.sum((X[2] - X[4]) ** 2) / (2 * bw**2)))


@pytest.mark.parametrize("compare", ["spearman", "pearson"])
def test_rsa_matches_reference(rng, compare):
    X, Y = related(rng, 25, 6, 9)
    from test_measures_reference import rsa_ref

    assert rsa(X, Y, compare=compare) == pytest.approx(rsa_ref(X, Y, compare), rel=1e-10)


def test_rsa_spearman_handles_ties(rng):
    X = rng.normal(size=(12, 5))
    X[5] = X[3]  # duplicated stimulus -> tied RDM entries
    Y = rng.normal(size=(12, 4))
    from test_measures_reference import rsa_ref

    assert rsa(X, Y) == pytest.approx(rsa_ref(X, Y), rel=1e-10)


@pytest.mark.parametrize("n", [6, 37, 100])
def test_rsa_of_equally_dissimilar_stimuli_is_undefined(rng, n):
    """One-hot rows: every stimulus equally correlated with every other, a constant RDM exactly; in
    float64 its entries differ by rounding, which Spearman ranked into r = -0.02 and -0.05 (pair
    function, engine) and Pearson into -0.014 at n = 37. Undefined in both, as the engine's
    Pearson path already said."""
    from repsim.measures.engine import similarity_matrices

    X, Y = np.eye(n), rng.normal(size=(n, 12))
    for compare in ("spearman", "pearson"):
        for onehot in (X, 3.7 * X + 1.3):  # scaled and shifted: entries no longer round exactly
            with pytest.raises(UndefinedMeasureError, match="the RDM of X is constant"):
                rsa(onehot, Y, compare=compare)
    feats = {"onehot": X, "y": Y, "z": Y + rng.normal(size=Y.shape)}
    for measure in ("rsa_spearman", "rsa_pearson"):
        with pytest.warns(RuntimeWarning, match=f"{measure} is undefined for model 'onehot'"):
            ds = similarity_matrices(feats, [measure], device="cpu")
        assert np.isnan(ds[measure].values[0]).all()
        assert np.isfinite(ds[measure].values[1:, 1:]).all()


@pytest.mark.parametrize("k", [1, 3, 10])
def test_mutual_knn_matches_reference(rng, k):
    X, Y = related(rng, 40, 6, 9)
    from test_measures_reference import knn_ref

    assert mutual_knn(X, Y, k=k) == pytest.approx(knn_ref(X, Y, k))


def test_rsa_duplicate_stimuli_tie_exactly(rng):
    # duplicate stimuli give equal dissimilarities, which a matrix product rounds differently by
    # position: RSA missed those ties (3e-6 here, 3.5e-5 at n = 8). The RDM over the distinct
    # rows makes them exact in the pair function and the engine (blocked or not), in any order.
    from scipy.stats import spearmanr

    from repsim.measures.engine import similarity_matrices
    from repsim.measures.rsa import correlation_rdm

    base = rng.normal(size=(50, 8))
    X = np.repeat(base, 4, axis=0)
    Y = np.repeat(base + 0.3 * rng.normal(size=base.shape), 4, axis=0)
    iu = np.triu_indices(200, k=1)
    exact = spearmanr(
        np.round(correlation_rdm(X)[iu], 12), np.round(correlation_rdm(Y)[iu], 12)
    ).statistic
    perm = rng.permutation(200)
    got = [rsa(X, Y), rsa(X[perm], Y[perm])]
    for budget in (None, 2e-5):
        ds = similarity_matrices({"x": X, "y": Y}, ["rsa_spearman"], memory_budget_gb=budget)
        got.append(ds["rsa_spearman"].values[0, 1])
    for value in got:
        assert value == pytest.approx(exact, abs=1e-12)


@pytest.mark.parametrize(("n", "k"), [(40, 5), (300, 5), (300, 10)])
def test_mutual_knn_duplicate_stimuli_break_ties_by_index(rng, n, k):
    # a dataset's duplicate images give identical rows in every model, hence exact ties in the
    # cosine similarities. Both models must pick the same members of a tied group (the lower
    # index first, as the reference's stable sort does), whatever n, the block or the engine;
    # torch.topk's own order gave 0.696 instead of 0.792 at n = 300, k = 5.
    from test_measures_reference import knn_ref

    from repsim.measures.engine import similarity_matrices
    from repsim.measures.knn import knn_indices, unit_rows

    base = rng.normal(size=(n // 4, 8))
    X = np.repeat(base, 4, axis=0)
    Y = np.repeat(base + 0.3 * rng.normal(size=base.shape), 4, axis=0)
    expected = knn_ref(X, Y, k)
    assert mutual_knn(X, Y, k=k) == pytest.approx(expected, abs=1e-12)
    engine = similarity_matrices({"x": X, "y": Y}, [f"mutual_knn_{k}"])
    assert float(engine[f"mutual_knn_{k}"].values[0, 1]) == pytest.approx(expected, abs=1e-12)
    Z = torch.from_numpy(unit_rows(X))
    assert torch.equal(knn_indices(Z, k), knn_indices(Z, k, block_rows=7))
    # the same stimuli in another order (both models alike) give the same score
    perm = rng.permutation(n)
    assert mutual_knn(X[perm], Y[perm], k=k) == pytest.approx(expected, abs=1e-12)


# ------------------------------------------------------------------------------ behaviour


def test_unbiased_cka_near_zero_for_independent_high_dim(rng):
    n, d = 40, 4000
    X, Y = rng.normal(size=(n, d)), rng.normal(size=(n, d))
    assert cka(X, Y, unbiased=False) > 0.9
    assert abs(cka(X, Y, unbiased=True)) < 0.05


# the study's measures, plus the example names of every registered family the study does not use
STUDY = list(MEASURES) + [
    name
    for fam in FAMILIES.values()
    if not any(MEASURES[m].family == fam.name for m in MEASURES)
    for name in fam.examples
]


def _transform(name, X, Y, rng):
    n, d = X.shape
    if name == "orthogonal":
        return X @ ortho_group.rvs(d, random_state=1), Y
    if name == "feature_permutation":
        return X[:, rng.permutation(d)], Y
    if name == "isotropic_scaling":
        return 3.7 * X, Y
    if name == "translation":
        return X + 2.0 * rng.normal(size=d), Y
    p = rng.permutation(n)
    return X[p], Y[p]


@pytest.mark.parametrize("name", STUDY)
@pytest.mark.parametrize("inv", INVARIANCES)
def test_invariances_as_the_registry_declares(rng, name, inv):
    spec = MEASURES[name]
    X, Y = related(rng, 40, 8, 6, noise=0.8)
    base = spec(X, Y)
    X2, Y2 = _transform(inv, X, Y, rng)
    moved = spec(X2, Y2)
    if inv in spec.invariances:
        assert moved == pytest.approx(base, rel=1e-9, abs=1e-12)
    else:  # a fact the registry leaves out must really not hold, or the registry undersells
        assert moved != pytest.approx(base, rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("name", STUDY)
def test_symmetry_identity_and_bounds(rng, name):
    spec = MEASURES[name]
    X, Y = related(rng, 30, 5, 7)
    xy, yx = spec(X, Y), spec(Y, X)
    assert xy == pytest.approx(yx, rel=1e-10, abs=1e-12)
    assert spec(X, X) == pytest.approx(1.0)
    lo, hi = spec.bounds
    assert lo - 1e-9 <= xy <= hi + 1e-9
    assert spec.larger_is_more_similar


@pytest.mark.parametrize("name", STUDY)
def test_registry_measure_equals_reference(rng, name):
    X, Y = related(rng, 16, 4, 6)
    spec = MEASURES[name]
    assert spec(X, Y) == pytest.approx(measure_ref(spec, X, Y), rel=1e-9, abs=1e-12)


def test_torch_and_float32_inputs(rng):
    X, Y = related(rng, 20, 4, 5)
    expected = cka(X, Y)
    got = cka(torch.from_numpy(X).float(), torch.from_numpy(Y))
    assert got == pytest.approx(cka(X.astype(np.float32), Y), rel=1e-12)
    assert got == pytest.approx(expected, rel=1e-5)
    assert repsim.cka is cka and repsim.rsa is rsa and repsim.mutual_knn is mutual_knn


# ------------------------------------------------------------------------------- properties

finite = st.floats(-10, 10, allow_nan=False, width=64)

# issue 11: one outlier and three equal rows; the feature-space expansion lost 8 digits here
ISSUE_X = np.array([[0.0], [1.0], [2**-14], [2**-14], [2**-14]])


# found by the property test: the only off-diagonal kernel entry is 3e-159, its square underflows
UNDERFLOW_X = np.array([[2.91804467e-153], [1e-6], [0.0], [0.0], [0.0]])


@example(X=ISSUE_X, dy=1, seed=0)
@example(X=-ISSUE_X, dy=1, seed=0)
@example(X=UNDERFLOW_X, dy=1, seed=0)
@example(X=np.full((5, 1), 2.91804467e-153), dy=1, seed=0)
@given(
    X=arrays(np.float64, st.tuples(st.integers(5, 9), st.integers(1, 6)), elements=finite),
    dy=st.integers(1, 6),
    seed=st.integers(0, 2**16),
)
def test_cka_property_matches_exact(X, dy, seed):
    Y = np.random.default_rng(seed).normal(size=(X.shape[0], dy))
    try:
        got = cka(X, Y)
    except UndefinedMeasureError:
        # the rule: |U(K)|^2 <= 1e-12 |K~|^2 (K~ from median-centred features), or |K~|^2 below
        # float64's underflow floor; judged in exact arithmetic, with slack
        Xo = X - np.median(X, axis=0)
        n = X.shape[0]
        rows = [[Fraction(float(v)) for v in row] for row in Xo]
        kt2 = sum(
            sum(a * b for a, b in zip(rows[i], rows[j])) ** 2
            for i in range(n)
            for j in range(n)
            if i != j
        )
        if kt2 < 2 * SCALE_FLOOR:
            return
        assert hsic_u_exact(X, X) * n * (n - 3) <= Fraction(1e-10) * kt2
        return
    except InputError:
        # features all below 1e-30 in magnitude are refused (their products underflow float64)
        assert np.abs(X).max() < 1e-30
        return
    # exact rational arithmetic is the reference (float formulas cancel on near-constant columns)
    assert got == pytest.approx(cka_exact(X, Y), rel=1e-10, abs=1e-13)
    assert got == pytest.approx(cka(Y, X), rel=1e-10, abs=1e-13)
    assert -1 - 1e-9 <= got <= 1 + 1e-9


def test_issue_example_is_exact():
    Y = np.random.default_rng(0).normal(size=(5, 1))
    assert cka(ISSUE_X, Y) == pytest.approx(0.2981222593849955, rel=1e-12)


def near_degenerate(n, d, eps, centre, seed, dy=3, y_degenerate=False):
    """One outlier row, the other rows within ``eps`` of ``centre``; Y random or built the same way."""
    rng = np.random.default_rng(seed)
    X = centre + eps * rng.normal(size=(n, d))
    out = rng.integers(n)
    X[out] = centre + rng.normal(size=d)
    if y_degenerate:  # the same outlier in Y: CKA near 1 / -1, both self-HSICs O(eps^2)
        Y = -2.0 + eps * rng.normal(size=(n, dy))
        Y[out] = -2.0 + rng.normal(size=dy)
    else:
        Y = rng.normal(size=(n, dy))
    return X, Y


FAMILY = [
    (n, d, eps, centre, ydeg)
    for n, d in ((5, 1), (5, 8), (9, 3), (50, 1), (50, 8))
    for eps, centre in ((2**-14, 0.0), (1e-6, 3.0), (1e-9, -7.0))
    for ydeg in (False, True)
]


@pytest.mark.parametrize("n,d,eps,centre,ydeg", FAMILY)
def test_near_degenerate_family_matches_exact(n, d, eps, centre, ydeg):
    X, Y = near_degenerate(n, d, eps, centre, seed=n * 100 + d, y_degenerate=ydeg)
    expected = cka_exact(X, Y)
    assert cka(X, Y) == pytest.approx(expected, rel=1e-10)
    assert cka(Y, X) == pytest.approx(expected, rel=1e-10)


@example(n=5, d=6, log_eps=-2, centre=1.25, seed=0, ydeg=True)  # make fuzz, seed 55: 1.5e-10 off
@given(
    n=st.integers(5, 30),
    d=st.integers(1, 6),
    log_eps=st.integers(-12, -2),
    centre=st.floats(-100, 100, allow_nan=False),
    seed=st.integers(0, 2**16),
    ydeg=st.booleans(),
)
def test_near_degenerate_property(n, d, log_eps, centre, seed, ydeg):
    """The generated family of issue 11 in cka() and the engine, against exact arithmetic."""
    X, Y = near_degenerate(n, d, 10.0**log_eps, centre, seed, y_degenerate=ydeg)
    expected = cka_exact(X, Y)
    assert cka(X, Y) == pytest.approx(expected, rel=1e-10, abs=1e-13)
    got = repsim.similarity_matrix({"x": X, "y": Y}, "cka_linear", device="cpu").values[0, 1]
    assert got == pytest.approx(expected, rel=1e-10, abs=1e-13)


@pytest.mark.parametrize("kernel_", ["linear", "rbf"])
def test_all_but_one_identical_is_undefined(rng, kernel_):
    """The U-centred kernel of n - 1 equal rows and one outlier is exactly 0: CKA has no value."""
    X = np.repeat(rng.normal(size=(1, 3)), 8, axis=0)
    X[5] += 1.0
    kw = {"kernel": "rbf", "sigma": 0.7} if kernel_ == "rbf" else {}
    with pytest.raises(UndefinedMeasureError, match="centred kernel of X is zero"):
        cka(X, rng.normal(size=(8, 2)), **kw)


def isotropic_pair(seed=0, n=300, d=128, noise=1.0):
    """Unit-norm Gaussian rows (nearly orthogonal) and a noisy copy: RBF kernels near I at sigma=0.2."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, d))
    return unit(X), unit(X + noise * rng.normal(size=(n, d)))


def test_rbf_isotropic_unit_rows_is_defined():
    """Issue 11: the kernel's unit diagonal (unused by the unbiased estimator) made this 'undefined'."""
    X, Y = isotropic_pair()
    got = cka(X, Y, kernel="rbf", sigma=0.2)
    K, L = (np.exp(-((A[:, None] - A[None]) ** 2).sum(-1) / (2 * 0.2**2)) for A in (X, Y))
    assert np.max(K - np.eye(300)) < 1e-6  # off-diagonal entries tiny next to the diagonal of 1
    assert got == pytest.approx(cka_ref(K, L), rel=1e-10)
    assert 0.05 < got < 0.5


@given(
    n=st.integers(4, 12), d=st.integers(2, 5), seed=st.integers(0, 2**16), scale=st.floats(0.1, 10)
)
def test_biased_cka_property(n, d, seed, scale):
    rng = np.random.default_rng(seed)
    X, Y = rng.normal(size=(n, d)), rng.normal(size=(n, d + 1))
    got = cka(scale * X, Y, unbiased=False)
    assert got == pytest.approx(cka_ref(kernel(X), kernel(Y), unbiased=False), rel=1e-8)
    assert 0 <= got <= 1 + 1e-12


# ------------------------------------------------------------------------------------ errors


def test_errors(rng):
    X = rng.normal(size=(10, 3))
    with pytest.raises(InputError, match="10 stimuli but Y has 9"):
        cka(X, X[:9])
    bad = X.copy()
    bad[4, 1] = np.nan
    with pytest.raises(InputError, match="first bad row 4"):
        rsa(X, bad)
    bad[4, 1] = np.inf
    with pytest.raises(InputError, match="Y holds NaN or Inf"):
        cka(X, bad)
    with pytest.raises(InputError, match="at least 4 stimuli"):
        cka(X[:3], X[:3])
    assert cka(X[:3], X[:3] * 2, unbiased=False) == pytest.approx(1.0)
    with pytest.raises(InputError, match="k < n_stimuli"):
        mutual_knn(X, X, k=10)
    with pytest.raises(InputError, match="k < n_stimuli - 1 .* got k=9 and n=10"):
        mutual_knn(X, X[::-1], k=9)  # all the others are everyone's 9 neighbours: always 1
    with pytest.raises(InputError, match="positive integer"):
        mutual_knn(X, X, k=0)
    with pytest.raises(UndefinedMeasureError, match="zero variance"):
        cka(X, np.ones((10, 4)))
    with pytest.raises(UndefinedMeasureError, match="zero variance"):
        rsa(np.ones((10, 4)), X)
    with pytest.raises(UndefinedMeasureError, match="row 2"):
        rsa(np.vstack([X[:2], np.full((1, 3), 5.0), X[3:]]), X)
    with pytest.raises(UndefinedMeasureError, match="check sigma"):
        cka(100 * X, X, kernel="rbf", sigma=0.01)
    with pytest.raises(InputError, match="needs sigma"):
        cka(X, X, kernel="rbf")
    with pytest.raises(InputError, match="takes no sigma"):
        cka(X, X, sigma=0.4)
    with pytest.raises(InputError, match="'linear' or 'rbf'"):
        cka(X, X, kernel="poly")
    with pytest.raises(InputError, match="2-D"):
        cka(X[:, 0], X)
    for empty in (X[:0], X[:, :0]):  # no stimuli, or no features: refused by their shape
        with pytest.raises(InputError, match=re.escape(f"shape {empty.shape}; pass a non-empty")):
            cka(empty, empty)
    assert issubclass(UndefinedMeasureError, repsim.RepsimError)


# ---------------------------------------------------------------------------------- registry


def test_parse_names():
    s = parse_measure("cka_rbf_0.40")
    assert s.name == "cka_rbf_0.4" and s.params == {
        "kernel": "rbf",
        "unbiased": True,
        "sigma": 0.4,
        "sigma_mode": "absolute",
    }
    m = parse_measure("cka_rbf_median_0.5_biased")
    assert m.params["sigma_mode"] == "median" and not m.params["unbiased"] and m.min_n == 3
    assert "isotropic_scaling" in m.invariances and "isotropic_scaling" not in s.invariances
    assert parse_measure("cka_linear").min_n == 4
    assert parse_measure("mutual_knn_10").params == {"k": 10}
    assert parse_measure("mutual_knn_10").min_n == 12
    assert parse_measure("rsa_pearson").params == {"rdm": "correlation", "compare": "pearson"}
    for bad in (
        "cka_rbf",
        "cka_linear_0.4",
        "cka_poly",
        "rsa_kendall",
        "mutual_knn_0",
        "knn_10",
        "cka_rbf_0",
        "cka_rbf_1e-300",  # its square underflows to 0: the kernel would divide by zero
        "cka_rbf_median_1e200",  # its square overflows
    ):
        with pytest.raises(InputError, match=f"measure '{bad}'"):
            parse_measure(bad)
    assert "cka_rbf_0.3" in MEASURES and "nope" not in MEASURES
    assert {"cka_linear", "cka_rbf_0.4", "rsa_spearman", "mutual_knn_10"} <= set(MEASURES)
    with pytest.raises(KeyError):
        MEASURES["nope"]


# -- mutation audit (session 35): each test below kills a change that no other test noticed ------
def test_wide_rbf_kernel_is_defined_and_tends_to_linear_cka(rng):
    # sigma far above the distances of unit-norm rows: |U(K)|^2 is ~2e-9 of |K~|^2, small but far
    # above REL_TOL (1e-12) and well resolved in float64, so CKA is defined (and near linear CKA)
    X = rng.normal(size=(30, 5))
    Y = rng.normal(size=(30, 4))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Y /= np.linalg.norm(Y, axis=1, keepdims=True)
    assert cka(X, Y, kernel="rbf", sigma=100.0) == pytest.approx(cka(X, Y), abs=1e-4)


def test_median_bandwidth_defaults_to_the_median_itself(rng):
    X, Y = rng.normal(size=(20, 4)), rng.normal(size=(20, 3))
    assert cka(X, Y, kernel="rbf", sigma_mode="median") == cka(
        X, Y, kernel="rbf", sigma=1.0, sigma_mode="median"
    )


@pytest.mark.parametrize("sigma", [-0.4, 0.0, float("nan"), float("inf"), "0.4", True])
def test_rbf_sigma_must_be_a_positive_number(rng, sigma):
    X = rng.normal(size=(10, 3))
    with pytest.raises(InputError, match="sigma must be a positive number"):
        cka(X, X, kernel="rbf", sigma=sigma)


def test_rsa_needs_three_stimuli(rng):
    X = rng.normal(size=(2, 4))
    with pytest.raises(InputError, match="at least 3 stimuli"):
        rsa(X, X)


def test_rsa_of_an_rdm_with_small_but_real_spread_is_defined(rng):
    # one-hot stimuli are equally dissimilar (undefined); perturbed by 3e-5 their RDM's spread is
    # ~3e-7 of its second moment: real structure, far above rounding (REL_TOL = 1e-12)
    X = np.eye(12) + 3e-5 * rng.normal(size=(12, 12))
    assert rsa(X, X) == pytest.approx(1.0)
    assert rsa(X, X, compare="pearson") == pytest.approx(1.0)


def test_mutual_knn_of_a_zero_row_is_undefined(rng):
    X = rng.normal(size=(10, 3))
    X[4] = 0.0
    with pytest.raises(UndefinedMeasureError, match="row 4 of X is a zero vector"):
        mutual_knn(X, rng.normal(size=(10, 3)), k=3)


# -- mutation audit (rsa / knn): each test below kills a change that no other test noticed --------
@pytest.mark.parametrize(
    ("option", "match"), [({"rdm": "euclidean"}, "rdm="), ({"compare": "kendall"}, "compare=")]
)
def test_rsa_refuses_an_unknown_rdm_or_comparison(rng, option, match):
    """Without these checks rsa(rdm='euclidean') or rsa(compare='kendall') silently returned the
    correlation-RDM Spearman / Pearson value under the wrong name."""
    X, Y = related(rng, 10, 4, 5)
    with pytest.raises(InputError, match=match):
        rsa(X, Y, **option)


def hadamard_rows(m):
    """Rows 1..m-1 of the Sylvester Hadamard matrix of order m: +-1 entries, each row of mean 0,
    every two rows orthogonal, so every correlation between two of them is 0 exactly in float64."""
    H = np.array([[1.0]])
    while H.shape[0] < m:
        H = np.block([[H, H], [H, -H]])
    return H[1:]


@pytest.mark.parametrize("compare", ["spearman", "pearson"])
def test_rsa_of_exactly_uncorrelated_stimuli_is_undefined(rng, compare):
    """Stimuli pairwise uncorrelated exactly: the RDM is 1 everywhere, its correlations 1 - v all 0,
    and the constancy rule's spread <= REL_TOL * second moment holds as 0 <= 0. A strict '<' there
    let the constant RDM through and RSA returned NaN (0 / 0) instead of raising."""
    X = hadamard_rows(8)
    corr = np.corrcoef(X)
    assert (corr[np.triu_indices(7, k=1)] == 0.0).all()  # the premise: exactly uncorrelated
    with pytest.raises(UndefinedMeasureError, match="the RDM of X is constant"):
        rsa(X, rng.normal(size=(7, 5)), compare=compare)


@pytest.mark.parametrize("compare", ["spearman", "pearson"])
def test_rsa_of_nearly_uncorrelated_stimuli_is_defined(rng, compare):
    """Stimuli whose correlations are all ~1e-8 but differ (near-orthogonal rows, as in wide
    features): real structure, resolved to ~8 digits in float64. The constancy rule must judge the
    spread of the correlations 1 - v, not of the RDM v ~ 1, whose spread squared is ~1e-16 of its
    second moment, below REL_TOL: judged on v, RSA called this RDM constant and raised."""
    from test_measures_reference import rsa_ref

    H = hadamard_rows(16)
    X = H + 1e-8 * rng.normal(size=H.shape)
    Y = H + 1e-8 * rng.normal(size=H.shape)
    assert np.abs(np.corrcoef(X)[np.triu_indices(15, k=1)]).max() < 1e-6
    assert rsa(X, X, compare=compare) == pytest.approx(1.0)
    assert rsa(X, Y, compare=compare) == pytest.approx(rsa_ref(X, Y, compare), abs=1e-6)


def test_mutual_knn_of_a_constant_nonzero_representation_is_undefined(rng):
    """Every stimulus the same nonzero vector: all cosine similarities tie, so the neighbours are
    only the index order. Without the variance check mutual kNN returned a number."""
    X = rng.normal(size=(10, 3))
    with pytest.raises(UndefinedMeasureError, match="zero variance"):
        mutual_knn(np.tile([0.3, -1.2, 2.0], (10, 1)), X, k=3)
    with pytest.raises(UndefinedMeasureError, match="zero variance"):
        mutual_knn(X, np.full((10, 4), 7.0), k=3)


def test_mutual_knn_k_must_be_an_integer_not_a_bool(rng):
    """k=True is an int subclass: unchecked it ran as k=1. numpy integers (k from an array or
    ``np.arange``) are integers and must give the same value as the plain int."""
    X, Y = related(rng, 20, 5, 6)
    with pytest.raises(InputError, match="positive integer"):
        mutual_knn(X, Y, k=True)
    for k in (np.int64(3), np.int32(3)):
        assert mutual_knn(X, Y, k=k) == mutual_knn(X, Y, k=3)


@pytest.mark.parametrize("k", [6, 8, 9, 10])
def test_mutual_knn_matches_reference_when_k_is_most_of_the_stimuli(rng, k):
    """k close to n - 1 (the other half of the similarity row). The tie re-sort rescues a top-k
    that takes the wrong end of the row only while that end holds more than k entries: with
    largest=False in topk every test at k = 1, 3, 10 of n = 40 still passed."""
    from test_measures_reference import knn_ref

    X, Y = related(rng, 12, 6, 9)
    assert mutual_knn(X, Y, k=k) == pytest.approx(knn_ref(X, Y, k))


@pytest.mark.parametrize("block_rows", [0, -3, 1, 5, 12, 100])
def test_knn_indices_any_block_size_gives_the_unblocked_neighbours(rng, block_rows):
    """Blocks of any size, even 0 or negative (clamped to 1) or beyond n (clamped to n), give the
    unblocked indices; without the clamp to 1, block_rows=0 made range() raise."""
    from repsim.measures.knn import knn_indices, unit_rows

    Z = torch.from_numpy(unit_rows(rng.normal(size=(12, 4))))
    assert torch.equal(knn_indices(Z, 3, block_rows=block_rows), knn_indices(Z, 3))


@pytest.mark.parametrize("block", [1, 7, 29])
@pytest.mark.parametrize("kernel_", ["linear", "rbf"])
def test_unbiased_cka_in_row_blocks_matches_reference(rng, monkeypatch, block, kernel_):
    """Above 2,048 stimuli (BLOCK_ELEMENTS // n rows per block) the single-pair Gram path makes
    two passes over row blocks, computing the kernel rows twice; no test reached it, as the
    tests' n is small. Blocks of 1, 7 and 29 of 30 rows (a partial last block) give the
    reference's value."""
    import importlib

    cka_module = importlib.import_module("repsim.measures.cka")  # the name cka is the function
    X, Y = related(rng, 30, 60, 80)  # Gram path for the linear kernel too
    opts = {"kernel": kernel_, "sigma": 0.6} if kernel_ == "rbf" else {}
    expected = cka_ref(kernel(X, kernel_, 0.6), kernel(Y, kernel_, 0.6), True)
    monkeypatch.setattr(cka_module, "BLOCK_ELEMENTS", 30 * block)
    assert cka(X, Y, **opts) == pytest.approx(expected, rel=1e-10, abs=1e-12)
