"""RunFolder: paths that cannot escape, atomic 0644 writes, the lock, filesystem errors, schema."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

from repsim.runfolder import (
    RunFolder,
    RunFolderError,
    RunLockedError,
    atomic_write_bytes,
    check_schema,
    describe_os_error,
    filesystem_errors,
    longest_derived_name,
    safe_name,
    sha256_file,
    temporary_name,
    unsafe_name,
)


@pytest.mark.parametrize("name", ["../evil", "a/b", ".hidden", "..", "ok-id_1.2", "ünï"])
def test_ids_cannot_escape_the_folder(tmp_path: Path, name: str):
    folder = RunFolder(tmp_path / "run")
    for path in (
        folder.stimuli(name),
        folder.probe_part(name, name),
        folder.marker("probes", name, name),
    ):
        resolved = path.resolve()
        assert folder.path.resolve() in resolved.parents
        assert not any(part in ("..", ".") for part in path.relative_to(folder.path).parts)
    assert unsafe_name(safe_name(name)) == name


def test_atomic_write_mode_and_no_temp(tmp_path: Path):
    umask = os.umask(0)
    os.umask(umask)
    digest = atomic_write_bytes(tmp_path / "d" / "x.txt", b"hello")
    assert (
        digest == "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    )  # sha256("hello")
    assert oct((tmp_path / "d" / "x.txt").stat().st_mode & 0o777) == oct(0o666 & ~umask)
    assert [p.name for p in (tmp_path / "d").iterdir()] == ["x.txt"]


def test_lock_refuses_a_second_holder_and_names_the_pid(tmp_path: Path):
    folder = RunFolder(tmp_path).create()
    with folder.lock():
        # flock locks belong to an open file, so a second open in this process is refused too
        with pytest.raises(RunLockedError, match=f"process {os.getpid()}"):
            with RunFolder(tmp_path).lock():
                pass
    with folder.lock():  # released
        pass


def test_a_deleted_lock_file_does_not_let_a_second_run_in(tmp_path: Path):
    """Removing .lock during a run (it looks like a stale lock file) let a second run create a
    new one, lock it, and write into the folder beside the first: the folder itself is locked."""
    folder = RunFolder(tmp_path / "run").create()
    with folder.lock():
        folder.lock_path.unlink()
        assert folder.locked_by() == "unknown"  # locked, but the id was in the deleted file
        with pytest.raises(RunLockedError, match="in use by another run"):
            with RunFolder(folder.path).lock():
                pass
    assert folder.locked_by() is None
    with folder.lock():  # released
        assert folder.locked_by() == str(os.getpid())


def test_a_full_disk_while_taking_the_lock_is_named_and_lets_go(tmp_path: Path, monkeypatch):
    """Writing the process id into .lock on a full disk (an unchanged rerun, or `repsim book`,
    of a finished run whose disk filled since) raised a bare OSError: a traceback from `repsim
    run`, and `repsim book`, which reads a folder it cannot lock, stopped instead."""
    folder = RunFolder(tmp_path / "run").create()

    def full(fd, data, offset):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, "pwrite", full)
        with pytest.raises(RunFolderError, match=r"no space left .*\.lock: free space"):
            with folder.lock():
                pass
    assert folder.locked_by() is None
    with folder.lock():  # released
        pass


def test_a_refusal_is_recorded_without_touching_a_record_it_cannot_keep(tmp_path: Path):
    """run.json that is not JSON gets the refusal record; a folder another run holds is left to it."""
    import json

    folder = RunFolder(tmp_path / "run").create()
    folder.info.write_text("{not json")
    folder.record_refusal("my.yaml", "ConfigError: unknown measure 'cka_cubic'")
    info = json.loads(folder.info.read_text())
    assert info["status"] == "refused" and info["refused"]["config_path"] == "my.yaml"
    assert "refused before it started (run.json: ConfigError: unknown measure" in (
        folder.why_no_results()
    )
    assert "repsim run my.yaml --out" in folder.why_no_results()
    with folder.lock():
        with pytest.raises(RunLockedError):
            RunFolder(folder.path).record_refusal("other.yaml", "ConfigError: x")
    assert json.loads(folder.info.read_text()) == info


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.ENOSPC, "no space left"),
        (errno.EACCES, "permission denied"),
        (errno.ENOTDIR, "is a file"),
    ],
)
def test_filesystem_errors_name_the_path_and_fix(code: int, words: str):
    message = describe_os_error(OSError(code, os.strerror(code)), "/some/run/similarity.nc")
    assert words in message and "/some/run/similarity.nc" in message and "--out" in message


def test_a_read_gets_the_read_fix_and_names_a_closed_folder(tmp_path: Path, monkeypatch):
    table = tmp_path / "run" / "stimuli" / "faces.csv"
    denied = OSError(errno.EACCES, os.strerror(errno.EACCES), str(table))
    message = describe_os_error(denied, table, "read")
    assert f"trying to read {table}: make it readable (chmod u+r)" in message
    assert "writable" not in message
    table.parent.mkdir(parents=True)  # a folder above it that cannot be entered is the cause
    monkeypatch.setattr("repsim.runfolder.os.access", lambda p, mode: Path(p) != table.parent)
    assert f"make {table.parent} readable (chmod -R u+rX)" in describe_os_error(
        denied, table, "read"
    )


def test_a_write_names_the_read_only_folder_not_the_writable_file(tmp_path: Path, monkeypatch):
    """A writable part file in a read-only folder was told "make it writable (chmod u+w)", which
    cannot help: the file is replaced through its folder. The folder is named, with the fix that
    covers what is in it; a read-only file itself keeps its own fix."""
    part = tmp_path / "parts" / "faces.nc"
    part.parent.mkdir()
    part.write_bytes(b"x")
    denied = OSError(errno.EACCES, os.strerror(errno.EACCES), str(part))
    read_only = {part.parent}
    monkeypatch.setattr("repsim.runfolder.os.access", lambda p, mode: Path(p) not in read_only)
    message = describe_os_error(denied, part)
    assert f"trying to write {part}: make the folder {part.parent} writable (chmod -R u+w)" in (
        message
    )
    read_only = {part}
    assert f"trying to write {part}: make it writable (chmod u+w)" in describe_os_error(
        denied, part
    )
    read_only = set()  # nothing read-only to this user (root): the old words
    assert "make it writable (chmod u+w), or choose another --out" in describe_os_error(
        denied, part
    )


def test_a_folder_in_the_way_is_named_with_its_fix(tmp_path: Path):
    (tmp_path / "similarity.nc").mkdir()
    with pytest.raises(RunFolderError, match="similarity.nc is a folder where a file is needed"):
        atomic_write_bytes(tmp_path / "similarity.nc", b"x")
    with pytest.raises(RunFolderError, match="similarity.nc is a folder.*remove that folder"):
        sha256_file(tmp_path / "similarity.nc")


def test_a_rename_onto_a_file_names_that_file_not_the_temporary(tmp_path: Path):
    (tmp_path / "group").write_text("x")
    tmp = tmp_path / ".group.123.tmp"
    exc = OSError(
        errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(tmp), None, str(tmp_path / "group")
    )
    message = describe_os_error(exc, action="access")
    assert message.startswith(f"{tmp_path / 'group'} is a file where a folder is needed")
    assert ".tmp" not in message


def test_a_dangling_link_where_a_folder_is_needed_is_named_as_a_link(tmp_path: Path):
    """features.zarr linked to a disk that is not mounted was reported as 'a file where a
    folder is needed' (remove that file): the message names the link and its missing target."""
    link = tmp_path / "features.zarr"
    link.symlink_to(tmp_path / "unmounted" / "features.zarr")
    with pytest.raises(RunFolderError) as err:
        with filesystem_errors(link / "faces", "write"):
            (link / "faces").mkdir(parents=True)
    message = str(err.value)
    assert message.startswith(f"{link} is a symbolic link to {tmp_path / 'unmounted'}")
    assert "which does not exist" in message and "remove the link" in message
    assert "is a file" not in message


