"""Faults of the run folder itself: a second config, small configs, two writers, unwritable,
unreadable or full targets, a file or folder where the other belongs, bad weights, failing tasks.
Each ends in the right files or a clear RepsimError."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from faults.faultkit import MODELS, unreadable, write_config
from repsim.chapter import load_run
from repsim.errors import ModelError, RepsimError
from repsim.pipeline import RunFailedError, config_hash, run
from repsim.plan import load_plan
from repsim.runfolder import RunFolder, RunFolderError, RunLockedError
from repsim.stimuli.subset import PROBE_SPLIT_FIX

pytestmark = pytest.mark.slow


def _info(run_dir: Path) -> dict:
    return json.loads(RunFolder(run_dir).info.read_text())


def _feature_groups(run_dir: Path) -> set[str]:
    root = RunFolder(run_dir).features
    return {
        f"{d.name}/{m.name}"
        for d in root.iterdir()
        if d.is_dir()
        for m in d.iterdir()
        if m.is_dir()
    }


# ----------------------------------------------------------------------------- configs
def test_three_objectives_leave_out_undefined_groupings(small_run):
    """3 models of 3 objectives: consistency over all pairs exists, by objective it cannot."""
    info = _info(small_run)
    assert info["status"] == "finished"
    skipped = " ".join(info["skipped_analyses"])
    assert "consistency by objective" in skipped and "probes are off" in skipped
    results = RunFolder(small_run).open_results()
    assert "all" in results.consistency.group_pair.values
    assert not any(str(g).startswith("objective") for g in results.consistency.group_pair.values)
    assert "consistency by objective" in RunFolder(small_run).summary.read_text()
    assert set(info["timings_s"]) >= {
        "stimuli",
        "decode",
        "features",
        "similarity",
        "probes",
        "consistency",
        "total",
    }
    assert info["images_per_s"] > 0


def test_second_config_replaces_every_result_file(run_copy, tmp_path):
    """2 models on 1 dataset after 3 on 2: no file of the first config survives beside the second."""
    config = write_config(
        tmp_path / "two.yaml",
        name="two",
        models=MODELS[:2],
        datasets=("faces",),
        measures=("cka_linear",),
    )
    run(config, run_copy, device="cpu")
    folder = RunFolder(run_copy)
    results = folder.open_results()
    assert list(results.similarity.model_a.values) == list(MODELS[:2])
    assert list(results.similarity.dataset.values) == ["faces"]
    assert results.consistency is None and not folder.consistency.exists()  # undefined for 2 models
    info = _info(run_copy)
    assert any("consistency needs at least 2 model pairs" in s for s in info["skipped_analyses"])
    assert "consistency needs at least 2 model pairs" in folder.summary.read_text()
    assert _feature_groups(run_copy) == {f"faces/{m}" for m in MODELS[:2]}
    assert not folder.stimuli("textures").exists()
    assert not list(folder.stages.rglob("textures*"))
    assert folder.read_manifest()["config_hash"] == config_hash(load_plan(config))


def test_renamed_config_rewrites_the_names_inside_the_result_files(
    run_copy, small_config, tmp_path
):
    """One folder never describes two configs: the files' own attrs follow the new name."""
    import xarray as xr

    renamed = tmp_path / "renamed.yaml"
    renamed.write_text(small_config.read_text().replace("name: faults", "name: faults-renamed"))
    run(renamed, run_copy, device="cpu")
    for path in (RunFolder(run_copy).similarity, RunFolder(run_copy).consistency):
        attrs = xr.load_dataset(path).attrs
        assert attrs["run"] == "faults-renamed" and attrs["config"] == str(renamed), path.name
    assert _info(run_copy)["config"]["name"] == "faults-renamed"


def test_run_json_times_the_consistency_and_the_controlled_tests_each_alone(
    run_copy, small_config, tmp_path, monkeypatch
):
    """timings_s gives the seconds of the consistency and of the controlled tests, each its own
    (on a clock that only those two advance: 5 s and 2 s), and the run's total."""
    import types

    import repsim.pipeline as P

    clock = [1000.0]
    monkeypatch.setattr(
        P, "time", types.SimpleNamespace(perf_counter=lambda: clock[0], strftime=time.strftime)
    )

    def taking(seconds, func):
        def call(*args, **kwargs):
            clock[0] += seconds
            return func(*args, **kwargs)

        return call

    monkeypatch.setattr(P, "run_consistency", taking(5.0, P.run_consistency))
    monkeypatch.setattr(P, "run_controlled_tests", taking(2.0, P.run_controlled_tests))
    # another name: the result files are written again from the cached tasks
    run(write_config(tmp_path / "timed.yaml", name="timed"), run_copy, device="cpu")
    timings = _info(run_copy)["timings_s"]
    assert (timings["consistency"], timings["stats"], timings["total"]) == (5.0, 2.0, 7.0)


@pytest.mark.parametrize("what", ["code", "versions"])
def test_results_of_other_code_are_rebuilt(run_copy, small_config, what):
    """Result files written by other code, or by other versions of the libraries that compute
    them (a scipy upgrade), are not kept as current, even with equal inputs."""
    from repsim.runfolder import sha256_file

    folder = RunFolder(run_copy)
    before = folder.read_manifest()["inputs"][what]
    folder.consistency.write_bytes(b"")  # what other code might have written...
    manifest = folder.read_manifest()
    manifest["files"]["consistency.nc"]["sha256"] = sha256_file(folder.consistency)
    manifest["inputs"][what] = "other code"  # ...and recorded as its own
    folder.write_manifest(manifest)
    run(small_config, run_copy, device="cpu")
    assert folder.read_manifest()["inputs"][what] == before
    assert folder.consistency.stat().st_size > 0 and folder.open_results().consistency is not None


def test_a_stage_made_by_other_code_is_redone_and_only_that_stage(
    run_copy, small_config, monkeypatch
):
    """Similarity parts written by other measure code are recomputed, the features kept: a fix
    to a measure reaches the numbers without extracting the features again."""
    import xarray as xr

    from repsim import stages

    folder = RunFolder(run_copy)
    before = xr.load_dataset(folder.similarity)
    edited = stages.STAGE_CODE["similarity"][0]
    real = stages.code_fingerprint
    monkeypatch.setattr(
        stages, "code_fingerprint", lambda *m: "edited" if m == edited else real(*m)
    )
    run(small_config, run_copy, device="cpu")
    redone = _info(run_copy)["redone"]
    assert redone and all(line.startswith("similarity") for line in redone), redone
    assert all("the code that computes it changed" in line for line in redone), redone
    xr.testing.assert_identical(xr.load_dataset(folder.similarity), before)  # same code really


