"""The whole pipeline on data/configs/tiny.yaml: files, schema, caching, resume, schedulers."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from repsim import stages
from repsim.errors import ConfigError, RepsimError
from repsim.names import MODEL_FIELDS
from repsim.pipeline import run
from repsim.plan import load_plan
from repsim.runfolder import RunFolder

pytestmark = pytest.mark.slow


def _files_equal(a: Path, b: Path) -> None:
    for name in ("similarity.nc", "consistency.nc", "probes.nc"):
        da, db = xr.load_dataset(a / name), xr.load_dataset(b / name)
        xr.testing.assert_identical(da.drop_attrs(), db.drop_attrs())


def test_tiny_run_writes_documented_files(tiny_run: Path, tiny_config: Path):
    sim = xr.load_dataset(tiny_run / "similarity.nc")
    plan = load_plan(tiny_config)
    assert set(plan.measures) <= set(sim.data_vars)
    for name in plan.measures:
        assert sim[name].dims == ("dataset", "model_a", "model_b")
        values = sim[name].values
        np.testing.assert_allclose(values, values.transpose(0, 2, 1), atol=1e-12)
    assert list(sim.model_a.values) == [m.id for m in plan.models]
    for key in MODEL_FIELDS:
        assert sim[f"{key}_a"].dims == ("model_a",) and sim[f"{key}_b"].dims == ("model_b",)
    assert {"domain", "n_stimuli", "dataset_name"} <= set(sim.coords)
    np.testing.assert_allclose(
        np.diagonal(sim["cka_linear"].values, axis1=1, axis2=2), 1.0, atol=1e-9
    )

    cons = xr.load_dataset(tiny_run / "consistency.nc")
    assert cons["consistency"].dims == ("measure", "group_pair", "dataset_a", "dataset_b")
    assert "all" in cons.group_pair.values

    probes = xr.load_dataset(tiny_run / "probes.nc")
    assert probes["accuracy"].dims == ("model", "dataset", "seed")
    assert np.isfinite(probes["accuracy"].values).all()
    assert "objective" in probes.coords

    info = json.loads((tiny_run / "run.json").read_text())
    assert info["versions"]["torch"] and info["device"] == "cpu"
    # seconds per stage are durations of this run: each of a stage's tasks lasts at most the run
    tasks = {"similarity": len(plan.datasets), "probes": len(plan.datasets) * len(plan.models)}
    for stage, n_tasks in tasks.items():
        assert 0.0 < info["timings_s"][stage] <= info["timings_s"]["total"] * n_tasks
    assert set(info["datasets"]) == set(sim.dataset.values)
    # the stimuli of each dataset, as counted in similarity.nc, without the cache's own fields
    for ds, n in zip(sim.dataset.values, sim["n_stimuli"].values, strict=True):
        assert info["stimuli"][ds]["n_similarity"] == n
        assert not {"cached", "redone", "skipped"} & set(info["stimuli"][ds])
    # every weights file the run used, with its content hash (the zoo's manifest is matched on it)
    assert set(info["weights"]) == set(info["models"])
    for entry in info["weights"].values():
        path = Path(entry["path"])
        assert (
            path.is_absolute() and entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        )


def test_run_json_lists_only_the_weights_files_on_disk(tiny_config: Path, tmp_path: Path):
    """run.json's ``weights`` names each local weights file a run read, with its SHA-256; a model
    whose weights come from a download or a cache, or whose ``weights:`` is a folder (a Hugging
    Face save_pretrained folder), has no file there and is left out."""
    import dataclasses

    from repsim.pipeline import _weights_record
    from repsim.zoo.spec import ModelSpec

    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"some weights")
    (tmp_path / "hf").mkdir()
    models = [
        ModelSpec("local", "minizoo", "cnn", weights=tmp_path / "." / "w.safetensors"),
        ModelSpec("downloaded", "checkpoint", "resnet50"),
        ModelSpec("saved", "hf_transformers", "org/vit", weights=tmp_path / "hf"),
    ]
    plan = dataclasses.replace(load_plan(tiny_config), models=models)
    assert _weights_record(plan) == {
        "local": {
            "path": str(weights.resolve()),
            "sha256": hashlib.sha256(b"some weights").hexdigest(),
        }
    }


def test_run_json_gives_where_the_run_ran_and_its_extraction_rate_from_its_groups(
    tiny_run: Path, tiny_config: Path
):
    """A fresh run's ``images_per_s`` is the images its models computed over the seconds they took,
    as each feature group's record gives them, and ``timings_s`` counts those seconds; run.json
    names the models, measures, scheduler, checkout and machine the numbers came from."""
    from repsim.cache import StageCache

    plan = load_plan(tiny_config)
    cache = StageCache(tiny_run)
    groups = [cache.info("features", (d.id, m.id)) for d in plan.datasets for m in plan.models]
    computed = sum(g["computed"] for g in groups)
    assert computed == sum(g["n"] for g in groups)  # nothing was cached before this run
    info = RunFolder(tiny_run).read_info()
    assert info["images_per_s"] == pytest.approx(computed / sum(g["seconds"] for g in groups))
    assert info["timings_s"]["features"] == pytest.approx(sum(g["seconds"] for g in groups))
    assert info["models"] == [m.id for m in plan.models]
    assert info["measures"] == list(plan.measures)
    assert info["scheduler"] == "synchronous" and info["machine"]["device"] == "cpu"
    # the checkout's commit when the session's run was made (a commit since would change it;
    # git_commit itself is pinned in test_device.py)
    assert info["git_commit"] is None or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", info["git_commit"])


def _forbid_recomputation(monkeypatch, *extra: str) -> None:
    """Make every computing stage fail if it runs: a rerun must take everything from the cache."""
    import functools
    import importlib

    for target in (
        *extra,
        "repsim.extract.extract_models",
        "repsim.measures.similarity_matrices",
        "repsim.probe.linear_probe",
    ):
        module, name = target.rsplit(".", 1)
        original = getattr(importlib.import_module(module), name)

        # same signature as the original: the plan checks probe options against linear_probe's
        @functools.wraps(original)
        def fail(*args, _target=target, **kwargs):
            raise AssertionError(f"a cached stage ran again ({_target})")

        monkeypatch.setattr(target, fail)


def _no_probes(tiny_config: Path, path: Path, models: list[str], datasets: list[str]) -> Path:
    """A config of the tiny run's ``models`` and ``datasets`` with its probes off."""
    path.write_text(
        f"include: [{tiny_config}]\n"
        f"select: {{models: [{', '.join(models)}], datasets: [{', '.join(datasets)}]}}\n"
        "probe: {enabled: false}\n"
    )
    return path