@pytest.mark.parametrize("where", ["out", "below"])
def test_a_symbolic_link_loop_in_the_way_is_named_as_one(tmp_path: Path, where: str):
    """--out (or a folder above the file to write) a link to itself: 'a symbolic link to loop,
    which does not exist' (create that folder), or 'cannot create .../sub (Too many levels of
    symbolic links)' without naming the loop."""
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    target = loop if where == "out" else loop / "run" / "similarity.nc"
    with pytest.raises(RunFolderError) as err:
        with filesystem_errors(target, "create"):
            target.mkdir(parents=True, exist_ok=True)
    message = str(err.value)
    assert message.startswith(f"{loop} is a symbolic-link loop"), message
    assert "remove the link" in message and "does not exist" not in message


def test_a_link_loop_among_the_run_s_folders_is_named(tmp_path: Path) -> None:
    """features.zarr/<dataset> a link to itself: the check of the run's own folders raised a
    bare ELOOP, reported as 'cannot read <the run folder>' without naming the link."""
    folder = RunFolder(tmp_path / "run")
    folder.features.mkdir(parents=True)
    (folder.features / "faces").symlink_to("faces")
    with pytest.raises(RunFolderError, match=r"features.zarr/faces is a symbolic link"):
        folder.check_own_folders()
    folder.check_own_folders(leaving=[folder.features / "faces"])  # removed by the run: no reason


