"""What stops a configured path from being read, in words: one answer for datasets and weights.

``Path.exists()`` and ``Path.is_file()`` answer False for a symbolic-link loop and True or False
for a FIFO or a device, so a loader that asks them calls a loop "missing" and hands a FIFO to a
reader that blocks. :func:`path_problem` stats the path once and names what is there instead.
This module imports nothing from the package, so any loader may import it.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

#: what :func:`path_problem` says of a path with nothing at it (callers test for it to tell
#: "get or create the file" from "fix what is there")
DOES_NOT_EXIST = "does not exist"
#: what :func:`path_problem` says of a FIFO, a device or a socket where a file is wanted
NOT_REGULAR = (
    "is not a regular file (a FIFO, device or socket: reading it would block or never end)"
)


def path_problem(path: str | Path, want: str = "file") -> str | None:
    """None when ``path`` is a ``want`` ("file": a regular file; "folder"), else what it is.

    The answer completes a sentence that starts with the path: "does not exist", "is a dangling
    symbolic link to ...", "is a symbolic-link loop", "is a folder, not a file", "is a file, not a
    folder", "is not a regular file (...)" or "cannot be read (<reason>)" (a permission).
    """
    if want not in ("file", "folder"):
        raise ValueError(f"want must be 'file' or 'folder', got {want!r}")
    mode, problem = _stat(path)
    if problem is not None:
        return problem
    if want == "folder":
        if stat.S_ISDIR(mode):
            return None
        return "is a file, not a folder" if stat.S_ISREG(mode) else "is not a folder"
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    if not stat.S_ISREG(mode):
        return NOT_REGULAR
    return _open_problem(path)


def _open_problem(path: str | Path) -> str | None:
    """Why a regular file cannot be opened for reading (its own permission: a stat succeeds
    without it, and a reader's error, e.g. safetensors', can call the file missing), or None."""
    try:
        os.close(os.open(path, os.O_RDONLY))
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    return None


def stat_problem(path: str | Path) -> str | None:
    """None when something is at ``path``, whatever it is; else why nothing can be found there,
    in :func:`path_problem`'s words ("does not exist", a dangling symbolic link, a symbolic-link
    loop, "cannot be read (<reason>)": a closed folder above it, a name too long)."""
    return _stat(path)[1]


def _stat(path: str | Path) -> tuple[int, None] | tuple[None, str]:
    """The mode of what is at ``path``, or why it cannot be had (one ``os.stat``)."""
    try:
        return os.stat(path).st_mode, None
    except (FileNotFoundError, NotADirectoryError):
        if os.path.islink(path):
            return None, (
                f"is a dangling symbolic link to {os.readlink(path)} (the target does not exist)"
            )
        return None, DOES_NOT_EXIST
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, "is a symbolic-link loop (links that point at each other)"
        return None, f"cannot be read ({exc.strerror or exc})"
