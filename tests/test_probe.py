"""Tests of repsim.probe: the batched sweep is the plain training loop, only faster."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import torch

from repsim.errors import InputError
from repsim.probe import (
    ProbeResult,
    _peak,
    _study_choice,
    coarse_indices,
    encode_labels,
    linear_probe,
    stratified_split,
    train_reference,
    train_sweep,
)

SMALL = {"lrs": (1e-1, 1e-2), "wds": np.logspace(-4, 0, 9), "epochs": 3, "batch_size": 64}


def _blobs(rng, n=400, d=16, c=4, noise=1.0):
    """Gaussian class blobs, L2-normalised: a problem a linear probe mostly solves."""
    means = rng.normal(size=(c, d))
    y = np.arange(n) % c
    X = means[y] + noise * rng.normal(size=(n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True), y


def _separable(rng, n, d=32, c=6, margin=0.1):
    """Unit-norm rows labelled by the argmax of a linear map, keeping only rows whose top score
    beats the runner-up by ``margin``: linearly separable with a margin by construction."""
    X = rng.normal(size=(8 * n, d))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    W = rng.normal(size=(d, c))
    Z = X @ (W / np.linalg.norm(W, axis=0))
    top2 = np.sort(Z, axis=1)[:, -2:]
    keep = np.flatnonzero(top2[:, 1] - top2[:, 0] > margin)[:n]
    return X[keep], Z[keep].argmax(axis=1)


def _accuracy(W, b, X, y):
    logits = torch.as_tensor(X, dtype=torch.float32) @ W + b
    return float((logits.argmax(dim=1).numpy() == y).mean())


def test_batched_sweep_matches_torch_adamw_one_setting_at_a_time(rng):
    X, y = _blobs(rng, n=600, d=24, c=5, noise=1.5)
    Xtr, ytr, Xte, yte = X[:400], y[:400], X[400:], y[400:]
    lrs = [1e-1, 1e-1, 1e-2, 1e-3, 1e-4, 1e-1]
    wds = [1e-6, 1e-1, 1e-3, 1.0, 1e-2, 10.0]
    W, b = train_sweep(Xtr, ytr, lrs, wds, seed=7, epochs=4, batch_size=96, device="cpu")
    assert W.shape == (6, 24, 5) and b.shape == (6, 5)
    for i, (lr, wd) in enumerate(zip(lrs, wds)):
        w1, b1 = train_reference(Xtr, ytr, lr, wd, seed=7, epochs=4, batch_size=96, device="cpu")
        assert abs(_accuracy(W[i], b[i], Xte, yte) - _accuracy(w1, b1, Xte, yte)) <= 0.005
        torch.testing.assert_close(W[i], w1, atol=1e-5, rtol=1e-4)


def test_probe_is_close_to_sklearn_logistic_regression_at_its_best_c(rng):
    from sklearn.linear_model import LogisticRegression

    X, y = _separable(rng, 1000)
    Xtr, ytr, Xte, yte = X[:600], y[:600], X[600:], y[600:]
    best = max(
        LogisticRegression(C=c, max_iter=2000).fit(Xtr, ytr).score(Xte, yte)
        for c in np.logspace(-1, 5, 7)
    )
    res = linear_probe(Xtr, ytr, Xte, yte, seeds=(0, 1), batch_size=64, device="cpu")
    assert res.mean_accuracy >= best - 0.02, (res.accuracy, best)


def test_result_fields_and_search_grid(rng):
    X, y = _blobs(rng)
    res = linear_probe(X[:300], y[:300], X[300:], y[300:], seeds=(0, 1), device="cpu", **SMALL)
    assert isinstance(res, ProbeResult)
    assert res.accuracy.shape == res.balanced_accuracy.shape == res.lr.shape == (2,)
    assert res.val_accuracy.shape == (2, 2, 9)
    assert np.all((res.accuracy >= 0) & (res.accuracy <= 1))
    assert res.mean_accuracy == pytest.approx(res.accuracy.mean())
    for k in range(2):  # the chosen setting is the best validated one
        grid = res.val_accuracy[k]
        li, wi = list(res.lrs).index(res.lr[k]), list(res.wds).index(res.wd[k])
        assert grid[li, wi] == np.nanmax(grid)
        assert np.isfinite(grid[:, coarse_indices(9)]).all()
    ds = res.to_xarray()
    assert ds["accuracy"].dims == ("seed",) and ds["val_accuracy"].dims == ("seed", "lr", "wd")


def test_coarse_indices_are_the_decades_of_the_default_grid():
    assert coarse_indices(64) == [0, 9, 18, 27, 36, 45, 54, 63]
    assert np.allclose(np.log10(np.logspace(-6, 1, 64)[coarse_indices(64)]), range(-6, 2))
    assert coarse_indices(3) == [0, 1, 2]


def test_coarse_indices_are_the_widest_even_steps_that_give_8_values():
    for n_wds in range(1, 130):
        idx = coarse_indices(n_wds)
        widest = max([s for s in range(1, n_wds) if 7 * s <= n_wds - 1], default=1)
        assert idx[: min(8, n_wds)] == [widest * i for i in range(min(8, n_wds))], n_wds
        assert idx[-1] == n_wds - 1 and idx == sorted(set(idx)), n_wds
        assert np.diff(idx[:-1]).tolist() == [widest] * (len(idx) - 2), n_wds  # last step shorter


def test_default_search_trains_coarse_then_fine(rng):
    X, y = _blobs(rng, n=200, d=8, c=3)
    res = linear_probe(X[:150], y[:150], X[150:], y[150:], seeds=(0,), epochs=2, device="cpu")
    tried = np.isfinite(res.val_accuracy[0])
    assert tried[:, coarse_indices(64)].all()
    # fine: at most two neighbours in each of three rounds, for each learning rate on its own
    assert ((8 + 3 <= tried.sum(axis=1)) & (tried.sum(axis=1) <= 8 + 6)).all()


def test_deterministic_for_a_seed_and_labels_are_mapped(rng):
    X, y = _blobs(rng)
    a = linear_probe(X[:300], y[:300], X[300:], y[300:], seeds=(3,), device="cpu", **SMALL)
    b = linear_probe(X[:300], y[:300], X[300:], y[300:], seeds=(3,), device="cpu", **SMALL)
    names = np.array(["cat", "dog", "eel", "fox"])
    c = linear_probe(
        torch.as_tensor(X[:300]), names[y[:300]], X[300:], names[y[300:]],
        seeds=(3,), device="cpu", **SMALL,
    )  # fmt: skip
    np.testing.assert_array_equal(a.accuracy, b.accuracy)
    np.testing.assert_array_equal(a.val_accuracy, b.val_accuracy)
    np.testing.assert_allclose(a.accuracy, c.accuracy)
    assert list(c.classes) == list(names)


def test_normalize_makes_row_scale_irrelevant(rng):
    X, y = _blobs(rng)
    scaled = X * rng.uniform(0.1, 10.0, size=(len(X), 1))
    a = linear_probe(X[:300], y[:300], X[300:], y[300:], seeds=(0,), device="cpu", **SMALL)
    b = linear_probe(
        scaled[:300], y[:300], scaled[300:], y[300:], seeds=(0,), device="cpu", **SMALL
    )
    np.testing.assert_allclose(a.accuracy, b.accuracy, atol=1e-6)


def test_stratified_split_keeps_tiny_classes_trainable():
    y = np.array([0] * 10 + [1] * 2 + [2] * 1 + [3] * 5)
    sizes = set()
    for seed in range(5):
        tr, va = stratified_split(y, 0.2, seed)
        assert np.intersect1d(tr, va).size == 0 and np.union1d(tr, va).size == y.size
        assert set(y[tr]) == {0, 1, 2, 3}  # every class keeps a train example
        assert np.bincount(y[va], minlength=4).tolist() == [2, 1, 0, 1]
        sizes.add((tr.size, va.size))
    assert len(sizes) == 1
    assert not np.array_equal(stratified_split(y, 0.2, 0)[1], stratified_split(y, 0.2, 1)[1])


def test_probe_runs_with_a_singleton_class(rng):
    X, y = _blobs(rng, n=120, c=3)
    y = y.copy()
    y[0] = 9  # a class with one train example and none in test
    res = linear_probe(X[:90], y[:90], X[90:], y[90:], seeds=(0,), device="cpu", **SMALL)
    assert res.classes.tolist() == [0, 1, 2, 9]


def test_errors_name_the_problem(rng):
    X, y = _blobs(rng, n=100)
    with pytest.raises(InputError, match="never occur in the train split"):
        encode_labels(np.array([0, 1, 1]), np.array([0, 2]))
    with pytest.raises(InputError, match="at least 2"):
        linear_probe(X, np.zeros(100), X, np.zeros(100), device="cpu")
    with pytest.raises(InputError, match="features"):
        linear_probe(X, y, X[:, :5], y, device="cpu")
    bad = X.copy()
    bad[3, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        linear_probe(bad, y, X, y, device="cpu")
    with pytest.raises(InputError, match="one label per"):
        linear_probe(X, y[:50], X, y, device="cpu")
    with pytest.raises(InputError, match="distinct"):
        linear_probe(X, y, X, y, seeds=(1, 1), device="cpu")


def test_bench_probe_runs_and_writes_json(tmp_path):
    import json

    from repsim.bench.probe import main

    out = tmp_path / "bench.json"
    argv = ["--n", "300", "--dim", "8", "--classes", "3", "--settings", "6", "--epochs", "1"]
    assert (
        main([*argv, "--seeds", "0", "--sequential", "2", "--device", "cpu", "--json", str(out)])
        == 0
    )
    res = json.loads(out.read_text())
    assert res["sequential_extrapolated"] and res["sequential_timed_settings"] == 2
    assert res["speedup"] > 0 and res["full_probe_s"] > 0 and res["device"] == "cpu"


def test_shared_search_picks_once_and_retrains_every_seed():
    rng = np.random.default_rng(3)
    centers = rng.normal(size=(4, 16)) * 2
    y = rng.integers(0, 4, 240)
    X = centers[y] + rng.normal(size=(240, 16))
    kw = dict(lrs=(1e-1, 1e-2), wds=(1e-6, 1e-3, 1e-1), epochs=3, batch_size=64)
    per_seed = linear_probe(X[:160], y[:160], X[160:], y[160:], seeds=(0, 1), **kw)
    shared = linear_probe(
        X[:160], y[:160], X[160:], y[160:], seeds=(0, 1), shared_search=True, **kw
    )
    # one choice for every seed, equal to the first seed's own search
    assert shared.lr[0] == shared.lr[1] == per_seed.lr[0]
    assert shared.wd[0] == shared.wd[1] == per_seed.wd[0]
    assert shared.accuracy[0] == pytest.approx(per_seed.accuracy[0])
    assert shared.val_accuracy.shape == per_seed.val_accuracy.shape


def test_precomputed_schedule_is_the_per_step_arithmetic():
    # the trainer computes every step's lr * f and 1 - lr * f * wd up front; the values must be
    # those of the per-step float32 scalar arithmetic bit for bit (probes.nc stays the same)
    from repsim.probe import _cosine, _schedule

    lr = torch.tensor([[1.0, 0.1, 0.01, 0.001, 0.3]], dtype=torch.float32)
    wd = torch.tensor([[1e-6, 3e-4, 0.1, 1.0, 10.0]], dtype=torch.float32)
    total = 57
    lr_f, decay = _schedule(lr, wd, total)
    for t in range(total):
        f = _cosine(t, total)
        assert torch.equal(lr_f[t], lr * f)
        assert torch.equal(decay[t], 1 - lr * f * wd)


def test_probe_in_a_worker_process_with_one_thread_is_identical(rng):
    # repsim run trains probes on single-threaded worker processes on a multi-core CPU: the
    # numbers must be those of an in-process probe with the default threads
    from repsim.scheduler import process_map

    X, y = _blobs(rng, n=300, d=24, c=5)
    opts = {**SMALL, "seeds": (0, 1), "device": "cpu"}
    here = linear_probe(X[:200], y[:200], X[200:], y[200:], **opts)
    calls = [(_probe_fields, (X[:200], y[:200], X[200:], y[200:], opts))] * 2
    for there in process_map(calls, workers=2, threads=1):
        for key, value in there.items():
            np.testing.assert_array_equal(getattr(here, key), value, err_msg=key)


def _probe_fields(X_train, y_train, X_test, y_test, opts):
    r = linear_probe(X_train, y_train, X_test, y_test, **opts)
    return {k: getattr(r, k) for k in ("accuracy", "balanced_accuracy", "lr", "wd", "val_accuracy")}


def test_bfloat16_matmuls_keep_accuracy_within_0_2_points():
    # the study's tolerance for mixed precision, checked at a small size on the CPU (where the
    # bfloat16-input, float32-accumulation arithmetic of the GPU path is emulated exactly)
    from repsim.bench.probe import precision_check

    chk = precision_check(n=1500, dim=32, classes=8, n_test=5000, epochs=4, device="cpu")
    assert chk["max_abs_diff_points"] <= 0.2, chk
    with pytest.raises(InputError, match="precision"):
        linear_probe(np.eye(4), [0, 1, 0, 1], np.eye(4), [0, 1, 0, 1], precision="float16")


def test_bfloat16_product_is_float32_accumulation_of_rounded_inputs(rng):
    from repsim.probe import _bmm

    a = torch.as_tensor(rng.normal(size=(2, 5, 7)), dtype=torch.float32)
    b = torch.as_tensor(rng.normal(size=(2, 7, 3)), dtype=torch.float32)
    ref = (a.to(torch.bfloat16).double() @ b.to(torch.bfloat16).double()).float()
    np.testing.assert_allclose(_bmm(a, b, True).numpy(), ref.numpy(), rtol=1e-6, atol=1e-6)
    assert torch.equal(_bmm(a, b, False), torch.bmm(a, b))


def test_study_probe_priced_as_steps_times_measured_step_cost():
    from repsim.bench import probe as P

    per_step = {"coarse": 0.01, "fine": 0.008, "final": 0.001}
    n = 1_281_167
    steps_search = 20 * math.ceil(0.8 * n / 1024)
    # one coarse round, three fine rounds (steps 4, 2, 1), one retraining on all train rows
    expected = steps_search * (0.01 + 3 * 0.008) + 20 * math.ceil(n / 1024) * 0.001
    assert P.study_probe_seconds(n, per_step) == pytest.approx(expected)
    # the per-step fit recovers a linear cost plus a fixed one from exact points
    a, c = 3e-12, 2e-4
    points = [
        {
            "dim": d,
            "classes": 1000,
            "per_step": {name: a * k * s * d * 1000 + c for name, k, s, _, _ in P.PHASES},
        }
        for d in (384, 1024, 1536)
    ]
    fit = P.fit_step_cost(points)
    for name in ("coarse", "fine", "final"):
        assert fit[name] == pytest.approx((a, c), rel=1e-6)
    assert P.step_cost(768, 100, fit)["final"] == pytest.approx(a * 3 * 768 * 100 + c)


def test_study_sweep_measures_what_fits_and_lists_the_rest():
    from repsim.bench import probe as P

    res = P.study_sweep([2048, 10**9], [16], 10, device="cpu", steps=1, memory_budget_gb=1.0)
    assert [(p["n"], p["dim"]) for p in res["points"]] == [(2048, 16)]
    assert res["skipped"][0]["n"] == 10**9
    point = res["points"][0]
    assert set(point["per_step"]) == {"coarse", "fine", "final"}
    assert point["full_probe_s"] == pytest.approx(P.study_probe_seconds(2048, point["per_step"]))


def test_streamed_features_are_the_whole_matrix_bit_for_bit(rng):
    # features read from the store chunk by chunk give the same normalised rows, and the same probe
    from repsim.probe import stream_features

    X, y = _blobs(rng, n=300, d=24, c=5)
    X = X * rng.uniform(0.5, 3.0, size=(300, 1))  # rows of different norms
    chunks = (X[i : i + 64] for i in range(0, 300, 64))  # the last chunk is partial
    streamed = stream_features(chunks, 300, device="cpu")
    whole = torch.as_tensor(X, dtype=torch.float32)
    whole = whole / whole.norm(dim=1, keepdim=True).clamp_min(1e-12)
    assert torch.equal(streamed, whole)
    a = linear_probe(streamed[:200], y[:200], streamed[200:], y[200:], normalize=False, **SMALL)
    b = linear_probe(X[:200], y[:200], X[200:], y[200:], **SMALL)
    np.testing.assert_array_equal(a.val_accuracy, b.val_accuracy)
    np.testing.assert_array_equal(a.accuracy, b.accuracy)
    with pytest.raises(InputError, match="rows"):
        stream_features([X[:100]], 300, device="cpu")


def test_streamed_features_placed_by_position(rng):
    # (positions, rows) chunks, as FeatureStore.iter_rows yields them, fill the matrix in any order
    from repsim.probe import stream_features

    X = rng.normal(size=(50, 7)) * rng.uniform(0.5, 3.0, size=(50, 1))
    order = rng.permutation(50)
    chunks = [(order[i : i + 16], X[order[i : i + 16]]) for i in range(0, 50, 16)]
    whole = torch.as_tensor(X, dtype=torch.float32)
    whole = whole / whole.norm(dim=1, keepdim=True).clamp_min(1e-12)
    assert torch.equal(stream_features(chunks, 50, device="cpu"), whole)
    with pytest.raises(InputError, match="given twice"):
        stream_features([chunks[0], chunks[0]], 50, device="cpu")
    with pytest.raises(InputError, match="rows"):
        stream_features(chunks[:2], 50, device="cpu")


def test_final_probe_is_the_chosen_setting_retrained_on_every_train_row(rng):
    """The reported accuracies are those of the plain torch probe (:func:`train_reference`)
    trained on all train rows at the chosen (lr, wd); balanced accuracy as sklearn computes it."""
    from sklearn.metrics import balanced_accuracy_score

    means = rng.normal(size=(4, 12))
    y = rng.choice(4, size=1400, p=[0.55, 0.25, 0.15, 0.05])  # imbalanced classes
    X = means[y] + 1.6 * rng.normal(size=(1400, 12))
    X /= np.linalg.norm(X, axis=1, keepdims=True)
    Xtr, ytr, Xte, yte = X[:600], y[:600], X[600:], y[600:]
    kw = dict(epochs=5, batch_size=64)
    res = linear_probe(
        Xtr, ytr, Xte, yte, lrs=(1e-1, 1e-2), wds=(1e-4, 1e-1), seeds=(0,), device="cpu", **kw
    )
    W, b = train_reference(Xtr, ytr, res.lr[0], res.wd[0], seed=0, n_classes=4, device="cpu", **kw)
    pred = (torch.as_tensor(Xte, dtype=torch.float32) @ W + b).argmax(dim=1).numpy()
    assert res.accuracy[0] == pytest.approx((pred == yte).mean(), abs=1.5 / len(yte))
    balanced = balanced_accuracy_score(yte, pred)
    assert res.balanced_accuracy[0] == pytest.approx(balanced, abs=0.002)
    assert abs(balanced - (pred == yte).mean()) > 0.02  # the two differ on this problem


def test_the_study_s_tie_rules():
    """Its find_peak keeps the later of equal accuracies (the larger weight decay); its
    learning-rate loop replaces the best only on a strictly higher accuracy (the first wins)."""
    assert _peak(np.array([0.8, 0.9, 0.9, 0.7]), [0, 1, 2, 3]) == 2
    assert _peak(np.array([0.8, 0.9, 0.9, 0.7]), [3, 0]) == 0
    acc = np.array([[0.8, 0.9], [0.9, 0.7], [0.9, 0.9]])
    assert _study_choice(acc, [1, 0, 0]) == (0, 1)  # three at 0.9: the first learning rate
    assert _study_choice(acc, [0, 0, 1]) == (1, 0)


def test_a_diverged_setting_never_wins_the_search():
    """A NaN accuracy marks a diverged cell (its NaN logits argmax to class 0); it must not win,
    and a search where everything diverged has nothing to choose."""
    assert _peak(np.array([0.2, np.nan, 0.2]), [0, 1, 2]) == 2
    assert _peak(np.array([np.nan, np.nan]), [0, 1]) is None
    assert _study_choice(np.array([[np.nan], [0.4]]), [None, 0]) == (1, 0)
    with pytest.raises(InputError, match="every .lr, wd. setting .* diverged"):
        _study_choice(np.array([[np.nan], [np.nan]]), [None, None])


def _study_tuner(score, lrs: int, n_wds: int) -> tuple[int, int, set[tuple[int, int]]]:
    """The study's HyperparameterTuner and RegularizationTuner written out as their loops, one
    setting at a time: (learning rate index, weight decay index, the settings it scored)."""
    visited = set()

    def find_peak(li, idxs):
        best, best_acc = 0, 0.0
        for wi in idxs:
            visited.add((li, wi))
            if best_acc <= score(li, wi):
                best, best_acc = wi, score(li, wi)
        return best, best_acc

    best_lr, best_wd, max_acc = 0, 0, 0.0
    for li in range(lrs):
        peak, acc = find_peak(li, coarse_indices(n_wds))
        step = 4
        while step > 0:
            left, right = max(peak - step, 0), min(peak + step, n_wds - 1)
            idxs = [i for i in (left, right) if i != peak]
            if not idxs:
                break
            new_peak, new_acc = find_peak(li, idxs)
            if new_acc > acc:
                peak, acc = new_peak, new_acc
            step //= 2
        if max_acc < acc:
            best_lr, best_wd, max_acc = li, peak, acc
    return best_lr, best_wd, visited


@pytest.mark.parametrize("noise, n_wds", [(1.0, 64), (2.5, 64), (4.0, 17)])
def test_the_search_is_the_study_s_tuner(noise, n_wds):
    """The batched search tries exactly the settings the study's sequential tuner scores and
    chooses what it chooses (the tuner reads each score from the probe's validation grid; a
    setting the probe did not try would be NaN there and fail the comparison)."""
    rng = np.random.default_rng(int(noise * 10) + n_wds)
    X, y = _blobs(rng, n=240, d=8, c=3, noise=noise)
    wds = np.logspace(-6, 1, n_wds)
    res = linear_probe(
        X[:180], y[:180], X[180:], y[180:], seeds=(0, 1), wds=wds, epochs=2, device="cpu"
    )
    for k in range(2):
        grid = res.val_accuracy[k]
        li, wi, visited = _study_tuner(lambda a, b, g=grid: g[a, b], len(res.lrs), n_wds)
        assert set(zip(*np.nonzero(np.isfinite(grid)), strict=True)) == visited
        assert (res.lr[k], res.wd[k]) == (res.lrs[li], res.wds[wi])


def test_probe_search_skips_diverged_settings():
    """AdamW with lr x wd = 10 overflows to NaN weights; on a split with 80% of class 0 and
    features without signal, that NaN model scores 0.8 on validation and used to be chosen."""
    rng = np.random.default_rng(2)
    y = rng.choice(2, size=500, p=[0.8, 0.2])
    X = rng.normal(size=(500, 64))
    kw = dict(seeds=(0, 1, 2), epochs=10, batch_size=32, device="cpu")
    res = linear_probe(X[:300], y[:300], X[300:], y[300:], lrs=(1.0, 1e-3), wds=(1e-3, 10.0), **kw)
    chosen = set(zip(res.lr.tolist(), res.wd.tolist()))
    assert (1.0, 10.0) not in chosen
    assert np.isnan(res.val_accuracy[:, 0, 1]).all()  # the diverged cell keeps no accuracy
    with pytest.raises(InputError, match="diverged"):
        linear_probe(X[:300], y[:300], X[300:], y[300:], lrs=1.0, wds=10.0, **kw)


def test_stratified_split_rounds_each_class_to_the_nearest_count():
    y = np.array([0] * 3 + [1] * 8 + [2] * 13)  # 0.2 x: 0.6 -> 1, 1.6 -> 2, 2.6 -> 3
    _, va = stratified_split(y, 0.2, 0)
    assert np.bincount(y[va], minlength=3).tolist() == [1, 2, 3]


def test_result_does_not_depend_on_the_order_of_seeds_and_grids():
    # a config may list seeds, learning rates and weight decays in any order: the coarse-then-fine
    # search steps along the sorted weight-decay grid, and the shared search uses the smallest seed
    rng = np.random.default_rng(5)
    centers = rng.normal(size=(3, 8)) * 1.5
    y = rng.integers(0, 3, 150)
    X = centers[y] + rng.normal(size=(150, 8))
    wds = np.logspace(-6, 1, 16)
    perm = np.random.default_rng(0).permutation(16)
    kw = dict(epochs=2, batch_size=32, device="cpu")
    for shared in (True, False):
        a = linear_probe(
            X[:100], y[:100], X[100:], y[100:], seeds=(0, 1), lrs=(1e-1, 1e-3), wds=wds,
            shared_search=shared, **kw,
        )  # fmt: skip
        b = linear_probe(
            X[:100], y[:100], X[100:], y[100:], seeds=(1, 0), lrs=(1e-3, 1e-1), wds=wds[perm],
            shared_search=shared, **kw,
        )  # fmt: skip
        assert list(b.seeds) == [1, 0]  # results stay in the order the seeds were given
        assert np.array_equal(a.accuracy, b.accuracy[::-1])
        assert np.array_equal(a.lr, b.lr[::-1]) and np.array_equal(a.wd, b.wd[::-1])
        assert np.array_equal(a.lrs, b.lrs) and np.array_equal(a.wds, b.wds)
        assert np.array_equal(a.val_accuracy, b.val_accuracy[::-1], equal_nan=True)


def test_schedule_of_a_range_of_steps_is_that_slice_of_the_whole_schedule():
    """Training builds one epoch's schedule at a time (all steps at once grew with epochs x steps
    x classes: gigabytes at ImageNet's train split); each slice equals the whole schedule's."""
    from repsim.probe import _schedule

    lr, wd = torch.tensor([[1.0, 0.1]]), torch.tensor([[0.0, 0.01]])
    whole = _schedule(lr, wd, 30)
    for first in (0, 10, 20):
        part = _schedule(lr, wd, 30, range(first, first + 10))
        for w, p in zip(whole, part):
            assert torch.equal(w[first : first + 10], p)


# -- mutation audit (session 35): each test below kills a change that no other test noticed ------
def test_accuracy_is_the_share_of_correct_test_predictions(rng):
    X, y = _blobs(rng, n=400, c=4, noise=3.0)  # labels cycle: 25 test rows of each class
    res = linear_probe(X[:300], y[:300], X[300:], y[300:], seeds=(0, 1, 2), **SMALL)
    assert len(set(res.accuracy.tolist())) > 1  # the seeds' probes differ
    correct = res.accuracy * 100
    np.testing.assert_allclose(correct, np.round(correct), atol=1e-4)  # whole numbers of rows
    # equal class counts in the test split: top-1 accuracy is the mean recall
    np.testing.assert_allclose(res.accuracy, res.balanced_accuracy, rtol=1e-6)


def test_stratified_split_never_takes_a_class_s_last_train_row():
    # a large val_fraction rounds to every row of a small class; one must stay to train on
    y = np.array([0, 0, 1, 1, 1, 2, 2, 2, 2])
    train, val = stratified_split(y, 0.9, seed=0)
    assert sorted(set(y[train])) == [0, 1, 2]
    assert [int((y[val] == c).sum()) for c in (0, 1, 2)] == [1, 2, 3]


@pytest.mark.parametrize("missing", [np.nan, None])
def test_missing_labels_are_refused_not_made_a_class(rng, missing):
    X, y = _blobs(rng, n=80)
    y_train = y.astype(object if missing is None else float)
    y_train[5] = missing
    with pytest.raises(InputError, match="1 missing labels .*first at row 5"):
        linear_probe(X, y_train, X, y, seeds=(0,), **SMALL)


def test_validation_grid_is_each_setting_trained_on_the_fit_rows_scored_on_the_held_out_rows():
    """Each tried cell of the validation grid is the plain torch probe (:func:`train_reference`)
    trained at that (lr, wd) on the seed's fit rows and scored on its validation rows; the search
    chooses on these, so scoring on the fit rows (training accuracy) would pick other settings."""
    rng = np.random.default_rng(11)
    X, y = _blobs(rng, n=200, d=64, c=4, noise=3.0)  # noisy, many dims: fit and held-out differ
    kw = dict(epochs=4, batch_size=32)
    lrs, wds = (1e-1, 1e-2), np.logspace(-4, 1, 9)
    res = linear_probe(
        X, y, X[:20], y[:20], lrs=lrs, wds=wds, seeds=(3,), normalize=False, device="cpu", **kw
    )
    fit, val = stratified_split(y, 0.2, 3)
    gaps = []
    for li, wi in zip(*np.nonzero(np.isfinite(res.val_accuracy[0])), strict=True):
        lr, wd = res.lrs[li], res.wds[wi]
        W, b = train_reference(X[fit], y[fit], lr, wd, seed=3, n_classes=4, device="cpu", **kw)
        held_out = _accuracy(W, b, X[val], y[val])
        assert res.val_accuracy[0, li, wi] == pytest.approx(held_out, abs=1.5 / len(val))
        gaps.append(_accuracy(W, b, X[fit], y[fit]) - held_out)
    assert max(gaps) > 0.1  # on this problem training accuracy would be another grid


# -- mutation audit (probe.py, second round): each test below kills a change no other test noticed
def test_initial_weights_are_those_torch_nn_linear_draws_for_the_seed():
    """The batched trainer and train_reference both start from init_params, so only a comparison
    with torch itself checks the study's initialisation (uniform in +-1/sqrt(d), weights and bias)."""
    from repsim.probe import init_params

    for d, c, seed in [(24, 5, 7), (3, 2, 0), (100, 10, 3)]:
        w, b = init_params(d, c, seed)
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            layer = torch.nn.Linear(d, c)
        assert w.shape == (d, c) and b.shape == (c,)
        assert torch.equal(w, layer.weight.detach().T) and torch.equal(b, layer.bias.detach())


