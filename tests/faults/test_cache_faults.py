"""Damage each kind of cached file of a finished run; the rerun must give the clean run's files.

Each case copies the clean small run, damages one file, reruns the same config and checks that
(1) the result files are byte-identical to the clean run's, (2) only the damaged task was redone
(for features: that one model on that one dataset) and (3) run.json says what was redone and why.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from repsim.pipeline import run
from repsim.runfolder import RunFolder, RunFolderError, sha256_file

pytestmark = pytest.mark.slow

DS, MODEL = "faces", "cnn-simclr-s0"


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def _chunk_files(run_dir: Path) -> list[Path]:
    root = RunFolder(run_dir).features / DS / MODEL / "features"
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != "zarr.json")


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def _alter_seal(run_dir: Path) -> None:
    """One hex digit of the group's seal changed (or another group's zarr.json copied in): the
    pipeline checked the content against its stage record only and kept the group, which every
    reader then refused as damaged, with a fix (rerun) that never repaired it."""
    meta = RunFolder(run_dir).features / DS / MODEL / "zarr.json"
    doc = json.loads(meta.read_text())
    seal = doc["attributes"]["sha256"]
    doc["attributes"]["sha256"] = ("0" if seal[0] != "0" else "1") + seal[1:]
    meta.write_text(json.dumps(doc))


def _remove_seal(run_dir: Path) -> None:
    meta = RunFolder(run_dir).features / DS / MODEL / "zarr.json"
    doc = json.loads(meta.read_text())
    del doc["attributes"]["sha256"]
    meta.write_text(json.dumps(doc))


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    # case: (damage the run folder, the stage that must be redone)
    "truncated stimulus table": (lambda d: _truncate(RunFolder(d).stimuli(DS)), "stimuli"),
    "deleted feature group": (
        lambda d: shutil.rmtree(RunFolder(d).features / DS / MODEL),
        "features",
    ),
    "deleted feature chunk": (lambda d: _chunk_files(d)[0].unlink(), "features"),
    "flipped byte in a chunk": (lambda d: _flip_byte(_chunk_files(d)[0]), "features"),
    "damaged group zarr.json": (
        lambda d: (RunFolder(d).features / DS / MODEL / "zarr.json").write_text("{"),
        "features",
    ),
    "altered group seal": (lambda d: _alter_seal(d), "features"),
    # the same content, unsealed: the pipeline kept it (its content hash is the record's) and the
    # book refused it as "extracted again since", with a fix (rerun) that never sealed it again
    "seal removed from the group's zarr.json": (lambda d: _remove_seal(d), "features"),
    "truncated similarity part": (
        lambda d: _truncate(RunFolder(d).similarity_part(DS)),
        "similarity",
    ),
    "damaged task record": (
        lambda d: RunFolder(d).marker("features", DS, MODEL).write_text("{"),
        "features",
    ),
    # deleted records: the output was redone, but run.json's `redone` left it out ("not done yet")
    "deleted features record": (
        lambda d: RunFolder(d).marker("features", DS, MODEL).unlink(),
        "features",
    ),
    "deleted similarity record": (
        lambda d: RunFolder(d).marker("similarity", DS).unlink(),
        "similarity",
    ),
}


def assert_same_results(clean: Path, other: Path) -> None:
    """Byte-identical result files, and a folder that opens with every check passing."""
    a, b = RunFolder(clean), RunFolder(other)
    for path_a, path_b in (
        (a.similarity, b.similarity),
        (a.consistency, b.consistency),
        (a.summary, b.summary),
    ):
        assert path_b.read_bytes() == path_a.read_bytes(), path_b.name
    assert not b.probes.exists()
    b.open_results()
    from repsim.chapter import load_run

    # what the book's chapters read: the group the results were computed from, seal checked
    load_run(other).feature_store().read(DS, MODEL)


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_cache_is_recomputed_to_identical_results(
    case, small_run, run_copy, small_config, monkeypatch
):
    import repsim.extract

    damage, stage = DAMAGE[case]
    damage(run_copy)
    extracted = []
    original = repsim.extract.extract_models

    def counting(specs, images, ids, store, dataset_id, **kw):
        extracted.extend((dataset_id, spec.id) for spec in specs)
        return original(specs, images, ids, store, dataset_id, **kw)

    monkeypatch.setattr(repsim.extract, "extract_models", counting)
    run(small_config, run_copy, device="cpu")
    assert_same_results(small_run, run_copy)
    info = json.loads(RunFolder(run_copy).info.read_text())
    assert any(line.startswith(stage) and DS in line for line in info["redone"]), info["redone"]
    if stage == "features":
        assert extracted == [(DS, MODEL)]  # that group, and nothing else
    else:
        assert extracted == []


def test_altered_result_file_is_refused_then_rebuilt(small_run, run_copy, small_config):
    from repsim.chapter import load_run

    _truncate(RunFolder(run_copy).similarity, 0.9)
    with pytest.raises(RunFolderError, match="rerun"):
        load_run(run_copy)
    run(small_config, run_copy, device="cpu")
    assert_same_results(small_run, run_copy)


def test_deleted_result_file_is_rebuilt(small_run, run_copy, small_config):
    RunFolder(run_copy).consistency.unlink()
    run(small_config, run_copy, device="cpu")
    assert_same_results(small_run, run_copy)


def test_stray_result_file_is_refused_and_removed(small_run, run_copy, small_config):
    from repsim.chapter import load_run

    folder = RunFolder(run_copy)
    shutil.copy(folder.similarity, folder.probes)  # a probes.nc this run never wrote
    with pytest.raises(RunFolderError, match="probes.nc"):
        load_run(run_copy)
    run(small_config, run_copy, device="cpu")
    assert_same_results(small_run, run_copy)


@pytest.mark.parametrize(
    "manifest", ["deleted", "not json", "a list", "an entry not an object", "inputs a list"]
)
def test_result_files_without_a_readable_manifest_are_refused(
    manifest, small_run, run_copy, small_config
):
    """Without its manifest nothing vouches for a result file: an altered similarity.nc must not
    be read as if fine, by the book's loader or by `repsim compare`."""
    from repsim.chapter import load_run
    from repsim.cli import main

    folder = RunFolder(run_copy)
    _flip_byte(folder.similarity)
    {
        "deleted": lambda: folder.manifest_path.unlink(),
        "not json": lambda: folder.manifest_path.write_text("{"),
        "a list": lambda: folder.manifest_path.write_text("[]"),
        # valid JSON of another shape: an AttributeError with a traceback in run and compare
        "an entry not an object": lambda: _edit_manifest(folder, files={"similarity.nc": "0"}),
        "inputs a list": lambda: _edit_manifest(folder, inputs=[]),
    }[manifest]()
    with pytest.raises(RunFolderError, match="manifest.json is (missing|unreadable)"):
        load_run(run_copy)
    assert main(["compare", str(run_copy)]) == 2
    assert main(["compare", str(folder.similarity)]) == 2  # a file of a run folder: same checks
    run(small_config, run_copy, device="cpu")
    assert_same_results(small_run, run_copy)


