"""Model specs, loaders (random init and local weight files), offline failures, taps."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
import torch

from repsim.errors import ConfigError, MissingWeightsError, ModelError
from repsim.zoo import ModelSpec, load_model, parse_models
from repsim.zoo.loaders.checkpoint_loader import remap_keys, unwrap
from repsim.zoo.registry import get_loader, known_loaders
from repsim.zoo.taps import FeatureExtractor


@pytest.fixture(autouse=True)
def _empty_caches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _params_equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sb if k in sa) and len(set(sa) & set(sb)) > 0


# -- specs ---------------------------------------------------------------------------------
def test_parse_valid_entry(tmp_path: Path) -> None:
    entry = {
        "_config_dir": str(tmp_path),
        "id": "m",
        "loader": "timm",
        "identifier": "resnet18",
        "weights": "w.safetensors",
        "metadata": {"embed_dim": "512", "objective": "Supervised"},
    }
    (spec,) = parse_models([entry])
    assert spec.weights == tmp_path / "w.safetensors" and spec.embed_dim == 512
    assert spec.to_dict()["metadata"]["embed_dim"] == 512  # a number in run.json, as in the study


def test_parse_keeps_the_smallest_accepted_values_and_every_field_as_written() -> None:
    entry = {
        "id": "m",
        "loader": "timm",
        "identifier": "resnet18",
        "layer": "layer4",
        "token": "cls",
        "options": {"drop_rate": 0.0},
        "preprocess": {"_why": "the SSL transform", "resize": 256, "crop": 224},
        "metadata": {"seed": 0, "embed_dim": 1, "params_m": 0.5},
    }
    (spec,) = parse_models([entry])
    assert spec.to_dict() == {
        "id": "m",
        "loader": "timm",
        "identifier": "resnet18",
        "layer": "layer4",
        "token": "cls",
        "weights": None,
        "options": {"drop_rate": 0.0},
        "preprocess": {"resize": 256, "crop": 224},  # the note is not an override
        "metadata": {"seed": 0, "embed_dim": 1, "params_m": 0.5},
    }


@pytest.mark.parametrize(
    ("entries", "match"),
    [
        ([{"id": "a", "loader": "nope", "identifier": "x"}], "'a'.*unknown loader 'nope'"),
        ([{"id": "a", "loader": "timm"}], "'a' has no 'identifier'"),
        ([{"id": "a", "loader": "timm", "identifier": "x"}] * 2, "'a' appears twice"),
        ([{"id": "a", "loader": "timm", "identifier": "x", "token": "avg"}], "token 'avg'"),
        ([{"loader": "timm", "identifier": "x"}], "no 'id'"),
        ([{"id": 7, "loader": "timm", "identifier": "x"}], "'id' must be a string, got 7 .int."),
        (
            [{"id": "a", "loader": "timm", "identifier": 123}],
            "'a': 'identifier' must be a string .*got 123 .int.",
        ),
        (
            [{"id": "a", "loader": "timm", "identifier": "x", "layr": "norm"}],
            "unknown key 'layr' .did you mean 'layer'",
        ),
        # read as numbers only when the results are written, after all the work
        (
            [{"id": "a", "loader": "timm", "identifier": "x", "metadata": {"params_m": "lots"}}],
            "metadata.params_m must be a positive number .* got 'lots'",
        ),
        (
            [{"id": "a", "loader": "timm", "identifier": "x", "metadata": {"image_params_m": 0}}],
            "metadata.image_params_m must be a positive number",
        ),
        (
            [{"id": "a", "loader": "timm", "identifier": "x", "preprocess": {"crpo": 224}}],
            "'a': preprocess: unknown key 'crpo' .did you mean 'crop'",
        ),
        ([{"id": "a", "loader": "timm", "identifier": "x", "layer": ""}], "'a': 'layer' must be"),
        (
            [{"id": "a", "loader": "timm", "identifier": "x", "options": ["pretrained"]}],
            "'a': 'options' must be a mapping",
        ),
        (
            [
                {
                    "id": "a",
                    "loader": "timm",
                    "identifier": "x",
                    "metadata": {"params_m": float("inf")},
                }
            ],
            "'a': metadata.params_m must be a positive number",
        ),
    ],
)
def test_parse_errors(entries: list, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        parse_models(entries)


def test_a_repeated_model_id_is_named_with_the_other_bad_entries() -> None:
    entries = [{"id": "a", "loader": "timm", "identifier": "x"}] * 2
    entries.append({"id": "b", "loader": "nope", "identifier": "x"})
    with pytest.raises(ConfigError) as error:
        parse_models(entries)
    assert str(error.value).splitlines() == [
        "2 of 3 model entries are invalid; fix each:",
        "  model id 'a' appears twice in models:; ids must be unique",
        f"  model entry 'b': unknown loader 'nope'; registered loaders are {known_loaders()}",
    ]


def test_minizoo_is_lazy_and_clear() -> None:
    try:
        get_loader("minizoo")
    except ModelError as exc:
        assert "repsim.minizoo.loader" in str(exc)


def test_bad_identifier_is_clear() -> None:
    with pytest.raises(ModelError, match="available"):
        load_model(ModelSpec("x", "timm", "resnet18.no_such_tag"), pretrained=False)
    with pytest.raises(ModelError, match="no tag"):
        load_model(ModelSpec("x", "open_clip", "RN50:no_such_tag"), pretrained=False)


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        (
            ModelSpec("x", "torchvision", "resnet81"),
            r"torchvision has no model 'resnet81' \(did you mean 'resnet18'\?\); set 'identifier'",
        ),
        (
            ModelSpec("x", "torchvision", "resnet18:IMAGENET1K_V2"),
            r"resnet18 has no weights 'IMAGENET1K_V2' \(did you mean 'IMAGENET1K_V1'\?\)",
        ),
        (  # one suggestion, the model named (it also listed "similar: [...]", here [])
            ModelSpec("x", "timm", "resnet81"),
            r"^model 'x': timm has no architecture 'resnet81' \(did you mean 'resnet18'\?\); set "
            r"'identifier' to a name of timm\.list_models\(\) \(timm [^)]*\)$",
        ),
        (
            ModelSpec("x", "timm", "resnet18.a1_in2k"),
            r"^model 'x': timm has no pretrained tag 'resnet18.a1_in2k' \(did you mean "
            r"'resnet18.a1_in1k'\?\)",
        ),
        (  # the checkpoint loader's timm:NAME was timm's "Unknown model (resnet81)"
            ModelSpec("x", "checkpoint", "timm:resnet81"),
            r"^model 'x': timm has no architecture 'resnet81' \(did you mean 'resnet18'\?\); set "
            r"'identifier' to timm:NAME with a NAME of timm\.list_models\(\) \(timm [^)]*\)$",
        ),
        (  # and timm's "Invalid pretrained tag (a1_in2k) for resnet18."
            ModelSpec("x", "checkpoint", "timm:resnet18.a1_in2k"),
            r"^model 'x': timm has no pretrained tag 'resnet18.a1_in2k' \(did you mean "
            r"'resnet18.a1_in1k'\?\)",
        ),
        (
            ModelSpec("x", "open_clip", "RN51:openai"),
            r"open_clip has no architecture 'RN51' \(did you mean 'RN50'\?\)",
        ),
        (
            ModelSpec("x", "open_clip", "RN50:opena"),
            r"open_clip has no tag 'opena' for RN50 \(did you mean 'openai'\?\)",
        ),
        (
            ModelSpec("x", "minizoo", "cnm"),
            r"unknown mini-zoo architecture 'cnm' \(did you mean 'cnn'\?\)",
        ),
    ],
    ids=[
        "torchvision",
        "torchvision-weights",
        "timm",
        "timm-tag",
        "checkpoint-timm",
        "checkpoint-timm-tag",
        "open_clip",
        "open_clip-tag",
        "minizoo",
    ],
)
def test_a_misspelt_name_is_named_with_the_closest_its_library_has(spec, match) -> None:
    """Each library lists its names without a download; the message said only that the name
    was unknown ("torchvision has no model 'resnet81'")."""
    with pytest.raises(ModelError, match=match):
        load_model(spec, pretrained=False)


def test_a_misspelt_checkpoint_architecture_is_named_with_the_closest() -> None:
    from repsim.zoo.loaders.checkpoint_loader import build_architecture

    with pytest.raises(
        ModelError, match=r"^model 'x': .* nor 'timm:NAME' \(did you mean 'resnet18'\?\); set"
    ):
        build_architecture(ModelSpec("x", "checkpoint", "resnt18"))


# -- loaders with local weights --------------------------------------------------------------
def test_timm_local_file(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    src = load_model(ModelSpec("a", "timm", "resnet10t.c3_in1k"), pretrained=False)
    path = tmp_path / "w.safetensors"
    save_file(src.module.state_dict(), str(path))
    got = load_model(ModelSpec("b", "timm", "resnet10t.c3_in1k", weights=path))
    assert _params_equal(got.module, src.module)
    assert got.pretrained_cfg["source"] == str(path) and got.preprocess.crop == 176


def test_torchvision_state_dict(tmp_path: Path) -> None:
    torch.manual_seed(1)
    src = load_model(ModelSpec("a", "torchvision", "resnet18"), pretrained=False)
    path = tmp_path / "rn18.pth"
    torch.save(src.module.state_dict(), path)
    got = load_model(ModelSpec("b", "torchvision", "resnet18", weights=path))
    assert _params_equal(got.module, src.module)
    assert (got.preprocess.resize, got.preprocess.crop) == (256, 224)


def test_weights_files_are_read_in_both_formats_and_a_damaged_or_pickled_one_is_refused(
    tmp_path: Path,
) -> None:
    from collections import UserDict

    from safetensors.torch import save_file

    from repsim.zoo.weights import load_state_dict

    state = {"w": torch.arange(6.0).reshape(2, 3), "b": torch.ones(2)}
    save_file(state, tmp_path / "w.safetensors")
    torch.save(state, tmp_path / "w.pth")
    for name in ("w.safetensors", "w.pth"):
        got = load_state_dict(str(tmp_path / name))  # a path as text, as a config gives it
        assert set(got) == set(state) and all(torch.equal(got[k], state[k]) for k in state)
    blob = (tmp_path / "w.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ModelError, match=r"cut\.safetensors: .*truncated or damaged"):
        load_state_dict(tmp_path / "cut.safetensors")
    torch.save(UserDict(state), tmp_path / "obj.pth")  # a pickle is read only when trusted
    with pytest.raises(ModelError, match="weights_only: false"):
        load_state_dict(tmp_path / "obj.pth")
    assert set(load_state_dict(tmp_path / "obj.pth", weights_only=False)) == set(state)


def test_torchvision_options_are_honoured_or_refused_when_the_config_is_read(
    tmp_path: Path,
) -> None:
    # a trusted file that holds a non-tensor object: torch.load refuses it unless weights_only is off
    from collections import UserDict

    torch.manual_seed(3)
    src = load_model(ModelSpec("a", "torchvision", "squeezenet1_1"), pretrained=False)
    path = tmp_path / "sq.pth"
    torch.save(UserDict(src.module.state_dict()), path)
    with pytest.raises(ModelError, match="weights_only: false"):
        load_model(ModelSpec("b", "torchvision", "squeezenet1_1", weights=path))
    got = load_model(
        ModelSpec(
            "b", "torchvision", "squeezenet1_1", weights=path, options={"weights_only": False}
        )
    )
    assert _params_equal(got.module, src.module)
    entry = {
        "id": "tv",
        "loader": "torchvision",
        "identifier": "squeezenet1_1",
        "options": {"weights_onyl": False},
    }
    with pytest.raises(
        ConfigError,
        match="model 'tv': options of loader 'torchvision': unknown key "
        "'weights_onyl' .did you mean 'weights_only'.*allowed keys are weights, weights_only",
    ):
        parse_models([entry])
    with pytest.raises(ConfigError, match="weights_only must be true or false"):
        parse_models([{**entry, "options": {"weights_only": "no"}}])


def test_open_clip_local_file(tmp_path: Path) -> None:
    import open_clip

    cfg = {
        "embed_dim": 16,
        "vision_cfg": {
            "image_size": 32,
            "layers": 1,
            "width": 64,
            "head_width": 32,
            "patch_size": 16,
        },
        "text_cfg": {"context_length": 8, "vocab_size": 64, "width": 16, "heads": 2, "layers": 1},
    }
    (tmp_path / "cfgs").mkdir()
    (tmp_path / "cfgs" / "repsim-tiny.json").write_text(json.dumps(cfg))
    open_clip.add_model_config(tmp_path / "cfgs")
    src = open_clip.create_model("repsim-tiny")
    path = tmp_path / "tiny.pt"
    torch.save(src.state_dict(), path)
    got = load_model(ModelSpec("t", "open_clip", "repsim-tiny", weights=path))
    assert _params_equal(got.module.visual, src.visual)
    out = FeatureExtractor(got, ModelSpec("t", "open_clip", "x", layer="visual"))(
        torch.randn(2, 3, 32, 32)
    )
    assert out.shape == (2, 16)


@pytest.mark.parametrize("layout", ["vissl", "wrapped"])
def test_checkpoint_key_remapping(tmp_path: Path, layout: str) -> None:
    torch.manual_seed(2)
    src = load_model(ModelSpec("a", "torchvision", "resnet18"), pretrained=False).module
    trunk = {k: v for k, v in src.state_dict().items() if not k.startswith("fc.")}
    if layout == "vissl":
        ckpt = {
            "classy_state_dict": {
                "base_model": {
                    "model": {
                        "trunk": {f"_feature_blocks.{k}": v for k, v in trunk.items()},
                        "heads": {"0.clf.0.weight": torch.zeros(3)},
                    }
                }
            },
            "phase_idx": 7,
        }
    else:
        ckpt = {
            "state_dict": {
                **{f"module.backbone.{k}": v for k, v in trunk.items()},
                "module.projection_head.0.weight": torch.zeros(4, 4),
                "module.fc.weight": torch.zeros(10, 512),
            }
        }
    path = tmp_path / "ckpt.torch"
    torch.save(ckpt, path)
    assert set(remap_keys(unwrap(torch.load(path, weights_only=True)))) == set(trunk)
    got = load_model(
        ModelSpec(
            "c",
            "checkpoint",
            "resnet18",
            weights=path,
            options={"url": "https://example.org/c.torch"},
        )
    )
    assert _params_equal(got.module, src)
    assert isinstance(got.module.fc, torch.nn.Identity)


def test_checkpoint_incomplete_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.pth"
    torch.save({"conv1.weight": torch.zeros(64, 3, 7, 7)}, path)
    with pytest.raises(ModelError, match="does not cover"):
        load_model(ModelSpec("c", "checkpoint", "resnet18", weights=path))


def test_torch_hub_local_repo(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "hubconf.py").write_text(
        "import torch\n\ndef tiny(pretrained=False):\n    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1))\n"
    )
    got = load_model(ModelSpec("h", "torch_hub", f"local:{repo} tiny"), pretrained=False)
    out = FeatureExtractor(got, ModelSpec("h", "torch_hub", "x", layer="1", token="pooled"))(
        torch.randn(2, 3, 8, 8)
    )
    assert out.shape == (2, 4)


# -- offline failures ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "spec",
    [
        ModelSpec("t", "timm", "resnet10t.c3_in1k"),
        ModelSpec("v", "torchvision", "resnet18"),
        ModelSpec("o", "open_clip", "RN50:openai"),
        ModelSpec(
            "c",
            "checkpoint",
            "resnet50",
            options={"url": "https://dl.fbaipublicfiles.com/vicreg/resnet50.pth"},
        ),
        ModelSpec("h", "torch_hub", "facebookresearch/vicreg:main resnet50"),
        ModelSpec("f", "timm", "resnet18", weights=Path("/nonexistent/w.safetensors")),
    ],
    ids=lambda s: s.loader + ("-file" if s.weights else ""),
)
def test_missing_weights_fail_fast(spec: ModelSpec, monkeypatch) -> None:
    # "fast" is checked without a clock (a wall-time bound fails by chance on a loaded machine):
    # the second attempt, after the loader's lazy imports, must fail without opening a connection,
    # so there is no download and no network timeout to wait for.
    get_loader(spec.loader)
    with pytest.raises(MissingWeightsError):
        load_model(spec)
    attempts: list[object] = []

    def no_connect(sock, address):
        attempts.append(address)
        raise OSError("network is disabled in this test")

    monkeypatch.setattr(socket.socket, "connect", no_connect)
    with pytest.raises(MissingWeightsError) as info:
        load_model(spec)
    assert attempts == []
    msg = str(info.value)
    assert repr(spec.id) in msg and "weights" in msg
    if spec.weights is None:
        assert spec.identifier in msg and "HF_HUB_OFFLINE" in msg


def test_align_needs_extra_or_builds() -> None:
    spec = ModelSpec("a", "hf_transformers", "kakaobrain/align-base")
    try:
        import transformers  # noqa: F401
    except ImportError:
        with pytest.raises(ModelError, match=r"-e '\.\[align\]'"):
            load_model(spec, pretrained=False, device="meta")
        return
    with pytest.raises(MissingWeightsError):
        load_model(spec)


# -- where pretrained weights come from ------------------------------------------------------
def test_a_checkpoint_in_the_torch_hub_cache_is_taken_from_there(tmp_path: Path) -> None:
    """A torchvision/timm/checkpoint URL already downloaded into $TORCH_HOME is ``cached`` (not
    asked for again); its path is not the run's weights file: the identifier names it."""
    from repsim.zoo.check import check_weights
    from repsim.zoo.weights import local_weights_file, locate_weights

    spec = ModelSpec("sq", "torchvision", "squeezenet1_1")
    remote = locate_weights(spec)
    assert remote.kind == "remote" and remote.url.endswith(".pth")
    assert check_weights(spec, fetch=False) == "not cached"
    checkpoints = tmp_path / "torch_home" / "hub" / "checkpoints"
    cached = checkpoints / remote.url.rsplit("/", 1)[1]
    checkpoints.mkdir(parents=True)
    (checkpoints / "resnet18-f37072fd.pth").write_bytes(b"another model's download")
    assert locate_weights(spec).kind == "remote"
    cached.write_bytes(b"the download")
    got = locate_weights(spec)
    assert (got.kind, got.where, got.url) == ("cached", str(cached), remote.url)
    assert got.cache_hint == str(cached)
    assert check_weights(spec) == "cached"  # nothing to download, no request made
    assert local_weights_file(spec) is None


