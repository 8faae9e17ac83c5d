"""What the ``repsim`` commands other than ``run`` do with inputs that cannot be used: a symbolic-
link loop, a dangling link, a FIFO, a damaged file, a run or book folder that does not hold what
the command needs. Each ends with exit 2 and a message naming the cause and the fix, before any
work, never a traceback (found by an audit of ``book``, ``models``, ``datasets``, ``bench``,
``compare`` and ``minizoo``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from repsim import cli


def _loop(folder: Path, name: str = "loop") -> Path:
    """``folder/name``: a symbolic link in a loop with a sibling."""
    (folder / f"{name}-b").symlink_to(folder / name)
    (folder / name).symlink_to(folder / f"{name}-b")
    return folder / name


def _no_work(*args, **kwargs):
    raise AssertionError("the work started before the input was checked")


#: (argv with LOOP for a symbolic-link loop and OK for a fresh path) of every command that reads
#: a config file, a run folder or a zoo folder
LOOP_ARGUMENTS = [
    ["models", "--config", "LOOP"],
    ["models", "--config", "LOOP", "--check"],
    ["datasets", "--config", "LOOP", "--check"],
    ["run", "LOOP", "--out", "OK"],
    ["bench", "run", "--config", "LOOP"],
    ["models", "--config", "INCLUDES_LOOP"],
    ["compare", "LOOP"],
]


@pytest.mark.parametrize("argv", LOOP_ARGUMENTS, ids=" ".join)
def test_a_symbolic_link_loop_is_named_not_a_traceback(tmp_path, capsys, argv):
    """A config file or run folder that is a symbolic-link loop was a RuntimeError traceback
    ("Symlink loop from ...", from Path.resolve) or "does not exist: run the pipeline first"."""
    loop = _loop(tmp_path)
    includes = tmp_path / "includes.yaml"
    includes.write_text("include: [loop]\n")
    subs = {"LOOP": str(loop), "OK": str(tmp_path / "ok"), "INCLUDES_LOOP": str(includes)}
    assert cli.main([subs.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "is a symbolic-link loop (links that point at each other)" in err, err
    assert "Traceback" not in err and "run the pipeline first" not in err


def test_a_run_folder_that_is_a_dangling_link_is_named(tmp_path, capsys):
    """It was "does not exist: run the pipeline first", of a link the user made on purpose."""
    (tmp_path / "run").symlink_to(tmp_path / "elsewhere")
    assert cli.main(["compare", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"is a dangling symbolic link to {tmp_path / 'elsewhere'}" in err, err


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_compare_names_a_similarity_file_that_is_not_a_file(tmp_path, capsys, kind):
    """A FIFO or a folder named like a similarity file was said not to exist."""
    path = tmp_path / "similarity.nc"
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    assert cli.main(["compare", str(path)]) == 2
    err = capsys.readouterr().err
    expected = "is not a regular file (a FIFO" if kind == "fifo" else "is a folder, not a file"
    assert f"{path} {expected}" in err, err

