"""``repsim models --check``: every study model builds offline on the meta device with its dim."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from repsim.zoo import check_models, list_models


def _good_wrongdim_badlayer(tmp_path: Path) -> Path:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "models:\n"
        "  - {id: good, loader: torchvision, identifier: resnet18, layer: avgpool, token: pooled, metadata: {embed_dim: 512}}\n"
        "  - {id: wrongdim, loader: timm, identifier: resnet18, metadata: {embed_dim: 100}}\n"
        "  - {id: badlayer, loader: timm, identifier: resnet18, layer: nolayer, metadata: {embed_dim: 512}}\n"
    )
    return cfg


def _columns(table: str) -> list[list[str]]:
    """The cells of a table of `repsim models`, cut at the columns of its header."""
    header, rule, *rows = table.split("\n\n")[0].splitlines()
    starts = [i for i, c in enumerate(header) if c != " " and (i == 0 or header[i - 1] == " ")]
    assert rule.split() == ["-" * (b - a - 2) for a, b in zip(starts, starts[1:])] + [
        "-" * max(len(line) - starts[-1] for line in [header, *rows])
    ]  # each rule as wide as its column
    assert not any(line.endswith(" ") for line in [header, rule, *rows])
    bounds = [*starts, None]
    return [[line[a:b].strip() for a, b in zip(bounds, bounds[1:])] for line in [header, *rows]]


def test_check_reports_mismatch_and_errors(tmp_path: Path, monkeypatch, downloads_on) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # resnet18 not downloaded here
    cfg = _good_wrongdim_badlayer(tmp_path)
    table, ok = check_models(cfg)
    assert not ok
    lines = {line.split()[0]: line for line in table.splitlines()[2:5]}
    assert lines["good"].rstrip().endswith("ok")
    assert "gives 512-d features but metadata.embed_dim says 100" in lines["wrongdim"]
    assert "does not exist" in lines["badlayer"]
    assert lines["badlayer"].split()[2:5] == ["-", "512", "nolayer"]  # the layer it was asked for
    assert "good" in list_models(cfg)
    # below the table, the full message of each failing model (not of the ok one), each naming
    # its model once: a bad layer's message, written without the model, is prefixed with its id
    table, summary = table.split("\n\n")[1:]
    errors = table.splitlines()
    assert len(errors) == 2
    assert errors[0].startswith("model 'wrongdim': the tap") and "gives 512-d" in errors[0]
    assert errors[1].startswith("badlayer: layer 'nolayer' does not exist in ResNet; closest")
    assert summary.startswith("1/3 models ok (")
    # the one ok model's weights are not downloaded: said in the summary, where "1/3 models ok"
    # alone read as ready to run
    assert summary.endswith(
        ", meta device, weights checked). The weights of 1 of them are not downloaded yet: a run "
        "downloads them, and one offline refuses them"
    )


def test_offline_the_check_fails_for_weights_a_run_would_refuse(tmp_path: Path, monkeypatch):
    """With downloads off, weights not downloaded yet were "ok" (exit 0: "64/64 models ok" for
    paper.yaml) and only a sentence said that the run refuses them: `repsim models --check &&
    repsim run` passed the check and failed. Now the row's error is the run's refusal; a
    mismatched embed_dim is still named first (a fix the config needs wherever it runs)."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    table, ok = check_models(_good_wrongdim_badlayer(tmp_path))
    assert not ok
    rows = {r.split()[0]: re.split(r"\s{2,}", r, maxsplit=6) for r in table.splitlines()[2:5]}
    good, wrongdim = rows["good"], rows["wrongdim"]
    assert good[:6] == ["good", "torchvision", "512", "512", "avgpool", "not cached"]
    assert good[6].startswith("error: MissingWeightsError: model 'good' (torchvision 'resnet18')")
    assert wrongdim[5] == "not cached" and "metadata.embed_dim says 100" in wrongdim[6]
    errors, summary = table.split("\n\n")[1:]
    first = errors.splitlines()[0]
    assert first.startswith("model 'good' (torchvision 'resnet18'): torchvision weights ")
    assert "is not available offline. Download it on a machine with internet" in first
    assert summary.startswith("0/3 models ok (") and "not downloaded yet" not in summary


def test_models_check_table_puts_each_value_under_its_header(tmp_path: Path) -> None:
    cfg = _good_wrongdim_badlayer(tmp_path)
    cfg.write_text(cfg.read_text() + "  - {id: nodim, loader: timm, identifier: resnet18}\n")
    table, ok = check_models(cfg, weights=False)
    header, good, wrongdim, badlayer, nodim = _columns(table)
    assert header == ["id", "loader", "dim", "expected", "layer", "weights", "status"]
    assert good == ["good", "torchvision", "512", "512", "avgpool", "not checked", "ok"]
    assert wrongdim[:6] == ["wrongdim", "timm", "512", "100", "(output)", "not checked"]
    assert badlayer[:6] == ["badlayer", "timm", "-", "512", "nolayer", "-"]
    assert badlayer[6].startswith("error: ModelError: layer 'nolayer' does not exist")
    assert nodim == ["nodim", "timm", "512", "-", "(output)", "not checked", "ok"]
    assert not ok and table.endswith(", meta device, no weights)")