@pytest.mark.parametrize("suffix", [".pth", ".safetensors", ".npz"])
def test_a_cached_download_cut_short_is_refused_before_the_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, suffix: str
) -> None:
    """A cached file cut anywhere (a copy or a disk that filled) passed as ``cached`` and failed in
    every task that loaded it; its structure is read now, and the refusal names the model, the
    file and the fix. The whole file, a legacy torch pickle and a file of no known format pass."""
    import numpy as np
    from safetensors.torch import save_file

    from repsim.zoo import check as check_mod
    from repsim.zoo.weights import WeightsSource

    whole = tmp_path / f"whole{suffix}"
    tensors = {"w": torch.arange(600, dtype=torch.float32).reshape(20, 30), "b": torch.ones(7)}
    if suffix == ".pth":
        torch.save(tensors, whole)
    elif suffix == ".safetensors":
        save_file(tensors, whole)
    else:
        np.savez(whole, **{k: v.numpy() for k, v in tensors.items()})
    data = whole.read_bytes()
    spec = ModelSpec("sq", "torchvision", "squeezenet1_1")
    where = {"path": whole}
    source = lambda spec: WeightsSource("cached", str(where["path"]), "u", "the download")  # noqa: E731
    monkeypatch.setattr(check_mod, "locate_weights", source)
    assert check_mod.check_weights(spec) == "cached"
    for cut in (len(data) - 1, len(data) // 2, 10, 0):
        where["path"] = tmp_path / f"cut{cut}{suffix}"
        where["path"].write_bytes(data[:cut])
        with pytest.raises(ModelError) as err:
            check_mod.check_weights(spec)
        said = str(err.value)
        assert said.startswith("model 'sq': the download in the cache at ")
        assert str(where["path"]) in said and "truncated or damaged" in said
        assert f"delete {where['path'].resolve()} so that" in said
    legacy = tmp_path / "legacy.pth"
    torch.save(tensors, legacy, _use_new_zipfile_serialization=False)
    other = tmp_path / "model.bin"
    other.write_bytes(b"the download")
    for where["path"] in (legacy, other):
        assert check_mod.check_weights(spec) == "cached"


def test_a_cached_download_that_cannot_be_read_is_said_so_not_called_damaged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A permission is not a download cut short: deleting the file is not the fix."""
    from faults.faultkit import unreadable

    from repsim.zoo import check as check_mod
    from repsim.zoo.weights import WeightsSource

    path = tmp_path / "w.pth"
    torch.save({"w": torch.ones(3)}, path)
    source = WeightsSource("cached", str(path), None, "the download")
    monkeypatch.setattr(check_mod, "locate_weights", lambda spec: source)
    unreadable(monkeypatch, path)
    with pytest.raises(ModelError) as err:
        check_mod.check_weights(ModelSpec("sq", "torchvision", "squeezenet1_1"))
    said = str(err.value)
    assert said.startswith(
        f"model 'sq': the download: permission denied while trying to read {path}"
    )
    assert "chmod" in said and "delete" not in said


def test_a_damaged_blob_of_the_hugging_face_cache_is_named_for_deletion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Hugging Face cache links each snapshot file to a blob, and deleting the link alone
    would have it linked again to the same damaged blob: the fix names the blob."""
    from repsim.zoo import check as check_mod
    from repsim.zoo.weights import WeightsSource

    blob = tmp_path / "blobs" / "0123"
    blob.parent.mkdir()
    blob.write_bytes(b"PK\x03\x04 cut short")
    link = tmp_path / "snapshots" / "model.safetensors"
    link.parent.mkdir()
    link.symlink_to(blob)
    source = WeightsSource("cached", str(link), None, "timm weights x/y")
    monkeypatch.setattr(check_mod, "locate_weights", lambda spec: source)
    with pytest.raises(ModelError, match=f"at {link} cannot be read .* delete {blob} so that"):
        check_mod.check_weights(ModelSpec("t", "timm", "x"), fetch=False)


def test_weights_are_located_before_the_loader_was_ever_used(monkeypatch) -> None:
    """locate_weights imports the loader that registers the locator: a model looked up before
    anything built it was 'unknown source', and its download went unchecked."""
    import sys

    from repsim.zoo import registry
    from repsim.zoo import weights as weights_mod

    get_loader("torchvision")  # so that the module and registries put back after are this one
    monkeypatch.delitem(sys.modules, "repsim.zoo.loaders.torchvision_loader")
    monkeypatch.setattr(registry, "_LOADERS", {})
    monkeypatch.setattr(weights_mod, "_LOCATORS", {})
    got = weights_mod.locate_weights(ModelSpec("sq", "torchvision", "squeezenet1_1"))
    assert got.kind == "remote" and got.url.endswith(".pth")


def test_a_loader_without_a_locator_has_its_weights_said_unknown(monkeypatch) -> None:
    """A loader registered without a locator: the check cannot say where its weights come from
    and says so, rather than failing the model or calling it a local file."""
    from repsim.zoo import registry
    from repsim.zoo.check import check_weights
    from repsim.zoo.weights import local_weights_file, locate_weights

    monkeypatch.setitem(registry._LOADERS, "mine", lambda spec, **kwargs: None)
    spec = ModelSpec("m", "mine", "x")
    assert locate_weights(spec).kind == "none"
    assert check_weights(spec) == "unknown source"
    assert local_weights_file(spec) is None


def test_only_a_local_weights_file_is_fingerprinted(tmp_path: Path) -> None:
    """The stage keys fingerprint the weights: file, or the mini-zoo's own file; a model whose
    weights are downloaded, or a random-init model with no download source at all (a checkpoint
    without options.url), has none, and its key is made without asking for one."""
    from repsim.minizoo.loader import DEFAULT_DIR
    from repsim.zoo.weights import local_weights_file

    assert local_weights_file(ModelSpec("c", "checkpoint", "resnet50")) is None
    assert local_weights_file(ModelSpec("sq", "torchvision", "squeezenet1_1")) is None
    weights = tmp_path / "w.pth"
    given = ModelSpec("c", "checkpoint", "resnet50", weights=weights)
    assert local_weights_file(given) == str(weights)
    own = local_weights_file(ModelSpec("cnn-supervised-s0", "minizoo", "cnn"))
    assert own == str(DEFAULT_DIR / "cnn-supervised-s0.safetensors")


def _hf_cache_file(cache: Path, repo: str, filename: str) -> Path:
    """``filename`` of ``repo`` as huggingface_hub caches it (refs/main -> snapshots/<sha>)."""
    folder = cache / ("models--" + repo.replace("/", "--"))
    (folder / "refs").mkdir(parents=True, exist_ok=True)
    (folder / "refs" / "main").write_text("0" * 40)
    path = folder / "snapshots" / ("0" * 40) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"cached")
    return path