def test_cosine_schedule_is_torch_s_cosine_annealing_to_zero():
    """The learning-rate factor of each step against torch's own CosineAnnealingLR (no warm-up,
    down to 0 at the last step), not against the module's _cosine that both trainers share."""
    from repsim.probe import _schedule

    total = 13
    param = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([param], lr=1.0)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total, eta_min=0.0)
    expected = []
    for _ in range(total):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    lr, wd = torch.tensor([[0.5]]), torch.tensor([[0.1]])
    lr_f, decay = _schedule(lr, wd, total)
    np.testing.assert_allclose(lr_f[:, 0, 0].numpy(), 0.5 * np.array(expected), rtol=1e-6)
    np.testing.assert_allclose(
        decay[:, 0, 0].numpy(), 1 - 0.5 * 0.1 * np.array(expected), rtol=1e-6
    )
    assert expected[0] == 1.0 and expected[-1] < 0.02  # a full half cosine


@pytest.mark.parametrize("eval_elements", [5, 60, 2**26])
def test_scoring_in_chunks_is_the_whole_float64_computation(rng, monkeypatch, eval_elements):
    """_score works through the rows in chunks of _EVAL_ELEMENTS logits (at ImageNet's 1000 classes
    a validation split takes hundreds of chunks); every chunk size, down to one row, must give the
    predictions, accuracy and mean cross-entropy of the whole matrix in float64."""
    import repsim.probe as P

    monkeypatch.setattr(P, "_EVAL_ELEMENTS", eval_elements)  # 5: one row a chunk, 60: 5 rows
    K, d, S, C, n, m = 2, 6, 2, 3, 40, 23
    X = rng.normal(size=(n, d))
    y = rng.integers(0, C, n)
    W, b = rng.normal(size=(K, d, S, C)), rng.normal(size=(K, S, C))
    rows = np.stack([rng.choice(n, m, replace=False) for _ in range(K)])
    pred, acc, loss = P._score(
        torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y),
        torch.as_tensor(rows), torch.as_tensor(W, dtype=torch.float32),
        torch.as_tensor(b, dtype=torch.float32),
    )  # fmt: skip
    assert pred.shape == (K, S, m) and acc.shape == loss.shape == (K, S)
    for k in range(K):
        for s in range(S):
            logits = X[rows[k]] @ W[k, :, s] + b[k, s]
            target = y[rows[k]]
            assert pred[k, s].tolist() == logits.argmax(axis=1).tolist()
            assert float(acc[k, s]) == pytest.approx(np.mean(logits.argmax(axis=1) == target))
            shifted = logits - logits.max(axis=1, keepdims=True)
            ce = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(m), target]
            assert float(loss[k, s]) == pytest.approx(ce.mean(), rel=1e-5)