def test_create_refuses_a_file(tmp_path: Path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(RunFolderError, match="is a file"):
        RunFolder(tmp_path / "f").create()


def _sim(models: list[str], datasets: list[str]) -> xr.Dataset:
    values = np.ones((len(datasets), len(models), len(models)))
    return xr.Dataset(
        {"cka_linear": (("dataset", "model_a", "model_b"), values)},
        coords={"dataset": datasets, "model_a": models, "model_b": models},
    )


def test_schema_cross_check_finds_mixed_runs():
    sim = _sim(["a", "b"], ["d1", "d2"])
    probes8 = xr.Dataset(
        {"accuracy": (("model", "dataset", "seed"), np.zeros((3, 2, 1)))},
        coords={"model": ["a", "b", "c"], "dataset": ["d1", "d2"], "seed": [0]},
    )
    with pytest.raises(RunFolderError, match="probes.nc has models"):
        check_schema(sim, probes=probes8)
    cons = xr.Dataset(
        {"consistency": (("measure", "dataset_a", "dataset_b"), np.zeros((1, 1, 1)))},
        coords={"measure": ["cka_linear"], "dataset_a": ["d1"], "dataset_b": ["d1"]},
    )
    with pytest.raises(RunFolderError, match="consistency.nc has datasets"):
        check_schema(sim, consistency=cons)
    check_schema(sim, probes=probes8.sel(model=["b", "a"]))  # same ids in another order is fine


def _vouched_run(path: Path) -> RunFolder:
    """A run folder whose manifest lists run.json and one result file with their hashes."""
    folder = RunFolder(path).create()
    files = {
        folder.info.name: folder.write_json(folder.info, {"timings_s": {"total": 1.0}}),
        folder.summary.name: folder.write_text(folder.summary, "summary\n"),
    }
    folder.write_manifest({"files": {k: {"sha256": v} for k, v in files.items()}})
    return folder


def test_every_key_of_run_json_is_documented(tiny_run: Path, repo_root: Path):
    """CONTRIBUTING.md's run folder listing is where a user looks up what run.json holds; a key
    the pipeline writes and the listing does not name is undocumented (the per-dataset stimuli
    record, the weights list and the parallel stages' wall times were)."""
    info = json.loads((tiny_run / "run.json").read_text())
    text = (repo_root / "CONTRIBUTING.md").read_text()
    entry = " ".join(text[text.index("RUN/run.json") : text.index("RUN/manifest.json")].split())
    undocumented = [k for k in info if k not in entry and k.replace("_", " ") not in entry]
    assert not undocumented, f"run.json keys not in CONTRIBUTING.md: {undocumented}"
    for key in info["stimuli"][next(iter(info["stimuli"]))]:
        assert key in entry, key


def test_run_json_holds_no_private_key(tiny_run: Path):
    """The plan keeps its own notes in the config (``_path``); run.json leaves them out, at any
    depth."""

    def private(value) -> list[str]:
        if isinstance(value, dict):
            return [k for k in value if k.startswith("_")] + [
                p for v in value.values() for p in private(v)
            ]
        return [p for v in value for p in private(v)] if isinstance(value, list) else []

    info = json.loads((tiny_run / "run.json").read_text())
    assert "config" in info and not private(info)


def test_record_info_adds_a_key_and_keeps_the_manifest_true(tmp_path: Path):
    folder = _vouched_run(tmp_path / "run")
    assert folder.record_info("book_timings_s", {"book": 2.5})
    assert folder.read_info() == {"timings_s": {"total": 1.0}, "book_timings_s": {"book": 2.5}}
    folder._verify_manifest(folder.read_manifest())  # run.json's new hash is the manifest's


def test_record_info_refuses_a_changed_or_unlisted_run_json(tmp_path: Path):
    folder = _vouched_run(tmp_path / "run")
    folder.info.write_text('{"timings_s": {"total": 0.1}}\n')  # edited after the run
    assert not folder.record_info("book_timings_s", {"book": 2.5})
    assert folder.read_info() == {"timings_s": {"total": 0.1}}
    with pytest.raises(RunFolderError, match="changed after the run wrote it"):
        folder._verify_manifest(folder.read_manifest())  # still caught, not blessed
    folder.manifest_path.unlink()  # no manifest: nothing vouches for the run
    assert not folder.record_info("book_timings_s", {"book": 2.5})
    assert "book_timings_s" not in folder.read_info()


def test_a_tasks_permission_error_does_not_blame_the_run_folder_alone():
    """A task's OSError may come from a dataset it reads: the fix names both possibilities."""
    exc = OSError(errno.EACCES, os.strerror(errno.EACCES), "/data/photos/cat")
    message = describe_os_error(exc, action="access")
    assert "/data/photos/cat" in message and "read for datasets" in message
    assert "make it writable" not in message


#: what h5py raises when the disk fills while HDF5 writes a netCDF file: a RuntimeError with the
#: errno only in its text (raised by the file's close, through xarray's h5netcdf engine)
HDF5_FULL_DISK = (
    "Disable slist on flush dest failure failed (file write failed: time = Fri Dec  4 07:48:45 "
    "2026\n, filename = '/run/.similarity.nc.19e08a9e.tmp', file descriptor = 3, errno = 28, error "
    "message = 'No space left on device', buf = 0x5604cf764fb0, total write size = 4096, bytes "
    "this sub-write = 4096, offset = 2048)"
)


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError(HDF5_FULL_DISK),
        OSError(
            HDF5_FULL_DISK.replace("errno = 28", "errno = 122").replace(
                "No space left on device", "Disk quota exceeded"
            )
        ),
        OSError(errno.ENOSPC, "Can't synchronously write data"),
    ],
    ids=["RuntimeError", "OSError-without-errno", "OSError"],
)
def test_a_full_disk_under_the_netcdf_writer_is_named(tmp_path: Path, monkeypatch, error):
    """Whatever type the writer raises a full disk as, the result is the run folder's named error."""

    def full(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(xr.Dataset, "to_netcdf", full)
    folder = RunFolder(tmp_path / "run").create()
    want = rf"no space left on the device while trying to write {folder.similarity}: free space"
    with pytest.raises(RunFolderError, match=want):
        folder.write_netcdf(xr.Dataset({"a": ("x", [1.0])}), folder.similarity)
    path = folder.similarity
    assert list(path.parent.iterdir()) == []  # no temporary file left


def test_a_netcdf_file_reaches_the_disk_only_through_a_python_write(tmp_path: Path, monkeypatch):
    """HDF5 that fills the disk itself leaves a half-closed file that segfaulted the interpreter at
    exit; built in memory, the file is written by Python, whose full disk is a plain ENOSPC."""
    import builtins

    real_open = builtins.open

    def full_open(file, mode="r", *args, **kwargs):
        handle = real_open(file, mode, *args, **kwargs)
        if "x" in mode and str(file).endswith(".tmp"):
            handle.write = lambda data: (_ for _ in ()).throw(
                OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            )
        return handle

    monkeypatch.setattr(builtins, "open", full_open)
    path = tmp_path / "similarity.nc"
    with pytest.raises(RunFolderError, match="no space left.*similarity.nc"):
        RunFolder(tmp_path).write_netcdf(xr.Dataset({"a": ("x", [1.0, 2.0])}), path)
    assert list(tmp_path.iterdir()) == []


def _too_long(tmp_path: Path, form: str, leaf: str = "run") -> Path:
    """A path with one name over 255 bytes, or one over PATH_MAX (4096) made of short names."""
    if form == "name":
        return tmp_path / ("x" * 300) / leaf
    return tmp_path.joinpath(*["y" * 200] * 25, leaf)


@pytest.mark.parametrize(
    ("form", "words"),
    [
        ("name", r"the name 'x{20}\.\.\.x{20}' is 300 bytes long, over the \d+ bytes a file or"),
        ("path", r"the path is \d+ bytes long, over the \d+ bytes the system allows"),
    ],
)
def test_a_path_too_long_names_the_long_part_and_the_fix(tmp_path: Path, form, words):
    path = _too_long(tmp_path, form)
    message = describe_os_error(OSError(errno.ENAMETOOLONG, "File name too long"), path)
    assert re.search(words, message), message
    assert message.endswith(
        "shorten it (rename it, or move or link it to a shorter path), or choose a shorter --out"
    )
    assert str(path)[:60] in message and str(path)[-60:] in message and len(message) < 500
    read = describe_os_error(OSError(errno.ENAMETOOLONG, "File name too long"), path, "read")
    assert "--out" not in read


@pytest.mark.parametrize("form", ["name", "path"])
def test_an_out_folder_too_long_is_refused_before_anything(tmp_path: Path, form):
    path = _too_long(tmp_path, form)
    with pytest.raises(RunFolderError, match="cannot create .*: the (name|path) .* shorter --out"):
        RunFolder(path).preflight()
    assert list(tmp_path.iterdir()) == []


def _disk(monkeypatch, free: int) -> None:
    """The run folder's disk has ``free`` bytes free (of a terabyte)."""
    usage = shutil._ntuple_diskusage(10**12, 10**12 - free, free)
    monkeypatch.setattr("repsim.runfolder.shutil.disk_usage", lambda path: usage)


def test_free_space_refuses_what_will_not_fit_and_warns_when_close(
    tmp_path: Path, monkeypatch, caplog
):
    from repsim.runfolder import NoSpaceError

    folder = RunFolder(tmp_path / "run").create()
    _disk(monkeypatch, 3 * 2**20)
    with pytest.raises(NoSpaceError) as err:
        folder.check_free_space(4 * 2**20, "the features of 2 model-dataset pair(s)")
    message = str(err.value)
    assert "needs about 4.0 MiB for the features of 2 model-dataset pair(s)" in message
    assert f"{folder.path} (on the filesystem mounted at " in message
    assert "has 3.0 MiB free; free space on that disk, choose another --out" in message
    with caplog.at_level("WARNING", logger="repsim.runfolder"):
        # an upper bound on unknown feature widths must not stop a run that may fit
        folder.check_free_space(4 * 2**20, "features", estimate=True)
        assert "may need up to 4.0 MiB for features: it may not fit" in caplog.text
        caplog.clear()
        folder.check_free_space(int(2.5 * 2**20), "features")  # fits, with little to spare
        assert "nearly full" in caplog.text
        caplog.clear()
        folder.check_free_space(2**20, "features")
        assert caplog.text == ""


def _id_paths(folder: RunFolder, store_root: Path, dataset: str, model: str) -> list[Path]:
    """Every path a run names after a dataset or model id."""
    return [
        folder.stimuli(dataset),
        folder.similarity_part(dataset),
        folder.probe_part(dataset, model),
        folder.marker("stimuli", dataset),
        folder.marker("features", dataset, model),
        store_root / safe_name(dataset) / safe_name(model),
    ]


@pytest.mark.skipif(os.pathconf("/tmp", "PC_NAME_MAX") != 255, reason="NAME_MAX is not 255 here")
def test_the_longest_derived_name_is_the_longest_name_a_run_writes(tmp_path: Path) -> None:
    """The config check refuses ids by this figure: it must be what the writes meet, temporary
    names included, or a run passes the check and fails mid-run."""
    from repsim.store import FeatureStore

    folder, fits = RunFolder(tmp_path / "run").create(), "m" * 212
    assert longest_derived_name(fits) == 255 and longest_derived_name("d/" + fits[2:]) == 257
    paths = _id_paths(folder, folder.features, fits, fits)
    assert max(len(temporary_name(p.name)) for p in paths) == longest_derived_name(fits)
    for path in paths[:-1]:
        folder.write_json(path, {})
    FeatureStore(folder.features).create(fits, fits, ["a", "b"], 3, chunk_rows=2)
    with pytest.raises(RunFolderError, match=r"the name '\.m+\.\.\.\w+\.tmp' is 256 bytes long"):
        folder.write_json(folder.marker("stimuli", fits + "m"), {})  # its temporary name


def test_removing_never_deletes_through_a_link_into_another_folder(tmp_path: Path) -> None:
    """A rerun with fewer models pruned features.zarr/<dataset>/<model>; with <dataset> a link
    to another run's folder it deleted that run's features. Links are removed, never followed;
    a path reached through a link below a top-level entry is refused; a top-level entry may be
    a link (features.zarr placed on another disk)."""
    from repsim.runfolder import RunFolder, RunFolderError
    from repsim.store import FeatureStore

    other = tmp_path / "other" / "faces"
    for model in ("a", "b", "c"):
        (other / model).mkdir(parents=True)
        (other / model / "zarr.json").write_text("{}")
    folder = RunFolder(tmp_path / "run")
    (folder.features).mkdir(parents=True)
    (folder.features / "faces").symlink_to(other)
    with pytest.raises(RunFolderError, match=r"reached through the symbolic link .*faces"):
        folder.remove(folder.features / "faces" / "a")
    with pytest.raises(RunFolderError, match="does not delete files of another folder"):
        FeatureStore(folder.features).delete("faces", "b")
    assert all((other / m / "zarr.json").is_file() for m in ("a", "b", "c"))
    assert folder.remove(folder.features / "faces")  # the link itself: unlinked, not followed
    assert not (folder.features / "faces").exists() and (other / "a").is_dir()
    # a top-level entry that is a link is the run's own place
    disk = tmp_path / "disk" / "features.zarr"
    (disk / "faces" / "a").mkdir(parents=True)
    linked = RunFolder(tmp_path / "run2")
    linked.path.mkdir()
    linked.features.symlink_to(disk)
    assert linked.remove(linked.features / "faces" / "a") and not (disk / "faces" / "a").exists()


def test_folders_of_the_run_that_are_links_are_named(tmp_path: Path) -> None:
    """check_own_folders names a linked folder down to the layout's depth (features.zarr/<ds>/
    <model>, .stages/parts/<stage>/<ds>), not a top-level link, a linked file or a link that
    the run only removes."""
    from repsim.runfolder import RunFolder, RunFolderError

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "f.json").write_text("{}")
    folder = RunFolder(tmp_path / "run")
    (folder.stages / "parts" / "probes").mkdir(parents=True)
    (folder.features / "faces").mkdir(parents=True)
    (folder.features / "faces" / "a.json").symlink_to(elsewhere / "f.json")  # a file: replaced
    folder.check_own_folders()
    (folder.stages / "parts" / "probes" / "faces").symlink_to(elsewhere)
    with pytest.raises(RunFolderError, match=r"parts/probes/faces is a symbolic link"):
        folder.check_own_folders()
    folder.check_own_folders(leaving=[folder.stages / "parts" / "probes" / "faces"])
    (folder.stages / "parts" / "probes" / "faces").unlink()
    (folder.features / "faces" / "m").symlink_to(elsewhere)
    with pytest.raises(RunFolderError, match=r"faces/m is a symbolic link"):
        folder.check_own_folders()
    (folder.features / "faces" / "m").unlink()
    disk = tmp_path / "disk"
    (disk / "faces").mkdir(parents=True)
    linked = RunFolder(tmp_path / "run2")
    linked.path.mkdir()
    linked.features.symlink_to(disk)  # the run's own place on another disk
    linked.check_own_folders()


