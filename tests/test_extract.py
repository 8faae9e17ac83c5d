"""Extraction: L2-normalised rows keyed by id, resume after a crash, alignment across models."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from repsim.errors import StoreError
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
    assert info["status"] == "done" and info["computed"] == info["decoded"] == 22
    assert info["img_per_s"] == 22 / info["seconds"]  # over the call's wall time
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
    # where the features come from: the spec, and the layer and token that were tapped
    assert (attrs["spec"]["id"], attrs["spec"]["identifier"]) == ("rn18", "resnet18")
    assert (attrs["layer"], attrs["token"]) == ("avgpool", "pooled")
    again = extract_features(spec, images, ids, store, "toy", loaded=_loaded(spec), progress=False)
    assert again == {"model": "rn18", "dataset": "toy", "status": "skipped", "n": 22, "decoded": 0}


def test_a_batch_larger_than_the_dataset_is_the_dataset(
    tmp_path: Path, images: np.ndarray, ids: list[str]
) -> None:
    """The store allocates a chunk whole: batch_size x chunk_batches rows sized beyond the dataset
    asked for terabytes (a MemoryError) where the dataset's 22 rows are all there is."""
    spec = _spec()
    loaded = _loaded(spec)
    kw = {"loaded": loaded, "progress": False}
    huge = FeatureStore(tmp_path / "huge.zarr")
    info = extract_features(spec, images, ids, huge, "toy", batch_size=100_000_000, **kw)
    assert info["status"] == "done" and info["computed"] == len(ids)
    attrs = huge.attrs("toy", "rn18")
    assert attrs["chunk_rows"] == attrs["batch_size"] == len(ids) and attrs["n_chunks"] == 1
    whole = FeatureStore(tmp_path / "whole.zarr")
    extract_features(spec, images, ids, whole, "toy", batch_size=len(ids), chunk_batches=1, **kw)
    np.testing.assert_array_equal(huge.read("toy", "rn18")[1], whole.read("toy", "rn18")[1])


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
    from repsim.device import EXTRACT_PRECISIONS as PRECISIONS
    from repsim.errors import ConfigError, RepsimError
    from repsim.extract import check_precision

    assert set(PRECISIONS) == {"float32", "bfloat16", "float16"}
    assert [check_precision(p) for p in PRECISIONS] == list(PRECISIONS)
    for bad in ("fp16", "bf16", "float64", None, 32, ["float32"]):  # a YAML list: no TypeError
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


def _plain_forward(
    spec: ModelSpec, images: np.ndarray, batch_size: int, channels_last: bool = True
) -> np.ndarray:
    """Features computed the way extraction did before extract.precision existed: a float32
    forward with no autocast context, then L2 normalisation (a path independent of _Runner), in
    channels_last (as extraction runs a CNN on a CPU) or in the default layout."""
    from repsim.preprocess import preprocess_batch
    from repsim.zoo.taps import FeatureExtractor

    loaded = _loaded(spec)
    loaded.module = loaded.module.eval()
    layout = torch.channels_last if channels_last else torch.contiguous_format
    loaded.module = loaded.module.to(memory_format=layout)
    extractor = FeatureExtractor(loaded, spec)
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = preprocess_batch(images[i : i + batch_size], loaded.preprocess, torch.device("cpu"))
            raw = extractor(x.contiguous(memory_format=layout)).float()
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
    # channels_last changes the order of the sums only: equal to float32 rounding, not bit for bit
    nchw = _plain_forward(spec, images, 8, channels_last=False)
    np.testing.assert_allclose(store.read("toy", "rn18")[1], nchw, rtol=0, atol=1e-5)


def test_without_a_model_given_the_spec_is_built_with_load_model(
    tmp_path: Path, images: np.ndarray, ids: list[str]
) -> None:
    """No ``loaded``: the model is ``load_model(spec, pretrained=...)`` on the device; random
    init draws under load_model's fixed seed, so the features are those of the same network
    built by hand, bit for bit."""
    spec = _spec()
    stores = [FeatureStore(tmp_path / "a.zarr"), FeatureStore(tmp_path / "b.zarr")]
    kw = {"batch_size": 8, "device": "cpu", "progress": False}
    extract_features(spec, images, ids, stores[0], "toy", pretrained=False, **kw)
    extract_features(spec, images, ids, stores[1], "toy", loaded=_loaded(spec), **kw)
    np.testing.assert_array_equal(*(s.read("toy", "rn18")[1] for s in stores))


def test_channels_last_only_for_convolutional_networks_on_a_cpu() -> None:
    from repsim.extract import use_channels_last
    from repsim.minizoo.archs import build_arch

    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert use_channels_last(build_arch("cnn"), cpu)
    assert use_channels_last(torchvision.models.resnet18(), cpu)
    assert not use_channels_last(build_arch("vit"), cpu)  # one Conv2d: the patch embedding
    two = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.Conv2d(4, 4, 3))
    assert use_channels_last(two, cpu)  # two are a convolutional network
    assert not use_channels_last(build_arch("mlp"), cpu)
    assert use_channels_last(build_arch("mlp"), cuda)  # the GPU path: every model


def test_bfloat16_and_float16_on_cpu_are_close_but_not_identical(
    tmp_path: Path, images: np.ndarray, ids: list[str]
) -> None:
    """Each precision is its own autocast dtype: bfloat16 and float16 change the arithmetic
    (neither is float32, nor the other; CPU autocast left to its default would run float16 in
    bfloat16), and stay close to float32."""
    spec = _spec()
    stores = {p: FeatureStore(tmp_path / f"{p}.zarr") for p in ("float32", "bfloat16", "float16")}
    for precision, store in stores.items():
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
    a, b, h = (stores[p].read("toy", "rn18")[1] for p in ("float32", "bfloat16", "float16"))
    assert not np.array_equal(a, b)  # autocast did change the arithmetic
    assert not np.array_equal(a, h) and not np.array_equal(b, h)
    for low in (b, h):
        cos = np.sum(a * low, axis=1)  # rows are unit norm
        assert cos.min() > 0.99, cos.min()  # 8 or 11 bits of mantissa: close, not equal
    for precision in ("bfloat16", "float16"):
        assert stores[precision].attrs("toy", "rn18")["precision"] == f"{precision} (autocast)"