def _edit_manifest(folder: RunFolder, **changes: object) -> None:
    manifest = json.loads(folder.manifest_path.read_text())
    manifest.update(changes)
    folder.manifest_path.write_text(json.dumps(manifest))


@pytest.mark.parametrize("name", ["similarity.nc", "consistency.nc", "summary.txt"])
def test_a_manifest_that_lost_a_result_file_s_entry_has_it_rebuilt_not_removed(
    name, small_run, run_copy, small_config
):
    """A manifest (valid JSON, every other entry intact) without the entry of a result file the
    run wrote, and no line saying why it was left out: the rerun took the results as current,
    removed that file as one "this run did not write" and finished with status 0, leaving a
    folder without similarity.nc (or a run read as one without consistency)."""
    folder = RunFolder(run_copy)
    manifest = json.loads(folder.manifest_path.read_text())
    del manifest["files"][name]
    folder.manifest_path.write_text(json.dumps(manifest))
    run(small_config, run_copy, device="cpu")
    assert_same_results(small_run, run_copy)


def test_a_stimulus_table_changed_after_the_results_is_refused(run_copy):
    from repsim.chapter import load_run

    table = RunFolder(run_copy).stimuli(DS)
    table.write_text(table.read_text().replace(",train,", ",test,", 5))
    with pytest.raises(RunFolderError, match="not the stimulus table the result files"):
        load_run(run_copy)


def test_features_extracted_again_after_the_results_are_refused(run_copy):
    """A group sealed since the results were written (e.g. an interrupted rerun with new
    weights) is not read beside them."""
    from repsim.analysis import read_features
    from repsim.chapter import load_run
    from repsim.errors import StoreError
    from repsim.store import FeatureStore

    run = load_run(run_copy)
    assert set(read_features(run, DS, [MODEL, "cnn-supervised-s0"])) == {MODEL, "cnn-supervised-s0"}
    store = FeatureStore(RunFolder(run_copy).features)
    store._open(DS, MODEL).attrs["sha256"] = "0" * 64  # what another extraction sealed
    with pytest.raises(StoreError, match="not those the result files of this run"):
        read_features(load_run(run_copy), DS, [MODEL, "cnn-supervised-s0"])