@pytest.mark.parametrize(
    ("extra", "stages_redone"),
    [
        ("threads: 2\n", {"features", "similarity"}),
        ("extract: {batch_size: 7}\n", {"features"}),  # similarity: if the features changed
    ],
    ids=["threads", "batch_size"],
)
def test_settings_that_fix_the_last_bits_redo_their_stages(
    run_copy, tmp_path, extra, stages_redone
):
    """threads and extract.batch_size change the last bits of the numbers but were in no stage
    key: a rerun under the new value rebuilt the result files from the old parts (about 150
    values per measure differed from a fresh run), so the folder did not reproduce its config."""
    from repsim.plan import load_plan

    write_config(tmp_path / "small.yaml")
    config = tmp_path / "changed.yaml"
    config.write_text(f"name: faults\ninclude: [small.yaml]\n{extra}")
    run(config, run_copy, device="cpu")
    redone = _info(run_copy)["redone"]
    assert stages_redone <= {line.split()[0] for line in redone} <= {"features", "similarity"}
    fresh = tmp_path / "fresh"
    run(config, fresh, device="cpu")
    for name in ("similarity.nc", "consistency.nc"):
        assert (run_copy / name).read_bytes() == (fresh / name).read_bytes(), name
    plan = load_plan(config, check_models=False)
    cpu = stages_key(plan, "cpu")
    assert cpu != stages_key(plan, "cuda")  # the device type too: its kernels and budgets


def stages_key(plan, device_type: str) -> str:
    import dataclasses

    from repsim import stages

    plan = dataclasses.replace(plan, device_type=device_type)
    return stages.features_key(plan, plan.models[0], plan.datasets[0])


def test_similarity_is_computed_in_a_fixed_memory_budget_or_the_configs(
    run_copy, tmp_path, monkeypatch
):
    """The memory budget fixes the engine's blocking, and so the last bits of the numbers: 6 GiB
    on a CPU when the config leaves it out (never a share of the memory free at the time, which
    changes from run to run), the config's own budget when it sets one."""
    import repsim.measures
    from repsim import stages

    seen = []
    real = repsim.measures.similarity_matrices

    def recording(*args, **kwargs):
        seen.append(kwargs.get("memory_budget_gb"))
        return real(*args, **kwargs)

    monkeypatch.setattr(repsim.measures, "similarity_matrices", recording)
    for extra in ("", "similarity: {memory_budget_gb: 1.5}\n"):
        plan = load_plan(write_config(tmp_path / "small.yaml", extra=extra), check_models=False)
        ds = plan.datasets[0]
        RunFolder(run_copy).marker("similarity", ds.id).unlink(missing_ok=True)
        assert not stages.run_similarity(plan, ds, run_copy, "cpu")["cached"]
    assert seen == [6.0, 1.5]


def test_extract_options_a_config_leaves_out_are_those_its_key_records(small_run, tmp_path):
    """A config that leaves extract.pretrained and keep_raw out (the small one) extracts what its
    feature key records for them: the trained weights and no raw features, the features of a
    config that writes them out."""
    import numpy as np

    from repsim.errors import StoreError
    from repsim.store import FeatureStore

    config = write_config(
        tmp_path / "written.yaml",
        models=("cnn-supervised-s0",),
        datasets=("faces",),
        extra="extract: {pretrained: true, keep_raw: false}\n",
    )
    run(config, tmp_path / "run", device="cpu")
    left_out = FeatureStore(RunFolder(small_run).features)
    written = FeatureStore(RunFolder(tmp_path / "run").features)
    np.testing.assert_array_equal(
        left_out.read("faces", "cnn-supervised-s0")[1],
        written.read("faces", "cnn-supervised-s0")[1],
    )
    with pytest.raises(StoreError):
        left_out.read("faces", "cnn-supervised-s0", raw=True)


def test_one_model_run_finishes(run_copy, tmp_path):
    config = write_config(tmp_path / "one.yaml", name="one", models=MODELS[:1])
    result = run(config, run_copy, device="cpu")
    assert result.consistency is None and result.similarity.exists() and result.info.exists()
    assert result.probes is None  # probes are off
    assert RunFolder(run_copy).open_results().similarity.sizes["model_a"] == 1
    # a rerun that hands the result files back as they are names the same files, and no other
    again = run(config, run_copy, device="cpu")
    assert (again.similarity, again.consistency, again.probes) == (result.similarity, None, None)
    assert again.summary.startswith(RunFolder(run_copy).summary.read_text().rstrip("\n"))


def test_probes_of_a_larger_run_do_not_survive(tiny_run, tmp_path):
    """The issue's case: an 8-model run with probes, then a 2-model run without, in one folder."""
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    config = write_config(
        tmp_path / "two.yaml",
        name="two",
        models=MODELS[:2],
        datasets=("faces", "textures", "gratings"),
        measures=("cka_linear",),
    )
    run(config, run_dir, device="cpu")
    folder = RunFolder(run_dir)
    assert not folder.probes.exists() and not folder.consistency.exists()
    assert (
        not (folder.stages / "parts" / "probes").exists()
        and not (folder.stages / "probes").exists()
    )
    assert {g.split("/")[1] for g in _feature_groups(run_dir)} == set(MODELS[:2])
    assert folder.open_results().similarity.sizes["model_a"] == 2


# ----------------------------------------------------------------------------- two writers
def test_second_writer_is_refused_with_the_other_pid(run_copy, small_config, monkeypatch):
    """Refused with the holder's process id, and before the run checks its models (that took
    seconds, minutes with downloads, before the lock was found)."""
    from repsim import pipeline

    code = (
        "import sys, time\nfrom repsim.runfolder import RunFolder\n"
        "with RunFolder(sys.argv[1]).lock():\n    print('locked', flush=True)\n    time.sleep(3600)\n"
    )
    other = subprocess.Popen(
        [sys.executable, "-c", code, str(run_copy)], stdout=subprocess.PIPE, text=True
    )
    try:  # the holder sleeps far longer than any run takes to reach the lock; it is killed below
        assert other.stdout.readline().strip() == "locked"
        with monkeypatch.context() as m:

            def no_check(*args, **kwargs):
                raise AssertionError("the models were checked before the lock was found")

            m.setattr(pipeline, "load_plan", no_check)
            with pytest.raises(RunLockedError, match=f"process {other.pid}"):
                run(small_config, run_copy, device="cpu")
    finally:
        other.kill()
        other.wait()
    run(small_config, run_copy, device="cpu")  # the lock dies with its process