def test_bfloat16_training_rounds_both_matmuls_of_every_step(rng):
    """precision="bfloat16" against a float64 loop of full-batch steps whose forward and backward
    products take bfloat16-rounded inputs (what the GPU does with float32 accumulation): a forward
    left in float32 would give other gradients from the second step on, while the accuracy check
    (within 0.2 points of float32) cannot tell."""
    from repsim.probe import _cosine, init_params

    n, d, c, steps, lr, wd = 48, 10, 3, 3, 0.05, 0.01
    X = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, c, n)
    W_got, b_got = train_sweep(
        X, y, [lr], [wd], seed=4, epochs=steps, batch_size=n, device="cpu", precision="bfloat16"
    )

    def bf16(a):
        return torch.as_tensor(a, dtype=torch.float32).to(torch.bfloat16).double().numpy()

    w0, b0 = init_params(d, c, 4)
    W, b = w0.double().numpy(), b0.double().numpy()
    state = {"W": [np.zeros_like(W), np.zeros_like(W)], "b": [np.zeros_like(b), np.zeros_like(b)]}
    for t in range(1, steps + 1):
        logits = bf16(X) @ bf16(W) + b
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(n), y] -= 1
        grads = {"W": bf16(X).T @ bf16(p / n), "b": (p / n).sum(axis=0)}
        lr_t = lr * _cosine(t - 1, steps)
        params = {"W": W, "b": b}
        for key, g in grads.items():
            m, v = state[key]
            m[:] = 0.9 * m + 0.1 * g
            v[:] = 0.999 * v + 0.001 * g * g
            params[key] *= 1 - lr_t * wd
            denom = np.sqrt(v) / np.sqrt(1 - 0.999**t) + 1e-8
            params[key] -= lr_t / (1 - 0.9**t) * m / denom
    np.testing.assert_allclose(W_got[0].numpy(), W, atol=2e-6)
    np.testing.assert_allclose(b_got[0].numpy(), b, atol=2e-6)