def test_models_lists_each_model_with_its_metadata_under_its_header(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "models:\n"
        "  - {id: a, loader: timm, identifier: resnet18, metadata: {objective: supervised, "
        "architecture_class: cnn, data_class: imagenet, size_class: small, embed_dim: 512}}\n"
        "  - {id: b, loader: minizoo, identifier: cnn, metadata: {data_class: faces}}\n"
        "select: {models: [b, a]}\n"
    )
    header, *rows = _columns(list_models(cfg))
    assert header == [
        "id", "loader", "identifier", "objective", "architecture_class", "data_class",
        "size_class", "embed_dim",
    ]  # fmt: skip
    assert rows == [  # the selection, in its order; '-' for what the entry does not give
        ["b", "minizoo", "cnn", "-", "-", "faces", "-", "-"],
        ["a", "timm", "resnet18", "supervised", "cnn", "imagenet", "small", "512"],
    ]


def test_models_of_a_loaded_config_are_checked_and_an_unknown_selection_is_named() -> None:
    import yaml

    from repsim.errors import ConfigError

    raw = yaml.safe_load(
        "models:\n  - {id: a, loader: minizoo, identifier: cnn, metadata: {data_class: faces}}\n"
    )
    table, ok = check_models(raw, weights=False)  # a mapping, as read from YAML
    assert ok and "1/1 models ok" in table
    assert "faces" in list_models(raw)
    with pytest.raises(ConfigError, match=r"select\.models names 1 unknown id: 'b'"):
        check_models({**raw, "select": {"models": ["b"]}}, weights=False)


def test_the_noise_of_building_on_the_meta_device_is_silenced_and_logging_restored() -> None:
    import logging
    import warnings

    from repsim.zoo.check import _quiet

    root = logging.getLogger()
    before = root.level
    root.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with _quiet():
                assert not logging.getLogger("open_clip").isEnabledFor(logging.WARNING)
                assert logging.getLogger("open_clip").isEnabledFor(logging.ERROR)
                warnings.warn("copying into a meta parameter is a no-op", UserWarning, stacklevel=1)
        assert caught == []
        assert root.level == logging.INFO  # the caller's logging as it was
    finally:
        root.setLevel(before)


def test_a_config_without_models_is_not_reported_ok(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("models: []\n")
    table, ok = check_models(cfg)
    assert not ok and "0/0 models ok" in table


@pytest.mark.slow
def test_paper_models_all_resolve(repo_root: Path, downloads_on) -> None:
    table, ok = check_models(repo_root / "data" / "configs" / "paper_models.yaml")
    assert "64/64 models ok" in table, table
    assert ok


@pytest.mark.slow
@pytest.mark.parametrize("config", ["paper_models.yaml", "quickstart.yaml"])
def test_image_tower_parameters_are_those_of_the_built_network(
    repo_root: Path, config: str
) -> None:
    # an OpenCLIP model's published params_m counts its text tower too (ViT-B-16: 149.6 against
    # 86.2 in the image tower the features come from); the GPU projection prices image_params_m,
    # so every open_clip entry has one, and it is the count of the network the zoo builds
    import yaml

    from repsim.zoo import load_model
    from repsim.zoo.check import _quiet
    from repsim.zoo.registry import parse_models

    entries = yaml.safe_load((repo_root / "data" / "configs" / config).read_text())["models"]
    clip = [e for e in entries if e["loader"] == "open_clip"]
    assert clip and all("image_params_m" in e["metadata"] for e in clip)
    for spec, entry in zip(parse_models(clip), clip):
        with _quiet():
            net = load_model(spec, pretrained=False, device="meta").module
        counted = sum(p.numel() for p in net.parameters()) / 1e6
        assert counted == pytest.approx(entry["metadata"]["image_params_m"], abs=0.05), spec.id
        assert entry["metadata"]["params_m"] > counted + 1, spec.id  # the text tower on top


# ----------------------------------------------------------------------------- weights, before the work
import contextlib  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402

import torch  # noqa: E402

from repsim.errors import MissingWeightsError, ModelError  # noqa: E402
from repsim.plan import load_plan  # noqa: E402
from repsim.zoo import weights as weights_mod  # noqa: E402

ZOO = Path(__file__).resolve().parents[1] / "data" / "minizoo"
TINY = Path(__file__).resolve().parents[1] / "data" / "configs" / "tiny.yaml"


def _config(tmp_path: Path, models: str, select: str) -> Path:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"include: [{TINY}]\nmodels:\n{models}select: {{models: {select}, datasets: [faces]}}\n"
    )
    return cfg


def _minizoo_entry(model_id: str, identifier: str, weights: Path) -> str:
    return (
        f"  - {{id: {model_id}, loader: minizoo, identifier: {identifier}, weights: {weights}}}\n"
    )