# ----------------------------------------------------------------------------- filesystem
def test_out_path_that_is_a_file(small_config, tmp_path):
    target = tmp_path / "a-file"
    target.write_text("x")
    with pytest.raises(RunFolderError, match="is a file, not a folder"):
        run(small_config, target, device="cpu")


def test_out_path_that_is_a_device_is_not_called_a_file(small_config):
    """``--out /dev/null`` was "a file ... (or remove that file)"."""
    with pytest.raises(RunFolderError, match=r"/dev/null is not a folder \(a device"):
        run(small_config, Path("/dev/null"), device="cpu")
    with pytest.raises(RunFolderError, match=r"/dev/null is not a folder \(a device"):
        RunFolder(Path("/dev/null")).create()


@pytest.mark.parametrize("where", ["features", "stages"])
def test_a_file_in_the_way_inside_the_folder_is_named_and_recorded(where, run_copy, small_config):
    """A file where the run needs a folder: the message names that file, run.json records the
    failure, the manifest goes (the old files are not vouched for), and a rerun recovers."""
    folder = RunFolder(run_copy)
    blocked = getattr(folder, where)
    shutil.rmtree(blocked)
    blocked.write_text("x")
    with pytest.raises(
        RepsimError, match=f"{blocked.name} is a file where a folder is needed"
    ) as err:
        run(small_config, run_copy, device="cpu")
    # the folder is at fault, not a dataset (.stages stops every stimulus table being written)
    assert isinstance(err.value, RunFolderError) and "datasets could not" not in str(err.value)
    info = _info(run_copy)
    assert info["status"] == "failed" and blocked.name in json.dumps(info)
    assert not folder.manifest_path.exists()
    with pytest.raises(RepsimError, match="manifest.json is missing|similarity.nc does not exist"):
        folder.open_results()
    blocked.unlink()
    run(small_config, run_copy, device="cpu")
    assert _info(run_copy)["status"] == "finished" and folder.open_results().consistency


def test_unwritable_out_folder(small_config, tmp_path, monkeypatch):
    target = tmp_path / "locked-down"
    target.mkdir()
    target.chmod(0o500)
    if os.geteuid() == 0:  # root writes anywhere: simulate what a user would see
        monkeypatch.setattr("repsim.runfolder.os.access", lambda *a, **k: False)
    try:
        with pytest.raises(RunFolderError, match="permission denied.*chmod"):
            run(small_config, target / "run" if os.geteuid() != 0 else target, device="cpu")
    finally:
        target.chmod(0o755)


#: h5py's words for a full disk (a RuntimeError; the errno only in the text)
HDF5_FULL_DISK = (
    "Disable slist on flush dest failure failed (file write failed: ..., errno = 28, error "
    "message = 'No space left on device', buf = 0x5604cf764fb0, total write size = 4096)"
)


