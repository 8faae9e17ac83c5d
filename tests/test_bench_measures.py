"""``repsim bench measures``: the engine against the registry's per-pair path, in one process."""

from __future__ import annotations

import json

import numpy as np
import pytest

from repsim.bench import measures as bench
from repsim.measures import MEASURES

NAMES = ["cka_linear", "cka_rbf_0.4", "rsa_spearman", "mutual_knn_5", "procrustes"]


def test_per_pair_path_is_the_registered_function():
    feats = bench.make_features(2, 30, 6)
    X, Y = feats.values()
    for name in NAMES:
        assert bench.naive_pair(X, Y, name) == MEASURES[name](X, Y)


def test_bench_agrees_with_the_per_pair_path_and_extrapolates(tmp_path, capsys):
    res = bench.run(models=3, n=40, dim=8, measures=NAMES, device="cpu", naive_pairs=2)
    assert res["naive_pairs_total"] == 3 and res["naive_pairs_timed"] == 2
    assert res["max_abs_diff_vs_naive"] < 1e-10
    assert res["naive_s_extrapolated"] == pytest.approx(res["naive_timed_s"] * 3 / 2)
    assert res["speedup"] == pytest.approx(res["naive_s_extrapolated"] / res["engine_s"])
    out = tmp_path / "r.json"
    argv = ["--models", "3", "--n", "30", "--dim", "5", "--device", "cpu", "--json", str(out)]
    assert bench.main([*argv, "--measures", "cka_linear", "--naive-pairs", "1"]) == 0
    assert "per-pair path" in capsys.readouterr().out
    assert np.isfinite(json.loads(out.read_text())["max_abs_diff_vs_naive"])