def test_features_differing_only_slightly_in_absolute_terms_are_not_constant(rng):
    """The constant-features refusal compares row differences with the features' own scale:
    tiny features (1e-4) and features on a large common offset are still informative, even where
    the rows differ by a few millionths of their size (float32 rounds at about 1e-7)."""
    X, y = _blobs(rng, n=120, d=8, c=3)
    for feats in (1e-4 * X, 5.0 + X, 100.0 + 3e-4 * X):
        res = linear_probe(
            feats[:90], y[:90], feats[90:], y[90:], seeds=(0,), normalize=False, **SMALL
        )
        assert res.accuracy.shape == (1,)


def test_shared_search_uses_the_smallest_seed_s_split():
    rng = np.random.default_rng(8)
    X, y = _blobs(rng, n=160, d=8, c=3, noise=2.0)
    kw = dict(lrs=(1e-1, 1e-2), wds=np.logspace(-4, 0, 9), epochs=2, batch_size=32)
    own = linear_probe(X[:120], y[:120], X[120:], y[120:], seeds=(2, 5), **kw)
    assert not np.array_equal(own.val_accuracy[0], own.val_accuracy[1], equal_nan=True)
    shared = linear_probe(
        X[:120], y[:120], X[120:], y[120:], seeds=(5, 2), shared_search=True, **kw
    )
    for k in range(2):  # seed 2's grid and choice, for both seeds
        np.testing.assert_array_equal(shared.val_accuracy[k], own.val_accuracy[0])
        assert (shared.lr[k], shared.wd[k]) == (own.lr[0], own.wd[0])


