"""Tests of repsim.analysis on small hand-made and fake-run inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from helpers_run import write_fake_run

from repsim import analysis as A
from repsim.errors import StoreError


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> A.Run:
    return A.load_run(write_fake_run(tmp_path_factory.mktemp("run"), n_per_objective=3,
                                     features=False))


def _lin(x: np.ndarray, y: np.ndarray) -> float:
    x, y = x - x.mean(0), y - y.mean(0)
    return float(np.linalg.norm(x.T @ y) ** 2 / (np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)))


def test_load_run_missing_folder_says_what_to_do(tmp_path):
    with pytest.raises(StoreError, match="repsim run"):
        A.load_run(tmp_path)


def test_load_run_and_caption(run):
    assert run.consistency is not None and run.probes is not None
    cap = run.caption("cka_linear")
    assert "fake-tiny" in cap and "12 models" in cap and "cka_linear" in cap


def test_cluster_order_groups_blocks():
    block = np.kron(np.eye(2), np.ones((3, 3))) * 0.8 + 0.1
    np.fill_diagonal(block, 1.0)
    perm = np.array([0, 3, 1, 4, 2, 5])
    order = A.cluster_order(block[np.ix_(perm, perm)])
    groups = [perm[i] // 3 for i in order]
    assert groups in ([0, 0, 0, 1, 1, 1], [1, 1, 1, 0, 0, 0])


def test_pair_table_counts_and_labels(run):
    da = run.similarity["cka_linear"]
    t = A.pair_table(da, "objective")
    n = da.sizes["model_a"]
    assert len(t) == da.sizes["dataset"] * n * (n - 1) // 2
    assert set(t.category_pair) >= {"Random | Supervised", "Self-Supervised | Self-Supervised"}
    assert A.pair_label("b", "a") == A.pair_label("a", "b") == "a | b"


def test_mean_std_is_zero_for_constant_pairs():
    m = np.array([[1.0, 0.5], [0.5, 1.0]])
    da = xr.DataArray(np.stack([m, m, m]), dims=("dataset", "model_a", "model_b"),
                      coords={"dataset": list("xyz"), "model_a": ["p", "q"], "model_b": ["p", "q"],
                              "objective_a": ("model_a", ["S", "S"])})
    t = A.mean_std_across_datasets(da)
    assert t["mean"].item() == pytest.approx(0.5) and t["std"].item() == pytest.approx(0.0)


def test_consistency_values_and_summary(run):
    tidy = A.consistency_values(run.consistency, "cka_linear", ["all", "objective"])
    n_d = run.similarity.sizes["dataset"]
    assert (tidy.groupby("group_pair").size() == n_d * (n_d - 1) // 2).all()
    assert "all" in set(tidy.label)
    obj = tidy[tidy.group_by == "objective"]
    order = A.median_order(obj)
    meds = obj.groupby("label").consistency.median()[order].values
    assert (np.diff(meds) <= 1e-12).all()
    assert list(A.consistency_summary(obj).label) == order
    sub = A.consistency_values(run.consistency, "cka_linear", "all", datasets=["shapes", "digits"])
    assert len(sub) == 1
    spread = A.grouping_spread(A.consistency_values(run.consistency, "cka_linear",
                                                    ["all", "objective", "size_class"]))
    assert spread.group_by.iloc[0] == "objective"


def test_rank_sum_tests_bonferroni():
    rng = np.random.default_rng(0)
    rows = [{"anchor": f"{c}{i}", "category": c, "consistency": v}
            for c, mu in (("hi", 0.9), ("lo", 0.2), ("lo2", 0.21)) for i in range(12)
            for v in mu + 0.02 * rng.normal(size=3)]
    out = A.rank_sum_tests(pd.DataFrame(rows), alpha=0.01)
    assert len(out) == 3
    assert np.allclose(out.p_bonferroni, np.minimum(out.p * 3, 1))
    sig = {(r.group_a, r.group_b) for r in out[out.significant].itertuples()}
    assert ("hi", "lo") in sig and ("lo", "lo2") not in sig


def test_anchor_values_have_categories(run):
    av = A.anchor_values(run.consistency, "cka_linear")
    assert set(av.category) == {"Supervised", "Self-Supervised", "Image-Text", "Random"}


def test_gap_correlations_negative_when_similarity_tracks_accuracy(run):
    r = A.gap_correlations(run.similarity["cka_linear"], run.probes)
    assert list(r.dataset) == list(map(str, run.similarity.dataset.values))
    assert r.r.notna().all() and set(r.columns) >= {"domain", "r", "n_pairs"}


def test_measure_agreement_self_is_one(run):
    agree = A.measure_agreement(run.similarity, "cka_linear", "cka_linear")
    assert np.allclose(agree.r, 1.0)


def test_domain_order(run):
    order = A.domain_order(run.similarity)
    doms = [str(run.similarity["domain"].sel(dataset=d).values) for d in order]
    assert doms == sorted(doms, key=A.DOMAINS.index)


def test_stability_error_shrinks_with_n(rng):
    base = rng.normal(size=(400, 6))
    feats = {f"m{i}": np.tanh(base @ rng.normal(size=(6, 8))) + 0.3 * rng.normal(size=(400, 8))
             for i in range(3)}
    t = A.stability_vs_n(feats, [10, 50, 400], repeats=4, measure=_lin)
    err = t.groupby("n").abs_error.median()
    assert err[10] > err[50] > err[400] - 1e-12 and err[400] == pytest.approx(0.0)


def test_bootstrap_pairs(rng):
    feats = {k: rng.normal(size=(60, 5)) for k in "abc"}
    t = A.bootstrap_pairs(feats, n_boot=8, measure=_lin)
    assert len(t) == 3 and (t["std"] > 0).all() and (t.q05 <= t.q95).all()


def test_pick_models():
    mt = pd.DataFrame({"objective": ["a", "a", "a", "b"]}, index=["m1", "m2", "m3", "m4"])
    assert A.pick_models(mt, 2) == ["m1", "m2", "m4"]