def test_second_run_skips_every_stage(
    tiny_run: Path, tiny_config: Path, tmp_path: Path, monkeypatch
):
    run_dir = tmp_path / "again"
    shutil.copytree(tiny_run, run_dir)

    # both names: the stimuli stage reaches the loaders through repsim.stimuli.open
    _forbid_recomputation(
        monkeypatch, "repsim.stimuli.open_dataset", "repsim.stimuli.open.open_dataset"
    )
    result = run(tiny_config, run_dir, device="cpu")
    _files_equal(tiny_run, run_dir)
    # the result files handed back as they are are named as a run that writes them names them
    assert (result.similarity, result.consistency, result.probes) == tuple(
        run_dir / name for name in ("similarity.nc", "consistency.nc", "probes.nc")
    )
    # the rerun's record counts no stage time to work it took from the cache and redid nothing
    info = json.loads((run_dir / "run.json").read_text())
    assert info["redone"] == []
    stages_taken = ("stimuli", "similarity", "probes")
    assert {s: info["timings_s"][s] for s in stages_taken} == dict.fromkeys(stages_taken, 0.0)


def test_interrupted_run_resumes_to_identical_results(
    tiny_run: Path, tiny_config: Path, tmp_path: Path, monkeypatch
):
    run_dir = tmp_path / "interrupted"
    calls = {"n": 0}
    original = stages.run_similarity

    def crash_on_second(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill")
        return original(*args, **kwargs)

    monkeypatch.setattr(stages, "run_similarity", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run(tiny_config, run_dir, device="cpu")
    assert not (run_dir / "similarity.nc").exists()
    monkeypatch.setattr(stages, "run_similarity", original)
    run(tiny_config, run_dir, device="cpu")
    _files_equal(tiny_run, run_dir)


def test_bad_config_fails_before_work(tmp_path: Path, tiny_config: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(f"include: [{tiny_config}]\nmeasures: [cka_cubic]\n")
    with pytest.raises(ConfigError, match="cka_cubic"):
        run(bad, tmp_path / "run", device="cpu")
    assert not (tmp_path / "run" / "features.zarr").exists()
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "refused" and "cka_cubic" in info["refused"]["error"]


def test_local_cluster_gives_bitwise_identical_results(
    tiny_run: Path, tiny_config: Path, tmp_path: Path
):
    # tiny.yaml fixes torch threads, so worker processes reduce floats in the same order
    run_dir = tmp_path / "local2"
    run(tiny_config, run_dir, scheduler="local:2", device="cpu")
    _files_equal(tiny_run, run_dir)


def test_run_json_records_the_probe_workers_and_the_wall_time_around_them(
    tiny_run: Path, tiny_config: Path, tmp_path: Path, monkeypatch
):
    """run.json's ``probe_workers`` is the number of processes the probes ran on, and ``wall_s``
    the wall time of the stages before and of the probes (what the benchmarks compare with the
    summed task time): 1 below PROBE_POOL_MIN_TASKS probe tasks to compute, else one process per
    core, which the summary says too."""
    import os

    import repsim.pipeline as P

    if (os.cpu_count() or 1) < 2:
        pytest.skip("probes run on worker processes only on 2+ cores")
    wall_keys = {"features and similarity", "probes"}
    info = RunFolder(tiny_run).read_info()  # 24 probe tasks: trained in this process
    assert info["probe_workers"] == 1 and set(info["wall_s"]) == wall_keys
    assert 0.0 < info["wall_s"]["probes"] <= info["timings_s"]["total"]

    run_dir = tmp_path / "pool"
    shutil.copytree(tiny_run, run_dir)
    config = tmp_path / "two.yaml"  # other seeds: both probes computed again, features cached
    config.write_text(
        f"include: [{tiny_config}]\n"
        "select: {models: [cnn-supervised-s0, mlp-clip-s0], datasets: [faces]}\n"
        "probe: {seeds: [3]}\n"
    )
    monkeypatch.setattr(P, "PROBE_POOL_MIN_TASKS", 2)
    result = run(config, run_dir, device="cpu")
    info = RunFolder(run_dir).read_info()
    assert info["probe_workers"] == 2 and set(info["wall_s"]) == wall_keys
    assert 0.0 < info["wall_s"]["probes"] <= info["timings_s"]["total"]
    assert "Probes ran on 2 worker processes" in result.summary


@pytest.mark.parametrize("where", ["graph", "pool"])
def test_a_probe_whose_features_failed_is_skipped_in_the_graph_and_on_the_pool(
    where, tiny_run, tiny_config, tmp_path, monkeypatch
):
    """The probe of a model whose features could not be extracted is skipped, naming that
    failure, whether it is a task of the graph or left to the probe pool (which reads the
    features' outcome and the cached probes itself): never trained on nothing, nor taken from
    the cache as if its features were there."""
    import repsim.pipeline as P
    from repsim.errors import DatasetError
    from repsim.pipeline import RunFailedError

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    shutil.rmtree(RunFolder(run_dir).features / "faces" / "cnn-clip-s0")

    def broken(plan, ds, run_dir, ids):
        raise DatasetError(f"dataset {ds.id}: simulated unreadable shard")

    monkeypatch.setattr(stages, "decode_images", broken)
    if where == "graph":
        monkeypatch.setattr(P, "_probe_pool_possible", lambda *args: False)
    else:  # on any machine: the pool is for 2+ cores
        monkeypatch.setattr(P.os, "cpu_count", lambda: 2)
        monkeypatch.setattr(P, "PROBE_POOL_MIN_TASKS", 1)
    with pytest.raises(RunFailedError, match="skipped because decode-faces failed"):
        run(tiny_config, run_dir, device="cpu")
    failed = RunFolder(run_dir).read_info()["failed_tasks"]
    assert [f["task"] for f in failed if not f["skipped"]] == ["decode-faces"]
    skipped = {f["task"]: f["cause"] for f in failed if f["skipped"]}
    assert skipped["probe-faces-cnn-clip-s0"] == "decode-faces"
    assert not [t for t in skipped if t.startswith("probe-") and "cnn-clip-s0" not in t]


def test_cached_probes_are_not_sent_to_the_probe_pool(tiny_run, tiny_config, tmp_path, monkeypatch):
    """A rerun with every probe cached sends no task to the worker processes (each would start
    a process to read a file) and records one worker."""
    import repsim.pipeline as P

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    sent, real = [], P.process_map
    monkeypatch.setattr(P.os, "cpu_count", lambda: 2)  # on any machine: the pool is for 2+ cores
    monkeypatch.setattr(P, "PROBE_POOL_MIN_TASKS", 1)
    monkeypatch.setattr(
        P, "process_map", lambda calls, *a, **k: sent.append(len(calls)) or real(calls, *a, **k)
    )
    run(tiny_config, run_dir, device="cpu")
    assert sent == [0] and RunFolder(run_dir).read_info()["probe_workers"] == 1


def test_the_probe_bar_is_shown_in_a_log(tiny_run, tiny_config, tmp_path, monkeypatch):
    """The probes' bar took tqdm's ``disable=None`` (hidden when stderr is not a terminal): a
    `make run > log` printed nothing for the minutes the probes ran, below the run's own bar."""
    import tqdm

    made = []

    class Recorded(tqdm.tqdm):
        def __init__(self, *args, **kwargs):
            made.append(kwargs)
            super().__init__(*args, **kwargs)

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    monkeypatch.setattr(tqdm, "tqdm", Recorded)
    run(tiny_config, run_dir, device="cpu")
    (probes,) = [kw for kw in made if kw.get("desc") == "probes"]
    assert probes.get("disable", False) is False


@pytest.mark.parametrize(
    "probes, device, scheduler, cluster, cores, pool",
    [
        (True, "cpu", "synchronous", None, 2, True),
        (False, "cpu", "synchronous", None, 2, False),  # no probe to train
        (True, "cpu", "local:2", None, 2, False),  # the scheduler's workers take the probe tasks
        (True, "cpu", "synchronous", "slurm", 2, False),  # a cluster's too
        (True, "cuda:0", "synchronous", None, 2, False),  # one process keeps a GPU busy
        (True, "cpu", "synchronous", None, 1, False),  # one core: nothing to gain
        (True, "cpu", "synchronous", None, None, False),  # cores unknown
    ],
)
def test_probes_take_a_process_pool_only_in_process_on_a_multi_core_cpu(
    probes, device, scheduler, cluster, cores, pool, monkeypatch
):
    """The pool is for an in-process CPU run: under another scheduler it would train on the
    machine that submitted the run, beside the workers meant for it."""
    from types import SimpleNamespace

    import repsim.pipeline as P

    monkeypatch.setattr(P.os, "cpu_count", lambda: cores)
    plan = SimpleNamespace(probes_enabled=probes)
    assert P._probe_pool_possible(plan, device, scheduler, cluster) is pool


def test_unknown_scheduler_is_a_clear_error(tiny_config: Path, tmp_path: Path):
    with pytest.raises(ConfigError, match="local:N"):
        run(tiny_config, tmp_path / "run", scheduler="mpi", device="cpu")


@pytest.mark.parametrize("option", [{"scheduler": "local:0"}, {"device": "tpu"}])
def test_scheduler_and_device_are_checked_before_the_models(
    tiny_config, tmp_path, monkeypatch, option
):
    """They were checked after the plan had built every model and checked its weights (64
    models with download checks for the study's config)."""
    import repsim.pipeline as P

    def no_plan(*args, **kwargs):
        raise AssertionError("the plan was loaded first")

    monkeypatch.setattr(P, "load_plan", no_plan)
    with pytest.raises(RepsimError):
        run(tiny_config, tmp_path / "run", **{"device": "cpu", **option})


def test_one_broken_model_does_not_end_the_run(tiny_config: Path, tmp_path: Path, monkeypatch):
    # bad weights files are refused before the work (repsim.plan); a model that breaks during
    # extraction (here: a RuntimeError from loading it) must cost only its own tasks
    from repsim.cache import StageCache
    from repsim.pipeline import RunFailedError

    original = stages._loaded_model

    def broken(spec, device, pretrained=True):
        if spec.id == "cnn-clip-s0":
            raise RuntimeError("simulated failure while building the model")
        return original(spec, device, pretrained)

    monkeypatch.setattr(stages, "_loaded_model", broken)
    models = ["cnn-supervised-s0", "cnn-simclr-s0", "cnn-clip-s0"]
    config = _no_probes(tiny_config, tmp_path / "broken.yaml", models, ["faces", "textures"])
    run_dir = tmp_path / "run"
    with pytest.raises(RunFailedError) as err:
        run(config, run_dir, device="cpu")
    message = str(err.value)
    assert "2 task(s) failed and 2 were skipped" in message and "rerun" in message
    assert (
        "features-faces-cnn-clip-s0 (model cnn-clip-s0, dataset faces): RuntimeError: "
        "simulated failure"
    ) in message
    assert "skipped because features-faces-cnn-clip-s0 failed: similarity-faces" in message
    cache = StageCache(run_dir)
    assert cache.info("features", ("faces", "cnn-supervised-s0"))["sha256"]
    assert cache.info("features", ("textures", "cnn-simclr-s0"))["sha256"]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "failed"
    failed = [f for f in info["failed_tasks"] if not f["skipped"]]
    assert {(f["stage"], f["model"], f["dataset"], f["exc_type"]) for f in failed} == {
        ("features", "cnn-clip-s0", "faces", "RuntimeError"),
        ("features", "cnn-clip-s0", "textures", "RuntimeError"),
    }
    skipped = [f for f in info["failed_tasks"] if f["skipped"]]
    assert {f["cause"] for f in skipped} == {
        "features-faces-cnn-clip-s0",
        "features-textures-cnn-clip-s0",
    }
    assert not RunFolder(run_dir).similarity.exists()


@pytest.mark.parametrize("failure", ["transient", "repsim"])
def test_a_model_failing_in_the_pass_is_extracted_once_more_on_its_own_unless_by_a_repsim_error(
    failure: str, tiny_config: Path, tmp_path: Path, monkeypatch
):
    # a failure that goes away is retried and the run finishes; a RepsimError is final at once
    from repsim.cache import StageCache
    from repsim.errors import ModelError
    from repsim.pipeline import RunFailedError

    original, loads, models = stages._loaded_model, [], ["cnn-supervised-s0", "cnn-clip-s0"]

    def flaky(spec, device, pretrained=True):
        if spec.id == "cnn-clip-s0":
            loads.append(spec.id)
            if failure == "repsim":
                raise ModelError("simulated refusal of the model")
            if len(loads) == 1:
                raise RuntimeError("simulated failure that goes away")
        return original(spec, device, pretrained)

    monkeypatch.setattr(stages, "_loaded_model", flaky)
    config = _no_probes(tiny_config, tmp_path / "flaky.yaml", models, ["faces"])
    run_dir = tmp_path / "run"
    if failure == "transient":
        run(config, run_dir, device="cpu")
        assert loads == ["cnn-clip-s0"] * 2  # the pass, then the retry on its own
        records = [StageCache(run_dir).info("features", ("faces", m)) for m in models]
        assert all(r["sha256"] for r in records)
        # the retried extraction counts in the run's time like any other
        info = json.loads((run_dir / "run.json").read_text())
        assert info["timings_s"]["features"] == pytest.approx(sum(r["seconds"] for r in records))
    else:
        with pytest.raises(RunFailedError, match="simulated refusal"):
            run(config, run_dir, device="cpu")
        assert loads == ["cnn-clip-s0"]  # never extracted again


def test_datasets_decode_on_demand_with_the_same_images(
    tiny_run: Path, tiny_config: Path, tmp_path: Path
):
    """Extraction reads a dataset's images batch by batch (chunk-major), at any size."""
    import pickle

    from repsim.stages import LazyImages, decode_images, extraction_ids, read_stimuli
    from repsim.stimuli import open_dataset

    plan = load_plan(tiny_config)
    ds = plan.datasets[0]
    ids = extraction_ids(plan, read_stimuli(tiny_run, ds))
    stimset = open_dataset(ds)
    lazy = pickle.loads(pickle.dumps(decode_images(plan, ds, tiny_run, ids)))
    assert isinstance(lazy, LazyImages) and len(lazy) == len(ids)
    rows = np.array([0, 5, len(ids) - 1])
    np.testing.assert_array_equal(
        np.asarray(lazy(rows)), stimset.load_images(stimset.indices_of(ids[rows]))
    )


def test_stimulus_ids_gone_from_the_data_are_refused_by_name_with_the_table_to_delete(
    tiny_config: Path, tmp_path: Path
):
    """A table naming images the dataset no longer has is refused before any extraction; the
    message names (the first five of) the ids and the table to delete."""
    from repsim.errors import DatasetError
    from repsim.stimuli import open_dataset

    plan = load_plan(tiny_config)
    ds = plan.datasets[0]
    real = np.asarray(open_dataset(ds).ids, dtype=str)[:3]
    gone = [f"gone-{i}" for i in range(7)]
    with pytest.raises(
        DatasetError, match=r"\['gone-0', 'gone-1', 'gone-2', 'gone-3', 'gone-4'\] "
    ) as err:
        stages.decode_images(plan, ds, tmp_path, np.array([*real, *gone]))
    assert str(stages.stimuli_path(tmp_path, ds)) in str(err.value)
    images = stages.decode_images(plan, ds, tmp_path, real)  # all there: decoded on demand
    np.testing.assert_array_equal(
        np.asarray(images(np.arange(3))), open_dataset(ds).load_images(np.arange(3))
    )


def test_the_decode_status_adds_the_extractions_decode_work_to_the_opening():
    """What the run reports of a dataset's decode stage: the opening's time plus the decode work
    the extraction did, its waits, images and threads; the opening alone when the extraction
    failed as a whole."""
    from repsim.tasks import TaskFailure

    opened = stages.Decoded(images=None, n=12, seconds=0.5)
    extracted = {
        "models": {},
        "decode": {"decoded": 12, "seconds": 2.0, "wait_seconds": 0.25, "workers": 3},
    }
    assert stages.decode_status(opened, extracted) == {
        "n": 12,
        "lazy": False,
        "open_seconds": 0.5,
        "seconds": 2.5,
        "wait_seconds": 0.25,
        "decoded": 12,
        "workers": 3,
    }
    failed = TaskFailure("extract-faces", "RuntimeError: boom", stage="features")
    assert stages.decode_status(opened, failed) == {"n": 12, "seconds": 0.5, "lazy": False}


def test_stimulus_ids_that_look_like_numbers_read_back_as_written(tmp_path: Path):
    """A dataset whose image ids are digits ("007"): the run's table gives them back as the same
    text (read as numbers, "007" became 7 and named no stored row nor image)."""
    from types import SimpleNamespace

    ds = SimpleNamespace(id="digits")
    path = stages.stimuli_path(tmp_path, ds)
    path.parent.mkdir(parents=True)
    path.write_text("id,label,split,in_similarity\n007,3,train,True\n010,1,test,False\n")
    table = stages.read_stimuli(tmp_path, ds)
    assert table["id"].tolist() == ["007", "010"]
    assert table["in_similarity"].tolist() == [True, False]


def test_an_extraction_called_without_reasons_is_new_work_sealed_and_counted(
    tiny_run: Path, tiny_config: Path, tmp_path: Path
):
    """run_dataset_features called on its own, without the reasons the pipeline passes, takes its
    groups for work not done yet (nothing to report as redone), seals and records each, and
    counts every image it decoded (one per extraction id: chunk-major)."""
    from repsim.cache import StageCache

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    plan = load_plan(tiny_config)
    ds, model = plan.datasets[0], plan.models[0]
    ids = stages.extraction_ids(plan, stages.read_stimuli(run_dir, ds))
    t0 = time.perf_counter()
    opened = stages.decode_task(plan, ds, run_dir, ids)
    assert 0.0 <= opened.seconds <= time.perf_counter() - t0  # the opening's own time
    out = stages.run_dataset_features(plan, [model], ds, run_dir, opened, ids, "cpu")
    info = stages.pick_features(out, model.id)
    assert info["redone"] is None and info["n"] == len(ids)
    assert StageCache(run_dir).info("features", (ds.id, model.id))["sha256"] == info["sha256"]
    assert stages.decode_status(opened, out)["decoded"] == len(ids)


def test_a_stage_runs_with_the_configs_torch_threads_and_puts_them_back():
    """threads fixes how float reductions are split; the process's own count comes back after."""
    from types import SimpleNamespace

    import torch

    seen = []
    stage = stages._fixed_threads(lambda plan, x: seen.append(torch.get_num_threads()) or x)
    before = torch.get_num_threads()
    wanted = 2 if before != 2 else 3
    assert stage(SimpleNamespace(threads=wanted), "out") == "out"
    assert torch.get_num_threads() == before
    assert stage(SimpleNamespace(threads=None), "unset") == "unset"  # no threads: left as they are
    assert seen == [wanted, before]


def test_a_prune_through_a_link_into_another_run_is_refused_before_any_work(
    tiny_run: Path, tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With features.zarr/<dataset> linked to another run's, a rerun with fewer models deleted
    that run's features at its end (or, once removal was guarded, failed after all the work)."""
    from repsim.runfolder import RunFolderError

    other, mine = tmp_path / "other", tmp_path / "mine"
    shutil.copytree(tiny_run, other)
    shutil.copytree(tiny_run, mine)
    shutil.rmtree(mine / "features.zarr" / "faces")
    (mine / "features.zarr" / "faces").symlink_to(other / "features.zarr" / "faces")
    before = sorted(p.name for p in (other / "features.zarr" / "faces").iterdir())
    cfg = tmp_path / "fewer.yaml"
    cfg.write_text(
        f"include: [{tiny_config}]\nselect: {{models: [cnn-supervised-s0, cnn-simclr-s0, "
        "cnn-barlow-s0], datasets: [faces, textures, gratings]}\n"
    )

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the work started before the link was found")

    monkeypatch.setattr(stages, "fingerprint_data", no_work)
    with pytest.raises(RunFolderError, match=r"faces is a symbolic link to .*own folders"):
        run(cfg, mine, device="cpu")
    assert sorted(p.name for p in (other / "features.zarr" / "faces").iterdir()) == before


def test_a_rerun_with_a_folder_linked_into_another_run_is_refused_before_any_work(
    tiny_run: Path, tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With features.zarr/<dataset> linked to another run's, a rerun wrote the features it
    lacked into that run's store (and read the others as its own): refused before any work. A
    linked folder the rerun only removes (a dataset it no longer has) is unlinked, no reason."""
    from repsim.runfolder import RunFolderError

    other, mine = tmp_path / "other", tmp_path / "mine"
    shutil.copytree(tiny_run, other)
    shutil.copytree(tiny_run, mine)
    shutil.rmtree(mine / "features.zarr" / "faces")
    (mine / "features.zarr" / "faces").symlink_to(other / "features.zarr" / "faces")
    shutil.rmtree(other / "features.zarr" / "faces" / "cnn-simclr-s0")
    for record in (mine / ".stages" / "features" / "faces").glob("cnn-simclr-s0*"):
        record.unlink()

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the work started before the link was found")

    monkeypatch.setattr(stages, "fingerprint_data", no_work)
    with pytest.raises(RunFolderError, match=r"faces is a symbolic link to .*other.*own folders"):
        run(tiny_config, mine, device="cpu")
    assert not (other / "features.zarr" / "faces" / "cnn-simclr-s0").exists()
    # a refusal, not a failed run: the finished run's record and results still verify
    info = json.loads((mine / "run.json").read_text())
    assert info["status"] == "finished" and "own folders" in info["refused"]["error"]
    RunFolder(mine).open_results()
    monkeypatch.undo()
    (mine / "features.zarr" / "faces").unlink()
    shutil.copytree(tiny_run / "features.zarr" / "faces", mine / "features.zarr" / "faces")
    shutil.copytree(tiny_run / ".stages", mine / ".stages", dirs_exist_ok=True)
    (mine / "features.zarr" / "old").symlink_to(other / "features.zarr" / "faces")
    run(tiny_config, mine, device="cpu")
    assert not (mine / "features.zarr" / "old").exists()
    assert (other / "features.zarr" / "faces" / "cnn-barlow-s0").is_dir()


def test_two_runs_never_share_one_linked_feature_store(
    tiny_run: Path, tiny_config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """features.zarr may be a link (another disk); two run folders linked to the same store
    pruned and overwrote each other's features (a rerun with fewer models deleted the other's).
    The first run to use the store owns it; another is refused before any work."""
    from repsim.runfolder import RunFolderError

    disk = tmp_path / "disk" / "features.zarr"
    disk.parent.mkdir()
    shutil.copytree(tiny_run / "features.zarr", disk)
    first, second = tmp_path / "first", tmp_path / "second"
    for run_dir in (first, second):
        shutil.copytree(tiny_run, run_dir, ignore=shutil.ignore_patterns("features.zarr"))
        (run_dir / "features.zarr").symlink_to(disk)
    run(tiny_config, first, device="cpu")  # takes the store: everything cached, nothing redone
    cfg = tmp_path / "fewer.yaml"
    cfg.write_text(
        f"include: [{tiny_config}]\nselect: {{models: [cnn-supervised-s0, cnn-simclr-s0, "
        "cnn-barlow-s0], datasets: [faces, textures, gratings]}\n"
    )
    groups = sorted(p.relative_to(disk) for p in disk.glob("*/*") if p.is_dir())

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("the work started before the shared store was found")

    monkeypatch.setattr(stages, "fingerprint_data", no_work)
    with pytest.raises(RunFolderError, match=r"features.zarr is a symbolic link .*another run"):
        run(cfg, second, device="cpu")
    assert sorted(p.relative_to(disk) for p in disk.glob("*/*") if p.is_dir()) == groups
    owner = (disk / ".repsim-owner").read_text().splitlines()
    assert owner == [(first / ".run-id").read_text().strip(), str(first.resolve())]


def test_probe_normalize_true_written_out_gives_the_probes_of_the_default(
    tiny_run: Path, tiny_config: Path, tmp_path: Path
):
    # the stored features are L2-normalised as they stream in; the option must not reach
    # linear_probe a second time
    config = tmp_path / "normalize.yaml"
    config.write_text(
        f"include: [{tiny_config}]\n"
        "select: {models: [cnn-supervised-s0], datasets: [faces]}\n"
        "probe: {normalize: true}\n"  # merged into the tiny config's probe options
    )
    run(config, tmp_path / "run", device="cpu")
    got, want = (
        xr.load_dataset(tmp_path / "run" / "probes.nc"),
        xr.load_dataset(tiny_run / "probes.nc"),
    )
    cell = {"model": "cnn-supervised-s0", "dataset": "faces"}
    for name in ("accuracy", "balanced_accuracy"):
        np.testing.assert_array_equal(got[name].sel(cell).values, want[name].sel(cell).values)


def test_a_probe_option_written_out_at_its_default_keeps_the_probe_key(
    tiny_run: Path, tiny_config: Path, tmp_path: Path
):
    """probe: {normalize: true} (the default written out) redid every probe with the same
    numbers: the key hashed the config's text, not the options the probe runs with."""

    def key(probe: str) -> str:
        config = tmp_path / "probe.yaml"
        config.write_text(f"include: [{tiny_config}]\nprobe: {probe}\n")
        plan = load_plan(config)
        return stages.probe_key(plan, plan.models[0], plan.datasets[0], tiny_run)

    default = key("{}")
    assert key("{normalize: true, precision: float32, val_fraction: 0.2}") == default
    assert key("{shared_search: false}") != default
    assert key("{val_fraction: 0.3}") != default


def test_a_probe_is_fitted_on_the_train_split_and_scored_on_the_test_split(
    tiny_run: Path, tiny_config: Path
):
    """The probes of a run are linear_probe on the stored features: fitted on the stimulus
    table's train rows, scored on its test rows (whatever their similarity subset)."""
    from repsim.probe import linear_probe
    from repsim.store import FeatureStore

    plan = load_plan(tiny_config)
    ds, model = plan.datasets[0], plan.models[0]
    table = stages.read_stimuli(tiny_run, ds)
    assert {"train", "test"} <= set(table["split"])
    store = FeatureStore(RunFolder(tiny_run).features)
    train, test = table[table["split"] == "train"], table[table["split"] == "test"]
    options = {k: v for k, v in plan.probe.items() if k not in ("enabled", "normalize")}
    want = linear_probe(
        store.read(ds.id, model.id, train["id"].to_numpy(dtype=str))[1],
        train["label"].to_numpy(),
        store.read(ds.id, model.id, test["id"].to_numpy(dtype=str))[1],
        test["label"].to_numpy(),
        device="cpu",
        **options,
    )
    got = xr.load_dataset(tiny_run / "probes.nc").sel(model=model.id, dataset=ds.id)
    np.testing.assert_allclose(got["accuracy"].values, want.accuracy, atol=1e-12)
    np.testing.assert_allclose(got["balanced_accuracy"].values, want.balanced_accuracy, atol=1e-12)


def test_a_probe_made_by_other_code_is_redone_and_said_so(
    tiny_run: Path, tiny_config: Path, tmp_path: Path, monkeypatch
):
    """A probe part written by other probe code is redone, and run.json says it was the code (a
    fix to the probe reaches the accuracies without extracting the features again)."""
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    edited = stages.STAGE_CODE["probes"][0]
    real = stages.code_fingerprint
    monkeypatch.setattr(
        stages, "code_fingerprint", lambda *m: "edited" if m == edited else real(*m)
    )
    config = tmp_path / "one.yaml"
    config.write_text(
        f"include: [{tiny_config}]\nselect: {{models: [cnn-supervised-s0], datasets: [faces]}}\n"
    )
    run(config, run_dir, device="cpu")
    redone = json.loads((run_dir / "run.json").read_text())["redone"]
    probes = [line for line in redone if line.startswith("probes")]
    assert probes == [
        "probes cnn-supervised-s0 on faces: the code that computes it changed "
        "(repsim or a library's version)"
    ], redone
    assert not [line for line in redone if line.startswith("features")], redone


def test_result_files_rebuilt_from_cached_parts_keep_the_probes_of_the_parts(
    tiny_run: Path, tiny_config: Path, tmp_path: Path, monkeypatch
):
    """A rerun that rewrites the result files while every task is cached (here: the config
    renamed) assembles probes.nc from the cached probe parts: the same accuracies, new names."""
    run_dir = tmp_path / "renamed"
    shutil.copytree(tiny_run, run_dir)
    config = tmp_path / "renamed.yaml"
    config.write_text(f"include: [{tiny_config}]\nname: tiny-renamed\n")
    _forbid_recomputation(monkeypatch)
    result = run(config, run_dir, device="cpu")
    # the files it wrote are those it hands back
    assert (result.similarity, result.consistency, result.probes) == tuple(
        run_dir / name for name in ("similarity.nc", "consistency.nc", "probes.nc")
    )
    got, want = xr.load_dataset(run_dir / "probes.nc"), xr.load_dataset(tiny_run / "probes.nc")
    assert got.attrs["run"] == "tiny-renamed"
    xr.testing.assert_identical(got.drop_attrs(), want.drop_attrs())


def test_the_summary_says_whose_category_pairs_it_lists(tiny_run: Path) -> None:
    """The end-of-run summary lists category pairs for the first measure only; it said so nowhere,
    so a reader could take the rows of one measure for the run's."""
    from repsim.results import consistency_overview, summary_table
    from repsim.runfolder import RunFolder

    results = RunFolder(tiny_run).open_results()
    text = summary_table(results.similarity, results.consistency, None)
    first = str(results.consistency["consistency"].measure.values[0])
    assert f"category pairs for {first} only, all measures' in consistency.nc" in text
    one = results.consistency.isel(measure=[0])
    assert "only" not in summary_table(results.similarity, one, None)
    overview = consistency_overview(results.consistency)
    others = overview[overview["measure"] != first]
    assert others["models"].eq("all").all() and len(others) == overview["measure"].nunique() - 1
    assert overview[overview["measure"] == first]["models"].str.startswith("objective: ").any()


def test_a_dataset_id_with_a_slash_is_cached_like_any_other(tmp_path: Path, monkeypatch):
    """The study's datasets have ids like ``wds/cars``: their per-model records were written as
    dataset ``wds``, model ``cars/<model>``, which the end of the run removed as belonging to no
    dataset of the config, so every rerun recomputed every feature group and probe of them."""
    from repsim.cache import StageCache

    data = Path(__file__).resolve().parents[1] / "data"
    config = tmp_path / "slash.yaml"
    config.write_text(
        f"include: [{data / 'minizoo' / 'models.yaml'}]\n"
        "select: {models: [cnn-supervised-s0, mlp-clip-s0]}\n"
        "measures: [cka_linear]\n"
        "stimuli: {max_images: 40, seed: 0}\n"
        "probe: {enabled: true, seeds: [0], epochs: 2, lrs: [0.01], wds: [1.0e-4]}\n"
        "threads: 1\n"
        "datasets:\n"
        f"  - {{id: grp/faces, loader: embedded, path: {data / 'embedded' / 'faces.npz'}, "
        "domain: Structured}\n"
        f"  - {{id: textures, loader: embedded, path: {data / 'embedded' / 'textures.npz'}, "
        "domain: Structured}\n"
    )
    run_dir = tmp_path / "run"
    run(config, run_dir, device="cpu")
    cache = StageCache(run_dir)
    for stage in ("features", "probes"):
        assert cache.info(stage, ("grp/faces", "mlp-clip-s0")).get("key"), stage
    _forbid_recomputation(monkeypatch)
    run(config, run_dir, device="cpu")
    info = json.loads((run_dir / "run.json").read_text())
    assert not info.get("redone"), info.get("redone")


def test_the_stage_times_sum_this_runs_tasks_and_the_rate_counts_the_images_computed():
    """run.json's ``timings_s`` sums each stage's task seconds (a failed task, or one that timed
    nothing, adds none), its ``images_per_s`` is the images the models computed over the seconds
    they took (a cached group computed nothing and adds nothing; no image computed: no rate), and
    ``redone`` names each redone task as "stage model on dataset: why"."""
    from repsim.pipeline import STAGES, _timings
    from repsim.tasks import TaskFailure

    failed = TaskFailure("features-faces-c", "RuntimeError: boom", stage="features")
    features = {
        "a\tfaces": {"seconds": 3.0, "computed": 30, "extract_seconds": 2.5, "redone": "code"},
        "b\tfaces": {"seconds": 1.5, "computed": 20, "extract_seconds": 1.5, "redone": None},
        "b\ttextures": {"seconds": 0.0, "cached": True},
        "c\tfaces": failed,
    }
    outcome = {
        "stimuli": {"faces": {"seconds": 0.25}, "textures": {"seconds": None}, "digits": {}},
        "decode": {"faces": {"seconds": 2.0}, "textures": failed},
        "features": features,
        "similarity": {"faces": {"seconds": 0.5, "redone": "its stimuli changed"}},
        "probes": {"a\tfaces": {"seconds": 0.75}, "b\tfaces": {"seconds": 1.0}},
    }
    timings, rate, redone = _timings(outcome)
    assert list(timings) == list(STAGES)
    assert timings == {
        "stimuli": 0.25,
        "decode": 2.0,
        "features": 4.5,
        "similarity": 0.5,
        "probes": 1.75,
        "consistency": 0.0,
        "stats": 0.0,
    }
    assert rate == pytest.approx((30 + 20) / (2.5 + 1.5))
    assert redone == ["features a on faces: code", "similarity faces: its stimuli changed"]

    outcome["features"] = {"b\ttextures": features["b\ttextures"], "c\tfaces": failed}
    assert _timings(outcome)[1] is None  # all cached or failed: no rate to give
    outcome["features"] = {"a\tfaces": {"seconds": 0.0, "computed": 5, "extract_seconds": 0.0}}
    assert _timings(outcome)[1] is None  # an extraction too fast to time gives no rate
    outcome["features"]["a\tfaces"]["extract_seconds"] = 0.5
    assert _timings(outcome)[1] == pytest.approx(10.0)  # under a second is timed all the same


def test_the_summary_compares_the_probes_wall_time_with_their_task_time_only_on_a_pool():
    """The end-of-run line on the probe pool: its worker count, the wall time of the probes and
    their summed task time; nothing when they ran in this process (one worker) or not at all."""
    from repsim.pipeline import _parallel_note

    timings = {"probes": 12.34, "features": 3.0}
    note = _parallel_note({"probes": 4.5, "probe_workers": 3}, timings)
    assert note == "\nProbes ran on 3 worker processes: 4.5 s wall for 12.3 s of task time."
    untimed = _parallel_note({"probes": 4.5, "probe_workers": 2}, {})
    assert untimed.endswith("4.5 s wall for 0.0 s of task time.")
    assert _parallel_note({"probes": 4.5, "probe_workers": 1}, timings) == ""
    assert _parallel_note({"probes": 4.5}, timings) == ""
    assert _parallel_note({"features and similarity": 1.0, "probe_workers": 2}, timings) == ""
    assert _parallel_note({}, timings) == ""


def test_similarity_nc_names_each_dataset_by_its_spec_name(tiny_config: Path):
    """A dataset's ``name:`` (the study's name of a dataset the config gives its own id) is the
    ``dataset_name`` coord that repsim.reference matches the study's datasets by; the id only
    where no name is given. The tiny run's names are its ids, so no test told them apart."""
    import dataclasses

    from repsim.results import assemble_similarity

    plan = load_plan(tiny_config, check_models=False)
    named = dataclasses.replace(plan.datasets[0], name="study-name")
    plan = dataclasses.replace(plan, datasets=(named, *plan.datasets[1:]))
    ids = [m.id for m in plan.models]
    part = xr.Dataset(
        {m: (("model_a", "model_b"), np.eye(len(ids))) for m in plan.measures},
        coords={"model_a": ids, "model_b": ids},
    )
    sim = assemble_similarity(plan, [part] * len(plan.datasets), [60] * len(plan.datasets))
    assert sim["dataset_name"].values.tolist() == ["study-name", *[d.id for d in plan.datasets[1:]]]


def test_probes_nc_holds_each_probe_part_as_written(tiny_run: Path, tiny_config: Path):
    """Every (model, dataset) of probes.nc is its probe part: accuracy, balanced accuracy and the
    chosen lr and wd per seed; each dataset has its domain. The train/test split test compares
    one probe, whose balanced accuracy equals its accuracy, and no test read lr or wd: either
    pair could be swapped unseen."""
    plan = load_plan(tiny_config, check_models=False)
    probes = xr.load_dataset(tiny_run / "probes.nc")
    differ = {"balanced_accuracy": False, "wd": False}
    for m in plan.models:
        for d in plan.datasets:
            part = json.loads(RunFolder(tiny_run).probe_part(d.id, m.id).read_text())
            got = probes.sel(model=m.id, dataset=d.id)
            assert got["seed"].values.tolist() == part["seeds"]
            for var in ("accuracy", "balanced_accuracy", "lr", "wd"):
                np.testing.assert_array_equal(got[var].values, part[var], err_msg=var)
            differ["balanced_accuracy"] |= part["balanced_accuracy"] != part["accuracy"]
            differ["wd"] |= part["wd"] != part["lr"]
    assert all(differ.values())  # the run can tell each pair apart
    assert probes["domain"].values.tolist() == [d.domain for d in plan.datasets]


def test_the_summary_table_by_hand() -> None:
    """Per dataset, the mean similarity over model pairs (the unit diagonal left out, NaN pairs
    skipped) and the mean probe accuracy over models and seeds; the extraction rate only when one
    was measured."""
    from repsim.results import format_timings, summary_table

    S = np.array([[[1.0, 0.2, 0.4], [0.2, 1.0, np.nan], [0.4, np.nan, 1.0]]])
    sim = xr.Dataset(
        {"cka_linear": (("dataset", "model_a", "model_b"), S)},
        coords={"dataset": ["d"], "domain": ("dataset", ["nat"]), "n_stimuli": ("dataset", [9])},
    )
    acc = xr.Dataset({"accuracy": (("model", "dataset", "seed"), [[[0.5, 0.7]], [[0.9, 0.9]]])})
    row = summary_table(sim, None, acc.assign_coords(dataset=["d"])).splitlines()[1].split()
    assert row == ["d", "nat", "9", "0.300", "0.750"]
    assert format_timings({"features": 1.25}, None) == "Time per stage: features 1.2 s"
    assert format_timings({"features": 1.25}, 10.4).endswith("; extraction 10 images/s")