def test_a_train_split_of_single_examples_is_refused_for_want_of_validation_rows(rng):
    X = rng.normal(size=(6, 4))
    with pytest.raises(InputError, match="no validation rows"):
        linear_probe(X[:3], [0, 1, 2], X[3:], [0, 1, 2], seeds=(0,), **SMALL)


def test_default_grids_are_the_study_s():
    """Four learning rates 1e-1 .. 1e-4, 64 weight decays log-spaced over 1e-6 .. 1e1, 20 epochs
    of batches of 1024, as the defaults of linear_probe (the other tests pass their own grids)."""
    import inspect

    from repsim.probe import DEFAULT_LRS, DEFAULT_WDS

    assert DEFAULT_LRS == (0.1, 0.01, 0.001, 0.0001)
    assert DEFAULT_WDS.shape == (64,) and DEFAULT_WDS[0] == pytest.approx(1e-6)
    np.testing.assert_allclose(np.log10(DEFAULT_WDS), np.linspace(-6.0, 1.0, 64), atol=1e-12)
    defaults = inspect.signature(linear_probe).parameters
    assert defaults["lrs"].default is DEFAULT_LRS and defaults["wds"].default is DEFAULT_WDS
    assert defaults["epochs"].default == 20 and defaults["batch_size"].default == 1024
    assert defaults["seeds"].default == (0, 1, 2) and defaults["val_fraction"].default == 0.2