# ---------------------------------------------------------------- chunk-major extraction


def _counting(images: list[np.ndarray]) -> tuple[object, list[int]]:
    """A ``load_images(indices)`` over images of two sizes that counts every image it decodes."""
    count = [0]

    def load(idx: np.ndarray) -> object:
        count[0] += len(idx)
        out = [images[i] for i in idx]
        return np.stack(out) if all(im.shape == out[0].shape for im in out) else out

    return load, count


@pytest.fixture(scope="module")
def mixed_images() -> list[np.ndarray]:
    """22 images, 15 of 48x40 and 7 of 36x52 (so some batches are lists, as in an image folder)."""
    rng = np.random.default_rng(3)
    return [
        rng.integers(0, 256, size=(48, 40, 3) if i % 3 else (36, 52, 3), dtype=np.uint8)
        for i in range(22)
    ]


def _zoo() -> list[ModelSpec]:
    """Three small random-init models with their own preprocessing (size, crop, interpolation)."""
    return [
        _spec("rn18"),
        _spec(
            "rn18-l3",
            layer="layer3",
            preprocess={"resize": 36, "crop": 36, "interpolation": "bicubic"},
        ),
        ModelSpec(
            "mnv3",
            "torchvision",
            "mobilenet_v3_small",
            layer="avgpool",
            token="pooled",
            preprocess={"resize": 32, "crop": 32, "resize_mode": "squash"},
        ),
    ]


def test_chunk_major_equals_per_model_bit_for_bit(
    tmp_path: Path, mixed_images: list[np.ndarray], ids: list[str]
) -> None:
    from repsim.extract import extract_models

    specs = _zoo()
    per_model, chunk_major = FeatureStore(tmp_path / "a.zarr"), FeatureStore(tmp_path / "b.zarr")
    load, count = _counting(mixed_images)
    for i, spec in enumerate(specs):
        extract_features(
            spec,
            load,
            ids,
            per_model,
            "toy",
            loaded=_loaded(spec, seed=i),
            batch_size=4,
            chunk_batches=2,
            progress=False,
        )
    assert count[0] == len(specs) * len(ids)  # the per-model path decodes every image per model
    load, count = _counting(mixed_images)
    built = {s.id: _loaded(s, seed=i) for i, s in enumerate(specs)}
    out = extract_models(
        specs,
        load,
        ids,
        chunk_major,
        "toy",
        load=lambda s: built[s.id],
        batch_size=4,
        chunk_batches=2,
        progress=False,
        workers=3,
    )
    assert count[0] == out["decoded"] == len(ids)  # chunk-major: each image once
    assert out["workers"] == 3  # the decode threads asked for
    for spec in specs:
        assert out["models"][spec.id]["computed"] == len(ids)
        a_ids, a = per_model.read("toy", spec.id)
        b_ids, b = chunk_major.read("toy", spec.id)
        assert list(a_ids) == list(b_ids) == ids
        assert np.array_equal(a, b), spec.id
    assert (
        chunk_major.attrs("toy", "mnv3")["pretrained_cfg"]["preprocess"]["resize_mode"] == "squash"
    )


def test_chunk_major_resumes_after_a_kill_and_never_reads_a_half_written_chunk(
    tmp_path: Path, mixed_images: list[np.ndarray], ids: list[str], monkeypatch
) -> None:
    from repsim.extract import extract_models
    from repsim.store import FeatureWriter

    specs = _zoo()
    built = {s.id: _loaded(s, seed=i) for i, s in enumerate(specs)}
    kw = {"load": lambda s: built[s.id], "batch_size": 4, "chunk_batches": 2, "progress": False}
    clean = FeatureStore(tmp_path / "clean.zarr")
    extract_models(specs, _counting(mixed_images)[0], ids, clean, "toy", **kw)

    store = FeatureStore(tmp_path / "killed.zarr")
    original = FeatureWriter.write_chunk

    def killed_mid_write(self, chunk, features, raw=None):
        if chunk == 1 and self.group.attrs["model"] == "rn18-l3":
            # the rows land, the process dies before the chunk's done flag (the commit point)
            self.group["features"][self.rows(chunk)] = features
            raise KeyboardInterrupt("simulated kill")
        return original(self, chunk, features, raw)

    monkeypatch.setattr(FeatureWriter, "write_chunk", killed_mid_write)
    with pytest.raises(KeyboardInterrupt):
        extract_models(specs, _counting(mixed_images)[0], ids, store, "toy", **kw)
    monkeypatch.setattr(FeatureWriter, "write_chunk", original)
    pending = {s.id: store.writer("toy", s.id, ids).pending_chunks() for s in specs}
    assert pending == {"rn18": [2], "rn18-l3": [1, 2], "mnv3": [1, 2]}
    for spec in specs:  # not done, so never read as features
        with pytest.raises(StoreError, match="incomplete"):
            store.read("toy", spec.id)
    load, count = _counting(mixed_images)
    out = extract_models(specs, load, ids, store, "toy", **kw)
    assert count[0] == 8 + 6  # chunks 1 and 2 only, each image once
    assert {m: r["computed"] for m, r in out["models"].items()} == {
        "rn18": 6,
        "rn18-l3": 14,
        "mnv3": 14,
    }
    for spec in specs:
        assert np.array_equal(store.read("toy", spec.id)[1], clean.read("toy", spec.id)[1])


def test_a_failing_model_leaves_the_pass_and_the_others_finish(
    tmp_path: Path, mixed_images: list[np.ndarray], ids: list[str]
) -> None:
    from repsim.extract import extract_models

    specs = _zoo()
    built = {s.id: _loaded(s, seed=i) for i, s in enumerate(specs)}

    def load(spec: ModelSpec):
        if spec.id == "rn18-l3":
            raise RuntimeError("simulated broken model")
        return built[spec.id]

    store = FeatureStore(tmp_path / "f.zarr")
    loader, count = _counting(mixed_images)
    out = extract_models(
        specs,
        loader,
        ids,
        store,
        "toy",
        load=load,
        batch_size=4,
        chunk_batches=2,
        progress=False,
        errors="collect",
    )
    assert isinstance(out["models"]["rn18-l3"], RuntimeError)
    assert store.has("toy", "rn18") and store.has("toy", "mnv3") and not store.has("toy", "rn18-l3")
    assert count[0] == len(ids)
    with pytest.raises(RuntimeError, match="simulated broken model"):
        extract_models(specs, loader, ids, store, "toy", load=load, progress=False)