def test_a_hugging_face_file_in_the_cache_is_taken_from_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """timm weights on the Hub: remote (the URL of the first file timm reads) until any of the
    files it reads is in the HF cache, then cached at that file; another repo's file is not."""
    import huggingface_hub.constants

    from repsim.zoo.check import check_weights
    from repsim.zoo.weights import locate_weights

    cache = tmp_path / "hf"
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    spec = ModelSpec("t", "timm", "resnet10t.c3_in1k")
    folder = str(cache / "models--timm--resnet10t.c3_in1k")
    remote = locate_weights(spec)
    assert remote.kind == "remote" and remote.where == "timm/resnet10t.c3_in1k"
    assert remote.url.endswith("/timm/resnet10t.c3_in1k/resolve/main/model.safetensors")
    assert remote.cache_hint == folder
    _hf_cache_file(cache, "timm/resnet18.a1_in1k", "model.safetensors")
    assert locate_weights(spec).kind == "remote"
    cached = _hf_cache_file(cache, "timm/resnet10t.c3_in1k", "pytorch_model.bin")
    got = locate_weights(spec)
    assert (got.kind, got.where, got.cache_hint) == ("cached", str(cached), folder)
    assert check_weights(spec) == "cached"


# -- taps --------------------------------------------------------------------------------------
def test_bad_layer_lists_close_names() -> None:
    loaded = load_model(ModelSpec("r", "torchvision", "resnet18"), pretrained=False)
    with pytest.raises(ModelError, match="avgpool") as info:
        FeatureExtractor(loaded, ModelSpec("r", "torchvision", "resnet18", layer="avgpol"))
    assert "layer4" in str(info.value)