def test_a_seed_with_no_new_cells_in_a_fine_round_is_padded_and_not_recorded(monkeypatch):
    """Per-seed searches (``shared_search=False``) train each round as one batched layer, a row
    per seed padded to one width. On a 16-value grid (coarse: every 2nd index and 15), a seed whose
    coarse best is index 0 has nothing new at +-4 (index 4 is coarse), while one whose best is 15
    tries 11: the first seed's row is all padding. Each seed's search must come out as when it is
    run alone, the padding recorded nowhere."""
    import repsim.probe as P

    coarse = P.coarse_indices(16)
    real_peak = P._peak
    forced: list[int] = []

    def peak(acc, idxs):  # force the coarse bests; every later round picks as the study does
        return forced.pop(0) if forced and list(idxs) == coarse else real_peak(acc, idxs)

    monkeypatch.setattr(P, "_peak", peak)
    X, y = _blobs(np.random.default_rng(5), n=120, d=8, c=3)
    kw = {"lrs": [0.1], "wds": np.logspace(-6, 1, 16), "epochs": 2, "batch_size": 32}
    forced[:] = [0, 15]
    both = linear_probe(X, y, X, y, seeds=[0, 1], **kw)
    assert not forced and np.isfinite(both.val_accuracy[1, 0, 11])
    for k, (seed, best) in enumerate([(0, 0), (1, 15)]):
        forced[:] = [best]
        alone = linear_probe(X, y, X, y, seeds=[seed], **kw)
        np.testing.assert_array_equal(
            np.isfinite(both.val_accuracy[k]), np.isfinite(alone.val_accuracy[0])
        )
        np.testing.assert_allclose(both.val_accuracy[k], alone.val_accuracy[0], atol=1e-6)
        assert (both.lr[k], both.wd[k]) == (alone.lr[0], alone.wd[0])


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.2, 1.5])
def test_stratified_split_refuses_a_validation_fraction_outside_0_1(fraction):
    # 0 or 1 would still split (each class is clamped to 1..n_c - 1 rows); refuse, don't guess
    y = np.array([0] * 6 + [1] * 6)
    with pytest.raises(InputError, match=r"val_fraction must be in \(0, 1\)"):
        stratified_split(y, fraction, 0)