def _refused_before_decoding(tmp_path: Path, monkeypatch, model_id: str, weights: Path) -> str:
    """Run a mini-zoo config of one good model and ``model_id`` with ``weights``, failing the test
    if an image is decoded before the weights are checked: the run's refusal message."""
    from repsim.pipeline import run

    def no_decoding(*args, **kwargs):
        raise AssertionError("an image was decoded before the weights were checked")

    monkeypatch.setattr("repsim.stimuli.stimset.StimulusSet.load_images", no_decoding)
    monkeypatch.setattr("repsim.stimuli.stimset.StimulusSet.verify", no_decoding)
    entry = _minizoo_entry(model_id, "cnn", weights)
    cfg = _config(tmp_path, entry, f"[cnn-supervised-s0, {model_id}]")
    with pytest.raises(ModelError) as err:
        run(cfg, tmp_path / "run", device="cpu")
    assert "1 of 2 models cannot be used" in str(err.value)
    assert not (tmp_path / "run" / "stimuli").exists()
    return str(err.value)


def test_truncated_weights_fail_before_any_image_is_decoded(tmp_path: Path, monkeypatch) -> None:
    blob = (ZOO / "cnn-supervised-s0.safetensors").read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(blob[: len(blob) // 2])
    message = _refused_before_decoding(tmp_path, monkeypatch, "cut", cut)
    assert f"model 'cut': weights file {cut} cannot be used" in message
    assert "truncated" in message and "repsim minizoo train" in message


def test_weights_of_another_architecture_are_found_at_plan_time(tmp_path: Path) -> None:
    cfg = _config(
        tmp_path, _minizoo_entry("wrong", "cnn", ZOO / "vit-simclr-s0.safetensors"), "[wrong]"
    )
    with pytest.raises(  # the loader's own message and fix, not the damaged-file one
        ModelError,
        match="model 'wrong': .*vit-simclr-s0.safetensors holds architecture 'vit', but the "
        "spec's identifier is 'cnn'; fix the identifier or the weights path",
    ):
        load_plan(cfg)


def test_wrong_embed_dim_is_refused_by_the_run_as_by_models_check(tmp_path: Path) -> None:
    """The results carry metadata.embed_dim as the model's width: `repsim run` only warned about
    a mismatch (and analysed the wrong width) where `repsim models --check` failed the row."""
    entry = (
        f"  - {{id: wide, loader: minizoo, identifier: cnn, weights: "
        f"{ZOO / 'cnn-supervised-s0.safetensors'}, metadata: {{embed_dim: 100}}}}\n"
    )
    cfg = _config(tmp_path, entry, "[wide]")
    table, ok = check_models(cfg)
    assert not ok and "metadata.embed_dim says 100" in table
    with pytest.raises(
        ModelError,
        match=r"model 'wide': the tap at \(output\) gives \d+-d features but metadata.embed_dim says 100",
    ):
        load_plan(cfg)


def _torchvision_file(tmp_path: Path, edit) -> Path:
    import torchvision

    torch.manual_seed(0)
    state = torchvision.models.get_model("squeezenet1_1", weights=None).state_dict()
    edit(state)
    path = tmp_path / "squeeze.pth"
    torch.save(state, path)
    return path


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (lambda s: None, None),
        (lambda s: s.pop("features.0.weight"), "Missing key.*features.0.weight"),
        (
            lambda s: s.update({"features.0.bias": torch.zeros(3)}),
            "size mismatch for features.0.bias",
        ),
    ],
    ids=["fits", "missing-key", "wrong-shape"],
)
def test_local_weights_file_matched_against_the_architecture(tmp_path: Path, edit, match) -> None:
    from repsim.zoo.check import _specs, check_specs

    path = _torchvision_file(tmp_path, edit)
    entry = f"  - {{id: sq, loader: torchvision, identifier: squeezenet1_1, weights: {path}}}\n"
    cfg = _config(tmp_path, entry, "[sq]")
    table, ok = check_models(cfg)
    row = next(line for line in table.splitlines() if line.startswith("sq "))
    assert [c.ok for c in check_specs(_specs(cfg))] == [match is None]  # weights checked by default
    if match is None:
        assert ok and "file ok" in row and row.endswith("ok"), table
        assert table.split("\n\n")[1].startswith("1/1 models ok")  # no error list in between
        load_plan(cfg)
        return
    assert not ok and "error: ModelError" in row
    with pytest.raises(ModelError, match=match):
        load_plan(cfg)


def test_a_file_of_another_architecture_is_named_in_a_short_message(tmp_path: Path) -> None:
    """torch's own error lists every key that does not fit (about 8 kB for a ResNet-18 file
    given to SqueezeNet): the message keeps its start, the model, the file and the fix."""
    import torchvision

    path = tmp_path / "resnet.pth"
    torch.save(torchvision.models.get_model("resnet18", weights=None).state_dict(), path)
    entry = f"  - {{id: sq, loader: torchvision, identifier: squeezenet1_1, weights: {path}}}\n"
    with pytest.raises(ModelError) as err:
        load_plan(_config(tmp_path, entry, "[sq]"))
    message = str(err.value)
    assert f"model 'sq': weights {path} do not fit squeezenet1_1: Error(s) in loading" in message
    assert (
        " .... The file is for another architecture: point 'weights:' at the file made for "
        "squeezenet1_1" in message
    )
    assert len(message) < 1500