def _linked_run(tmp_path: Path, name: str, store: Path) -> RunFolder:
    """A run folder whose features.zarr is a link to ``store`` (a feature store on another disk)."""
    folder = RunFolder(tmp_path / name).create()
    folder.features.symlink_to(store, target_is_directory=True)
    return folder


def test_a_copy_of_a_run_folder_with_its_links_never_shares_its_store(tmp_path: Path) -> None:
    """A run folder copied with its links kept (cp -r) has the original's run id, so its linked
    feature store took it for the original's: the two runs would prune each other's features.
    The copy is refused; the original keeps its store."""
    store = tmp_path / "disk" / "features.zarr"
    (store / "faces" / "model-a").mkdir(parents=True)
    original = _linked_run(tmp_path, "original", store)
    original.claim_linked_entries()
    owner = (store / ".repsim-owner").read_text()
    shutil.copytree(original.path, tmp_path / "copy", symlinks=True)
    copy = RunFolder(tmp_path / "copy")
    assert (copy.path / ".run-id").read_text() == (original.path / ".run-id").read_text()
    with pytest.raises(RunFolderError, match=r"copy is a copy of the run folder .*original"):
        copy.claim_linked_entries()
    assert (store / ".repsim-owner").read_text() == owner
    original.claim_linked_entries()  # still its own