def test_object_labels_flag_only_none_and_nan_as_missing():
    # float labels in an object array (e.g. read from a mixed column) are labels, NaN is not
    from repsim.probe import _labels

    for nan in (float("nan"), np.float32("nan"), pd.NA):  # a float32 NaN passed as a class
        y = np.array([0.5, 1.5, 2.0, nan, 0.5], dtype=object)
        with pytest.raises(InputError, match=r"has 1 missing labels .*first at row 3"):
            _labels(y, 5, "y_train")
    ok = np.array([0.5, 1.5, "a", 2], dtype=object)
    assert _labels(ok, 4, "y_train") is ok


def test_streamed_features_refuse_chunks_that_do_not_fit():
    # each bad chunk is refused by name, never written to a wrapped-around or unchecked row
    from repsim.probe import stream_features

    X = np.arange(1.0, 25.0).reshape(6, 4)
    raw = stream_features([X[:5], X[5:]], 6, device="cpu", normalize=False)  # 1-row chunk
    assert raw.dtype == torch.float32 and torch.equal(raw, torch.tensor(X, dtype=torch.float32))
    bad = {
        "wider": [X[:3], np.ones((3, 5))],
        "positions and rows differ": [(np.arange(3), X[:2]), (np.arange(3, 6), X[3:])],
        "negative": [(np.array([-1, 0, 1]), X[:3]), (np.arange(3, 6), X[3:])],
        "past the end": [(np.array([2, 3, 6]), X[:3]), (np.arange(3), X[3:])],
        "too many": [X, X[:1]],
    }
    for chunks in bad.values():
        with pytest.raises(InputError, match=r"X_train: a chunk of shape .* does not fit"):
            stream_features(chunks, 6, device="cpu")
    with pytest.raises(InputError, match="held 0 rows, not the 6"):
        stream_features([], 6, device="cpu")


# -- mutation audit (probe.py, third round) ---------------------------------------------------------
def test_the_search_trains_each_setting_once(monkeypatch):
    """A fine round can land on a setting already scored (on a 16-value grid the coarse step is 2,
    so +-4 and +-2 from a coarse best are coarse cells): it keeps its score and is not trained
    again; the search phases train exactly the settings the validation grid holds."""
    import repsim.probe as P

    trained: list[int] = []
    real = P._train_batched

    def counting(X, y, rows, seeds, lr, wd, *args):
        if args[-2] != "probe final":  # the desc: the search phases only
            trained.append(lr.shape[1])
        return real(X, y, rows, seeds, lr, wd, *args)

    monkeypatch.setattr(P, "_train_batched", counting)
    X, y = _blobs(np.random.default_rng(5), n=120, d=8, c=3)
    res = linear_probe(X, y, X, y, seeds=[0], lrs=[0.1], wds=np.logspace(-6, 1, 16), epochs=2)
    n_scored = int(np.isfinite(res.val_accuracy).sum())
    assert sum(trained) == n_scored
    assert n_scored < len(P.coarse_indices(16)) + 6  # a fine round landed on scored cells


def test_one_int_seed_is_one_seed_and_non_integer_seeds_are_refused():
    X, y = _blobs(np.random.default_rng(2), n=90, d=6, c=3)
    kw = dict(lrs=0.1, wds=(0.0, 1e-2), epochs=1, batch_size=32, device="cpu")
    one = linear_probe(X[:60], y[:60], X[60:], y[60:], seeds=4, **kw)
    listed = linear_probe(X[:60], y[:60], X[60:], y[60:], seeds=[4], **kw)
    assert one.seeds.tolist() == [4] and np.array_equal(one.accuracy, listed.accuracy)
    for bad in (1.5, [0, 1.0], [-1], [True], "0"):
        with pytest.raises(InputError, match="seeds must be a list of non-negative integers"):
            linear_probe(X[:60], y[:60], X[60:], y[60:], seeds=bad, **kw)


@pytest.mark.parametrize("flag", ["normalize", "shared_search"])
def test_probe_flags_are_true_or_false_not_truthy(flag):
    # a config's "no" is a truthy string: it must be refused, not switch the option on
    X, y = _blobs(np.random.default_rng(2), n=60, d=6, c=3)
    with pytest.raises(InputError, match=f"{flag} must be True or False, got 'no'"):
        linear_probe(X, y, X, y, lrs=0.1, wds=0.0, epochs=1, device="cpu", **{flag: "no"})


def test_a_final_training_that_diverges_is_refused_by_name():
    # lr x wd = 1e30: the search's single step (31 fit rows, batch 32) leaves finite weights, the
    # final training's second step (all 40 rows) overflows them; no accuracy of inf weights
    X, y = _blobs(np.random.default_rng(3), n=40, d=6, c=3)
    with pytest.raises(InputError, match=r"final probe training diverged .*\(1\.0, 1e\+30\)"):
        linear_probe(X, y, X, y, lrs=1.0, wds=1e30, seeds=0, epochs=1, batch_size=32, device="cpu")
    # at lr x wd = 4.5e19 only the weights overflow (their largest initial value is larger than
    # the bias's): non-finite weights alone are refused too
    W, b = train_sweep(X, y, [1.0], [4.5e19], epochs=1, batch_size=32, device="cpu")
    assert not torch.isfinite(W).all() and torch.isfinite(b).all()
    with pytest.raises(InputError, match=r"final probe training diverged .*\(1\.0, 4\.5e\+19\)"):
        linear_probe(X, y, X, y, lrs=1.0, wds=4.5e19, seeds=0, epochs=1, batch_size=32)


