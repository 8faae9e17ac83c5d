"""``repsim.pathcheck.path_problem``: what stops a configured path from being read, and the
loaders and weights check that say it (a symlink loop was called "missing", a FIFO blocked)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from repsim.errors import DatasetError, MissingWeightsError, ModelError
from repsim.pathcheck import DOES_NOT_EXIST, path_problem, stat_problem
from repsim.stimuli import open_dataset
from repsim.stimuli.spec import DatasetSpec
from repsim.zoo.spec import ModelSpec
from repsim.zoo.weights import check_weights_path


def _loop(p: Path) -> None:
    os.symlink(p.with_name("other"), p)
    os.symlink(p, p.with_name("other"))


MAKERS = {
    "file": lambda p: p.write_bytes(b"x"),
    "missing": lambda p: None,
    "dangling": lambda p: os.symlink(p.with_name("gone"), p),
    "loop": _loop,
    "fifo": lambda p: os.mkfifo(p),
    "folder": lambda p: p.mkdir(),
    "under_a_file": None,  # the parent is a file: NotADirectoryError
}
EXPECTED = {  # (as a file, as a folder)
    "file": (None, "is a file, not a folder"),
    "missing": (DOES_NOT_EXIST, DOES_NOT_EXIST),
    "dangling": ("is a dangling symbolic link to", "is a dangling symbolic link to"),
    "loop": ("is a symbolic-link loop", "is a symbolic-link loop"),
    "fifo": ("is not a regular file", "is not a folder"),
    "folder": ("is a folder, not a file", None),
    "under_a_file": (DOES_NOT_EXIST, DOES_NOT_EXIST),
}


@pytest.mark.parametrize("kind", list(MAKERS))
def test_path_problem_names_what_is_there(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "p"
    if kind == "under_a_file":
        path.write_bytes(b"x")
        path = path / "inside"
    else:
        MAKERS[kind](path)
    for want, expected in zip(("file", "folder"), EXPECTED[kind]):
        got = path_problem(path, want)
        if expected is None:
            assert got is None, (want, got)
        else:
            assert got is not None and got.startswith(expected), (want, got)
    # the plan's presence check: something there (a file, a folder, a FIFO) is not its concern;
    # nothing there is, in path_problem's words
    present = kind in ("file", "fifo", "folder")
    assert stat_problem(path) == (None if present else path_problem(path, "file")), kind


def test_a_device_is_not_a_regular_file() -> None:
    assert path_problem("/dev/null", "file").startswith("is not a regular file")
    with pytest.raises(ValueError, match="want must be"):
        path_problem("/dev/null", "files")


def _dataset(loader: str, path: Path) -> DatasetSpec:
    return DatasetSpec(id="d", loader=loader, path=path, domain="Structured")


@pytest.mark.parametrize(
    ("loader", "kind", "said"),
    [
        ("embedded", "fifo", "embedded file .*p is not a regular file"),
        ("embedded", "loop", "embedded file .*p is a symbolic-link loop"),
        ("embedded", "folder", "embedded file .*p is a folder, not a file"),
        ("embedded", "missing", "embedded file .*p does not exist"),
        ("imagefolder", "loop", "image folder .*p is a symbolic-link loop"),
        ("imagefolder", "file", "image folder .*p is a file, not a folder"),
        ("wds", "fifo", "shard folder .*p is not a folder"),
    ],
)
def test_dataset_loaders_say_what_is_wrong_with_their_path(
    tmp_path: Path, loader: str, kind: str, said: str
) -> None:
    """All were "missing" or "does not exist" (a FIFO reached np.load, which blocks)."""
    path = tmp_path / "p"
    MAKERS[kind](path)
    with pytest.raises(DatasetError, match=rf"dataset 'd': {said}"):
        open_dataset(_dataset(loader, path))


def test_a_weights_symlink_loop_is_named_as_one(tmp_path: Path) -> None:
    """A loop's OSError (ELOOP) escaped the check and was reported as the model's failure."""
    spec = ModelSpec(id="m", loader="minizoo", identifier="cnn")
    _loop(tmp_path / "w.bin")
    with pytest.raises(ModelError, match=r"model 'm': weights .*w\.bin is a symbolic-link loop"):
        check_weights_path(spec, tmp_path / "w.bin")
    with pytest.raises(MissingWeightsError, match="does not exist"):
        check_weights_path(spec, tmp_path / "none.bin")


def test_the_datasets_table_calls_a_loop_present_and_invalid(tmp_path: Path) -> None:
    """``repsim datasets`` said "absent" of a symlink loop, sending the user to download it."""
    from repsim.stimuli.check import check_datasets

    _loop(tmp_path / "loop.npz")
    entry = {"loader": "embedded", "domain": "Structured", "n_classes": 2}
    config = {
        "name": "t",
        "datasets": [
            {"id": "looped", "path": str(tmp_path / "loop.npz"), **entry},
            {"id": "gone", "path": str(tmp_path / "gone.npz"), **entry},
        ],
    }
    table, ok = check_datasets(config)
    rows = {line.split()[0]: line for line in table.splitlines()}
    assert not ok
    assert "present, invalid: embedded file loop.npz is a symbolic-link loop" in rows["looped"]
    assert rows["gone"].endswith("absent")


def test_a_file_without_read_permission_is_named_so(tmp_path: Path, monkeypatch) -> None:
    """A weights file of mode 000 passes a stat; safetensors then reported it as 'No such file',
    and the check wrapped that as a truncated or damaged file with a retrain fix. The open is
    tried up front and its refusal named with the chmod fix. (os.open is refused by hand here:
    tests may run as root, whom chmod does not stop.)"""
    import errno

    import repsim.pathcheck as pathcheck

    path = tmp_path / "w.safetensors"
    path.write_bytes(b"x")
    real_open = os.open

    def refused(p, flags, *args, **kwargs):
        if os.path.realpath(p) == os.path.realpath(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(p))
        return real_open(p, flags, *args, **kwargs)

    assert path_problem(path) is None
    monkeypatch.setattr(pathcheck.os, "open", refused)
    assert path_problem(path) == "cannot be read (Permission denied)"
    assert stat_problem(path) is None  # it is there
    spec = ModelSpec("mine", "minizoo", "cnn", weights=path)
    with pytest.raises(ModelError, match=r"cannot be read \(Permission denied\); make it readable"):
        check_weights_path(spec, path)