def test_a_moved_run_folder_keeps_its_linked_store(tmp_path: Path) -> None:
    """A run folder moved elsewhere (the folder the owner file names is gone) is the same run."""
    store = tmp_path / "disk" / "features.zarr"
    store.mkdir(parents=True)
    first = _linked_run(tmp_path, "first", store)
    first.claim_linked_entries()
    moved = RunFolder(first.path.rename(tmp_path / "moved"))
    moved.claim_linked_entries()
    mine = (moved.path / ".run-id").read_text().strip()
    assert (store / ".repsim-owner").read_text().splitlines() == [mine, str(moved.path.resolve())]
    (store / ".repsim-owner").write_text(f"{mine}\n")  # an owner file from before the path
    moved.claim_linked_entries()
    assert (store / ".repsim-owner").read_text().splitlines()[1] == str(moved.path.resolve())
    other = _linked_run(tmp_path, "other", store)
    with pytest.raises(RunFolderError, match=r"which another run folder uses"):
        other.claim_linked_entries()


def test_results_missing_after_a_failed_run_point_at_its_failure(tmp_path):
    """`repsim compare` on a folder whose run failed said to run embedded.yaml, as if the folder
    were new; it now gives run.json's first error and the command of that run."""
    import json

    from repsim.errors import StoreError
    from repsim.runfolder import RunFolder

    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    with pytest.raises(
        StoreError,
        match=r"run the pipeline first: `repsim run CONFIG --out .*\(e\.g\. CONFIG = data",
    ):
        folder.open_results()
    info = {
        "status": "failed",
        "config_path": "my.yaml",
        "failed_tasks": [{"task": "features-faces-x", "error": "ModelError: model 'x' gives NaN"}],
    }
    folder.info.write_text(json.dumps(info))
    with pytest.raises(
        StoreError,
        match=r"failed before writing it \(run.json; its first error: ModelError: model 'x' gives "
        r"NaN\); fix the cause and rerun `repsim run my.yaml --out ",
    ):
        folder.open_results()
    folder.info.write_text("{not json")
    with pytest.raises(StoreError, match="run the pipeline first"):
        folder.open_results()
    # a folder of the user's own (`repsim compare .` in a checkout): not told to run into it
    own = RunFolder(tmp_path / "checkout")
    own.path.mkdir()
    (own.path / "README.md").write_text("a project")
    with pytest.raises(
        StoreError, match=r"checkout is not a run folder \(no run has written it\): pass the --out"
    ):
        own.open_results()