# -- mutation audit (probe.py, fourth round: options, inputs and results of linear_probe) ----------
def test_input_errors_name_the_argument_at_fault():
    # each array and grid is checked under its own name: the message says which one to fix
    X, y = _blobs(np.random.default_rng(2), n=60, d=6, c=3)
    call = {"X_train": X, "y_train": y, "X_test": X, "y_test": y, "lrs": 0.1, "wds": 0.0}
    bad = X.copy()
    bad[4, 1] = np.inf
    for option, value, match in [
        ("X_train", bad, r"^X_train contains NaN or inf"),
        ("X_test", bad, r"^X_test contains NaN or inf"),
        ("y_train", y[:10], r"^y_train must be 1-D with one label per feature row \(60\)"),
        ("y_test", y[:10], r"^y_test must be 1-D with one label per feature row \(60\)"),
        ("lrs", "0.1", r"^lrs must be a number or a 1-D sequence of numbers"),
        ("lrs", ["fast"], r"^lrs must be a number or a 1-D sequence of numbers"),
        ("wds", [[0.1]], r"^wds must be a number or a 1-D sequence of numbers"),
    ]:
        with pytest.raises(InputError, match=match):
            linear_probe(**{**call, option: value}, epochs=1, device="cpu")


def test_features_must_be_a_non_empty_matrix_and_one_test_row_is_enough():
    X, y = _blobs(np.random.default_rng(4), n=60, d=6, c=3)
    for bad in (X[:, 0], X[None], X[:0], X[:, :0]):
        with pytest.raises(InputError, match=r"X_test must be a non-empty 2-D array .* got shape"):
            linear_probe(X, y, bad, y[: len(bad)], lrs=0.1, wds=0.0, epochs=1, device="cpu")
    one = linear_probe(X, y, X[:1], y[:1], lrs=0.1, wds=0.0, seeds=0, epochs=1, device="cpu")
    assert one.accuracy.shape == (1,) and one.accuracy[0] in (0.0, 1.0)
    with pytest.raises(InputError, match="X_train has 1 row: a probe needs"):  # not "constant"
        linear_probe(X[:1], y[:1], X, y, lrs=0.1, wds=0.0, epochs=1, device="cpu")


def test_probe_options_are_refused_at_their_bounds_and_accepted_on_them():
    # a learning rate of 0 trains nothing, a negative weight decay grows the weights, 0 epochs or
    # a batch of 0 rows train nothing: each is refused naming it; lr > 0, wd = 0 and 1 are fine
    X, y = _blobs(np.random.default_rng(6), n=60, d=6, c=3)
    kw = dict(lrs=0.1, wds=0.0, seeds=0, epochs=1, batch_size=32, device="cpu")
    for option, value, match in [
        ("lrs", (0.1, 0.0), "lrs must be non-empty and positive"),
        ("wds", (1e-3, -1e-3), "wds non-empty and >= 0"),
        ("lrs", (), "lrs and wds must be non-empty and finite"),
        ("wds", [], "lrs and wds must be non-empty and finite"),
        ("wds", (1e-3, np.inf), "lrs and wds must be non-empty and finite"),
        ("epochs", 0, r"epochs must be an integer >= 1; got 0"),
        ("batch_size", 0, r"batch_size must be an integer >= 1; got 0"),
        ("seeds", [], "seeds must be a non-empty list"),
    ]:
        with pytest.raises(InputError, match=match):
            linear_probe(X, y, X, y, **{**kw, option: value})
    res = linear_probe(X, y, X, y, **{**kw, "lrs": 1e-4, "epochs": 1, "batch_size": 1})
    assert res.lr.tolist() == [1e-4] and res.wd.tolist() == [0.0]
    once = linear_probe(X, y, X, y, **{**kw, "seeds": iter([3, 1])})  # any iterable of seeds
    assert once.seeds.tolist() == [3, 1]


def test_train_sweep_and_train_reference_defaults_are_one_probe_of_the_study():
    # both default to seed 0, 20 epochs of batches of 1024 (as linear_probe): the same probe
    X, y = _blobs(np.random.default_rng(7), n=1030, d=6, c=3)  # two batches per epoch
    W, b = train_sweep(X, y, [0.01], [1e-3], device="cpu")
    W1, b1 = train_reference(X, y, 0.01, 1e-3, device="cpu")
    W2, b2 = train_reference(X, y, 0.01, 1e-3, seed=0, epochs=20, batch_size=1024, device="cpu")
    assert torch.equal(W1, W2) and torch.equal(b1, b2)
    torch.testing.assert_close(W[0], W2, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(b[0], b2, atol=1e-5, rtol=1e-4)
    # a class absent from these labels still gets its column when n_classes says so; labels of
    # any integer type are taken (here int32, which torch's cross-entropy refuses as targets)
    X, y = X[:60], y[:60].astype(np.int32)
    W, b = train_sweep(X, y, [0.01, 0.1], [1e-3, 0.0], n_classes=5, epochs=1, device="cpu")
    W1, b1 = train_reference(X, y, 0.01, 1e-3, n_classes=5, epochs=1, device="cpu")
    assert W.shape == (2, 6, 5) and b.shape == (2, 5) and W1.shape == (6, 5) and b1.shape == (5,)
    with pytest.raises(InputError, match="lr and wd need one value per setting; got 2 and 3"):
        train_sweep(X, y, [0.01, 0.1], [0.0, 1e-3, 1e-2], epochs=1, device="cpu")


def test_probe_result_as_xarray_keeps_every_field_by_seed():
    res = ProbeResult(
        seeds=np.array([5, 2]),
        accuracy=np.array([0.5, 0.75]),
        balanced_accuracy=np.array([0.25, 0.625]),
        lr=np.array([0.1, 0.01]),
        wd=np.array([1e-4, 1e-2]),
        lrs=np.array([0.1, 0.01]),
        wds=np.array([1e-4, 1e-3, 1e-2]),
        val_accuracy=np.arange(12.0).reshape(2, 2, 3),
        classes=np.array(["a", "b"]),
    )
    assert res.mean_accuracy == 0.625 and res.mean_balanced_accuracy == 0.4375
    ds = res.to_xarray()
    assert ds["seed"].values.tolist() == [5, 2] and ds["val_accuracy"].dims == ("seed", "lr", "wd")
    for k, seed in enumerate([5, 2]):
        one = ds.sel(seed=seed)
        assert float(one["accuracy"]) == res.accuracy[k]
        assert float(one["balanced_accuracy"]) == res.balanced_accuracy[k]
        assert (float(one["chosen_lr"]), float(one["chosen_wd"])) == (res.lr[k], res.wd[k])
        assert float(one["val_accuracy"].sel(lr=0.01, wd=1e-3)) == res.val_accuracy[k, 1, 1]