def _recording_loader(specs: list[ModelSpec]):
    """Random-init models for ``specs`` (seeded by position), the list of ids in the order they are
    built, and the ``load`` that builds (returns) them and records it."""
    built = {s.id: _loaded(s, seed=i) for i, s in enumerate(specs)}
    builds: list[str] = []

    def load(spec: ModelSpec):
        builds.append(spec.id)
        return built[spec.id]

    return built, builds, load


def test_models_past_the_memory_budget_are_built_per_chunk_with_the_same_features(
    tmp_path: Path, mixed_images: list[np.ndarray], ids: list[str]
) -> None:
    from repsim.extract import extract_models, module_bytes

    specs = _zoo()
    built, builds, load = _recording_loader(specs)
    budget = module_bytes(built["rn18"].module)  # room for the first model only
    kw = {"batch_size": 4, "chunk_batches": 2, "progress": False}
    swapped, resident = FeatureStore(tmp_path / "s.zarr"), FeatureStore(tmp_path / "r.zarr")
    out = extract_models(
        specs,
        _counting(mixed_images)[0],
        ids,
        swapped,
        "toy",
        load=load,
        memory_budget=budget,
        **kw,
    )
    # built once before the work (checked), then the two that do not fit once per chunk (3 chunks)
    assert builds.count("rn18") == 1 and builds.count("rn18-l3") == builds.count("mnv3") == 4
    assert out["decoded"] == len(ids)
    extract_models(
        specs, _counting(mixed_images)[0], ids, resident, "toy", load=lambda s: built[s.id], **kw
    )
    for spec in specs:
        assert np.array_equal(swapped.read("toy", spec.id)[1], resident.read("toy", spec.id)[1])


def test_bench_decode_once_counts_one_decode_per_image() -> None:
    """``repsim bench extract``'s comparison: per model decodes models x images, chunk-major
    once per image, and both write the same features (no timing is asserted)."""
    from repsim.bench.extract import decode_once, format_decode_once

    res = decode_once(
        ["shufflenet_v2_x0_5", "squeezenet1_1"],
        n_images=6,
        batch_size=4,
        image_size=48,
        device="cpu",
    )
    assert res["per_model"]["decoded"] == 2 * 6 and res["chunk_major"]["decoded"] == 6
    assert res["features_equal"] is True
    assert "decodes per image: 1 vs 2" in format_decode_once(res)


def test_bench_decode_once_reports_the_chunking_extraction_applies() -> None:
    """A batch or chunk larger than the dataset is the dataset in extraction, so in the report
    too (it said batch x chunk_batches, rows the store never allocates)."""
    from repsim.bench.extract import decode_once

    res = decode_once(
        ["squeezenet1_1"], n_images=6, batch_size=4, image_size=48, device="cpu", repeats=1
    )
    assert (res["batch_size"], res["chunk_rows"]) == (4, 6)
    res = decode_once(
        ["squeezenet1_1"], n_images=3, batch_size=4, image_size=48, device="cpu", repeats=1
    )
    assert (res["batch_size"], res["chunk_rows"]) == (3, 3)


def test_a_model_giving_nan_is_named_and_nothing_is_written(
    tmp_path: Path, images: np.ndarray, ids: list[str]
) -> None:
    """NaN weights gave NaN features, which the store (NaN marks a missing row) sealed and then
    reported as "missing chunk files", again on every rerun."""

    spec = _spec()
    loaded = _loaded(spec)
    with torch.no_grad():
        next(loaded.module.parameters()).fill_(float("nan"))
    writer = _refused_for_nan(
        tmp_path,
        spec,
        loaded,
        images,
        ids,
        r"model 'rn18' gives NaN or infinite features for 8 of 8 "
        r"images of dataset 'toy' \(first 'stim-000'\).*weights",
    )
    assert writer is None or writer.pending_chunks() == list(range(writer.n_chunks))


def _refused_for_nan(tmp_path, spec, loaded, images, ids, match, **kw):
    """Extract in 8-row chunks (batches of 4), expecting the ModelError ``match``; the writer of
    what was stored (None when nothing was)."""
    from repsim.errors import ModelError

    store = FeatureStore(tmp_path / "f.zarr")
    with pytest.raises(ModelError, match=match) as err:
        extract_features(
            spec, images, ids, store, "toy", loaded=loaded, batch_size=4, chunk_batches=2,
            progress=False, **kw,
        )  # fmt: skip
    if kw.get("precision", "float32") == "float32":
        assert "overflow" not in str(err.value)  # float32 is what to try, not what failed
    return store.writer("toy", "rn18", ids)


@pytest.mark.parametrize("precision", ["bfloat16", "float16"])
def test_nan_features_under_autocast_suggest_an_overflow_and_float32(
    tmp_path: Path, images: np.ndarray, ids: list[str], precision: str
) -> None:
    spec = _spec()
    loaded = _loaded(spec)
    with torch.no_grad():
        next(loaded.module.parameters()).fill_(float("nan"))
    _refused_for_nan(
        tmp_path, spec, loaded, images[:8], ids[:8],
        rf"gives NaN .*, an overflow in {precision} \(try float32\); check the weights",
        precision=precision,
    )  # fmt: skip


# ---------------------------------------------------------------- rows against a per-image forward


def _one_by_one(spec: ModelSpec, loaded, images) -> tuple[np.ndarray, np.ndarray]:
    """The obviously-correct features: each image by itself, NCHW, normalised in float64."""
    from repsim.preprocess import preprocess_batch
    from repsim.zoo.taps import FeatureExtractor

    extractor = FeatureExtractor(loaded, spec)
    raw = []
    with torch.no_grad():
        for im in images:
            x = preprocess_batch(np.asarray(im)[None], loaded.preprocess, torch.device("cpu"))
            raw.append(extractor(x).double().numpy()[0])
    raw = np.stack(raw)
    return raw / np.linalg.norm(raw, axis=1, keepdims=True), raw