def test_a_truncated_weights_file_of_a_zoo_loader_is_refused_with_its_fix(tmp_path: Path) -> None:
    """The loader's own unreadable-file error does not name the model: the check names it, the
    file, the architecture and the fix, rather than passing the file or losing the cause."""
    from repsim.zoo import ModelSpec
    from repsim.zoo.check import check_spec

    path = _torchvision_file(tmp_path, lambda s: None)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    got = check_spec(ModelSpec("sq", "torchvision", "squeezenet1_1", weights=path))
    assert not got.ok and got.weights == "-"
    message = str(got.error)
    assert message.startswith(
        f"model 'sq': weights file {path} cannot be used for torchvision 'squeezenet1_1': "
        f"ModelError: cannot read weights file {path}: "
    )
    assert message.endswith("or point 'weights:' at the file made for this architecture")
    assert " ..." not in message  # a short reason is whole, not said to be cut


def test_the_reason_a_weights_file_cannot_be_used_is_cut_but_the_fix_is_kept(
    tmp_path: Path, monkeypatch
) -> None:
    """A loader's error listing every missing key: the message keeps its first 600 characters,
    the model, the file and the fix, not pages of keys."""
    from repsim.zoo import ModelSpec, registry
    from repsim.zoo.check import check_weights

    reason = "Missing key(s) in state_dict: " + ", ".join(
        f'"blocks.{i}.weight"' for i in range(200)
    )

    def strict(spec, **kwargs):
        raise RuntimeError(reason)

    monkeypatch.setitem(registry._LOADERS, "strict", strict)
    path = tmp_path / "w.pth"
    spec = ModelSpec("s", "strict", "arch", weights=path)
    with pytest.raises(MissingWeightsError, match=f"model 's': weights file {path} does not exist"):
        check_weights(spec)  # said as missing, not as the loader's error, whatever the loader
    path.write_bytes(b"any")
    with pytest.raises(ModelError) as err:
        check_weights(spec)
    assert str(err.value).startswith(
        f"model 's': weights file {path} cannot be used for strict 'arch': RuntimeError: "
        f"{reason[:600]} .... The file is truncated, damaged or for another architecture"
    )


def test_a_loader_that_fails_is_one_row_naming_the_model(monkeypatch) -> None:
    """A loader's own exception (a bad option, a missing package) is the model's row, not a
    crash that hides the other models."""
    from repsim.zoo import ModelSpec, registry
    from repsim.zoo.check import check_specs

    def broken(spec, **kwargs):
        raise TypeError("unexpected keyword 'depth'")

    monkeypatch.setitem(registry._LOADERS, "broken", broken)
    bad, good = check_specs(
        [ModelSpec("b", "broken", "x"), ModelSpec("m", "minizoo", "cnn")], weights=False
    )
    assert isinstance(bad.error, ModelError)
    assert str(bad.error) == (
        "model 'b': cannot be built: TypeError: unexpected keyword 'depth'; check its identifier, "
        "and that the library behind the loader is installed"
    )
    assert bad.weights == "-" and bad.dim is None
    assert good.ok and good.dim is not None and good.weights == "not checked"
    (opted,) = check_specs(
        [ModelSpec("b", "broken", "x", options={"img_size": "abc", "depth": 3})], weights=False
    )
    assert str(opted.error).endswith(
        "; check its options (depth, img_size: given to the broken library as written) and its "
        "identifier"
    )


def test_models_check_honours_select_and_opens_weights_files(tmp_path: Path) -> None:
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a safetensors file")
    models = _minizoo_entry("broken", "cnn", broken)
    cfg = _config(tmp_path, models, "[cnn-supervised-s0, broken]")
    table, ok = check_models(cfg)
    assert not ok
    ids = [line.split()[0] for line in table.splitlines()[2:4]]
    assert ids == ["cnn-supervised-s0", "broken"]  # the selection, not the 46 models of the config
    assert "1/2 models ok" in table
    assert f"\nmodel 'broken': weights file {broken} cannot be used" in table
    assert "broken: model 'broken'" not in table  # the model named once