def test_readers_say_when_a_run_is_writing_the_folder_or_a_file_was_given(tmp_path):
    """A folder without results while a run holds its lock got "run the pipeline first" (the
    run.json status 'running' it looked for is never written); a file given for the folder was
    told to run with --out set to that file."""
    from repsim.book import check_run
    from repsim.errors import StoreError
    from repsim.runfolder import RunFolder

    folder = RunFolder(tmp_path / "run")
    folder.path.mkdir()
    assert folder.locked_by() is None and not folder.lock_path.exists()  # creates nothing
    with folder.lock():
        assert folder.locked_by() == str(os.getpid())
        with pytest.raises(StoreError, match=r"a run is writing .* \(process \d+\); wait for it"):
            folder.open_results()
    assert folder.locked_by() is None
    file = tmp_path / "garbage.txt"
    file.write_text("x")
    with pytest.raises(StoreError, match="garbage.txt is a file, not a run folder"):
        RunFolder(file).open_results()
    folder.info.write_text('{"status": "failed", "config_path": "my.yaml", "error": "boom"}')
    with pytest.raises(
        StoreError,
        match=r"has no similarity.nc: the run in .* failed before "
        r"writing it \(run.json; its first error: boom\).*repsim run my.yaml",
    ):
        check_run(folder.path)  # repsim book said only "run `repsim run CONFIG --out ...`"


def test_book_on_a_folder_without_results_says_why_and_leaves_no_lock(tmp_path):
    """``repsim book --run`` on a folder without results took the folder's lock first and then
    blamed "a run is writing" it, naming its own process; an empty folder was left a .lock."""
    from repsim.book import build_book
    from repsim.errors import StoreError
    from repsim.runfolder import RunFolder

    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(StoreError, match="has no similarity.nc") as err:
        build_book(run_dir=empty, book_dir=tmp_path / "book")
    assert "a run is writing" not in str(err.value)
    assert not RunFolder(empty).lock_path.exists()
    folder = RunFolder(tmp_path / "failed").create()
    folder.info.write_text('{"status": "failed", "config_path": "my.yaml", "error": "boom"}')
    with pytest.raises(
        StoreError, match=r"failed before writing it \(run.json; its first error: boom"
    ):
        build_book(run_dir=folder.path, book_dir=tmp_path / "book")


# -- mutation audit of the checks that decide whether a folder's results are trusted -------------
_NAMES = ("similarity.nc", "consistency.nc", "probes.nc", "controlled_tests.csv", "summary.txt")


def _cons(datasets_a: list[str], datasets_b: list[str], **extra: list[str]) -> xr.Dataset:
    """A consistency.nc of one measure over pairs of datasets (``anchor=[...]`` adds anchors)."""
    dims = ("measure", "dataset_a", "dataset_b", *extra)
    shape = (1, len(datasets_a), len(datasets_b), *(len(v) for v in extra.values()))
    coords = {"measure": ["cka_linear"], "dataset_a": datasets_a, "dataset_b": datasets_b, **extra}
    return xr.Dataset({"consistency": (dims, np.zeros(shape))}, coords=coords)


def _probes(models: list[str], datasets: list[str]) -> xr.Dataset:
    return xr.Dataset(
        {"accuracy": (("model", "dataset"), np.zeros((len(models), len(datasets))))},
        coords={"model": models, "dataset": datasets},
    )


def _finished_run(path: Path, unlisted: tuple[str, ...] = ()) -> RunFolder:
    """A run folder as a finished run leaves it: every result file, run.json and the stimulus
    table of d1, each listed in the manifest with its content hash (but those in ``unlisted``)."""
    folder = RunFolder(path).create()
    models, datasets = ["a", "b"], ["d1", "d2"]
    hashes = {
        "similarity.nc": folder.write_netcdf(_sim(models, datasets), folder.similarity),
        "consistency.nc": folder.write_netcdf(_cons(datasets, datasets), folder.consistency),
        "probes.nc": folder.write_netcdf(_probes(models, datasets), folder.probes),
        "controlled_tests.csv": folder.write_text(folder.controlled_tests, "test,p\n"),
        "summary.txt": folder.write_text(folder.summary, "summary\n"),
        "run.json": folder.write_json(folder.info, {"status": "ok", "config_hash": "c"}),
    }
    table = folder.write_text(folder.stimuli("d1"), "id,label\nx,0\n")
    folder.write_manifest(
        {
            "config_hash": "c",
            "files": {k: {"sha256": v} for k, v in hashes.items() if k not in unlisted},
            "inputs": {"stimuli d1": table},
            "skipped": [],
        }
    )
    return folder


def _relist(folder: RunFolder, name: str) -> None:
    """Give ``name`` its current hash in the manifest (as if the run had written it so)."""
    manifest = folder.read_manifest()
    manifest["files"][name] = {"sha256": sha256_file(folder.path / name)}
    folder.write_manifest(manifest)