@pytest.mark.parametrize("batch_size, chunk_batches", [(3, 2), (5, 1), (4, 3)])
def test_every_row_is_its_own_image_across_batches_that_do_not_divide_n(
    tmp_path: Path, images: np.ndarray, ids: list[str], batch_size: int, chunk_batches: int
) -> None:
    """Batches (3, 5, 4) and chunks (6, 5, 12 rows) that do not divide the 22 rows: the last
    batch of a chunk and the last chunk are short, and every row still holds the feature of the
    image with its id, float32 in the store (to float32 rounding of a batch of one)."""
    spec = _spec()
    loaded = _loaded(spec)
    ref, ref_raw = _one_by_one(spec, loaded, images)
    store = FeatureStore(tmp_path / "f.zarr")
    info = extract_features(
        spec, lambda idx: images[idx], ids, store, "toy", loaded=loaded, batch_size=batch_size,
        chunk_batches=chunk_batches, keep_raw=True, progress=False,
    )  # fmt: skip
    assert info["computed"] == info["decoded"] == len(ids)
    got_ids, feats = store.read("toy", "rn18")
    _, raw = store.read("toy", "rn18", raw=True)
    assert list(got_ids) == ids and feats.dtype == raw.dtype == np.float32
    np.testing.assert_allclose(feats, ref, rtol=0, atol=1e-5)
    np.testing.assert_allclose(raw, ref_raw, rtol=1e-4, atol=1e-5)
    attrs = store.attrs("toy", "rn18")
    assert attrs["chunk_rows"] == batch_size * chunk_batches and attrs["batch_size"] == batch_size


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"batch_size": 0}, "batch_size must be a positive integer, got 0"),
        ({"batch_size": 2.5}, "batch_size must be a positive integer"),
        ({"chunk_batches": True}, "chunk_batches must be a positive integer, got True"),
        ({"chunk_batches": -1}, "chunk_batches must be a positive integer"),
        ({"errors": "ignore"}, "errors must be 'raise' or 'collect'"),
        ({"images": "short"}, "21 images but 22 ids"),
        ({"images": "list"}, "21 images but 22 ids"),
        ({"images": "gray"}, r"images must be uint8 \(n, H, W, 3\)"),
        ({"specs": "twice"}, "model ids must be unique"),
        ({"precision": "half"}, "extract.precision 'half' is not one of float32, bfloat16"),
        ({"images": "none", "ids": "none"}, "no stimuli for dataset 'toy'"),
        ({"ids": "twice"}, "stimulus ids must be unique; 'stim-000' appears more than once"),
    ],
)
def test_extract_models_refuses_bad_arguments_before_any_model_is_built(
    tmp_path: Path, images: np.ndarray, ids: list[str], kw: dict, match: str
) -> None:
    from repsim.errors import ConfigError, InputError
    from repsim.extract import extract_models

    specs = [_spec(), _spec()] if kw.pop("specs", None) else [_spec()]
    given = {
        "short": images[:21],
        "list": list(images[:21]),
        "gray": images[..., 0],
        "none": images[:0],
        None: images,
    }[kw.pop("images", None)]
    ids = {"none": [], "twice": [*ids[:21], ids[0]], None: ids}[kw.pop("ids", None)]

    def load(spec: ModelSpec):
        raise AssertionError("a model was built")

    store = FeatureStore(tmp_path / "f.zarr")
    with pytest.raises((InputError, ConfigError, StoreError), match=match):
        extract_models(specs, given, ids, store, "toy", load=load, progress=False, **kw)
    assert not store.has("toy", "rn18")


def test_overwrite_recomputes_only_the_models_named(
    tmp_path: Path, images: np.ndarray, ids: list[str]
) -> None:
    """``overwrite``: the ids named (or True, all) are extracted again from scratch with the model
    given now; the others keep their stored features and are skipped."""
    from repsim.extract import extract_models

    images, ids = images[:9], ids[:9]
    specs = [_spec("a"), _spec("b", layer="layer3")]
    old = {s.id: _loaded(s, seed=0) for s in specs}
    new = {s.id: _loaded(s, seed=7) for s in specs}
    kw = {"batch_size": 4, "chunk_batches": 1, "progress": False}
    store = FeatureStore(tmp_path / "f.zarr")
    extract_models(specs, images, ids, store, "toy", load=lambda s: old[s.id], **kw)
    out = extract_models(
        specs, images, ids, store, "toy", load=lambda s: new[s.id], overwrite={"b"}, **kw
    )
    assert {m: r["status"] for m, r in out["models"].items()} == {"a": "skipped", "b": "done"}
    assert out["models"]["b"]["computed"] == len(ids)
    for s, models in ((specs[0], old), (specs[1], new)):
        np.testing.assert_allclose(
            store.read("toy", s.id)[1], _one_by_one(s, models[s.id], images)[0], atol=1e-5
        )
    extract_models(specs, images, ids, store, "toy", load=lambda s: new[s.id], overwrite=True, **kw)
    np.testing.assert_allclose(
        store.read("toy", "a")[1], _one_by_one(specs[0], new["a"], images)[0], atol=1e-5
    )
    out = extract_models(specs, images, ids, store, "toy", load=lambda s: old[s.id], **kw)
    assert out["decoded"] == 0  # all done: nothing decoded, nothing built again
    # one id given as a text names that model, not every model whose id is a part of it
    out = extract_models(
        specs, images, ids, store, "toy", load=lambda s: old[s.id], overwrite="ab", **kw
    )
    assert out["decoded"] == 0