@pytest.mark.parametrize("damage", ["group deleted", "zarr.json deleted", "store deleted"])
def test_features_of_the_results_gone_since_are_refused_not_left_out(damage, run_copy):
    """A group the manifest lists as an input of the results, deleted after the run: the book's
    feature chapters left that model out of their figures (read_features dropped it, the
    train-split variant made it NaN) instead of saying the folder is damaged. The whole
    features.zarr deleted: they said the run kept no features and skipped their figures."""
    from repsim.analysis import read_features
    from repsim.chapter import load_run
    from repsim.errors import StoreError

    group = RunFolder(run_copy).features / DS / MODEL
    if damage == "group deleted":
        shutil.rmtree(group)
    elif damage == "store deleted":
        shutil.rmtree(RunFolder(run_copy).features)
    else:
        (group / "zarr.json").unlink()
    run = load_run(run_copy)  # the result files themselves still verify
    with pytest.raises(StoreError, match="missing or incomplete .*rerun the config"):
        read_features(run, DS, [MODEL, "cnn-supervised-s0"])
    with pytest.raises(StoreError, match="missing or incomplete"):
        run.feature_store().has(DS, MODEL)
    if damage == "store deleted":  # what the chapters ask before they read
        from repsim.chapter import open_chapter

        with pytest.raises(StoreError, match="missing or incomplete"):
            open_chapter(run_copy).need("features")
    else:
        assert not run.feature_store().has(DS, "not-a-model")  # not an input: simply absent


def test_compare_refuses_an_altered_result_file(run_copy, capsys):
    from repsim.cli import main

    _truncate(RunFolder(run_copy).similarity, 0.9)
    assert main(["compare", str(run_copy)]) == 2
    err = capsys.readouterr().err
    assert "content hash differs" in err and "Traceback" not in err


