"""Extraction: L2-normalised rows keyed by id, resume after a crash, alignment across models."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from repsim.extract import extract_features
from repsim.store import FeatureStore
from repsim.zoo import ModelSpec, load_model

SMALL = {"resize": 40, "crop": 32}


def _spec(mid: str = "rn18", **kw) -> ModelSpec:
    base = {
        "id": mid,
        "loader": "torchvision",
        "identifier": "resnet18",
        "layer": "avgpool",
        "token": "pooled",
        "preprocess": SMALL,
    }
    return ModelSpec(**{**base, **kw})


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, size=(22, 48, 40, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def ids() -> list[str]:
    return [f"stim-{i:03d}" for i in range(22)]


def _loaded(spec: ModelSpec, seed: int = 0):
    torch.manual_seed(seed)
    return load_model(spec, pretrained=False)


def test_extract_normalised_and_keyed(tmp_path: Path, images: np.ndarray, ids: list[str]) -> None:
    spec = _spec()
    store = FeatureStore(tmp_path / "f.zarr")
    info = extract_features(
        spec,
        images,
        ids,
        store,
        "toy",
        loaded=_loaded(spec),
        batch_size=4,
        chunk_batches=2,
        keep_raw=True,
        progress=False,
    )
    assert info["status"] == "done" and info["computed"] == 22
    got_ids, feats = store.read("toy", "rn18")
    assert list(got_ids) == ids and feats.shape == (22, 512)
    np.testing.assert_allclose(np.linalg.norm(feats, axis=1), 1.0, rtol=1e-5)
    _, raw = store.read("toy", "rn18", raw=True)
    np.testing.assert_allclose(
        raw / np.linalg.norm(raw, axis=1, keepdims=True), feats, rtol=1e-5, atol=1e-6
    )
    attrs = store.attrs("toy", "rn18")
    assert (
        attrs["embed_dim"] == 512
        and attrs["pretrained_cfg"]["resolved"] == "resnet18:IMAGENET1K_V1"
    )
    assert "torch" in attrs["versions"] and attrs["device"].startswith("cpu")
    again = extract_features(spec, images, ids, store, "toy", loaded=_loaded(spec), progress=False)
    assert again["status"] == "skipped"


def test_resume_after_crash_gives_identical_features(
    tmp_path: Path, images: np.ndarray, ids: list[str]
) -> None:
    spec = _spec()
    loaded = _loaded(spec)
    calls = {"n": 0}

    def crashing(idx: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 4:  # dies inside the second chunk
            raise KeyboardInterrupt("simulated kill")
        return images[idx]

    store = FeatureStore(tmp_path / "a.zarr")
    with pytest.raises(KeyboardInterrupt):
        extract_features(
            spec,
            crashing,
            ids,
            store,
            "toy",
            loaded=loaded,
            batch_size=4,
            chunk_batches=2,
            progress=False,
        )
    assert not store.has("toy", "rn18")
    assert store.writer("toy", "rn18", ids).pending_chunks() == [1, 2]
    resumed = extract_features(
        spec,
        lambda idx: images[idx],
        ids,
        store,
        "toy",
        loaded=loaded,
        batch_size=4,
        chunk_batches=2,
        progress=False,
    )
    assert resumed["computed"] == 22 - 8
    fresh = FeatureStore(tmp_path / "b.zarr")
    extract_features(
        spec,
        images,
        ids,
        fresh,
        "toy",
        loaded=loaded,
        batch_size=4,
        chunk_batches=2,
        progress=False,
    )
    np.testing.assert_array_equal(store.read("toy", "rn18")[1], fresh.read("toy", "rn18")[1])


def test_alignment_across_models_and_concurrent_writes(
    tmp_path: Path, images: np.ndarray, ids: list[str]
) -> None:
    store = FeatureStore(tmp_path / "f.zarr")
    specs = [_spec("m1"), _spec("m2", layer="layer3")]
    loaded = [_loaded(s, seed=i) for i, s in enumerate(specs)]
    threads = [
        threading.Thread(
            target=extract_features,
            args=(s, images, ids, store, "toy"),
            kwargs={"loaded": m, "batch_size": 8, "chunk_batches": 1, "progress": False},
        )
        for s, m in zip(specs, loaded)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    order = list(np.random.default_rng(1).permutation(ids))
    rows = {s.id: store.read("toy", s.id, ids=order) for s in specs}
    assert list(rows["m1"][0]) == list(rows["m2"][0]) == order
    assert rows["m2"][1].shape == (22, 256)
    # a row is the feature of its own image, whatever the order asked for
    single = FeatureStore(tmp_path / "one.zarr")
    k = ids.index(order[0])
    extract_features(
        specs[0], images[k : k + 1], [order[0]], single, "toy", loaded=loaded[0], progress=False
    )
    np.testing.assert_allclose(
        single.read("toy", "m1")[1][0], rows["m1"][1][0], rtol=1e-4, atol=1e-5
    )


# ---------------------------------------------------------------- extract.precision


def test_precision_is_validated_with_the_choices(
    tmp_path: Path, images: np.ndarray, ids: list[str]
) -> None:
    from repsim.errors import ConfigError, RepsimError
    from repsim.extract import PRECISIONS, check_precision

    assert set(PRECISIONS) == {"float32", "bfloat16", "float16"}
    assert [check_precision(p) for p in PRECISIONS] == list(PRECISIONS)
    for bad in ("fp16", "bf16", "float64", None, 32):
        with pytest.raises(ConfigError, match="float32, bfloat16, float16") as err:
            check_precision(bad)
        assert isinstance(err.value, RepsimError)
    spec = _spec()
    with pytest.raises(ConfigError, match="extract.precision 'half'"):
        extract_features(
            spec,
            images,
            ids,
            FeatureStore(tmp_path / "f.zarr"),
            "toy",
            loaded=_loaded(spec),
            precision="half",
            progress=False,
        )


def test_config_precision_checked_before_work(tmp_path: Path) -> None:
    from repsim.errors import ConfigError
    from repsim.plan import load_plan

    tiny = Path(__file__).resolve().parents[1] / "data" / "configs" / "tiny.yaml"
    assert load_plan(tiny).extract["precision"] == "float32"  # the default: the study's
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(f"include: [{tiny}]\nname: bad\nextract: {{precision: bf16}}\n")
    with pytest.raises(
        ConfigError, match="bad.yaml.*'bf16' is not one of float32, bfloat16, float16"
    ):
        load_plan(cfg)
    paper = Path(__file__).resolve().parents[1] / "data" / "configs" / "paper.yaml"
    import yaml

    assert yaml.safe_load(paper.read_text())["extract"]["precision"] == "float32"


def _plain_forward(spec: ModelSpec, images: np.ndarray, batch_size: int) -> np.ndarray:
    """Features computed the way extraction did before extract.precision existed: a float32
    forward with no autocast context, then L2 normalisation (a path independent of _Runner)."""
    from repsim.preprocess import preprocess_batch
    from repsim.zoo.taps import FeatureExtractor

    loaded = _loaded(spec)
    loaded.module = loaded.module.eval()
    extractor = FeatureExtractor(loaded, spec)
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            raw = extractor(
                preprocess_batch(images[i : i + batch_size], loaded.preprocess, torch.device("cpu"))
            ).float()
            out.append((raw / raw.norm(dim=1, keepdim=True).clamp_min(1e-12)).numpy())
    return np.concatenate(out)


def test_float32_is_bit_identical_to_a_plain_forward(
    tmp_path: Path, images: np.ndarray, ids: list[str]
) -> None:
    spec = _spec()
    store = FeatureStore(tmp_path / "f.zarr")
    extract_features(
        spec,
        images,
        ids,
        store,
        "toy",
        loaded=_loaded(spec),
        batch_size=8,
        device="cpu",
        precision="float32",
        progress=False,
    )
    np.testing.assert_array_equal(store.read("toy", "rn18")[1], _plain_forward(spec, images, 8))
    assert store.attrs("toy", "rn18")["precision"] == "float32"


def test_bfloat16_on_cpu_is_close_but_not_identical(
    tmp_path: Path, images: np.ndarray, ids: list[str]
) -> None:
    spec = _spec()
    fp32, bf16 = FeatureStore(tmp_path / "a.zarr"), FeatureStore(tmp_path / "b.zarr")
    for store, precision in ((fp32, "float32"), (bf16, "bfloat16")):
        extract_features(
            spec,
            images,
            ids,
            store,
            "toy",
            loaded=_loaded(spec),
            batch_size=8,
            device="cpu",
            precision=precision,
            progress=False,
        )
    a, b = fp32.read("toy", "rn18")[1], bf16.read("toy", "rn18")[1]
    assert not np.array_equal(a, b)  # autocast did change the arithmetic
    cos = np.sum(a * b, axis=1)  # rows are unit norm
    assert cos.min() > 0.99, cos.min()  # bfloat16 keeps 8 bits of mantissa: close, not equal
    assert bf16.attrs("toy", "rn18")["precision"] == "bfloat16 (autocast)"