def _killed_after_the_first_chunk(spec, store, images, ids, **kw) -> None:
    """An extraction in chunks of two batches of 4 rows, killed once its first chunk is stored."""
    calls = {"n": 0}

    def crashing(idx: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 3:  # the first chunk (two batches) is done, then the kill
            raise KeyboardInterrupt("simulated kill")
        return images[idx]

    with pytest.raises(KeyboardInterrupt):
        extract_features(
            spec, crashing, ids, store, "toy", batch_size=4, chunk_batches=2, workers=1, **kw
        )
    assert store.writer("toy", spec.id, ids).pending_chunks() == [1, 2]


def test_a_resume_with_another_chunking_extracts_again_and_keep_raw_must_match(
    tmp_path: Path, images: np.ndarray, ids: list[str]
) -> None:
    """Partial features stored in chunks of 8 rows are not resumed by a pass in chunks of 5: the
    group is extracted again whole; resuming with another keep_raw is refused."""
    spec = _spec()
    loaded = _loaded(spec)
    store = FeatureStore(tmp_path / "f.zarr")
    kw = {"loaded": loaded, "progress": False, "workers": 1}
    _killed_after_the_first_chunk(spec, store, images, ids, loaded=loaded, progress=False)
    with pytest.raises(StoreError, match="keep_raw=True but the group was created with False"):
        extract_features(
            spec, images, ids, store, "toy", batch_size=4, chunk_batches=2, keep_raw=True, **kw
        )
    info = extract_features(spec, images, ids, store, "toy", batch_size=5, chunk_batches=1, **kw)
    assert info["computed"] == info["decoded"] == len(ids)
    assert store.attrs("toy", "rn18")["chunk_rows"] == 5
    np.testing.assert_allclose(
        store.read("toy", "rn18")[1], _one_by_one(spec, loaded, images)[0], atol=1e-5
    )


@pytest.mark.parametrize(
    "before",
    [{"precision": "bfloat16"}, {"precision": "float32"}],
    ids=["another-precision", "another-batch-size"],
)
def test_a_resume_with_another_precision_or_batch_size_extracts_again(
    tmp_path: Path, images: np.ndarray, ids: list[str], before: dict
) -> None:
    """Chunks of 8 rows stored in bfloat16, or in batches of 4, are not resumed by a float32
    pass in batches of 8 (chunks of 8 rows too): they are other bits, so the group would mix two
    numerics under the attributes of the first. It is extracted again whole, bit for bit a fresh
    extraction, and its attributes name this pass's precision and batch size."""
    spec = _spec()
    loaded = _loaded(spec)
    store, fresh = FeatureStore(tmp_path / "f.zarr"), FeatureStore(tmp_path / "g.zarr")
    _killed_after_the_first_chunk(spec, store, images, ids, loaded=loaded, progress=False, **before)
    kw = {"loaded": loaded, "batch_size": 8, "chunk_batches": 1, "progress": False}
    info = extract_features(spec, images, ids, store, "toy", precision="float32", **kw)
    assert info["computed"] == len(ids)
    attrs = store.attrs("toy", "rn18")
    assert (attrs["precision"], attrs["batch_size"], attrs["chunk_rows"]) == ("float32", 8, 8)
    extract_features(spec, images, ids, fresh, "toy", precision="float32", **kw)
    np.testing.assert_array_equal(store.read("toy", "rn18")[1], fresh.read("toy", "rn18")[1])


@pytest.mark.parametrize("change", ["layer", "device", "versions", "metadata"])
def test_a_resume_from_another_spec_device_or_packages_extracts_again(
    tmp_path: Path, images: np.ndarray, ids: list[str], change: str, monkeypatch
) -> None:
    """A partial group is resumed only by the extraction that wrote it: another layer under the
    same model id, another device or other numerical packages give other rows or other bits, so
    the group is extracted again whole (its rows then those of a fresh extraction); the spec's
    metadata, a label for the analyses, is not such a change."""
    import repsim.extract as extract_mod

    spec = _spec()
    loaded = _loaded(spec)
    store, fresh = FeatureStore(tmp_path / "f.zarr"), FeatureStore(tmp_path / "g.zarr")
    _killed_after_the_first_chunk(spec, store, images, ids, loaded=loaded, progress=False)
    if change == "layer":
        spec = _spec(layer="layer4", token="pooled")
    elif change == "metadata":
        spec = _spec(metadata={"objective": "Supervised"})
    elif change == "device":
        monkeypatch.setattr(extract_mod, "device_name", lambda dev: "another device")
    else:
        versions = {**extract_mod.package_versions(), "torch": "0.0.1"}
        monkeypatch.setattr(extract_mod, "package_versions", lambda: versions)
    kw = {"loaded": loaded, "batch_size": 4, "chunk_batches": 2, "progress": False, "workers": 1}
    info = extract_features(spec, images, ids, store, "toy", **kw)
    assert info["computed"] == (len(ids) - 8 if change == "metadata" else len(ids))
    extract_features(spec, images, ids, fresh, "toy", **kw)
    np.testing.assert_array_equal(store.read("toy", "rn18")[1], fresh.read("toy", "rn18")[1])
    assert store.attrs("toy", "rn18")["layer"] == ("layer4" if change == "layer" else "avgpool")


def test_rows_are_unit_norm_however_small_and_a_zero_feature_stays_zero(
    tmp_path: Path, images: np.ndarray, ids: list[str]
) -> None:
    """The random-init ResNet (no biases, BN at its initial statistics) is positively homogeneous:
    an input divided by 1e4 gives features 1e4 smaller (norms well under 1), and a black image
    with mean 0 gives exactly 0. Small rows are still scaled to unit norm; the zero row is
    stored as zeros, not as NaN (which the store reads as a missing row)."""
    spec = _spec(preprocess={**SMALL, "mean": [0.0] * 3, "std": [1e4] * 3})
    loaded = _loaded(spec)
    imgs = images[:6].copy()
    imgs[2] = 0
    store = FeatureStore(tmp_path / "f.zarr")
    kw = {"loaded": loaded, "batch_size": 4, "keep_raw": True, "progress": False}
    extract_features(spec, imgs, ids[:6], store, "toy", **kw)
    feats, raw = store.read("toy", "rn18")[1], store.read("toy", "rn18", raw=True)[1]
    assert (raw[2] == 0).all() and (feats[2] == 0).all()
    rest = [0, 1, 3, 4, 5]
    assert np.linalg.norm(raw[rest], axis=1).max() < 0.5
    ref = _one_by_one(spec, loaded, imgs[rest])[0]
    np.testing.assert_allclose(feats[rest], ref, rtol=0, atol=1e-5)


def test_nan_in_a_later_chunk_names_its_own_first_image_and_keeps_the_chunks_before(
    tmp_path: Path, images: np.ndarray, ids: list[str]
) -> None:
    """A model giving NaN only for image 17 (chunk 2 of 8-row chunks): the error names
    'stim-017' (the chunk's rows are ids[16:], not ids[0:]), chunks 0 and 1 are written and
    chunk 2 is not."""

    spec = _spec()
    loaded = _loaded(spec)
    imgs = images.copy()
    imgs[17] = 0  # a black image: every pixel of a channel equal after preprocessing

    def nan_for_flat_images(_module: torch.nn.Module, args: tuple) -> tuple:
        x = args[0]
        flat = (x.amax(dim=(1, 2, 3)) == x.amin(dim=(1, 2, 3))) | (
            x.flatten(2).std(dim=2).amax(dim=1) == 0
        )
        return (torch.where(flat[:, None, None, None], float("nan"), x),)

    loaded.module.conv1.register_forward_pre_hook(nan_for_flat_images)
    writer = _refused_for_nan(
        tmp_path, spec, loaded, imgs, ids, r"model 'rn18' gives NaN .*\(first 'stim-017'\)"
    )
    assert writer is not None and writer.pending_chunks() == [2]


def test_the_returned_info_counts_rows_and_each_models_own_seconds(
    tmp_path: Path, images: np.ndarray, ids: list[str]
) -> None:
    """Per model: every row computed, its own (positive) seconds within the call's wall time,
    and the rate is rows over those seconds; models run one after another, so their seconds add
    up to no more than the call's."""
    from repsim.extract import decode_workers, extract_models

    specs = [_spec("a"), _spec("b", layer="layer3")]
    built = {s.id: _loaded(s, seed=i) for i, s in enumerate(specs)}
    out = extract_models(
        specs,
        images,
        ids,
        FeatureStore(tmp_path / "f.zarr"),
        "toy",
        load=lambda s: built[s.id],
        batch_size=4,
        chunk_batches=2,
        progress=False,
    )
    assert out["n"] == out["decoded"] == len(ids) and out["dataset"] == "toy"
    assert out["workers"] == decode_workers()  # none asked for: one per core, less one
    for spec in specs:
        stats = out["models"][spec.id]
        assert stats["status"] == "done" and stats["computed"] == stats["n"] == len(ids)
        assert 0 < stats["seconds"] <= out["seconds"]
        assert stats["img_per_s"] == stats["computed"] / stats["seconds"]
    assert sum(out["models"][s.id]["seconds"] for s in specs) <= out["seconds"]


def test_a_model_past_the_budget_leaves_room_for_a_smaller_one_after_it(
    tmp_path: Path, mixed_images: list[np.ndarray], ids: list[str]
) -> None:
    """Budget for rn18 and mnv3: rn18-l3 (as large as rn18) does not fit and is built per chunk,
    and takes no room, so mnv3 after it is still resident (built once), in that fixed order."""
    from repsim.extract import extract_models, module_bytes

    specs = _zoo()
    built, builds, load = _recording_loader(specs)
    budget = module_bytes(built["rn18"].module) + module_bytes(built["mnv3"].module)
    extract_models(
        specs,
        _counting(mixed_images)[0],
        ids,
        FeatureStore(tmp_path / "f.zarr"),
        "toy",
        load=load,
        memory_budget=budget,
        batch_size=4,
        chunk_batches=2,
        progress=False,
    )
    assert builds == ["rn18", "rn18-l3", "mnv3"] + ["rn18-l3"] * 3


def test_a_list_of_images_of_two_sizes_is_extracted_row_by_row(
    tmp_path: Path, mixed_images: list[np.ndarray], ids: list[str]
) -> None:
    """``images`` as a plain list of ``(H, W, 3)`` arrays (two sizes, so no batch is one array):
    every row is the feature of its own image, as from a per-image forward."""
    spec = _spec()
    loaded = _loaded(spec)
    store = FeatureStore(tmp_path / "f.zarr")
    info = extract_features(
        spec, list(mixed_images), ids, store, "toy", loaded=loaded, batch_size=4,
        chunk_batches=2, progress=False,
    )  # fmt: skip
    assert info["computed"] == info["decoded"] == len(ids)
    got_ids, feats = store.read("toy", "rn18")
    assert list(got_ids) == ids
    np.testing.assert_allclose(feats, _one_by_one(spec, loaded, mixed_images)[0], atol=1e-5)


def test_a_model_failing_in_a_later_chunk_leaves_its_group_unread_and_the_others_finish(
    tmp_path: Path, images: np.ndarray, ids: list[str]
) -> None:
    """errors="collect": the middle model raises on the first batch of chunk 1 (its chunk 0 is
    written); its exception is returned, it runs no more chunks and nothing of it reads as
    features, while the models before and after it finish, each row the feature of its own image.
    A rerun extracts only its chunks 1 and 2, to the same features as a per-image forward."""
    from repsim.extract import extract_models

    specs = [_spec("a"), _spec("b", layer="layer3"), _spec("c")]
    built = {s.id: _loaded(s, seed=i) for i, s in enumerate(specs)}
    calls = [0]

    def broken(module, args):
        calls[0] += 1
        if calls[0] == 3:  # batches of 4, chunks of 8 rows: the first batch of chunk 1
            raise RuntimeError("simulated failure in chunk 1")

    kw = {"load": lambda s: built[s.id], "batch_size": 4, "chunk_batches": 2, "progress": False}
    store = FeatureStore(tmp_path / "f.zarr")
    hook = built["b"].module.register_forward_pre_hook(broken)
    try:
        out = extract_models(specs, images, ids, store, "toy", errors="collect", **kw)
    finally:
        hook.remove()
    assert isinstance(out["models"]["b"], RuntimeError) and calls[0] == 3
    assert out["models"]["a"]["computed"] == out["models"]["c"]["computed"] == len(ids)
    assert store.writer("toy", "b", ids).pending_chunks() == [1, 2]
    with pytest.raises(StoreError, match="incomplete"):
        store.read("toy", "b")
    for spec in (specs[0], specs[2]):
        got_ids, feats = store.read("toy", spec.id)
        assert list(got_ids) == ids
        np.testing.assert_allclose(feats, _one_by_one(spec, built[spec.id], images)[0], atol=1e-5)
    again = extract_models(specs, images, ids, store, "toy", **kw)
    assert {m: r["computed"] for m, r in again["models"].items()} == {"a": 0, "b": 14, "c": 0}
    ref = _one_by_one(specs[1], built["b"], images)[0]
    np.testing.assert_allclose(store.read("toy", "b")[1], ref, atol=1e-5)


def test_a_model_already_stored_is_not_built_again_nor_takes_room_in_the_budget(
    tmp_path: Path, mixed_images: list[np.ndarray], ids: list[str]
) -> None:
    """rn18 stored by a first call: a second call with the three models builds only the other
    two, once each, resident in a budget with room for those two only; a third call builds none."""
    from repsim.extract import extract_models, module_bytes

    specs = _zoo()
    built, builds, load = _recording_loader(specs)
    store = FeatureStore(tmp_path / "f.zarr")
    kw = {"load": load, "batch_size": 4, "chunk_batches": 2, "progress": False}
    extract_models(specs[:1], _counting(mixed_images)[0], ids, store, "toy", **kw)
    assert builds == ["rn18"]
    budget = module_bytes(built["rn18-l3"].module) + module_bytes(built["mnv3"].module)
    out = extract_models(
        specs, _counting(mixed_images)[0], ids, store, "toy", memory_budget=budget, **kw
    )
    assert builds == ["rn18", "rn18-l3", "mnv3"]
    assert {m: r["computed"] for m, r in out["models"].items()} == {
        "rn18": 0,
        "rn18-l3": len(ids),
        "mnv3": len(ids),
    }
    load_images, count = _counting(mixed_images)
    extract_models(specs, load_images, ids, store, "toy", **kw)
    assert builds == ["rn18", "rn18-l3", "mnv3"] and count[0] == 0


# ---------------------------------------------------------------- sizes, memory budget, threads


def test_module_bytes_adds_every_parameter_and_buffer_at_its_own_dtype() -> None:
    """A float16 Linear(4, 3) (15 parameters, 2 bytes each) and a float32 BatchNorm1d(3) (weight,
    bias, running mean and variance: 12 floats of 4 bytes, and an int64 batch counter)."""
    from repsim.extract import module_bytes

    module = torch.nn.Sequential(torch.nn.Linear(4, 3).half(), torch.nn.BatchNorm1d(3))
    assert module_bytes(module) == 15 * 2 + 12 * 4 + 8
    rn18 = _loaded(_spec()).module
    assert module_bytes(rn18) == sum(t.nbytes for t in rn18.state_dict().values())


def test_the_memory_budget_is_a_share_of_the_whole_device(monkeypatch) -> None:
    """A quarter of the RAM on a CPU (and on a device it does not know), half of a GPU's memory;
    where the RAM cannot be read, a quarter of 16 GiB."""
    import os
    import types

    from repsim.extract import model_memory_budget

    pages = {"SC_PAGE_SIZE": 4096, "SC_PHYS_PAGES": 1_000_003}
    monkeypatch.setattr(os, "sysconf", lambda name: pages[name], raising=False)
    ram = 4096 * 1_000_003
    assert model_memory_budget(torch.device("cpu")) == ram // 4
    assert model_memory_budget(torch.device("meta")) == ram // 4
    gpu = types.SimpleNamespace(total_memory=80 * 10**9 + 2)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: gpu)
    assert model_memory_budget(torch.device("cuda")) == 40 * 10**9 + 1
    for error in (ValueError, OSError):

        def unreadable(name, error=error):
            raise error(name)

        monkeypatch.setattr(os, "sysconf", unreadable)
        assert model_memory_budget(torch.device("cpu")) == 4 * 2**30
    monkeypatch.delattr(os, "sysconf")  # not on this system
    assert model_memory_budget(torch.device("cpu")) == 4 * 2**30