def test_compare_on_a_file_of_a_run_without_manifest_reads_through_the_folder(
    run_copy, small_run, capsys
):
    """A run killed after its results but before its manifest and run.json; another run's
    similarity.nc put there. `compare RUN/similarity.nc` took the file as an exported one and
    read it without any check (`compare RUN` refused)."""
    from repsim.cli import main

    folder = RunFolder(run_copy)
    folder.manifest_path.unlink()
    folder.info.unlink()
    assert main(["compare", str(folder.similarity)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(run_copy.name) in err


def test_an_unexpected_error_is_recorded_as_the_run_s_failure(run_copy, small_config, monkeypatch):
    """An exception that is no RepsimError (a bug) left run.json saying "finished" for the
    previous run and its manifest in place, although the rerun may have replaced files already;
    it is recorded like any abort (and still raised, with its traceback)."""
    import repsim.pipeline as P

    def buggy(*args, **kwargs):
        raise ValueError("a bug in a stage")

    monkeypatch.setattr(P, "_run_locked", buggy)
    with pytest.raises(ValueError, match="a bug in a stage"):
        run(small_config, run_copy, device="cpu")
    folder = RunFolder(run_copy)
    info = json.loads(folder.info.read_text())
    assert info["status"] == "failed" and info["error"] == "ValueError: a bug in a stage"
    assert not folder.manifest_path.exists()


def test_a_rerun_with_another_config_stopped_early_leaves_no_old_result_beside_its_record(
    run_copy, tmp_path, monkeypatch
):
    """Another config's rerun stopped before it writes its own result files (killed here, before
    its stimulus stage, ahead of the point where it removes the old ones): the folder holds no
    result of the old config beside the new run.json."""
    from faults.faultkit import write_config
    from repsim import pipeline

    folder = RunFolder(run_copy)
    before = [p.name for p in folder.result_paths().values() if p.exists()]
    assert "similarity.nc" in before and "consistency.nc" in before
    other = write_config(tmp_path / "other.yaml", measures=("cka_linear",))

    def killed(*args):
        raise KeyboardInterrupt("simulated kill")

    monkeypatch.setattr(pipeline, "_probe_pool_possible", killed)  # the run's first step
    with pytest.raises(KeyboardInterrupt):
        run(other, run_copy, device="cpu")
    assert not [p.name for p in folder.result_paths().values() if p.exists()]
    assert not folder.manifest_path.exists()
    info = json.loads(folder.info.read_text())
    assert info["status"] == "interrupted" and info["config"]["measures"] == ["cka_linear"]


def test_kill_during_extraction_resumes_to_identical_results(
    small_run, small_config, tmp_path, monkeypatch
):
    from repsim.store import FeatureWriter

    calls = {"n": 0}
    original = FeatureWriter.write_chunk

    def killed_on_third(self, chunk, features, raw=None):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt("simulated kill")
        return original(self, chunk, features, raw)

    monkeypatch.setattr(FeatureWriter, "write_chunk", killed_on_third)
    with pytest.raises(KeyboardInterrupt):
        run(small_config, tmp_path / "run", device="cpu")
    info = json.loads(RunFolder(tmp_path / "run").info.read_text())
    assert info["status"] == "interrupted" and "rerunning the same command resumes" in info["error"]
    monkeypatch.setattr(FeatureWriter, "write_chunk", original)
    run(small_config, tmp_path / "run", device="cpu")
    assert_same_results(small_run, tmp_path / "run")


def test_clean_run_files_are_0644_with_no_temp_left(small_run):
    import os

    umask = os.umask(0)
    os.umask(umask)
    want = 0o666 & ~umask
    files = [p for p in small_run.rglob("*") if p.is_file()]
    assert files
    modes = {str(p.relative_to(small_run)): oct(p.stat().st_mode & 0o777) for p in files}
    assert all(m == oct(want) for m in modes.values()), modes
    assert not [p for p in small_run.rglob("*") if p.name.endswith(".tmp")]
    assert not (small_run / ".features.zarr.tmp").exists()
    manifest = RunFolder(small_run).read_manifest()
    assert {"similarity.nc", "consistency.nc", "summary.txt", "run.json"} <= set(manifest["files"])
    assert manifest["config_hash"] and manifest["code_version"]


def test_truncated_table_then_a_measure_added(small_run, run_copy, tmp_path):
    """The issue's first case: the recomputed similarity must use all stimuli again, not 16 of 60."""
    import xarray as xr

    from faults.faultkit import write_config

    _truncate(RunFolder(run_copy).stimuli(DS), 0.3)
    config = write_config(
        tmp_path / "more.yaml",
        measures=("cka_linear", "rsa_spearman", "mutual_knn_10", "cka_rbf_0.4"),
    )
    run(config, run_copy, device="cpu")
    clean = xr.load_dataset(RunFolder(small_run).similarity)
    again = xr.load_dataset(RunFolder(run_copy).similarity)
    assert list(again.n_stimuli.values) == list(clean.n_stimuli.values)
    for measure in clean.data_vars:
        xr.testing.assert_identical(again[measure], clean[measure])
    assert "cka_rbf_0.4" in again.data_vars


def test_an_unchanged_rerun_takes_the_stimulus_tables_as_they_are(
    small_run, run_copy, small_config, monkeypatch
):
    """A verified stimulus table is reused: not derived from the dataset again nor rewritten."""
    import repsim.stimuli

    tables = {ds: RunFolder(run_copy).stimuli(ds) for ds in ("faces", "textures")}
    before = {ds: path.stat().st_mtime_ns for ds, path in tables.items()}

    def derived(*args, **kwargs):
        raise AssertionError("a verified stimulus table was derived again")

    monkeypatch.setattr(repsim.stimuli, "stimulus_table", derived)
    run(small_config, run_copy, device="cpu")
    assert {ds: path.stat().st_mtime_ns for ds, path in tables.items()} == before
    assert json.loads(RunFolder(run_copy).info.read_text())["redone"] == []
    assert_same_results(small_run, run_copy)


def test_an_unchanged_rerun_hands_back_the_result_files_as_they_are(
    small_run, run_copy, small_config
):
    """Nothing changed since the result files were written: the rerun keeps them (not rewritten),
    returns them with their summary, and its new run.json and manifest still vouch for them."""
    folder = RunFolder(run_copy)
    written = [p for p in folder.result_paths().values() if p.is_file()]
    assert {p.name for p in written} == {"similarity.nc", "consistency.nc", "summary.txt"}
    before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in written}
    manifest = folder.read_manifest()
    result = run(small_config, run_copy, device="cpu")
    assert {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in written} == before
    assert (result.similarity, result.consistency, result.probes) == (
        folder.similarity,
        folder.consistency,
        None,
    )
    assert result.summary.startswith(folder.summary.read_text().rstrip("\n") + "\n\n")
    again = folder.read_manifest()
    assert {k: again[k] for k in ("config_hash", "inputs", "skipped")} == {
        k: manifest[k] for k in ("config_hash", "inputs", "skipped")
    }
    info = json.loads(folder.info.read_text())
    assert info["status"] == "finished" and info["skipped_analyses"] == manifest["skipped"]
    assert_same_results(small_run, run_copy)
    folder.open_results()  # every file verifies against the new manifest


def _vouch(folder: RunFolder, stage: str, *task: str) -> None:
    """Make the record of a task vouch for its output as it is now on disk."""
    marker = folder.marker(stage, *task)
    output = folder.similarity_part(*task) if stage == "similarity" else folder.probe_part(*task)
    record = json.loads(marker.read_text())
    marker.write_text(json.dumps({**record, "sha256": sha256_file(output)}))


@pytest.mark.parametrize("stage", ["similarity", "probes"])
def test_result_files_follow_a_part_that_changed_with_nothing_else(
    stage, tiny_run, tiny_config, tmp_path
):
    """A part recomputed to other numbers while the config, code and tables stayed (a library
    upgrade that only its stage's key names): the result files are rebuilt from the part as it
    is now, not handed back as they were."""
    import xarray as xr

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    folder = RunFolder(run_dir)
    if stage == "similarity":
        part = xr.load_dataset(folder.similarity_part(DS))
        part["cka_linear"] = part["cka_linear"] * 0.5
        folder.write_netcdf(part, folder.similarity_part(DS))
        _vouch(folder, "similarity", DS)
    else:
        values = json.loads(folder.probe_part(DS, MODEL).read_text())
        values["accuracy"] = [0.25] * len(values["accuracy"])
        folder.probe_part(DS, MODEL).write_text(json.dumps(values))
        _vouch(folder, "probes", DS, MODEL)
    run(tiny_config, run_dir, device="cpu")
    assert json.loads(folder.info.read_text())["redone"] == []  # the part was taken as it is
    if stage == "similarity":
        written = xr.load_dataset(folder.similarity)["cka_linear"].sel(dataset=DS)
        np.testing.assert_array_equal(written.values, part["cka_linear"].values)
    else:
        written = xr.load_dataset(folder.probes)["accuracy"].sel(dataset=DS, model=MODEL)
        np.testing.assert_array_equal(written.values, values["accuracy"])
    folder.open_results()


def _forged_part(folder: RunFolder, case: str) -> None:
    """Rewrite the similarity part of DS so it does not name the run's models and measures, and
    make its record vouch for it (a forged or damaged record: the hash check alone passes it)."""
    import xarray as xr

    path = folder.similarity_part(DS)
    part = xr.load_dataset(path)
    if case == "lacks a model":
        keep = [m for m in map(str, part.model_a.values) if m != MODEL]
        part = part.sel(model_a=keep, model_b=keep)
    elif case == "lacks a model on one axis":
        part = part.sel(model_b=[m for m in map(str, part.model_b.values) if m != MODEL])
    elif case == "has a model the run does not":
        ids = [*map(str, part.model_a.values), "not-in-run"]
        part = part.reindex(model_a=ids, model_b=ids, fill_value=0.5)
    else:  # lacks a measure
        part = part.drop_vars("rsa_spearman")
    folder.write_netcdf(part, path)
    _vouch(folder, "similarity", DS)


@pytest.mark.parametrize(
    "case",
    [
        "lacks a model",
        "lacks a model on one axis",
        "has a model the run does not",
        "lacks a measure",
    ],
)
def test_a_vouched_part_that_does_not_name_the_runs_models_is_recomputed(
    case, small_run, run_copy, small_config
):
    """A part whose record vouches for it but which lacks one of the run's models (or a measure,
    or has a model the run does not) was reused: reindexed to the run's models it became a NaN
    model in similarity.nc (a missing measure a KeyError traceback). It counts as damaged: it is
    recomputed, said so in run.json, and the results are the clean run's."""
    folder = RunFolder(run_copy)
    _forged_part(folder, case)
    run(small_config, run_copy, device="cpu")
    assert_same_results(small_run, run_copy)
    redone = json.loads(folder.info.read_text())["redone"]
    assert len(redone) == 1 and redone[0].startswith(
        f"similarity {DS}: its part does not name exactly the run's models and measures ("
    ), redone


@pytest.mark.parametrize(
    "case", ["lacks accuracy", "other seeds", "an accuracy above 1", "one lr too many", "a list"]
)
def test_a_vouched_probe_part_that_the_results_cannot_read_is_recomputed(
    case, tiny_run, tiny_config, tmp_path
):
    """A probe part whose record vouches for it but which lacks a key the results read (or holds
    other seeds, an accuracy outside [0, 1], ...) was reused: the results stage stopped with a
    KeyError traceback or a broadcasting error. It counts as damaged, as a similarity part does:
    recomputed, said so in run.json, and probes.nc is the clean run's."""
    import xarray as xr

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    folder = RunFolder(run_dir)
    path = folder.probe_part(DS, MODEL)
    part = json.loads(path.read_text())
    if case == "lacks accuracy":
        del part["accuracy"]
    elif case == "other seeds":
        part["seeds"] = [5, 6]
    elif case == "an accuracy above 1":
        part["accuracy"] = [1.5, *part["accuracy"][1:]]
    elif case == "one lr too many":
        part["lr"] = [*part["lr"], 0.1, 0.1]
    else:
        part = [part]
    path.write_text(json.dumps(part))
    _vouch(folder, "probes", DS, MODEL)
    run(tiny_config, run_dir, device="cpu")
    xr.testing.assert_identical(
        xr.load_dataset(folder.probes), xr.load_dataset(RunFolder(tiny_run).probes)
    )
    redone = json.loads(folder.info.read_text())["redone"]
    assert len(redone) == 1 and redone[0].startswith("probes "), redone
    assert f"{MODEL} on {DS}: its part cannot be used (" in redone[0], redone


def test_the_free_space_asked_for_is_that_of_the_features_left_to_extract(
    tiny_run, tiny_config, tmp_path, monkeypatch
):
    """With probes on, every stimulus of the table is extracted, not only the similarity subset:
    the space a rerun asks for before it extracts one deleted group is what that group takes."""
    from repsim.store import FeatureStore

    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    folder = RunFolder(run_dir)
    shutil.rmtree(folder.features / DS / MODEL)
    asked = []
    monkeypatch.setattr(
        RunFolder,
        "check_free_space",
        lambda self, needed, what, estimate=False: asked.append(needed),
    )
    run(tiny_config, run_dir, device="cpu")
    ids, features = FeatureStore(folder.features).read(DS, MODEL)
    assert len(ids) == len(folder.stimuli(DS).read_text().splitlines()) - 1  # the whole table
    assert asked == [features.astype(np.float32).nbytes]


def test_counts_in_a_stage_record_are_not_trusted(small_run, run_copy, tmp_path):
    """A stimulus record whose count was edited: the counts come from the verified table."""
    import xarray as xr

    from faults.faultkit import write_config

    record = RunFolder(run_copy).marker("stimuli", DS)
    entry = json.loads(record.read_text())
    assert entry["n_similarity"] == 60
    record.write_text(json.dumps({**entry, "n_similarity": 50}))
    config = write_config(tmp_path / "more.yaml", measures=("cka_linear", "cka_rbf_0.4"))
    run(config, run_copy, device="cpu")
    again = xr.load_dataset(RunFolder(run_copy).similarity)
    clean = xr.load_dataset(RunFolder(small_run).similarity)
    assert list(again.n_stimuli.values) == list(clean.n_stimuli.values) == [60, 60]
    assert "n = 50" not in RunFolder(run_copy).summary.read_text()


@pytest.mark.parametrize("what", ["part", "record"])
def test_damaged_probe_cache_is_recomputed(tiny_run, tiny_config, tmp_path, what):
    run_dir = tmp_path / "run"
    shutil.copytree(tiny_run, run_dir)
    folder = RunFolder(run_dir)
    target = folder.probe_part(DS, MODEL) if what == "part" else folder.marker("probes", DS, MODEL)
    _truncate(target, 0.5)
    run(tiny_config, run_dir, device="cpu")
    assert folder.probes.read_bytes() == RunFolder(tiny_run).probes.read_bytes()
    info = json.loads(folder.info.read_text())
    assert [line.split(":")[0] for line in info["redone"]] == [f"probes {MODEL} on {DS}"]


def test_models_reordered_in_the_config_keep_their_own_similarities(small_run, run_copy, tmp_path):
    """The similarity parts' cache keys do not depend on the models' order, so a config listing
    the same models in another order reuses them: each model's row must then move with its
    label and its metadata. Without the reindex of the parts, similarity.nc kept the old order
    while the metadata coords followed the new one (objective_a named the wrong models)."""
    import xarray as xr

    from faults.faultkit import MODELS, write_config

    config = write_config(tmp_path / "reordered.yaml", models=MODELS[::-1])
    run(config, run_copy, device="cpu")
    clean = xr.load_dataset(RunFolder(small_run).similarity)
    again = xr.load_dataset(RunFolder(run_copy).similarity)
    assert list(again.model_a.values) == list(again.model_b.values) == list(MODELS[::-1])
    order = {"model_a": list(MODELS), "model_b": list(MODELS)}
    for measure in clean.data_vars:
        np.testing.assert_array_equal(again[measure].sel(order).values, clean[measure].values)
    for coord in ("objective_a", "architecture_class_b"):
        dim = "model_a" if coord.endswith("_a") else "model_b"
        assert again[coord].sel({dim: list(MODELS)}).values.tolist() == clean[coord].values.tolist()
    assert clean["objective_a"].values.tolist() != again["objective_a"].values.tolist()


@pytest.mark.parametrize(("signame", "code"), [("SIGINT", 130), ("SIGTERM", 143)])
def test_a_ctrl_c_a_finaliser_swallowed_still_stops_the_run(
    run_copy, small_config, monkeypatch, capsys, signame, code
):
    """A SIGINT (or SIGTERM) that lands while a finaliser runs (tqdm's __del__ in garbage
    collection) is printed as "Exception ignored" and lost: the run went on, exit 0, run.json
    "finished". The command's handler notes it, and the pipeline stops before it records a
    finished run: exit 130 (143), run.json "interrupted", the previous handlers back, and a later
    library run unaffected."""
    import os
    import signal

    from repsim import cli, interrupts, pipeline

    real = pipeline._timings
    sig = getattr(signal, signame)

    def swallowing(*args, **kwargs):
        try:
            os.kill(os.getpid(), sig)  # delivered here, caught as a finaliser would
            for _ in range(1000):
                pass
        except KeyboardInterrupt:
            pass
        return real(*args, **kwargs)

    monkeypatch.setattr(pipeline, "_timings", swallowing)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    record = json.loads(RunFolder(run_copy).info.read_text())
    got = cli.main(["run", str(small_config), "--out", str(run_copy), "--device", "cpu"])
    assert got == code and "interrupted" in capsys.readouterr().err
    info = json.loads(RunFolder(run_copy).info.read_text())
    # a rerun of the finished run's config, stopped before it replaced a result file: the
    # finished run's record stays (not this run's, as "finished") with the interruption added
    assert info.pop("interrupted")["error"].startswith("interrupted") and info == record
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before
    assert not interrupts.received()
    monkeypatch.setattr(pipeline, "_timings", real)
    run(small_config, run_copy, device="cpu")
    assert json.loads(RunFolder(run_copy).info.read_text())["status"] == "finished"


@pytest.mark.parametrize("where", ["_probe_pool_possible", "_timings"])
def test_an_interrupted_rerun_of_the_same_config_leaves_the_finished_run_readable(
    small_run, run_copy, small_config, monkeypatch, where
):
    """A Ctrl-C during a rerun of the config the folder's results were made with (its first
    step, or after every stage, all of them current) removed the manifest, so the book refused
    results that were still valid until the next run. Nothing was replaced: the manifest stays,
    and the finished run's record gains an ``interrupted`` entry that the manifest vouches for."""
    from repsim import pipeline
    from repsim.chapter import load_run

    folder = RunFolder(run_copy)
    record, manifest = json.loads(folder.info.read_text()), folder.read_manifest()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("simulated Ctrl-C")

    with monkeypatch.context() as m:
        m.setattr(pipeline, where, interrupted)
        with pytest.raises(KeyboardInterrupt):
            run(small_config, run_copy, device="cpu")
    load_run(run_copy)  # every check of the book passes
    assert_same_results(small_run, run_copy)
    info = json.loads(folder.info.read_text())
    stopped = info.pop("interrupted")
    assert info == record
    assert stopped["config_path"] == str(small_config)
    assert "rerunning the same command resumes" in stopped["error"]
    again = folder.read_manifest()
    assert again["files"].pop("run.json") != manifest["files"].pop("run.json")
    assert again == manifest
    run(small_config, run_copy, device="cpu")  # the next run's record has no interruption
    info = json.loads(folder.info.read_text())
    assert info["status"] == "finished" and "interrupted" not in info
    assert_same_results(small_run, run_copy)


def test_an_interrupted_rerun_that_replaced_a_feature_group_leaves_no_manifest(
    small_run, run_copy, small_config, monkeypatch
):
    """An interrupted rerun of the same config that had extracted a group again with other
    content (new code, say) kept the manifest, which vouched for the old result files beside
    the new features that chapters read: the finished run is no longer what the folder holds,
    and the book refuses it until the next run, as after any other replaced stage output."""
    from repsim import pipeline
    from repsim.cache import StageCache
    from repsim.chapter import load_run
    from repsim.store import FeatureStore

    folder = RunFolder(run_copy)
    store = FeatureStore(folder.features)
    ds = store.datasets()[0]
    a, b = store.models(ds)[:2]
    # model a's group extracted again with other content (here: model b's), sealed and recorded
    # as the extraction would, so the rerun takes it as current
    shutil.rmtree(folder.features / ds / a)
    shutil.copytree(folder.features / ds / b, folder.features / ds / a)
    cache = StageCache(folder)
    record = cache.info("features", (ds, a))
    record["sha256"] = store.attrs(ds, a)["sha256"]
    cache.mark_done("features", (ds, a), **record)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("simulated Ctrl-C")

    monkeypatch.setattr(pipeline, "_probe_pool_possible", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run(small_config, run_copy, device="cpu")
    assert not folder.manifest_path.exists()
    assert json.loads(folder.info.read_text())["status"] == "interrupted"
    with pytest.raises(RunFolderError, match="manifest"):
        load_run(run_copy)


def test_an_interruption_that_cannot_be_recorded_leaves_the_finished_run_as_it_was(
    small_run, run_copy, small_config, monkeypatch, caplog
):
    """The interruption of a no-op rerun cannot be written into run.json (a full disk): the
    finished run stays readable as it was, rather than losing its manifest too."""
    import errno

    from repsim import pipeline

    folder = RunFolder(run_copy)
    record = folder.info.read_bytes()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt("simulated Ctrl-C")

    def full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pipeline, "_probe_pool_possible", interrupted)
    monkeypatch.setattr(RunFolder, "write_json", full)
    with caplog.at_level("WARNING", logger="repsim.pipeline"):
        with pytest.raises(KeyboardInterrupt):
            run(small_config, run_copy, device="cpu")
    assert_same_results(small_run, run_copy)  # the manifest is still there and vouches
    assert folder.info.read_bytes() == record
    assert any("could not record the interruption" in r.getMessage() for r in caplog.records)


def test_a_rerun_killed_while_it_replaces_the_result_files_leaves_no_manifest(
    run_copy, small_config, monkeypatch
):
    """The manifest goes before the first result file is replaced, not only when a stop is
    recorded: a rerun killed outright (nothing runs after it) once similarity.nc was rewritten
    left the old manifest beside a new similarity.nc and the old consistency.nc."""
    import xarray as xr

    from repsim import pipeline

    folder = RunFolder(run_copy)
    part = xr.load_dataset(folder.similarity_part(DS))
    part["cka_linear"] = part["cka_linear"] * 0.5  # other numbers: the results are rebuilt
    folder.write_netcdf(part, folder.similarity_part(DS))
    _vouch(folder, "similarity", DS)
    old = folder.similarity.read_bytes()

    class Killed(BaseException):
        pass

    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(pipeline, "run_consistency", killed)  # after similarity.nc is written
    monkeypatch.setattr(pipeline, "_record_abort", lambda *a, **kw: None)  # nothing runs after
    with pytest.raises(Killed):
        run(small_config, run_copy, device="cpu")
    assert folder.similarity.read_bytes() != old
    assert not folder.manifest_path.exists()
    with pytest.raises(RunFolderError, match="manifest.json is missing"):
        folder.open_results()


def test_a_rerun_with_another_config_killed_outright_names_its_own_config(
    run_copy, tmp_path, monkeypatch
):
    """A rerun with another config killed outright (SIGKILL: nothing runs after it) once it had
    removed the old results left run.json naming the old config as finished, and the folder's
    message told the user to rerun the old config. run.json now says the new run is under way
    before its work starts, and the message names it."""
    from faults.faultkit import write_config
    from repsim import pipeline

    folder = RunFolder(run_copy)
    other = write_config(tmp_path / "other.yaml", measures=("cka_linear",))

    class Killed(BaseException):
        pass

    def killed(*args, **kwargs):
        raise Killed

    monkeypatch.setattr(pipeline, "TaskProgress", killed)  # the first step after the removal
    monkeypatch.setattr(pipeline, "_record_abort", lambda *a, **kw: None)  # nothing runs after
    with pytest.raises(Killed):
        run(other, run_copy, device="cpu")
    assert not folder.manifest_path.exists()
    info = json.loads(folder.info.read_text())
    assert info["status"] == "running" and info["config"]["measures"] == ["cka_linear"]
    message = folder.why_no_results()
    assert f"a run of {other} into {run_copy} started at " in message
    assert "stopped without a record (killed, or its machine went down)" in message
    assert f"repsim run {other} --out {run_copy}" in message