def test_a_bad_layer_names_the_network_its_closest_layers_and_its_top_level_modules() -> None:
    import ast
    from collections import OrderedDict

    from repsim.zoo.taps import module_names, resolve_layer

    blocks = torch.nn.Sequential(*(torch.nn.Linear(2, 2) for _ in range(10)))
    net = torch.nn.Sequential(
        OrderedDict(stem=torch.nn.Linear(2, 2), blocks=blocks, head=torch.nn.Linear(2, 2))
    )
    inner = [f"blocks.{i}" for i in range(10)]
    assert module_names(net) == ["stem", "blocks", *inner, "head"]  # the root is no layer
    with pytest.raises(ModelError) as info:
        resolve_layer(net, "hexxd")
    assert str(info.value) == (
        "layer 'hexxd' does not exist in Sequential; closest names: ['head']; top-level modules: "
        "['stem', 'blocks', 'head']. Set 'layer:' in the model spec to one of these (or null for "
        "the model's output)"
    )
    with pytest.raises(ModelError, match="closest names: none; top-level"):
        resolve_layer(net, "zzzzzz")
    with pytest.raises(ModelError) as info:
        resolve_layer(net, "blocks.")
    close = str(info.value).split("closest names: ")[1].split(";")[0]
    assert len(ast.literal_eval(close)) == 8  # the 8 closest of the 11 close ones