@pytest.fixture
def no_network(tmp_path: Path, monkeypatch) -> list[str]:
    """No network and no HF_HUB_OFFLINE: every request fails like a machine without a route."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "REPSIM_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # nothing cached
    monkeypatch.setattr(weights_mod, "_HOST_ANSWERS", {})
    calls: list[str] = []

    def unreachable(request, *args, **kwargs):
        calls.append(getattr(request, "full_url", str(request)))
        raise urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))

    monkeypatch.setattr(urllib.request, "urlopen", unreachable)
    return calls


def test_offline_without_the_flag_fails_once_per_model_with_the_fix(
    tmp_path: Path, no_network
) -> None:
    entries = (
        "  - {id: sq, loader: torchvision, identifier: squeezenet1_1}\n"
        "  - {id: sq0, loader: torchvision, identifier: squeezenet1_0}\n"
    )
    cfg = _config(tmp_path, entries, "[sq, sq0, cnn-supervised-s0]")
    with pytest.raises(MissingWeightsError) as err:
        load_plan(cfg)
    message = str(err.value)
    assert "2 of 3 models cannot be used" in message
    assert "leave them out with select: {models: [...]} (not sq, sq0). The datasets are " in message
    assert message.endswith(f"`repsim datasets --config {cfg} --check` checks them now")
    # every model failed: leaving the failing ones out would leave none
    only_bad = _config(tmp_path, entries, "[sq, sq0]")
    with pytest.raises(MissingWeightsError) as err:
        load_plan(only_bad)
    assert "Fix them: every model this run would use failed, so leaving them out leaves none" in (
        str(err.value)
    )
    assert "model 'sq' (torchvision 'squeezenet1_1')" in message and "model 'sq0'" in message
    assert (
        "Connection refused" in message and "HF_HUB_OFFLINE=1" in message and "'weights:" in message
    )
    assert len(no_network) == 1  # one request for the host, not one per model, task or retry
    # `models --check` never contacts the network: weights to download are reported, not fetched
    table, ok = check_models(cfg)
    assert ok and "not cached" in table and len(no_network) == 1
    assert table.endswith(
        "The weights of 2 of them are not downloaded yet: a run downloads them, and one offline refuses them"
    )


def test_a_failed_host_is_asked_again_by_a_later_run(
    tmp_path: Path, no_network, monkeypatch
) -> None:
    # a notebook kernel keeps the module: a network failure that has passed must not fail every
    # later run of the process, and the checks of one run still ask a host once
    entries = (
        "  - {id: sq, loader: torchvision, identifier: squeezenet1_1}\n"
        "  - {id: sq0, loader: torchvision, identifier: squeezenet1_0}\n"
    )
    cfg = _config(tmp_path, entries, "[sq, sq0]")
    with pytest.raises(MissingWeightsError, match="Connection refused"):
        load_plan(cfg)
    assert len(no_network) == 1

    def answers(request, *args, **kwargs):
        no_network.append(request.full_url)
        return contextlib.nullcontext()

    monkeypatch.setattr(urllib.request, "urlopen", answers)
    with pytest.raises(MissingWeightsError, match="Connection refused"):
        load_plan(cfg)  # within the same run's window: the answer is kept, nothing asked
    assert len(no_network) == 1
    monkeypatch.setattr(weights_mod, "HOST_ANSWER_KEPT_S", 0.0)  # the window has passed
    load_plan(cfg)
    assert len(no_network) == 3  # asked again: the weights are downloadable now
    monkeypatch.setattr(weights_mod, "HOST_ANSWER_KEPT_S", 3600.0)
    load_plan(cfg)
    assert len(no_network) == 3  # an answer is kept too, for both models


def test_weights_to_download_are_asked_for_only_when_fetching(no_network, monkeypatch) -> None:
    """`repsim models --check` reports weights to download as not cached without a request; the
    run's check asks the source once and says downloadable when it answers, else names it."""
    from repsim.zoo import ModelSpec
    from repsim.zoo.check import check_weights
    from repsim.zoo.weights import locate_weights

    spec = ModelSpec("sq", "torchvision", "squeezenet1_1")
    assert check_weights(spec, fetch=False) == "not cached" and no_network == []
    url = locate_weights(spec).url
    with pytest.raises(MissingWeightsError, match=f"model 'sq'.*{url}: URLError"):
        check_weights(spec)
    assert no_network == [url]
    monkeypatch.setattr(weights_mod, "_HOST_ANSWERS", {})
    monkeypatch.setattr(urllib.request, "urlopen", lambda *a, **k: contextlib.nullcontext())
    assert check_weights(spec) == "downloadable"