@pytest.mark.parametrize("cores, workers", [(1, 1), (2, 1), (5, 4), (16, 15), (17, 16), (64, 16)])
def test_decode_workers_leave_one_core_to_the_forward(
    monkeypatch, cores: int, workers: int
) -> None:
    """One decode thread per core this process may use, less one, at least 1 and at most 16; the
    cores of the machine where the affinity cannot be read (at least one)."""
    import os

    from repsim.extract import decode_workers

    def affinity(pid: int) -> set[int]:  # this process's, not another's (pid 1, init)
        return set(range(cores)) if pid in (0, os.getpid()) else set(range(256))

    monkeypatch.setattr(os, "sched_getaffinity", affinity, raising=False)
    assert decode_workers() == workers
    monkeypatch.delattr(os, "sched_getaffinity")
    monkeypatch.setattr(os, "cpu_count", lambda: cores)
    assert decode_workers() == workers
    monkeypatch.setattr(os, "cpu_count", lambda: None)
    assert decode_workers() == 1


def test_the_decode_counters_add_the_threads_work_and_the_wait_of_the_forward(
    tmp_path: Path, images: np.ndarray, ids: list[str]
) -> None:
    """A loader that takes at least 20 ms a batch, on one thread, timing itself: the decode
    seconds are the loader's own time for the 6 batches (4 + 4 + ... of 22 rows), give or take
    the calls around it (far under the 0.9 s allowed), and at most the call's wall time; the
    forward waited for the first batch, and no longer than the thread decoded (give or take)."""
    import time

    from repsim.extract import extract_models

    spec = _spec()
    built = _loaded(spec)
    spent = []

    def slow(idx: np.ndarray) -> np.ndarray:
        t0 = time.perf_counter()
        time.sleep(0.02)
        out = images[idx]
        spent.append(time.perf_counter() - t0)
        return out

    out = extract_models(
        [spec], slow, ids, FeatureStore(tmp_path / "f.zarr"), "toy", load=lambda s: built,
        batch_size=4, chunk_batches=2, workers=1, progress=False,
    )  # fmt: skip
    assert out["decoded"] == len(ids) and out["workers"] == 1 and len(spent) == 6
    # the slack (0.9 s over 6 calls, far above their overhead) keeps a loaded machine from
    # failing it; a count that starts at 1 s instead of 0 is still seen
    assert sum(spent) <= out["decode_seconds"] < sum(spent) + 0.9
    assert out["decode_seconds"] <= out["seconds"]
    # the forward waits only while the one thread decodes
    assert 0 < out["decode_wait_seconds"] < out["decode_seconds"] + 0.9