def test_taps_cls_pooled_and_hook() -> None:
    loaded = load_model(
        ModelSpec("v", "timm", "vit_tiny_patch16_224", options={"img_size": 32}), pretrained=False
    )
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        cls = FeatureExtractor(loaded, layer="norm", token="cls")(x)
        full = loaded.module.forward_features(x)
        pooled = FeatureExtractor(loaded)(x)
        block = FeatureExtractor(loaded, layer="blocks.0", token="mean")(x)
    torch.testing.assert_close(cls, full[:, 0])
    assert pooled.shape == (2, 192) and block.shape == (2, 192)


@pytest.mark.parametrize(
    ("shape", "token", "want"),
    [
        ((2, 3, 4), "cls", lambda t: t[:, 0]),
        ((2, 3, 4), "mean", lambda t: t.mean(dim=1)),
        ((2, 3, 4), "pooled", lambda t: t.mean(dim=1)),
        ((2, 3, 4), "none", lambda t: t.reshape(2, 12)),
        ((2, 5, 3, 3), "pooled", lambda t: t.mean(dim=(2, 3))),
        ((2, 5, 3, 3), "mean", lambda t: t.mean(dim=(2, 3))),
        ((2, 5, 3, 3), "none", lambda t: t.reshape(2, 45)),
        ((2, 5), "pooled", lambda t: t),
        ((2, 5), "none", lambda t: t),
        ((2, 2, 2, 2, 2), "pooled", lambda t: t.reshape(2, 16)),
    ],
)
def test_each_token_rule_reduces_a_tapped_output_as_documented(shape, token, want) -> None:
    """cls: the first token; mean/pooled: the mean over tokens or positions; none: flattened."""
    from repsim.zoo.taps import reduce_token

    out = torch.randn(*shape)
    torch.testing.assert_close(reduce_token(out, token), want(out), rtol=0, atol=0)
    # a module returning a tuple, a list or a dict is tapped at its first output
    other = torch.randn(2, 7)
    for wrapped in ((out, other), [out, other], {"last_hidden_state": out, "pooled": other}):
        torch.testing.assert_close(reduce_token(wrapped, token), want(out), rtol=0, atol=0)