def test_offline_flag_fails_without_any_request(tmp_path: Path, no_network, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cfg = _config(
        tmp_path, "  - {id: sq, loader: torchvision, identifier: squeezenet1_1}\n", "[sq]"
    )
    with pytest.raises(MissingWeightsError, match="not available offline"):
        load_plan(cfg)
    assert no_network == []


def test_timm_file_missing_weights_is_not_loaded_silently(tmp_path: Path) -> None:
    # timm itself loads files non-strictly once the classifier is dropped; the loader must not
    import timm

    from repsim.zoo import ModelSpec, load_model

    torch.manual_seed(0)
    state = timm.create_model("resnet10t", pretrained=False, num_classes=0).state_dict()
    torch.save(state, tmp_path / "good.pth")
    state.pop("conv1.0.weight")
    torch.save(state, tmp_path / "bad.pth")
    good = load_model(ModelSpec("t", "timm", "resnet10t.c3_in1k", weights=tmp_path / "good.pth"))
    assert torch.equal(
        good.module.state_dict()["layer1.0.conv1.weight"],
        torch.load(tmp_path / "good.pth")["layer1.0.conv1.weight"],
    )
    with pytest.raises(ModelError, match=r"does not cover 1 keys.*conv1\.0\.weight"):
        load_model(ModelSpec("t", "timm", "resnet10t.c3_in1k", weights=tmp_path / "bad.pth"))


@pytest.mark.filterwarnings("ignore:for .*meta parameter:UserWarning")
def test_a_file_of_a_deeper_architecture_is_refused_not_loaded_in_part(tmp_path: Path) -> None:
    """A ResNet-34 file loaded into a ResNet-18 covers every ResNet-18 weight, so only its extra
    blocks (layer1.2, ...) tell it apart; a non-strict load dropped them with an INFO line and
    the run went on with weights of another model. Refused before the run (the check loads on
    the meta device), by timm and by the checkpoint loader; the file's classifier and a
    momentum encoder's keys (under modules the model lacks) are extras and still load."""
    import timm
    import torchvision

    from repsim.zoo import ModelSpec, load_model
    from repsim.zoo.check import check_weights

    torch.manual_seed(0)
    torch.save(timm.create_model("resnet34", pretrained=False).state_dict(), tmp_path / "r34.pth")
    r18 = timm.create_model("resnet18", pretrained=False).state_dict()  # with its classifier
    torch.save(r18, tmp_path / "r18.pth")
    spec = ModelSpec("t", "timm", "resnet18", weights=tmp_path / "r34.pth")
    with pytest.raises(ModelError, match=r"model 't': .*under modules of timm:resnet18.*layer1\.2"):
        check_weights(spec)
    with pytest.raises(ModelError, match="for another architecture"):
        load_model(spec)
    assert check_weights(ModelSpec("t", "timm", "resnet18", weights=tmp_path / "r18.pth")) == (
        "file ok"
    )
    deep = torchvision.models.resnet34().state_dict()
    torch.save(deep, tmp_path / "tv34.pth")
    wrapped = {**torchvision.models.resnet18().state_dict()}
    wrapped.update({f"encoder_k.{k}": v for k, v in list(wrapped.items())[:3]})
    torch.save(wrapped, tmp_path / "moco.pth")
    with pytest.raises(ModelError, match=r"layer1\.2\..*another architecture"):
        load_model(ModelSpec("c", "checkpoint", "resnet18", weights=tmp_path / "tv34.pth"))
    load_model(ModelSpec("c", "checkpoint", "resnet18", weights=tmp_path / "moco.pth"))


def test_align_folder_missing_vision_weights_is_an_error(tmp_path: Path) -> None:
    tf = pytest.importorskip("transformers")
    import safetensors.torch as st

    from repsim.zoo import ModelSpec, load_model
    from repsim.zoo.check import check_weights

    _tiny_align_folder(tf, tmp_path / "ok")
    ok = ModelSpec("a", "hf_transformers", "kakaobrain/align-base", weights=tmp_path / "ok")
    load_model(ok)
    assert check_weights(ok) == "file ok"  # a save_pretrained folder, not "does not exist"
    state = st.load_file(tmp_path / "ok" / "model.safetensors")
    key = next(k for k in state if k.startswith("vision_model") and k.endswith(".weight"))
    del state[key]
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "config.json").write_text((tmp_path / "ok" / "config.json").read_text())
    st.save_file(state, tmp_path / "bad" / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ModelError, match=f"do not cover 1 keys of the vision tower.*{key}"):
        load_model(
            ModelSpec("a", "hf_transformers", "kakaobrain/align-base", weights=tmp_path / "bad")
        )


def test_every_failing_model_is_named_in_the_run_message(tmp_path: Path) -> None:
    """Two models with the same bad architecture: each line of the message says which model."""
    entries = "".join(
        f"  - {{id: {m}, loader: timm, identifier: vit_bsae_patch16_224}}\n"
        for m in ("vitA", "vitB")
    )
    with pytest.raises(ModelError) as err:
        load_plan(_config(tmp_path, entries, "[vitA, vitB]"))
    lines = str(err.value).splitlines()
    assert any(line.strip().startswith("vitA:") or "'vitA'" in line for line in lines)
    assert any(line.strip().startswith("vitB:") or "'vitB'" in line for line in lines)


def _tiny_align_folder(tf, folder: Path) -> None:
    vision = tf.AlignVisionConfig(width_coefficient=0.1, depth_coefficient=0.1, image_size=32)
    text = tf.AlignTextConfig(
        vocab_size=100, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=16,
    )  # fmt: skip
    config = tf.AlignConfig(
        text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=8
    )
    torch.manual_seed(0)
    tf.AlignModel(config).save_pretrained(folder)


def test_align_check_reports_the_width_of_the_configured_model(tmp_path: Path) -> None:
    """The meta-device check built ALIGN-base's default config whatever the model, so `repsim
    models --check` reported 640-d features for any folder or identifier."""
    tf = pytest.importorskip("transformers")
    from repsim.zoo import ModelSpec
    from repsim.zoo.check import check_spec

    _tiny_align_folder(tf, tmp_path / "tiny")
    model = tf.AlignModel.from_pretrained(tmp_path / "tiny").vision_model.eval()
    with torch.no_grad():
        want = model(pixel_values=torch.zeros(1, 3, 289, 289)).pooler_output.shape[1]
    assert want != 640
    spec = ModelSpec("a", "hf_transformers", "kakaobrain/align-base", weights=tmp_path / "tiny")
    got = check_spec(spec)
    assert got.ok and got.dim == want and got.weights == "file ok"