def test_closing_the_decoder_drops_queued_batches_and_waits_for_the_running_one() -> None:
    """_Decoder.close (in extract_models' finally, after a failure too): the batches still
    queued are never read, and the one being read has finished when it returns, so no thread
    reads images after the call. Deterministic: the batch running blocks until the first queued
    one is cancelled (its done callback releases it; a 5 s timeout keeps a broken close from
    hanging the test)."""
    import time

    from repsim.extract import _Decoder

    started, release = threading.Event(), threading.Event()
    read, finished = [], []

    def load(idx: np.ndarray) -> np.ndarray:
        read.append(int(idx[0]))
        if idx[0] == 0:
            started.set()
            release.wait(5)
            time.sleep(0.05)  # still reading a moment after the release
            finished.append(int(idx[0]))
        return np.zeros((len(idx), 2, 2, 3), np.uint8)

    decoder = _Decoder(load, workers=1, pin=False)
    futures = decoder.submit([np.arange(0, 2), np.arange(2, 4), np.arange(4, 6)])
    assert started.wait(5)
    futures[1][1].add_done_callback(lambda _: release.set())
    decoder.close()
    assert finished == [0]  # the running batch was waited for
    assert read == [0]  # the queued ones were dropped, not read
    assert all(f.cancelled() for _, f in futures[1:])


