"""``repsim bench precision`` on a small case: the float32 and bfloat16 CKA matrices differ, a little."""

from __future__ import annotations

import numpy as np
import pytest

from repsim.bench import precision as P


@pytest.mark.slow
def test_precision_bench_measures_a_small_nonzero_difference():
    specs = [
        s
        for s in P.minizoo_specs()
        if s.id in ("cnn-supervised-s0", "mlp-simclr-s0", "mlp-clip-s0")
    ]
    res = P.run(
        {"mini-zoo": specs}, {"mini-zoo": 16}, datasets=("digits", "textures"), device="cpu"
    )
    r = res["groups"]["mini-zoo"]
    assert r["models"] == [s.id for s in specs] and r["n_images"] == 16
    for measure in P.MEASURES:
        assert r[measure]["n_pairs"] == 2 * 3  # 3 model pairs on each of 2 datasets
        assert 0 < r[measure]["median"] <= r[measure]["max"] < 0.05
    assert all(0.99 < v < 1 for v in r["self_cka_min"].values())
    assert "| mini-zoo (3) | 16 | 6 |" in P.table(res)


def test_embedded_images_are_a_fixed_draw_of_the_train_split():
    a, b = P.embedded_images("digits", 10), P.embedded_images("digits", 10)
    assert a.shape == (10, 32, 32, 3) and a.dtype == np.uint8 and np.array_equal(a, b)
    with np.load(P.DATA / "embedded" / "digits.npz") as z:
        train = z["images"][z["split"] == "train"]
    assert all(any(np.array_equal(x, t) for t in train) for x in a)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--minizoo-images", "0", "--timm"], "nothing to measure"),
        (
            ["--minizoo-images", "0", "--timm", "resnet50", "resnet50"],
            "has 1 model; name at least 2",
        ),
        # fewer images than CKA is defined on failed after the features were extracted, with a
        # fix ("use more stimuli") that named no option
        (["--minizoo-images", "2"], "--minizoo-images: must be 0 (skip) or at least 4, got 2"),
        (["--timm-images", "3"], "--timm-images: must be at least 4, got 3"),
    ],
)
def test_a_benchmark_without_model_pairs_is_refused_before_any_work(argv, message, capsys):
    """It printed an empty table, or failed on an empty array with a traceback."""
    from repsim.bench.precision import main

    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2 and message in capsys.readouterr().err