def test_align_check_does_not_guess_the_width_of_a_model_it_cannot_read(monkeypatch) -> None:
    """An ALIGN identifier whose config is neither local nor cached was checked as ALIGN-base
    (640-d): `repsim models --check` said 640 and a random-init run built ALIGN-base. Its width
    is now unknown until downloaded, and a random-init model of it is refused by name."""
    pytest.importorskip("transformers")
    from repsim.errors import MissingWeightsError, UnknownArchitectureError
    from repsim.zoo import ModelSpec, load_model
    from repsim.zoo import check as check_mod
    from repsim.zoo.check import check_spec

    other = ModelSpec("x", "hf_transformers", "someone/align-large-not-cached")
    got = check_spec(other)  # before anything is downloaded (HF_HUB_OFFLINE in the tests)
    assert isinstance(got.error, MissingWeightsError) and "not available offline" in got.status
    assert got.dim is None and got.weights == "not cached"
    # where a run would download it (the libraries kept offline: no request from this test)
    monkeypatch.setattr(check_mod, "is_offline", lambda: False)  # as the downloads_on fixture
    got = check_spec(other)
    assert got.ok and got.dim is None and got.weights == "not cached"
    assert got.status == "ok (width known once downloaded)"
    no_weights = check_spec(other, weights=False)
    assert isinstance(no_weights.error, UnknownArchitectureError)
    with pytest.raises(UnknownArchitectureError, match=r"model 'x'.*someone/align-large-not-c"):
        load_model(other, pretrained=False, device="meta")
    # ALIGN-base's architecture is the default config, known without one
    base = check_spec(ModelSpec("a", "hf_transformers", "kakaobrain/align-base"))
    assert base.ok and base.dim == 640 and base.status == "ok"


def test_align_loader_refuses_a_model_of_another_kind(tmp_path: Path) -> None:
    tf = pytest.importorskip("transformers")
    from repsim.zoo import ModelSpec, load_model
    from repsim.zoo.check import check_spec

    vit = tf.ViTConfig(
        hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=16,
        image_size=32, patch_size=8,
    )  # fmt: skip
    tf.ViTModel(vit).save_pretrained(tmp_path / "vit")
    spec = ModelSpec(
        "v", "hf_transformers", "google/vit-base-patch16-224", weights=tmp_path / "vit"
    )
    got = check_spec(spec)
    assert not got.ok and "builds ALIGN" in str(got.error) and "'vit' model" in str(got.error)
    with pytest.raises(ModelError, match=r"model 'v': the hf_transformers loader builds ALIGN"):
        load_model(spec)


def test_a_random_init_run_asks_for_no_pretrained_weights(tmp_path: Path, no_network) -> None:
    """With extract.pretrained false the models are built without weights, so weights that
    would have to be downloaded are not asked for (asking would refuse such a run offline); the
    feature width the meta-device check finds is kept for the free-space estimate (this model
    records none in its metadata)."""
    cfg = _config(
        tmp_path, "  - {id: sq, loader: torchvision, identifier: squeezenet1_1}\n", "[sq]"
    )
    cfg.write_text(cfg.read_text() + "extract: {pretrained: false}\n")
    plan = load_plan(cfg)
    assert no_network == [] and plan.model("sq").embed_dim is None
    assert plan.feature_dim(plan.model("sq")) == (plan.feature_dims["sq"], True)