def test_a_model_let_go_on_a_gpu_goes_back_to_host_memory() -> None:
    """_release: a model swapped out (or failed) on CUDA is moved to the CPU, where a cached
    LoadedModel keeps it, and the pass holds it no more; on a CPU it stays where it is."""
    import types

    from repsim.extract import _Job, _release

    class Recording(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.moves: list[object] = []

        def to(self, *args, **kwargs):
            self.moves.append(args[0] if args else kwargs)
            return self

    for device, moves in (("cuda", ["cpu"]), ("cpu", [])):
        module = Recording()
        job = _Job(_spec(), loaded=types.SimpleNamespace(module=module), runner=object())
        _release(job, torch.device(device))
        assert module.moves == moves and job.loaded is None and job.runner is None


def test_a_model_that_fails_to_build_fails_before_decoding_and_takes_no_room(
    tmp_path: Path, mixed_images: list[np.ndarray], ids: list[str]
) -> None:
    """A model whose build fails: with errors="raise" the call fails before any image is decoded;
    with errors="collect" it is tried once, takes no room in the budget, and the model after it
    (rn18, with room for it and mnv3 exactly) is still resident: built once, not once per chunk."""
    from repsim.extract import extract_models, module_bytes

    specs = _zoo()
    specs = [specs[2], specs[1], specs[0]]  # mnv3, rn18-l3 (broken), rn18
    built, builds, record = _recording_loader(specs)

    def load(spec: ModelSpec):
        record(spec)
        if spec.id == "rn18-l3":
            raise RuntimeError("simulated broken layer")
        return built[spec.id]

    kw = {"load": load, "batch_size": 4, "chunk_batches": 2, "progress": False}
    budget = module_bytes(built["mnv3"].module) + module_bytes(built["rn18"].module)
    store = FeatureStore(tmp_path / "f.zarr")
    loader, count = _counting(mixed_images)
    with pytest.raises(RuntimeError, match="simulated broken layer"):
        extract_models(specs, loader, ids, store, "toy", memory_budget=budget, **kw)
    assert count[0] == 0 and builds == ["mnv3", "rn18-l3"]
    builds.clear()
    out = extract_models(
        specs, loader, ids, store, "toy", memory_budget=budget, errors="collect", **kw
    )
    assert isinstance(out["models"]["rn18-l3"], RuntimeError) and count[0] == len(ids)
    assert builds == ["mnv3", "rn18-l3", "rn18"]
    assert out["models"]["mnv3"]["computed"] == out["models"]["rn18"]["computed"] == len(ids)


def test_a_given_model_is_built_once_however_little_room_the_device_has(
    tmp_path: Path, images: np.ndarray, ids: list[str], monkeypatch
) -> None:
    """extract_features with a model given: it stays in memory anyway, so it is made ready on the
    device (moved there and put in eval mode) once for the pass, never once per chunk (here 3),
    even where the device's budget has no room for it."""
    import repsim.extract

    monkeypatch.setattr(repsim.extract, "model_memory_budget", lambda device: 0)
    spec = _spec()
    loaded = _loaded(spec)
    builds = []
    to_eval = loaded.module.eval

    def counted_eval() -> torch.nn.Module:
        builds.append(1)
        return to_eval()

    monkeypatch.setattr(loaded.module, "eval", counted_eval)
    store = FeatureStore(tmp_path / "f.zarr")
    info = extract_features(
        spec, images, ids, store, "toy", loaded=loaded, batch_size=4, chunk_batches=2,
        progress=False,
    )  # fmt: skip
    assert info["computed"] == len(ids) and store.attrs("toy", "rn18")["n_chunks"] == 3
    assert len(builds) == 1
    # one model built by extract_features itself: the same (it was built again for every chunk
    # when larger than the budget, which made room for nothing)
    built = []
    monkeypatch.setattr(repsim.extract, "load_model", lambda s, **kw: built.append(s) or loaded)
    info = extract_features(
        spec, images, ids, store, "again", batch_size=4, chunk_batches=2, progress=False,
    )  # fmt: skip
    assert info["computed"] == len(ids) and built == [spec]