def test_results_open_only_when_a_manifest_of_the_run_vouches_for_them(tmp_path: Path):
    """A manifest that is missing, not JSON or not of the shape a run writes verifies nothing:
    the folder is refused (without verify it opens), never read as if it were checked."""
    folder = _finished_run(tmp_path / "run")
    assert folder.open_results().similarity.sizes["model_a"] == 2
    good = folder.manifest_path.read_text()
    for text, state in (
        ("{", "unreadable"),
        ('{"config_hash": "c", "files": {"summary.txt": "abc"}}', "unreadable"),
        ('{"config_hash": "c", "files": {}, "inputs": ["stimuli d1"]}', "unreadable"),
        ('{"config_hash": "c", "files": {}, "skipped": {"d1": "x"}}', "unreadable"),
        (None, "missing"),
    ):
        if text is None:
            folder.manifest_path.unlink()
        else:
            folder.manifest_path.write_text(text)
        assert folder.read_manifest() == {}
        with pytest.raises(RunFolderError, match=f"manifest.json is {state}"):
            folder.open_results()
        assert folder.open_results(verify=False).manifest == {}
    folder.manifest_path.write_text(good)
    folder.open_results()


def test_a_listed_file_that_is_gone_is_named_as_missing(tmp_path: Path):
    """A file the manifest lists but the folder lacks is refused as missing (not read as absent)."""
    folder = _finished_run(tmp_path / "run")
    folder.summary.unlink()
    with pytest.raises(RunFolderError, match="summary.txt is listed in manifest.json but missing"):
        folder.open_results()


@pytest.mark.parametrize("damage", ["changed", "deleted"])
def test_the_stimulus_tables_are_verified_with_the_results(tmp_path: Path, damage: str):
    """The results are only as good as the stimulus table the analyses read beside them: a table
    changed or deleted since the run is refused, like a result file."""
    folder = _finished_run(tmp_path / "run")
    table = folder.stimuli("d1")
    if damage == "changed":
        table.write_text("id,label\nx,1\n")
    else:
        table.unlink()
    with pytest.raises(RunFolderError, match="not the stimulus table the result files were"):
        folder.open_results()


@pytest.mark.parametrize("name", _NAMES)
def test_a_result_file_the_manifest_does_not_list_is_refused_and_removed(tmp_path: Path, name: str):
    """Each result file that the last run did not list (a leftover of another config) makes the
    folder unverifiable, and the cleanup before a rerun removes it with the manifest."""
    folder = _finished_run(tmp_path / "run", unlisted=(name,))
    with pytest.raises(RunFolderError, match=f"{re.escape(name)} in .* were not written by its"):
        folder.open_results()
    removed = folder.remove_results("rerun")
    assert sorted(removed) == sorted([*_NAMES, "manifest.json"])
    assert not any((folder.path / n).exists() for n in removed)


@pytest.mark.parametrize("name", ["consistency.nc", "probes.nc"])
def test_open_results_checks_the_optional_files_against_similarity(tmp_path: Path, name: str):
    """consistency.nc and probes.nc of another run (listed with their hashes) are refused when
    opened, not handed on beside a similarity.nc of other models or datasets."""
    folder = _finished_run(tmp_path / "run")
    other = _cons(["d1"], ["d1"]) if name == "consistency.nc" else _probes(["a", "c"], ["d1", "d2"])
    folder.write_netcdf(other, folder.path / name)
    _relist(folder, name)
    with pytest.raises(RunFolderError, match=f"{name} has"):
        folder.open_results()


def test_a_result_file_that_is_not_netcdf_is_refused_as_unreadable(tmp_path: Path):
    """A listed result file whose bytes are not netCDF (its hash listed too) is refused with the
    fix, not raised as xarray's own error."""
    folder = _finished_run(tmp_path / "run")
    folder.consistency.write_text("not a netCDF file\n")
    _relist(folder, "consistency.nc")
    with pytest.raises(RunFolderError, match="is unreadable"):
        folder.open_results()


def test_schema_check_finds_each_mismatch():
    """Each check of check_schema on its own: no measures, model_a against model_b, other ids of
    the same count, dims in another order, and consistency.nc's second dataset axis, measures and
    anchors."""
    sim = _sim(["a", "b"], ["d1", "d2"])
    check_schema(
        sim, _cons(["d1", "d2"], ["d2", "d1"], anchor=["b", "a"]), _probes(["b", "a"], ["d1", "d2"])
    )
    cases = [
        (xr.Dataset(coords=sim.coords), None, None, "no measure variables"),
        (sim.transpose("model_a", "dataset", "model_b"), None, None, "has dims"),
        (sim.assign_coords(model_b=["a", "c"]), None, None, "model_a and model_b differ"),
        (sim, None, _probes(["a", "c"], ["d1", "d2"]), "probes.nc has models"),
        (sim, None, _probes(["a", "b"], ["d1", "d3"]), "probes.nc has datasets"),
        (sim, _cons(["d1", "d2"], ["d1"]), None, "consistency.nc has datasets"),
        (
            sim,
            _cons(["d1", "d2"], ["d1", "d2"]).rename(dataset_a="ds"),
            None,
            "consistency.nc has datasets",
        ),
        (
            sim,
            _cons(["d1", "d2"], ["d1", "d2"]).assign_coords(measure=["rsa"]),
            None,
            "has measures",
        ),
        (sim, _cons(["d1", "d2"], ["d1", "d2"], anchor=["a"]), None, "has anchor models"),
    ]
    for similarity, consistency, probes, words in cases:
        with pytest.raises(RunFolderError, match=words):
            check_schema(similarity, consistency, probes)