def test_a_missing_download_beside_a_broken_file_is_a_model_error(
    tmp_path: Path, no_network
) -> None:
    """The refusal is a MissingWeightsError only when every model lacks its weights (a missing
    file has one fix); with a truncated file among them it is a ModelError, and each model is
    named once at the head of its line."""
    blob = (ZOO / "cnn-supervised-s0.safetensors").read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(blob[: len(blob) // 2])
    entries = (
        _minizoo_entry("cut", "cnn", cut)
        + "  - {id: sq, loader: torchvision, identifier: squeezenet1_1}\n"
    )
    with pytest.raises(ModelError) as err:
        load_plan(_config(tmp_path, entries, "[cut, sq]"))
    assert type(err.value) is ModelError
    lines = str(err.value).splitlines()[1:3]
    assert lines[0].strip().startswith("model 'cut': weights file") and "cut: " not in lines[0]
    assert lines[1].strip().startswith("model 'sq' (torchvision 'squeezenet1_1')")


def test_nan_weights_fail_before_any_image_is_decoded(tmp_path: Path, monkeypatch) -> None:
    """A model with a NaN weight gives NaN for every image: refused at the pre-run check (the
    check reads the file anyway), naming the model, the file, the tensor and the fix, not after
    the models before it were extracted."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    source = ZOO / "cnn-supervised-s0.safetensors"
    with safe_open(str(source), "pt") as handle:
        metadata = handle.metadata()
    state = load_file(source)
    key = next(k for k, v in state.items() if v.is_floating_point() and v.numel() > 1)
    state[key] = state[key].clone()
    state[key].view(-1)[1] = float("nan")
    bad = tmp_path / "nan.safetensors"
    save_file(state, bad, metadata=metadata)
    message = _refused_before_decoding(tmp_path, monkeypatch, "nan", bad)
    assert (
        f"model 'nan': weights file {bad} holds NaN in 1 tensor the model loads ({key})" in message
    )
    assert "repsim minizoo train" in message
    cfg = tmp_path / "c.yaml"
    table, ok = check_models(cfg)
    assert not ok and "holds NaN" in table


@pytest.mark.parametrize("fmt", ["zip", "legacy", "nested", "npz", "folder"])
def test_nan_weights_are_found_in_every_format_a_loader_reads(tmp_path: Path, fmt: str) -> None:
    """Each format of a local weights file is scanned, nested checkpoints included, for the
    tensors the model loads: an infinite value (a legitimate attention mask), integer buffers,
    and NaN outside the model's keys (optimizer state, a dropped head) do not count; a file or
    array the scan cannot read is skipped and the rest still scanned."""
    import numpy as np
    import safetensors.torch as st

    from repsim.zoo.weights import nan_weights

    keys = ["a.weight", "b.mask", "c.count", "d.bias"]
    state = {
        "a.weight": torch.ones(3, 2),
        "b.mask": torch.full((2, 2), float("-inf")),
        "c.count": torch.tensor(7),
        "d.bias": torch.tensor([0.0, float("nan")]),
        "head.weight": torch.full((2,), float("nan")),  # not the model's: a dropped head
    }
    path = tmp_path / "w.pth"
    if fmt == "zip":
        torch.save(state, path)
    elif fmt == "legacy":
        torch.save(state, path, _use_new_zipfile_serialization=False)
    elif fmt == "nested":
        opt = [{"exp_avg": torch.full((2,), float("nan"))}]  # optimizer state: not loaded
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()},
                    "opt": opt}, path)  # fmt: skip
    elif fmt == "npz":
        path = tmp_path / "w.npz"
        arrays = {k: v.numpy() for k, v in state.items()}
        np.savez(path, note=np.array(["a string array"]), **arrays)
    else:
        path = tmp_path / "saved"
        path.mkdir()
        torch.save({"not": "tensors"}, path / "training_args.bin")  # not weights_only-loadable
        torch.save(state, path / "pytorch_model.bin")
    want = ["state_dict.module.d.bias"] if fmt == "nested" else ["d.bias"]
    assert nan_weights(path, keys) == want
    assert nan_weights(path, ["a.weight"]) == []  # the NaN tensors are not the model's
    if fmt != "nested":  # a module that wraps the model holds the file's keys under a prefix
        assert nan_weights(path, ["model.a.weight", "model.d.bias"]) == ["d.bias"]
    del state["d.bias"]
    if fmt == "folder":
        torch.save(state, path / "pytorch_model.bin")
    elif fmt == "npz":
        np.savez(path, **{k: v.numpy() for k, v in state.items()})
    elif fmt == "nested":
        torch.save({"state_dict": state}, path)
    else:
        torch.save(state, path, _use_new_zipfile_serialization=fmt != "legacy")
    assert nan_weights(path, keys) == []
    if fmt == "folder":  # safetensors take precedence over .bin in a save_pretrained folder
        st.save_file({"d.bias": torch.tensor([float("nan")])}, path / "model.safetensors")
        assert nan_weights(path, keys) == ["d.bias"]


def test_a_nan_in_a_torchvision_file_is_refused_by_models_check(tmp_path: Path) -> None:
    def poison(state):
        state["features.0.bias"][0] = float("nan")

    path = _torchvision_file(tmp_path, poison)
    entry = f"  - {{id: sq, loader: torchvision, identifier: squeezenet1_1, weights: {path}}}\n"
    cfg = _config(tmp_path, entry, "[sq]")
    table, ok = check_models(cfg)
    assert not ok and "holds NaN in 1 tensor the model loads (features.0.bias)" in table
    with pytest.raises(ModelError, match="download it again"):
        load_plan(cfg)


@pytest.mark.filterwarnings("ignore:for .*copying from a non-meta parameter:UserWarning")
def test_nan_outside_the_loaded_weights_does_not_refuse_a_checkpoint(tmp_path: Path) -> None:
    """A training checkpoint holds more than the model: a NaN in its optimizer state or a head
    the loader drops leaves the loaded weights whole, so the check passes it; one in the
    backbone is refused."""
    import torchvision

    from repsim.zoo import ModelSpec
    from repsim.zoo.check import check_weights

    torch.manual_seed(0)
    backbone = torchvision.models.resnet18().state_dict()
    nan = torch.full((4,), float("nan"))
    torch.save(
        {"state_dict": backbone, "optimizer": {"state": {0: {"exp_avg": nan}}}},
        tmp_path / "ckpt.pth",
    )
    spec = ModelSpec("c", "checkpoint", "resnet18", weights=tmp_path / "ckpt.pth")
    assert check_weights(spec) == "file ok"
    backbone["layer1.0.conv1.weight"][0, 0, 0, 0] = float("nan")
    torch.save({"state_dict": backbone}, tmp_path / "bad.pth")
    with pytest.raises(ModelError, match=r"holds NaN in 1 tensor the model loads \(state_dict"):
        check_weights(ModelSpec("c", "checkpoint", "resnet18", weights=tmp_path / "bad.pth"))