def test_a_tap_that_cannot_give_features_says_why() -> None:
    from repsim.zoo.taps import reduce_token

    with pytest.raises(ModelError, match="token 'cls' needs a .* this layer is 4-d"):
        reduce_token(torch.randn(2, 5, 3, 3), "cls")
    with pytest.raises(ModelError, match="tapped output is a str, not a tensor; tap another"):
        reduce_token(("text",), "pooled")
    with pytest.raises(ModelError, match="token 'first' is not one of"):
        reduce_token(torch.randn(2, 3, 4), "first")


class _Chain(torch.nn.Module):
    """stem -> head, and a module the forward pass never calls."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Linear(4, 6)
        self.head = torch.nn.Linear(6, 3)
        self.unused = torch.nn.Linear(4, 4)
        self.heads_run = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        self.heads_run += 1  # not reached when a tap on the stem stops the pass
        return self.head(h)


def _chain(default_layer: str | None = None, default_token: str = "pooled"):
    from repsim.zoo.spec import LoadedModel, PreprocessSpec

    torch.manual_seed(0)
    prep = PreprocessSpec(resize=8, crop=8, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    return LoadedModel(_Chain().eval(), prep, default_layer, default_token)


def test_the_layer_tapped_is_the_one_asked_for_and_the_pass_stops_there() -> None:
    """An explicit layer beats the spec's, which beats the loader's default; the layers after
    the tap are not run, and a layer the pass never calls is an error naming it."""
    loaded = _chain(default_layer="head")
    net = loaded.module
    x = torch.randn(2, 4)
    with torch.no_grad():
        stem, head = net.stem(x), net(x)
        by_default = FeatureExtractor(loaded)
        by_spec = FeatureExtractor(loaded, ModelSpec("c", "torch_hub", "x", layer="stem"))
        spec_head = ModelSpec("c", "torch_hub", "x", layer="head")
        by_arg = FeatureExtractor(loaded, spec_head, layer="stem")
        assert (by_default.layer, by_spec.layer, by_arg.layer) == ("head", "stem", "stem")
        assert FeatureExtractor(loaded, ModelSpec("c", "torch_hub", "x")).layer == "head"
        torch.testing.assert_close(by_default(x), head)
        net.heads_run = 0
        torch.testing.assert_close(by_spec(x), stem)
        torch.testing.assert_close(by_arg(x), stem)
        assert net.heads_run == 0
        whole = FeatureExtractor(_chain(default_layer=None))
        assert whole.layer is None
        torch.testing.assert_close(whole(x), whole.module(x))
        unused = FeatureExtractor(loaded, layer="unused")
        with pytest.raises(ModelError, match="layer 'unused' was not called during the forward"):
            unused(x)


def test_the_token_rule_is_the_one_asked_for() -> None:
    """An explicit token beats the spec's, which beats the loader's default."""
    loaded = _chain(default_layer=None, default_token="cls")
    assert FeatureExtractor(loaded).token == "cls"
    spec = ModelSpec("c", "torch_hub", "x", token="mean")
    assert FeatureExtractor(loaded, spec).token == "mean"
    assert FeatureExtractor(loaded, spec, token="none").token == "none"
    with pytest.raises(ModelError, match="token 'first' is not one of"):
        FeatureExtractor(loaded, token="first")


@pytest.mark.parametrize(
    ("loader", "identifier"), [("torchvision", "resnet18"), ("minizoo", "cnn")]
)
def test_cls_token_of_a_pooled_output_is_refused_at_check(loader: str, identifier: str) -> None:
    """`token: cls` on a layer that is already (batch, dim) was ignored: pooled features under
    the name of a CLS token. `repsim models --check` (and the run's plan check) now refuse it."""
    from repsim.zoo.check import check_spec

    spec = ModelSpec("m", loader, identifier, token="cls")
    check = check_spec(spec, weights=False)
    assert not check.ok
    assert "token 'cls' needs a (batch, tokens, dim) output" in check.status
    assert check_spec(ModelSpec("m", loader, identifier, token="pooled"), weights=False).ok


@pytest.mark.parametrize(
    ("loader", "identifier"), [("torchvision", "resnet18"), ("minizoo", "cnn")]
)
def test_weights_folder_is_said_to_be_a_folder(
    tmp_path: Path, loader: str, identifier: str
) -> None:
    """A folder given as ``weights:`` was reported as missing (or as a raw OSError)."""
    from repsim.zoo.check import check_weights

    spec = ModelSpec("m", loader, identifier, weights=tmp_path)
    said = re.escape(  # and the fix: the file in it, not "the weights file itself"
        f"model 'm': weights {tmp_path} is a folder, not a file; point 'weights:' at the weights "
        "file in it (e.g. .safetensors or .pth)"
    )
    with pytest.raises(ModelError, match=said) as info:
        check_weights(spec)  # `repsim models --check` and the plan check of `repsim run`
    assert not isinstance(info.value, MissingWeightsError)
    with pytest.raises(ModelError, match=said):
        load_model(spec)


def test_a_weights_file_for_a_folder_loader_is_said_to_be_a_file(tmp_path: Path) -> None:
    """hf_transformers reads a save_pretrained folder: a file given as ``weights:`` passed the
    check and failed later as an unreadable config.json, with no word of the folder it needs."""
    from repsim.zoo.check import check_weights

    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"not read")
    spec = ModelSpec("a", "hf_transformers", "kakaobrain/align-base", weights=weights)
    said = f"model 'a': weights {weights} is a file, but the hf_transformers loader reads a folder"
    with pytest.raises(ModelError, match=re.escape(said) + ".*point 'weights:' at that folder"):
        check_weights(spec)
    with pytest.raises(ModelError, match=re.escape(said)):
        load_model(spec)