def test_only_what_a_run_leaves_makes_a_run_folder(tmp_path: Path):
    """Each trace a run leaves (.lock, .stages, features.zarr, its run.json or manifest with
    their keys) marks a run folder; a JSON file of another shape, or not JSON, does not."""
    folder = RunFolder(tmp_path / "f").create()
    assert not folder.is_run_folder()
    for mark in (".lock", ".stages", "features.zarr"):
        (folder.path / mark).mkdir()
        assert folder.is_run_folder(), mark
        (folder.path / mark).rmdir()
    for name, keys in (
        ("run.json", ("status", "config_hash")),
        ("manifest.json", ("config_hash", "files")),
    ):
        path = folder.path / name
        for text in ("not json", json.dumps(list(keys)), *(json.dumps({k: 1}) for k in keys)):
            path.write_text(text)
            assert not folder.is_run_folder(), text
        path.write_text(json.dumps(dict.fromkeys(keys, 1)))
        assert folder.is_run_folder()
        path.unlink()


def test_preflight_refuses_a_folder_of_other_files_only(tmp_path: Path):
    """--out naming a user's folder of other files is refused before anything is written; an
    empty folder, a new one and a run folder are fine."""
    folder = RunFolder(tmp_path / "mine").create()
    folder.preflight()
    RunFolder(tmp_path / "new").preflight()
    folder.summary.write_text("my notes")
    with pytest.raises(RunFolderError, match="is not a run folder"):
        folder.preflight()
    folder.stages.mkdir()
    folder.preflight()


def test_record_info_without_run_json_records_nothing(tmp_path: Path):
    """run.json listed in the manifest but deleted: nothing is recorded (False), no error."""
    folder = _vouched_run(tmp_path / "run")
    folder.info.unlink()
    assert not folder.record_info("book_timings_s", {"book": 2.5})
    assert not folder.info.exists()


def test_a_refusal_keeps_an_intact_run_verified_and_a_changed_one_caught(tmp_path: Path):
    """A refused rerun into a finished run adds its record and moves run.json's manifest hash
    with it, so the intact results still verify; a run.json changed after the run is not
    vouched for again by the refusal (its results stay refused)."""
    folder = _vouched_run(tmp_path / "run")
    folder.record_refusal("my.yaml", "ConfigError: x")
    info = folder.read_info()
    assert info["timings_s"] == {"total": 1.0} and info["refused"]["error"] == "ConfigError: x"
    folder._verify_manifest(folder.read_manifest())
    changed = _vouched_run(tmp_path / "changed")
    changed.info.write_text('{"timings_s": {"total": 0.1}}\n')  # edited after the run
    changed.record_refusal("my.yaml", "ConfigError: x")
    with pytest.raises(RunFolderError, match="changed after the run wrote it"):
        changed._verify_manifest(changed.read_manifest())


def test_a_refusal_replaces_a_run_json_that_is_not_an_object(tmp_path: Path):
    """run.json holding JSON that is not an object is no record to keep: a refused one is written."""
    folder = RunFolder(tmp_path / "run").create()
    folder.info.write_text('["status"]')
    folder.record_refusal("my.yaml", "ConfigError: x")
    assert folder.read_info()["status"] == "refused"


def test_stale_cache_lists_exactly_the_cached_work_of_other_models_and_datasets(tmp_path: Path):
    """The prune at the end of a run removes what stale_cache lists: every entry of a model or
    dataset not in the run (and the probe records with probes off), each once, and nothing that
    is the run's own or not the run's at all (zarr metadata, a user's files in stimuli/, the
    parts folder itself, an id with a dot read as a file name)."""
    folder = RunFolder(tmp_path / "run").create()
    ds, old = safe_name("digits.v2"), safe_name("faces")

    def touch(*parts: str) -> Path:
        path = folder.path.joinpath(*parts)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
        return path

    for kept in (
        ("features.zarr", "zarr.json"),
        ("features.zarr", ds, "zarr.json"),
        ("features.zarr", ds, "cnn", "zarr.json"),
        ("stimuli", f"{ds}.csv"),
        ("stimuli", "notes.txt"),
        ("stimuli", "images", "a.png"),
        (".stages", "stimuli", f"{ds}.json"),
        (".stages", "features", ds, "cnn.json"),
        (".stages", "parts", "similarity", f"{ds}.nc"),
    ):
        touch(*kept)
    probe_records = [
        touch(".stages", "probes", ds, "cnn.json"),
        touch(".stages", "parts", "probes", ds, "cnn.json"),
    ]
    stale = [
        touch("features.zarr", old, "cnn", "zarr.json").parent.parent,
        touch("features.zarr", ds, "vit", "zarr.json").parent,
        touch("stimuli", f"{old}.csv"),
        touch(".stages", "stimuli", f"{old}.json"),
        touch(".stages", "features", old, "cnn.json").parent,
        touch(".stages", "features", ds, "vit.json"),
        touch(".stages", "parts", "similarity", f"{old}.nc"),
    ]
    stale_probes = [
        touch(".stages", "probes", ds, "vit.json"),
        touch(".stages", "parts", "probes", ds, "vit.json"),
    ]
    assert sorted(folder.stale_cache(["cnn"], ["digits.v2"])) == sorted(stale + stale_probes)
    probes_off = [folder.stages / "probes", folder.stages / "parts" / "probes"]
    assert sorted(folder.stale_cache(["cnn"], ["digits.v2"], probes=False)) == sorted(
        stale + probes_off
    )
    assert all(p.exists() for p in probe_records)


def test_remove_unlinks_a_dangling_link(tmp_path: Path):
    """A link whose target is gone is still an entry of the run: remove unlinks it (True)."""
    folder = RunFolder(tmp_path / "run").create()
    link = folder.path / "features.zarr"
    link.symlink_to(tmp_path / "gone")
    assert folder.remove(link)
    assert not link.is_symlink()