@pytest.mark.parametrize(
    "error",
    [OSError(errno.ENOSPC, "No space left on device"), RuntimeError(HDF5_FULL_DISK)],
    ids=["OSError", "RuntimeError"],
)
def test_full_disk_while_writing_results(run_copy, small_config, monkeypatch, error):
    import xarray as xr

    RunFolder(run_copy).manifest_path.unlink()  # the result files must be written again

    def full(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(xr.Dataset, "to_netcdf", full)
    with pytest.raises(RunFolderError, match="no space left.*similarity.nc.*free space"):
        run(small_config, run_copy, device="cpu")
    info = _info(run_copy)
    assert info["status"] == "failed" and "no space left" in info["error"]
    # and for which config: the record names it as a finished run's does
    assert info["config_hash"] == config_hash(load_plan(small_config))
    assert info["config"]["name"] == "faults"
    assert info["config"]["measures"] == ["cka_linear", "rsa_spearman", "mutual_knn_10"]


def test_full_disk_worded_by_hdf5_in_a_task_is_reported_once(run_copy, small_config, monkeypatch):
    """The similarity part of one dataset meets a full disk: one try, named in the final message
    and in run.json (it was a RuntimeError retried once and reported in h5py's words)."""
    import xarray as xr

    RunFolder(run_copy).similarity_part("faces").unlink()  # the one netCDF file this run writes
    calls = []

    def full(self, *args, **kwargs):
        calls.append(1)
        raise RuntimeError(HDF5_FULL_DISK)

    monkeypatch.setattr(xr.Dataset, "to_netcdf", full)
    with pytest.raises(RunFailedError, match="similarity-faces.*no space left.*free space") as err:
        run(small_config, run_copy, device="cpu")
    assert len(calls) == 1 and "Disable slist" not in str(err.value)
    failed = _info(run_copy)["failed_tasks"]
    assert [f["task"] for f in failed] == ["similarity-faces"]
    assert failed[0]["message"].startswith("no space left on the device")


def test_full_disk_in_a_task_is_reported_once_not_retried(run_copy, small_config, monkeypatch):
    from repsim.store import FeatureWriter

    shutil.rmtree(RunFolder(run_copy).features / "faces" / MODELS[1])
    calls = []

    def full(self, chunk, features, raw=None):
        calls.append(chunk)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(FeatureWriter, "write_chunk", full)
    with pytest.raises(RunFailedError) as err:
        run(small_config, run_copy, device="cpu")
    assert len(calls) == 1
    assert f"features-faces-{MODELS[1]}" in str(err.value) and "no space left" in str(err.value)


def test_a_failed_task_is_kept_when_the_full_record_cannot_be_written(
    run_copy, small_config, monkeypatch
):
    """On a full disk the tasks fail and then run.json's full record fails too: the final message
    named only run.json, and the short record written instead listed no failed task."""
    from repsim import pipeline
    from repsim.store import FeatureWriter

    shutil.rmtree(RunFolder(run_copy).features / "faces" / MODELS[1])

    def full(self, chunk, features, raw=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    def no_record(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", "run.json")

    monkeypatch.setattr(FeatureWriter, "write_chunk", full)
    monkeypatch.setattr(pipeline, "_write_run_info", no_record)
    with pytest.raises(RunFailedError) as err:
        run(small_config, run_copy, device="cpu")
    message = str(err.value)
    assert f"features-faces-{MODELS[1]}" in message and "The full record could not be" in message
    info = _info(run_copy)
    assert info["status"] == "failed" and f"features-faces-{MODELS[1]}" in info["error"]
    assert "run.json holds these failures in short" in message


def _fail_on_a_full_disk(run_copy, small_config, monkeypatch, also: str) -> str:
    """Run with one model's features to make on a full disk, the full record failing too, and
    ``also`` (a RunFolder method) failing as well: the final message."""
    from repsim import pipeline
    from repsim.store import FeatureWriter

    shutil.rmtree(RunFolder(run_copy).features / "faces" / MODELS[1])

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(FeatureWriter, "write_chunk", full)
    monkeypatch.setattr(pipeline, "_write_run_info", full)
    monkeypatch.setattr(RunFolder, also, full)
    with pytest.raises(RunFailedError) as err:
        run(small_config, run_copy, device="cpu")
    return str(err.value)


def test_a_full_disk_that_stops_every_record_is_said_so(run_copy, small_config, monkeypatch):
    """The message said "run.json holds these failures in short" when the short record could not
    be written either (a disk filled to the last byte): it now says the message is the only
    record, and why."""
    message = _fail_on_a_full_disk(run_copy, small_config, monkeypatch, also="write_json")
    assert f"features-faces-{MODELS[1]}" in message
    assert "run.json holds" not in message
    assert "nor could run.json in short ([Errno 28] No space left on device)" in message
    assert "this message is the only record" in message


def test_results_that_cannot_be_removed_do_not_stop_the_short_record(
    run_copy, small_config, monkeypatch
):
    """When the failed run's result files could not be removed, the short run.json was not even
    tried and the message blamed run.json: it is written, and the message points to it."""
    message = _fail_on_a_full_disk(run_copy, small_config, monkeypatch, also="remove")
    assert "run.json holds these failures in short" in message
    info = _info(run_copy)
    assert info["status"] == "failed" and f"features-faces-{MODELS[1]}" in info["error"]


def _disk(monkeypatch, free: int) -> None:
    usage = shutil._ntuple_diskusage(10**12, 10**12 - free, free)
    monkeypatch.setattr("repsim.runfolder.shutil.disk_usage", lambda path: usage)


def test_a_run_that_will_not_fit_is_refused_before_any_extraction(
    run_copy, small_config, monkeypatch
):
    """One feature group to extract (60 stimuli) and 1000 bytes free: refused before any image is
    decoded, with what it needs, what is free and where; run.json says so; the rest is kept."""
    from repsim.runfolder import NoSpaceError, _size
    from repsim.store import FeatureStore

    group = RunFolder(run_copy).features / "faces" / MODELS[1]
    _, features = FeatureStore(RunFolder(run_copy).features).read("faces", MODELS[1])
    shutil.rmtree(group)
    _disk(monkeypatch, 1000)
    needed = _size(60 * features.shape[1] * 4)  # probes off: the 60 similarity rows, float32
    want = (
        rf"needs about {re.escape(needed)} for the features of 1 model-dataset pair\(s\) but "
        rf"{run_copy} \(on the filesystem mounted at /\S*\) has 1000 bytes free"
    )
    with pytest.raises(NoSpaceError, match=want):
        run(small_config, run_copy, device="cpu")
    assert not group.exists()
    info = _info(run_copy)  # a refusal: the run's record and results stay
    assert info["status"] == "finished" and "not enough free space" in info["refused"]["error"]
    assert load_run(run_copy).similarity is not None


def test_a_run_with_probes_asks_for_the_space_of_every_row_it_extracts(
    tiny_run, tiny_config, tmp_path, monkeypatch
):
    """With probes on, a dataset's features are extracted for its train and test rows, not only
    its similarity stimuli: the space asked for is that of every row (the similarity rows alone
    let a run start that the disk could not hold)."""
    import pandas as pd

    from repsim.runfolder import NoSpaceError, _size
    from repsim.store import FeatureStore

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    folder = RunFolder(run_dir)
    ids, features = FeatureStore(folder.features).read("faces", MODELS[1])
    rows = len(pd.read_csv(folder.stimuli("faces")))
    assert len(ids) == rows > 60  # every row extracted, more than the similarity stimuli
    shutil.rmtree(folder.features / "faces" / MODELS[1])
    _disk(monkeypatch, 1000)
    needed = _size(rows * features.shape[1] * 4)  # float32
    with pytest.raises(NoSpaceError, match=rf"needs about {re.escape(needed)} for the features"):
        run(tiny_config, run_dir, device="cpu")


def test_a_shortfall_on_a_guessed_feature_width_warns_and_runs(
    run_copy, small_config, monkeypatch, caplog
):
    """A feature width not known before the model runs is guessed at an upper bound: too little
    free space for that bound is a warning naming the model and the bound, not a refusal."""
    from repsim.plan import UNKNOWN_DIM_BOUND, RunPlan

    shutil.rmtree(RunFolder(run_copy).features / "faces" / MODELS[1])
    _disk(monkeypatch, 1000)
    monkeypatch.setattr(RunPlan, "feature_dim", lambda self, m: (UNKNOWN_DIM_BOUND, False))
    with caplog.at_level("WARNING", logger="repsim.runfolder"):
        run(small_config, run_copy, device="cpu")
    assert _info(run_copy)["status"] == "finished"
    assert f"feature width of {MODELS[1]} unknown: {UNKNOWN_DIM_BOUND} assumed" in caplog.text


@pytest.mark.parametrize("n_guessed, named", [(3, "m0, m1, m2"), (5, "m0, m1, m2, ...")])
def test_the_space_message_names_at_most_three_guessed_models(n_guessed, named):
    """The first three models (sorted) whose feature width is guessed are named, and ", ..." says
    there are more: 64 names would bury the message."""
    from types import SimpleNamespace as NS

    from repsim.pipeline import _check_free_space
    from repsim.plan import UNKNOWN_DIM_BOUND

    models = [NS(id=f"m{i}") for i in reversed(range(n_guessed))] + [NS(id="known")]
    plan = NS(
        probes_enabled=False,
        datasets=[NS(id="faces")],
        feature_bytes=lambda rows, pending: 10**12,
        feature_dim=lambda m: (UNKNOWN_DIM_BOUND, m.id == "known"),
    )
    asked = []
    folder = NS(check_free_space=lambda needed, what, estimate: asked.append((what, estimate)))
    _check_free_space(plan, folder, ({"n_similarity": 60},), {"faces": models})
    assert asked == [
        (
            f"the features of {n_guessed + 1} model-dataset pair(s) (feature width of {named} "
            f"unknown: {UNKNOWN_DIM_BOUND} assumed)",
            True,
        )
    ]


def test_cached_features_need_no_free_space(run_copy, small_config, monkeypatch):
    """A rerun whose features are all cached writes kilobytes: a nearly full disk does not stop it."""
    _disk(monkeypatch, 0)
    run(small_config, run_copy, device="cpu")
    assert _info(run_copy)["status"] == "finished"


# ----------------------------------------------------------------------------- unreadable or misplaced files
@pytest.mark.parametrize(
    "name", ["similarity.nc", "consistency.nc", "run.json", "stimuli/faces.csv"]
)
def test_an_unreadable_run_file_is_named_with_the_read_fix(
    name, run_copy, tmp_path, monkeypatch, capsys
):
    """A file of a finished run at mode 000: every reader names it and says how to read it."""
    from repsim.chapter import load_run
    from repsim.cli import main

    unreadable(monkeypatch, run_copy / name)
    want = rf"permission denied while trying to read \S*{name}: .*chmod u\+r"
    with pytest.raises(RunFolderError, match=want):
        load_run(run_copy)
    assert main(["compare", str(run_copy)]) == 2
    assert main(["book", "--run", str(run_copy), "--book", str(tmp_path / "book")]) == 2
    err = capsys.readouterr().err
    assert err.count("chmod u+r") == 2 and "Traceback" not in err


def test_an_unreadable_feature_group_is_named_with_the_read_fix(run_copy, monkeypatch):

    group = RunFolder(run_copy).features / "faces" / MODELS[1]
    store = load_run(run_copy).feature_store()
    unreadable(monkeypatch, group)
    with pytest.raises(RepsimError, match=rf"trying to read {group}: .*chmod -R u\+rX"):
        store.read("faces", MODELS[1])


def test_a_rerun_that_cannot_read_a_result_file_says_read(run_copy, small_config, monkeypatch):
    """The reuse check reads similarity.nc: the message says read (it said write, chmod u+w)."""
    unreadable(monkeypatch, RunFolder(run_copy).similarity)
    with pytest.raises(
        RunFolderError, match=r"trying to read \S*similarity.nc: .*chmod u\+r"
    ) as err:
        run(small_config, run_copy, device="cpu")
    assert "write" not in str(err.value)


def test_a_file_where_a_feature_group_belongs_is_named(run_copy, small_config):
    """The message names the file in the way, not the temporary folder that was renamed onto it."""
    group = RunFolder(run_copy).features / "faces" / MODELS[1]
    shutil.rmtree(group)
    group.write_text("x")
    with pytest.raises(RunFailedError) as err:
        run(small_config, run_copy, device="cpu")
    assert f"{group} is a file where a folder is needed" in str(err.value)
    assert ".tmp" not in str(err.value)
    group.unlink()
    run(small_config, run_copy, device="cpu")
    assert _info(run_copy)["status"] == "finished"


@pytest.mark.parametrize("name", ["similarity.nc", "summary.txt", ".stages/similarity/faces.json"])
def test_a_folder_where_a_run_file_belongs_is_named(name, run_copy, small_config):
    """A result file or task record replaced by a folder: readers and the rerun say to remove it."""

    path = run_copy / name
    path.unlink()
    path.mkdir()
    (path / "x").write_text("x")
    want = f"{re.escape(str(path))} is a folder where a file is needed.*remove that folder"
    if not name.startswith("."):
        with pytest.raises(RunFolderError, match=want):
            load_run(run_copy)
    with pytest.raises(RepsimError, match=want):
        run(small_config, run_copy, device="cpu")
    shutil.rmtree(path)
    run(small_config, run_copy, device="cpu")
    assert _info(run_copy)["status"] == "finished"


# ----------------------------------------------------------------------------- failing inputs
def test_truncated_weights_fail_before_any_work(small_config, tmp_path):
    weights = Path(load_plan(small_config).models[0].weights)
    (tmp_path / "truncated.safetensors").write_bytes(weights.read_bytes()[:1000])
    config = write_config(
        tmp_path / "bad.yaml",
        models=("truncated", *MODELS),
        extra="models:\n  - {id: truncated, loader: minizoo, identifier: cnn, "
        "weights: truncated.safetensors, metadata: {objective: Supervised}}\n",
    )
    with pytest.raises(ModelError, match="truncated.safetensors") as err:
        run(config, tmp_path / "run", device="cpu")
    # no work, and the cause where a batch job's user looks: run.json, and nothing else
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock", "run.json"]
    info = _info(tmp_path / "run")
    assert info["status"] == "refused" and info["config_path"] == str(config)
    assert info["refused"]["error"] == f"ModelError: {err.value}" == info["error"]
    assert "truncated.safetensors" in RunFolder(tmp_path / "run").why_no_results()
    with pytest.raises(RepsimError, match="(?s)refused before it started.*truncated"):
        load_run(tmp_path / "run")
    run(
        small_config, tmp_path / "run", device="cpu"
    )  # the folder is a run's: the fixed run goes in
    assert _info(tmp_path / "run")["status"] == "finished" and "refused" not in _info(
        tmp_path / "run"
    )


def test_refused_run_keeps_the_folders_results_and_records_why(run_copy, small_config, tmp_path):
    """A bad config pointed at a finished run: the run's results and record stay (and verify),
    run.json says the last attempt was refused and why."""
    before = {p.name: p.read_bytes() for p in RunFolder(run_copy).path.iterdir() if p.is_file()}
    config = write_config(tmp_path / "bad.yaml", models=("no-such-model", *MODELS))
    with pytest.raises(RepsimError, match="no-such-model") as err:
        run(config, run_copy, device="cpu")
    info = _info(run_copy)
    assert info["status"] == "finished" and info["config_hash"] == config_hash(
        load_plan(small_config)
    )
    assert info["refused"]["config_path"] == str(config)
    assert info["refused"]["error"].endswith(str(err.value))
    after = {p.name: p.read_bytes() for p in RunFolder(run_copy).path.iterdir() if p.is_file()}
    changed = {n for n in before if before[n] != after.get(n)}
    assert changed == {"run.json", "manifest.json"}  # the manifest vouches for the new run.json
    results = load_run(run_copy)  # verifies every listed file against the manifest
    assert results.similarity is not None
    assert RunFolder(run_copy).record_info("book_s", 1.0)  # still vouched for


@pytest.mark.parametrize(
    "error", [OSError(errno.EROFS, "Read-only file system"), RunLockedError("x")]
)
def test_a_refusal_that_cannot_be_recorded_still_reports_its_cause(
    run_copy, small_config, monkeypatch, caplog, error
):
    """Recording a refusal is best effort: when run.json cannot be written, the refusal itself
    (the user's error) is what is raised, and the failure to record it is a warning naming
    run.json, not a second traceback."""

    def unwritable(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(RunFolder, "record_refusal", unwritable)
    before = RunFolder(run_copy).info.read_bytes()
    with caplog.at_level("WARNING", logger="repsim.pipeline"):
        with pytest.raises(RepsimError, match="'tpu'"):
            run(small_config, run_copy, device="tpu")
    assert RunFolder(run_copy).info.read_bytes() == before
    (record,) = [r for r in caplog.records if "could not record the refusal" in r.getMessage()]
    assert "run.json" in record.getMessage() and str(error) in record.getMessage()


@pytest.mark.parametrize("named", [True, False])
def test_an_os_error_outside_the_tasks_names_its_file_or_else_the_folder(
    named, run_copy, small_config, monkeypatch
):
    """An OSError between the tasks (here while pruning) names the file it carries; one without
    a file name names the run folder, so the message always says where to look."""
    import repsim.pipeline as P

    victim = run_copy / "stimuli" / "gone.csv"

    def denied(plan, folder):
        if named:
            raise PermissionError(errno.EACCES, "Permission denied", str(victim))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(P, "_prune", denied)
    where = victim if named else run_copy
    with pytest.raises(RunFolderError, match=f"while trying to access {re.escape(str(where))}:"):
        run(small_config, run_copy, device="cpu")


def test_an_abort_that_cannot_be_recorded_still_raises_its_cause(
    run_copy, small_config, monkeypatch, caplog
):
    """An abort whose record cannot be written (the disk may be the cause): the abort's error is
    raised, the failure to record it is a warning naming run.json."""
    import repsim.pipeline as P

    def stopped(*args, **kwargs):
        raise RunFolderError("simulated: the results cannot be written")

    def unwritable(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(P, "_run_locked", stopped)
    monkeypatch.setattr(RunFolder, "write_json", unwritable)
    with caplog.at_level("WARNING", logger="repsim.pipeline"):
        with pytest.raises(RunFolderError, match="simulated: the results cannot be written"):
            run(small_config, run_copy, device="cpu")
    (record,) = [r for r in caplog.records if "could not record the failure" in r.getMessage()]
    assert "run.json" in record.getMessage() and "No space left" in record.getMessage()
    assert not RunFolder(run_copy).manifest_path.exists()  # removed before the write failed


def test_failed_decode_is_the_reported_cause(run_copy, small_config, monkeypatch):
    from repsim import stages
    from repsim.errors import DatasetError

    shutil.rmtree(RunFolder(run_copy).features / "faces" / MODELS[0])

    def broken(plan, ds, run_dir, ids):
        raise DatasetError(f"dataset {ds.id}: simulated unreadable shard")

    monkeypatch.setattr(stages, "decode_images", broken)
    t0 = time.perf_counter()
    with pytest.raises(RunFailedError) as err:
        run(small_config, run_copy, device="cpu")
    elapsed = time.perf_counter() - t0
    message = str(err.value)
    assert "1 task(s) failed" in message
    assert (
        "decode-faces (dataset faces): DatasetError: dataset faces: simulated unreadable shard"
        in message
    )
    assert "skipped because decode-faces failed" in message
    failed = _info(run_copy)["failed_tasks"]
    assert [f["task"] for f in failed if not f["skipped"]] == ["decode-faces"]
    assert {f["cause"] for f in failed if f["skipped"]} == {"decode-faces"}
    # the failed run is timed as a finished one is: its total is the time the call took at most
    assert 0.0 < _info(run_copy)["timings_s"]["total"] <= elapsed
    with pytest.raises(RepsimError):
        RunFolder(run_copy).open_results()  # no half result files after a failed run


def test_failed_consistency_is_reported_like_a_task(run_copy, small_config, monkeypatch):
    RunFolder(run_copy).manifest_path.unlink()  # the result files must be built again

    def broken(sim):
        raise ValueError("simulated failure in the consistency analysis")

    monkeypatch.setattr("repsim.pipeline.run_consistency", broken)
    with pytest.raises(RunFailedError, match="consistency: ValueError: simulated failure"):
        run(small_config, run_copy, device="cpu")
    failed = _info(run_copy)["failed_tasks"]
    assert [(f["stage"], f["exc_type"]) for f in failed] == [("consistency", "ValueError")]
    assert not RunFolder(run_copy).similarity.exists()


# ----------------------------------------------------------------------------- datasets checked first
def _two_dataset_config(path: Path, second: str, probes: bool = False) -> Path:
    from faults.faultkit import REPO

    path.write_text(
        "name: datasets-first\n"
        f"include: [{REPO / 'data' / 'minizoo' / 'models.yaml'}]\n"
        f"select: {{models: [{', '.join(MODELS[:2])}]}}\n"
        "measures: [cka_linear]\n"
        "stimuli: {max_images: 60, seed: 42}\n"
        f"probe: {{enabled: {str(probes).lower()}, epochs: 1, seeds: [0]}}\n"
        "threads: 1\n"
        "datasets:\n"
        f"  - {{id: faces, loader: embedded, path: {REPO / 'data' / 'embedded' / 'faces.npz'}, "
        'domain: "Natural (single-domain)", n_classes: 2}\n'
        f"  - {second}\n"
    )
    return path


def test_a_dataset_that_cannot_be_opened_stops_the_run_before_any_feature(tmp_path):
    """A dataset whose folder is there but holds no images: found by its stimulus stage, which
    stops the run before any image is decoded, naming the task, the dataset and the fix (its
    command with the config's path, quoted for the shell)."""
    import shlex

    from repsim.errors import DatasetError

    (tmp_path / "empty").mkdir()
    (tmp_path / "my configs").mkdir()
    config = _two_dataset_config(
        tmp_path / "my configs" / "c.yaml",
        f"{{id: photos, loader: imagefolder, path: {tmp_path / 'empty'}, domain: Specialized}}",
    )
    load_plan(config)  # the folder is there: the plan passes it
    with pytest.raises(
        DatasetError, match=r"(?s)stimuli-photos \(dataset photos\).*no usable images"
    ) as err:
        run(config, tmp_path / "run", device="cpu")
    # what happened and the fix, beside the dataset's own error
    assert str(err.value).startswith("datasets could not be opened, so nothing was extracted:")
    assert (
        "Fix the dataset entries (check them with `repsim datasets --config "
        f"{shlex.quote(str(config))} --check`)" in str(err.value)
    )
    folder = RunFolder(tmp_path / "run")
    assert not folder.features.exists() or not any(folder.features.rglob("zarr.json"))
    info = _info(tmp_path / "run")
    assert info["status"] == "refused" and "photos" in info["error"]


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def test_a_dataset_whose_files_are_missing_is_refused_before_any_work(run_copy, tmp_path):
    """A config naming a dataset file or folder that is not there, pointed at a finished run of
    another config: refused by the plan, with each dataset's loader's own message and fix. The
    run's results stay and verify; before, the run emptied the folder for the new config and
    then failed in its stimulus stage."""
    from repsim.errors import DatasetError

    before = _files(run_copy)
    config = _two_dataset_config(
        tmp_path / "c.yaml",
        f"{{id: photos, loader: imagefolder, path: {tmp_path / 'no-such-folder'}, "
        "domain: Specialized}\n"
        f"  - {{id: faces2, loader: embedded, path: {tmp_path / 'gone.npz'}, domain: Specialized}}",
    )
    with pytest.raises(DatasetError) as err:
        run(config, run_copy, device="cpu")
    message = str(err.value)
    assert message.startswith("datasets cannot be opened, so nothing was run:\n  ")
    # every missing dataset, in the words of its loader (what the path must hold, how to get it)
    assert f"dataset 'photos': image folder {tmp_path / 'no-such-folder'} does not exist" in message
    assert f"dataset 'faces2': embedded file {tmp_path / 'gone.npz'} does not exist" in message
    assert "`python -m repsim.embedded`" in message and "faces'" not in message
    assert message.endswith(
        f"`repsim datasets --config {config}` lists what each dataset holds), or leave them "
        "out with select: {datasets: [...]}. The models are checked after the datasets: "
        f"`repsim models --config {config} --check` checks them and their weights now"
    )
    info = _info(run_copy)
    assert info["status"] == "finished" and info["refused"]["error"] == f"DatasetError: {message}"
    after = _files(run_copy)  # nothing else, .stages included: the plan refused it
    assert {n for n in before if before[n] != after.get(n)} == {"run.json", "manifest.json"}
    assert load_run(run_copy).similarity is not None  # verified against the manifest


@pytest.mark.parametrize("max_images", [60, 40])
def test_a_dataset_that_cannot_be_opened_is_refused_and_a_finished_run_kept(
    max_images, run_copy, small_config, tmp_path
):
    """A config adding a dataset whose folder is there but holds no images, pointed at a finished
    run of another config: its stimulus stage finds it before any feature, and the run is refused
    with the folder's results and record kept (they were removed first, then the run failed).
    The stimulus stage replaced the table of the dataset both configs have (another subset):
    it is put back, so the results still verify."""
    from repsim.errors import DatasetError

    before = _files(run_copy)
    (tmp_path / "empty").mkdir()
    config = _two_dataset_config(
        tmp_path / "c.yaml",
        f"{{id: photos, loader: imagefolder, path: {tmp_path / 'empty'}, domain: Specialized}}",
    )
    config.write_text(config.read_text().replace("max_images: 60", f"max_images: {max_images}"))
    with pytest.raises(DatasetError, match=r"(?s)stimuli-photos \(dataset photos\).*no usable"):
        run(config, run_copy, device="cpu")
    info = _info(run_copy)
    assert info["status"] == "finished" and "no usable images" in info["refused"]["error"]
    after = _files(run_copy)
    changed = {n for n in before if before[n] != after.get(n) and not n.startswith(".stages")}
    assert changed == {"run.json", "manifest.json"}
    assert load_run(run_copy).similarity is not None  # verified against the manifest
    # the old config again: its stimulus table is redone (the stage's record is the refused
    # config's), the same rows, so its features are reused
    run(small_config, run_copy, device="cpu")
    redone = _info(run_copy)["redone"]
    assert [r.split(":")[0] for r in redone] == ["stimuli faces"], redone


def test_a_dangling_link_to_a_dataset_is_refused_in_a_new_folder(tmp_path):
    """A dataset reached through a symbolic link whose target has gone: refused before the
    folder gets anything but the refusal's run.json."""
    from repsim.errors import DatasetError

    (tmp_path / "photos").symlink_to(tmp_path / "moved-away")
    config = _two_dataset_config(
        tmp_path / "c.yaml",
        f"{{id: photos, loader: imagefolder, path: {tmp_path / 'photos'}, domain: Specialized}}",
    )
    with pytest.raises(DatasetError, match="is a dangling symbolic link to .*moved-away"):
        run(config, tmp_path / "run", device="cpu")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock", "run.json"]
    assert _info(tmp_path / "run")["status"] == "refused"


def _photo_folder(root: Path) -> Path:
    """An image folder of two classes of 12 random 16 px PNGs, without a test split."""
    from PIL import Image

    rng = __import__("numpy").random.default_rng(0)
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(12):
            pixels = rng.integers(0, 255, (16, 16, 3), dtype="uint8")
            Image.fromarray(pixels).save(root / label / f"{i}.png")
    return root


def test_a_dataset_smaller_than_a_measure_needs_stops_the_run_before_any_feature(tmp_path):
    """The config's stimulus cap (60) lets mutual_knn_30 pass the plan's check; the folder holds
    24 images: the exact counts, known once the stimulus tables are written, stop the run before
    any image is decoded, naming the dataset, the measure and the fix."""
    from repsim.errors import ConfigError

    root = _photo_folder(tmp_path / "photos")
    entry = f"{{id: photos, loader: imagefolder, path: {root}, domain: Specialized}}"
    config = _two_dataset_config(tmp_path / "c.yaml", entry)
    config.write_text(config.read_text().replace("[cka_linear]", "[cka_linear, mutual_knn_30]"))
    load_plan(config)  # the bound passes
    want = r"mutual_knn_30 needs at least 32 stimuli; dataset 'photos' has 24 .*Lower k"
    with pytest.raises(ConfigError, match=f"(?s){want}"):
        run(config, tmp_path / "run", device="cpu")
    folder = RunFolder(tmp_path / "run")
    assert not folder.features.exists() or not any(folder.features.rglob("zarr.json"))
    assert _info(tmp_path / "run")["status"] == "refused"


def test_probes_on_a_dataset_without_a_test_split_are_refused_first(tmp_path):
    from repsim.errors import DatasetError

    root = _photo_folder(tmp_path / "photos")
    entry = f"{{id: photos, loader: imagefolder, path: {root}, domain: Specialized}}"
    config = _two_dataset_config(tmp_path / "c.yaml", entry, probes=True)
    with pytest.raises(DatasetError, match="photos has no test images.*test_fraction") as err:
        run(config, tmp_path / "run", device="cpu")
    # what probes need, and the fixes of a missing split (not those of missing classes)
    assert str(err.value).startswith("linear probes need a train and a test split on every")
    assert str(err.value).endswith(PROBE_SPLIT_FIX)
    assert not any(RunFolder(tmp_path / "run").features.rglob("zarr.json"))


def test_unreadable_images_are_counted_in_the_summary(tmp_path):
    """Damaged images are skipped and listed in run.json; the summary and the final message
    said nothing, so a class lost to them went unnoticed."""
    root = _photo_folder(tmp_path / "photos")
    for i in range(2):  # cut in half: the header reads, the pixels do not
        data = (root / "b" / f"{i}.png").read_bytes()
        (root / "b" / f"{i}.png").write_bytes(data[: len(data) // 2])
    entry = f"{{id: photos, loader: imagefolder, path: {root}, domain: Specialized}}"
    config = _two_dataset_config(tmp_path / "c.yaml", entry)
    result = run(config, tmp_path / "run", device="cpu")
    info = _info(tmp_path / "run")
    assert len(info["skipped"]["photos"]) == 2
    assert "skipped" not in info["stimuli"]["photos"]  # listed once, not again per dataset
    assert (
        "Items that could not be read and were left out (run.json 'skipped' lists each):\n"
        "  photos: 2"
    ) in result.summary
    assert "faces: 0" not in result.summary


def test_a_folder_that_is_not_a_run_folder_is_left_alone(small_config, tmp_path, monkeypatch):
    """--out on someone's folder (or "" for the working directory) would remove and rewrite files
    by name there: refused before anything is written."""
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "summary.txt").write_text("my notes")
    with pytest.raises(RunFolderError, match="is not a run folder"):
        run(small_config, mine, device="cpu")
    assert sorted(p.name for p in mine.iterdir()) == ["summary.txt"]
    monkeypatch.chdir(mine)
    with pytest.raises(RunFolderError, match="is not a run folder"):
        run(small_config, "", device="cpu")
    empty = tmp_path / "empty"
    empty.mkdir()
    run(small_config, empty, device="cpu")  # an empty folder is fine
    assert RunFolder(empty).is_run_folder()


@pytest.mark.parametrize("name", ["run.json", "manifest.json"])
def test_another_tools_run_json_does_not_make_a_run_folder(small_config, tmp_path, name):
    """A folder of another tool's run (its own run.json) was taken for a run folder: the run
    replaced its summary.txt and removed its stimuli/data.csv."""
    theirs = tmp_path / "theirs"
    (theirs / "stimuli").mkdir(parents=True)
    (theirs / name).write_text('{"tool": "other"}')
    (theirs / "summary.txt").write_text("their notes")
    (theirs / "stimuli" / "data.csv").write_text("x,y\n")
    with pytest.raises(RunFolderError, match="is not a run folder"):
        run(small_config, theirs, device="cpu")
    assert (theirs / "summary.txt").read_text() == "their notes"
    assert (theirs / "stimuli" / "data.csv").is_file()
    (theirs / name).write_text("not json")
    assert not RunFolder(theirs).is_run_folder()


def test_a_run_json_of_a_failed_run_still_marks_a_run_folder(small_config, tmp_path):
    """What a run writes when it stops before any task (status and config hash) keeps the
    folder a run folder, so the rerun may enter it."""
    from repsim.errors import ConfigError

    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "run.json").write_text(json.dumps({"status": "failed", "config_hash": "x"}))
    assert RunFolder(folder).is_run_folder()
    with pytest.raises(ConfigError):  # noqa: PT012 - not refused as a foreign folder
        bad = tmp_path / "bad.yaml"
        bad.write_text(f"include: [{small_config}]\nmeasures: [no_such_measure]\n")
        run(bad, folder, device="cpu")


def test_a_users_stimuli_folder_does_not_make_a_run_folder(small_config, tmp_path, run_copy):
    """A project folder with its images in stimuli/ passed as --out: stimuli/ counted as a trace
    of a run, the folder was taken for a run folder, and the cleanup removed every entry of
    stimuli/ that was not a dataset id, i.e. the user's class folders."""
    project = tmp_path / "project"
    for cls in ("a", "b"):
        (project / "stimuli" / cls).mkdir(parents=True)
        (project / "stimuli" / cls / "0.png").write_bytes(b"png")
    (project / "README.txt").write_text("my project")
    with pytest.raises(RunFolderError, match="is not a run folder"):
        run(small_config, project, device="cpu")
    assert sorted(p.name for p in (project / "stimuli").iterdir()) == ["a", "b"]
    # in a real run folder the cleanup removes only the tables a run writes
    (run_copy / "stimuli" / "mine").mkdir()
    (run_copy / "stimuli" / "notes.txt").write_text("kept")
    (run_copy / "stimuli" / "old_dataset.csv").write_text("id\n")
    run(small_config, run_copy, device="cpu")
    left = sorted(p.name for p in (run_copy / "stimuli").iterdir())
    assert "mine" in left and "notes.txt" in left and "old_dataset.csv" not in left


@pytest.mark.parametrize(
    ("train_labels", "test_labels", "match"),
    [
        ([0] * 12, [0] * 4, r"photos has 1 class in its train split \(a probe needs 2\)"),
        (
            [0, 1] * 6,
            [0, 1, 2, 2],
            r"photos has test images of 1 class\(es\) its train split lacks \(class indices 2\)",
        ),
    ],
)
def test_probes_that_cannot_be_fitted_or_scored_are_refused_first(
    tmp_path, train_labels, test_labels, match
):
    """One train class, or test classes the train split lacks, failed in the probe stage after
    every feature had been extracted (exit 3, "test labels [2] (of 1)")."""
    import numpy as np

    from repsim.errors import DatasetError

    n = len(train_labels) + len(test_labels)
    path = tmp_path / "photos.npz"
    np.savez(
        path,
        images=np.random.default_rng(0).integers(0, 255, (n, 16, 16, 3), dtype=np.uint8),
        labels=np.array(train_labels + test_labels),
        split=np.array(["train"] * len(train_labels) + ["test"] * len(test_labels)),
        ids=np.array([f"photos/{i}" for i in range(n)]),
        class_names=np.array(["a", "b", "c"]),
    )
    entry = f"{{id: photos, loader: embedded, path: {path}, domain: Specialized}}"
    config = _two_dataset_config(tmp_path / "c.yaml", entry, probes=True)
    # the fix for the classes, not the one for a missing split
    fix = "Give those datasets train images of every class they test"
    with pytest.raises(DatasetError, match=f"cannot be fitted and scored .*{match}.*{fix}") as err:
        run(config, tmp_path / "run", device="cpu")
    assert "test_fraction" not in str(err.value)
    assert not any(RunFolder(tmp_path / "run").features.rglob("zarr.json"))
