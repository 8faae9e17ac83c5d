"""The run folder: one type that owns every path of a run, its writes, its manifest and its lock.

Layout (no other module spells these names; they ask :class:`RunFolder`)::

    RUN/run.json                  config, versions, device, timings, failures, what was skipped;
                                  why the last run was refused before it started, if it was
    RUN/manifest.json             what produced each result file: config hash, code version,
                                  input hashes, content hash (written last: the commit point)
    RUN/stimuli/<dataset>.csv     stimulus tables
    RUN/features.zarr             feature store (one sealed group per dataset/model)
    RUN/similarity.nc  RUN/probes.nc  RUN/consistency.nc  RUN/summary.txt
    RUN/controlled_tests.csv      the controlled-experiment tests (crossed objective x architecture x seed zoos)
    RUN/.stages/<stage>/...json   one record per finished task: input key and content hash
    RUN/.stages/parts/...         per-dataset similarity and per-model probe parts
    RUN/.lock                     held (fcntl.flock) by the one process running in the folder,
                                  as is the folder itself (see RunFolder.lock)
    RUN/.run-id                   the folder's random id, written when a top-level entry is a link
                                  (features.zarr on another disk), whose target records it and the
                                  folder's path in .repsim-owner: two runs never share one such folder

Why one owner: a folder whose files were written by two configs, or whose cache was truncated,
must be recognised as such by every reader (the pipeline, ``load_run``, the book, the
benchmarks), and that is only possible when one module knows every file and how to check it.

This module lives beside ``repsim.pipeline`` rather than in a ``repsim/run/`` subpackage because
``repsim.run`` is the public function that runs a config: a subpackage of the same name would
shadow it as soon as anything imported it.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

from repsim.errors import (
    NoSpaceError,
    PathError,
    RepsimError,
    RunFolderError,
    RunLockedError,
    StoreError,
)
from repsim.pathcheck import DOES_NOT_EXIST, NOT_REGULAR, path_problem

log = logging.getLogger(__name__)

SIMILARITY = "similarity.nc"
PROBES = "probes.nc"
CONSISTENCY = "consistency.nc"
SUMMARY = "summary.txt"
CONTROLLED_TESTS = "controlled_tests.csv"
INFO = "run.json"
MANIFEST = "manifest.json"
FEATURES = "features.zarr"
STIMULI = "stimuli"
STAGES = ".stages"
LOCK = ".lock"
RUN_ID = ".run-id"  # a random id of the run folder, for the folders it keeps elsewhere
OWNER = ".repsim-owner"  # in a top-level folder kept elsewhere (a link): its run's id and path
#: Result files rebuilt from the stage parts at the end of every successful run.
RESULT_FILES = (SIMILARITY, CONSISTENCY, PROBES, CONTROLLED_TESTS, SUMMARY)


# ----------------------------------------------------------------------------------- names, hashes
def safe_name(name: str) -> str:
    """A reversible, folder-safe form of a dataset or model id: no separators, no leading dot.

    ``../x`` becomes ``%2E.%2Fx``, so an id can never name a path outside its folder.
    """
    if not name:
        raise StoreError("dataset and model ids must be non-empty strings")
    encoded = quote(str(name), safe="-_.+=@,")
    return "%2E" + encoded[1:] if encoded.startswith(".") else encoded


def unsafe_name(name: str) -> str:
    """Inverse of :func:`safe_name`."""
    return unquote(name)


#: the endings of the names a run gives after an id: ``<id>`` folders (feature groups, record and
#: part folders), ``stimuli/<id>.csv``, ``<id>.nc`` similarity parts, ``<id>.json`` records and
#: probe parts
ID_ENDINGS = ("", ".csv", ".nc", ".json")
#: the longest file name a filesystem commonly allows (NAME_MAX of ext4, xfs, btrfs, tmpfs)
NAME_MAX = 255


def temporary_name(name: str) -> str:
    """The hidden name a file or folder is written under before it is renamed to ``name``."""
    return f".{name}.{uuid.uuid4().hex}.tmp"


def longest_derived_name(name: str) -> int:
    """Bytes of the longest file name a run derives from a dataset or model id: the temporary
    name of its longest ending. The config check refuses an id over :data:`NAME_MAX` with it
    before any work, so it follows :func:`safe_name`, :data:`ID_ENDINGS` and :func:`temporary_name`."""
    return max(len(os.fsencode(temporary_name(safe_name(name) + end))) for end in ID_ENDINGS)


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes (streamed); RunFolderError naming the fix when it cannot be read
    (a FIFO in place of a run's file blocked compare and the book for good)."""
    if path_problem(path, "file") == NOT_REGULAR:
        raise RunFolderError(f"{path} {NOT_REGULAR}: remove it, then rerun what wrote the file")
    h = hashlib.sha256()
    with filesystem_errors(path, "read"), open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------- filesystem errors
def describe_os_error(
    exc: OSError, path: str | Path | None = None, action: str = "write", option: str = "--out"
) -> str:
    """A message for an OSError that names the path (or what blocks it) and says what to do.

    ``action`` is what was tried: "read" and "write" get the fix for that access; other words
    ("access", "merge into", ...) are used when it may be either. ``option``: the command-line
    option that chose the path (``--out``, ``--book``, ...), named in each fix that says to choose
    another.
    """
    where = path if path is not None else (exc.filename2 or exc.filename or "the run folder")
    # a rename's error names the temporary source first; the destination is the path that matters
    paths = [Path(p) for p in (where, exc.filename2, exc.filename) if isinstance(p, str | Path)]
    code = exc.errno
    if code == errno.ENOSPC or code == errno.EDQUOT:
        fix = (
            f"free space on that disk (or raise the quota), or choose another {option}; rerun to "
            "resume"
        )
        return f"no space left on the device while trying to {action} {where}: {fix}"
    if code in (errno.EACCES, errno.EPERM, errno.EROFS):
        if action == "read":
            target = _closed_folder(Path(where)) or Path(where)
            how = "chmod -R u+rX" if _is_dir(target) else "chmod u+r"
            named = "it" if target == Path(where) else target
            fix = f"make {named} readable ({how})"
        elif action == "access":  # a task's error: a dataset it reads or the run folder it writes
            fix = (
                "give this user access to it (read for datasets and weights, write for the run "
                f"folder), or choose another {option} if it lies in the run folder"
            )
        else:
            target = _unwritable(Path(where)) or Path(where)
            how = "chmod -R u+w" if _is_dir(target) else "chmod u+w"
            named = "it" if target == Path(where) else f"the folder {target}"
            fix = f"make {named} writable ({how}), or choose another {option}"
        return f"permission denied while trying to {action} {where}: {fix}"
    if code == errno.EISDIR:
        folder = next((p for p in paths if _is_dir(p)), Path(where))
        return (
            f"{folder} is a folder where a file is needed{_to(action, where, folder)}: remove "
            "that folder, then rerun"
        )
    if code == errno.ENAMETOOLONG:
        fix = "shorten it (rename it, or move or link it to a shorter path)"
        if action not in ("read", "access"):
            fix += f", or choose a shorter {option}"
        return f"cannot {action} {abbreviate(where)}: {_too_long(Path(where), *paths)}; {fix}"
    loop = next(filter(None, map(_link_loop, paths)), None)
    if loop is not None and code in (errno.ELOOP, errno.EEXIST, errno.ENOTDIR):
        return (
            f"{loop} is a symbolic-link loop (links that point at each other)"
            f"{_to(action, where, loop)}: remove the link, or point it at a folder, then rerun"
        )
    if code in (errno.EEXIST, errno.ENOTDIR):
        blocker = next(filter(None, map(_file_in_the_way, paths)), Path(where))
        if blocker.is_symlink() and not blocker.exists():
            return (
                f"{blocker} is a symbolic link to {os.readlink(blocker)}, which does not exist"
                f"{_to(action, where, blocker)}: create that folder (a disk not mounted?), or "
                "remove the link, then rerun"
            )
        return (
            f"{blocker} is a file where a folder is needed{_to(action, where, blocker)}: remove "
            f"that file, or pass another folder as {option}"
        )
    return (
        f"cannot {action} {where} ({exc.strerror or exc}); check the path and the disk, then rerun"
    )


def describe_output_error(exc: OSError, folder: str | Path, option: str) -> str:
    """:func:`describe_os_error` for a command that reads files and writes into ``folder``
    (``--book``, ``--into``): a file inside it, or any file on a full disk, was being written
    (the fix names ``option``), any other was being read. The error's own file named the place
    read from on a full disk ("while trying to merge into" a source's file, "choose another
    --out")."""
    target = Path(exc.filename if isinstance(exc.filename, str | Path) else folder)
    written = _inside(target, Path(folder)) or exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if written and not _inside(target, Path(folder)):
        target = Path(folder)
    return describe_os_error(exc, target, "write" if written else "read", option)


def _inside(path: Path, folder: Path) -> bool:
    """Whether ``path`` is ``folder`` or lies in it (both resolved, links and all)."""
    try:
        path, folder = path.resolve(), folder.resolve()
    except (OSError, RuntimeError):  # a symbolic-link loop
        return False
    return path == folder or folder in path.parents


def check_path_option(path: str | Path | None, option: str, action: str = "write") -> None:
    """PathError when ``path``, given as ``option``, has a name or a length the filesystem
    refuses: commands check their path options before any work, so that none fails with a
    traceback where it is first used (or after an hour of work, where it is written)."""
    if path is None or not _exceeds_limits(Path(path)):
        return
    exc = OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), str(path))
    raise PathError(f"{option}: {describe_os_error(exc, path, action, option)}")


def check_output_path(path: str | Path | None, option: str, kind: str = "file") -> None:
    """PathError, before any work, when a command could not write ``path`` (``kind`` "file" or
    "folder"): a folder where a file is needed or the reverse, a file in the way of a parent, a
    place that cannot be written. The folder (a file's parent) is created and probed with a
    temporary file, so that a benchmark does not fail where it writes, after its work."""
    if path is None:
        return
    check_path_option(path, option)
    target = Path(path)
    if kind == "file" and _is_dir(target):
        raise PathError(
            f"{option}: {target} is a folder where a file is needed; name a file in it, e.g. "
            f"{target / 'result.json'}"
        )
    if kind == "file" and _link_loop(target) == target:  # the probe below is made beside it
        raise PathError(
            f"{option}: {target} is a symbolic-link loop (links that point at each other): "
            f"remove the link, or choose another {option}"
        )
    folder = target if kind == "folder" else target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".repsim-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise PathError(f"{option}: {describe_os_error(exc, target, 'write', option)}") from None


def write_output(path: str | Path, text: str, option: str) -> None:
    """Write a command's output file (``--json``), checked first by :func:`check_output_path`:
    PathError naming ``option`` when it cannot be written after all (the disk filled up during
    the work, a device that refuses it such as /dev/full), not a traceback after the work."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    except OSError as exc:
        raise PathError(f"{option}: {describe_os_error(exc, target, 'write', option)}") from None


def _exceeds_limits(path: Path) -> bool:
    """Whether a name in ``path``, or ``path`` itself, is longer than its filesystem allows."""
    name_max, path_max = _name_limits(path)
    too_long = len(os.fsencode(str(path))) >= path_max  # PATH_MAX counts the closing NUL
    return too_long or any(len(os.fsencode(part)) > name_max for part in path.parts)


def abbreviate(path: str | Path, keep: int = 60, size: bool = True) -> str:
    """``path`` for a message: whole when short, else its two ends (and its length in bytes)."""
    text = str(path)
    if len(text) <= 3 * keep:
        return text
    return f"{text[:keep]}...{text[-keep:]}" + (
        f" ({len(os.fsencode(text))} bytes)" if size else ""
    )


def _name_limits(path: Path) -> tuple[int, int]:
    """The longest name and path (bytes) on the filesystem of ``path``'s nearest existing folder."""
    folder = next((p for p in (path, *path.parents) if _is_dir(p)), Path("/"))
    try:
        return os.pathconf(folder, "PC_NAME_MAX"), os.pathconf(folder, "PC_PATH_MAX")
    except (OSError, ValueError):  # not reported by this filesystem: the usual Linux limits
        return 255, 4096


def _too_long(path: Path, *tried: Path) -> str:
    """Which part of ``path`` is too long (ENAMETOOLONG): one of its names, or the whole path.

    ``tried``: the paths the failed call named (a write's temporary name may be the long one).
    """
    name_max, path_max = _name_limits(path)
    parts = [part for p in (path, *tried) for part in p.parts]
    long = [part for part in parts if len(os.fsencode(part)) > name_max]
    if long:
        return (
            f"the name '{abbreviate(long[0], 20, size=False)}' is {len(os.fsencode(long[0]))} bytes long, over the "
            f"{name_max} bytes a file or folder name may have there"
        )
    return (
        f"the path is {len(os.fsencode(str(path)))} bytes long, over the {path_max} bytes the "
        "system allows"
    )


def _size(n: float) -> str:
    """Bytes in the largest unit that keeps the number at least 1 (``1.5 GiB``)."""
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _mount_point(path: Path) -> Path:
    """The mount point of the filesystem holding ``path`` (which exists)."""
    path = path.resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _to(action: str, where: str | Path, blocker: Path) -> str:
    """`` (to ACTION WHERE)`` unless the blocker is ``where`` itself."""
    return "" if blocker == Path(where) else f" (to {action} {where})"


def _is_dir(path: Path) -> bool:
    try:
        return path.is_dir()
    except OSError:  # a folder above it cannot be entered
        return False


def _file_in_the_way(path: Path) -> Path | None:
    """The first existing non-folder or dangling link among ``path`` and its parents (None when
    there is none)."""
    for p in (*reversed(path.parents), path):
        try:
            if (p.exists() and not p.is_dir()) or (p.is_symlink() and not p.exists()):
                return p
        except OSError:
            return None
    return None


def _link_loop(path: Path) -> Path | None:
    """The first symbolic link among ``path`` and its parents that is a loop (None when none is)."""
    from repsim.pathcheck import stat_problem

    for p in (*reversed(path.parents), path):
        if p.is_symlink() and (stat_problem(p) or "").startswith("is a symbolic-link loop"):
            return p
    return None


def _unwritable(path: Path) -> Path | None:
    """What stops this user writing ``path``: the file or folder itself when it exists and is
    read-only, else the folder it would be made in (a file is replaced or created through its
    folder, so a writable file in a read-only folder still cannot be rewritten); None when
    neither is read-only, or this user may write anything (root)."""
    try:
        if path.exists() and not os.access(path, os.W_OK):
            return path
    except OSError:
        return None
    folder = path.parent
    if _is_dir(folder) and not os.access(folder, os.W_OK | os.X_OK):
        return folder
    return None


def _closed_folder(path: Path) -> Path | None:
    """The first folder above ``path`` that this user cannot enter (None when there is none)."""
    return next(
        (p for p in reversed(path.parents) if _is_dir(p) and not os.access(p, os.X_OK)), None
    )


#: errnos of a write that failed for lack of space, and how HDF5 words each in the message of
#: the exception it raises (h5py gives the errno only in the text)
_NO_SPACE = {
    errno.ENOSPC: (f"errno = {errno.ENOSPC},", "no space left on device"),
    errno.EDQUOT: (f"errno = {errno.EDQUOT},", "disk quota exceeded"),
}


def full_disk(exc: BaseException) -> OSError | None:
    """The OSError (ENOSPC or EDQUOT) behind ``exc`` when it failed for lack of space, else None.

    Writers word a full disk differently: Python and zarr raise OSError(ENOSPC), but h5py (under
    xarray's h5netcdf and netCDF4 engines) raises a RuntimeError, or an OSError without errno,
    whose text alone says "errno = 28, error message = 'No space left on device'". The exceptions
    ``exc`` was raised from or while handling are searched too.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE:
            return exc
        text = str(exc).lower()
        for code, words in _NO_SPACE.items():
            if any(w in text for w in words):
                return OSError(code, os.strerror(code))
        exc = exc.__cause__ or exc.__context__
    return None


@contextlib.contextmanager
def filesystem_errors(path: str | Path, action: str = "write") -> Iterator[None]:
    """Turn an OSError raised inside the block, or any error that says the disk is full
    (:func:`full_disk`), into a RunFolderError naming ``path`` and the fix."""
    try:
        yield
    except RunFolderError:
        raise
    except OSError as exc:
        described = exc if exc.errno is not None else full_disk(exc) or exc
        raise RunFolderError(describe_os_error(described, path, action)) from exc
    except Exception as exc:
        full = full_disk(exc)
        if full is None:
            raise
        raise RunFolderError(describe_os_error(full, path, action)) from exc


def link_between(top: Path, path: Path) -> Path | None:
    """The first symbolic link among the folders strictly between ``top`` and ``path``, or None.

    Links there lead into another folder (another run's feature store): removing a file or
    folder through one would delete that folder's data. ``top`` itself may be a link (a run's
    features.zarr placed on another disk)."""
    try:
        inner = Path(path).relative_to(top).parts[:-1]
    except ValueError:
        return None
    folder = Path(top)
    for part in inner:
        folder = folder / part
        if folder.is_symlink():
            return folder
    return None


def _through_link(path: Path, top: Path) -> str | None:
    """Why removing ``path`` would delete another folder's data (it is reached through a link
    below ``top``), or None; a link at ``path`` itself is only unlinked, so it is no reason."""
    link = None if path.is_symlink() else link_between(top, path)
    if link is None:
        return None
    return (
        f"{path} is reached through the symbolic link {link} (to {os.readlink(link)}): the run "
        "does not delete files of another folder; replace the link with a copy of what it points "
        "to, or remove the link, then rerun"
    )


_LINK_DEPTH = 3  # features.zarr/<dataset>/<model>, .stages/parts/<stage>/<dataset>


def _run_id_of(folder: Path) -> str:
    """The id in ``folder``'s run-id file ("" when it has none or it cannot be read)."""
    try:
        return (folder / RUN_ID).read_text().strip()
    except OSError:
        return ""


def _same_folder(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` are one folder (by device and inode: a bind mount gives one folder
    two real paths)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return False


def _folder_links(top: Path, depth: int) -> list[Path]:
    """Symbolic links to folders inside ``top``, down to ``depth`` levels (not followed)."""
    links: list[Path] = []
    if depth < 1 or not top.is_dir():
        return links
    with os.scandir(top) as entries:
        for entry in sorted(entries, key=lambda e: e.name):
            if entry.is_symlink():
                try:
                    linked = entry.is_dir()  # follows the link: a link to a folder
                except OSError:  # a loop where the run keeps a folder: named as a link too
                    linked = True
                if linked:
                    links.append(Path(entry.path))
            elif entry.is_dir(follow_symlinks=False):
                links += _folder_links(Path(entry.path), depth - 1)
    return links


def remove_path(path: Path, top: Path) -> None:
    """Remove the file, folder or link at ``path`` (a link is unlinked, never followed);
    RunFolderError when ``path`` is reached through a link below ``top``."""
    if (why := _through_link(path, top)) is not None:
        raise RunFolderError(why)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def atomic_write_bytes(path: str | Path, data: bytes) -> str:
    """Write ``data`` through a temporary file and a rename; returns its SHA-256.

    The file is created with the usual mode (0666 minus the umask, so 0644), not the 0600 of
    :func:`tempfile.mkstemp`: result files are meant to be read by others.
    """
    path = Path(path)
    tmp = path.with_name(temporary_name(path.name))
    with filesystem_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            with open(tmp, "xb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    return hashlib.sha256(data).hexdigest()


def atomic_write_netcdf(ds: Any, path: str | Path, **kwargs: Any) -> str:
    """Write an xarray Dataset to ``path`` via a temporary file and a rename; returns its SHA-256.

    The file is built in memory and written by :func:`atomic_write_bytes`, so the HDF5 library
    never writes to the disk itself: on a full disk its close fails, and the half-closed file it
    leaves crashed the interpreter at exit (a segfault after the error was reported). Result files
    are small (kilobytes to megabytes: measures x models x models per dataset).

    xarray is told no dask scheduler runs: on a dask worker it would take a lock shared by the
    cluster, named by the target, and a buffer cannot name one ("Semaphore or Lock not known");
    a file in this process's memory needs no such lock. The engine is h5netcdf (a dependency), so
    the file is netCDF4 whatever else is installed; xarray before 2025.9 built in-memory files with
    scipy as netCDF3 only.
    """
    import dask

    kwargs.setdefault("engine", "h5netcdf")
    with filesystem_errors(path), dask.config.set(scheduler="synchronous"):
        data = ds.to_netcdf(**kwargs)
    return atomic_write_bytes(path, bytes(data))


# ----------------------------------------------------------------------------------- result files
@dataclass
class RunResults:
    """The checked result files of a run folder (absent optional files are None)."""

    similarity: Any
    consistency: Any = None
    probes: Any = None
    info: dict[str, Any] = field(default_factory=dict)
    manifest: dict[str, Any] = field(default_factory=dict)


def _open_folder(path: Path) -> int | None:
    """A read-only descriptor of the folder, to lock it; None when it cannot be opened."""
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return None


def _flock_folder(fd: int, kind: int) -> None:
    """Lock a folder without waiting (BlockingIOError when another run holds it; nothing where
    the filesystem cannot lock a folder: ``.lock`` guards it there). A shared lock is a probe
    and is released at once."""
    import fcntl

    try:
        fcntl.flock(fd, kind | fcntl.LOCK_NB)
    except BlockingIOError:
        raise
    except OSError as exc:
        log.debug("cannot lock the folder itself (%s); its .lock file guards it", exc)
        return
    if kind == fcntl.LOCK_SH:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _lock_holder(fd: int) -> str:
    """The process id a run wrote into the lock file it holds ("unknown" when empty)."""
    return os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"


def _read_text(path: Path) -> str:
    """The text of ``path``; OSError for a FIFO, a device or a socket, whose read would block:
    one in place of run.json or manifest.json stopped every command that looked at the folder."""
    if path_problem(path, "file") == NOT_REGULAR:
        raise OSError(errno.EINVAL, f"not a regular file: {path}", str(path))
    return path.read_text(encoding="utf-8")


def _written_by_a_run(path: Path, keys: tuple[str, ...]) -> bool:
    """Whether ``path`` is a JSON object with ``keys`` (a run's run.json or manifest.json)."""
    try:
        data = json.loads(_read_text(path))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and all(k in data for k in keys)


def _not_a_folder(path: Path) -> str:
    """The message for an --out that exists and is not a folder: a file, or a device such as
    /dev/null (which is not "a file" to remove)."""
    if path.is_file():
        return f"{path} is a file, not a folder: pass a folder path as --out (or remove that file)"
    return f"{path} is not a folder (a device or other special file): pass a folder path as --out"


class RunFolder:
    """Every path of one run folder, atomic writes into it, its manifest, lock and schema check."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunFolder({str(self.path)!r})"

    # -- paths ---------------------------------------------------------------------------------
    @property
    def similarity(self) -> Path:
        return self.path / SIMILARITY

    @property
    def probes(self) -> Path:
        return self.path / PROBES

    @property
    def consistency(self) -> Path:
        return self.path / CONSISTENCY

    @property
    def summary(self) -> Path:
        return self.path / SUMMARY

    @property
    def controlled_tests(self) -> Path:
        """The table of :func:`repsim.stats.controlled_tests` (absent when the zoo is not crossed)."""
        return self.path / CONTROLLED_TESTS

    @property
    def info(self) -> Path:
        return self.path / INFO

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    @property
    def features(self) -> Path:
        return self.path / FEATURES

    @property
    def stages(self) -> Path:
        return self.path / STAGES

    @property
    def lock_path(self) -> Path:
        return self.path / LOCK

    def stimuli(self, dataset: str) -> Path:
        """The stimulus table of one dataset."""
        return self.path / STIMULI / f"{safe_name(dataset)}.csv"

    def class_counts(self, datasets: Iterable[str]) -> dict[str, int]:
        """Number of classes per dataset, read from the run's stimulus tables.

        Datasets without a table (a synthetic run's) are left out: their chance level is unknown.
        """
        import pandas as pd

        out = {}
        for ds in map(str, datasets):
            path = self.stimuli(ds)
            if path.is_file():
                with filesystem_errors(path, "read"):
                    out[ds] = int(pd.read_csv(path, usecols=["label"])["label"].nunique())
        return out

    def similarity_part(self, dataset: str) -> Path:
        """All measures on one dataset, before the result files are assembled."""
        return self.stages / "parts" / "similarity" / f"{safe_name(dataset)}.nc"

    def probe_part(self, dataset: str, model: str) -> Path:
        """One model's probe result on one dataset (JSON)."""
        return self.stages / "parts" / "probes" / safe_name(dataset) / f"{safe_name(model)}.json"

    def marker(self, stage: str, dataset: str, model: str | None = None) -> Path:
        """The record of one finished task: ``.stages/<stage>/<dataset>[/<model>].json``."""
        if model is None:
            return self.stages / stage / f"{safe_name(dataset)}.json"
        return self.stages / stage / safe_name(dataset) / f"{safe_name(model)}.json"

    def result_paths(self) -> dict[str, Path]:
        return {name: self.path / name for name in RESULT_FILES}

    # -- creation and the lock -----------------------------------------------------------------
    def preflight(self) -> None:
        """Check, without creating anything, that the folder can be created and written.

        Run before the config is checked, so a wrong --out costs a second, not a model check.
        """
        with filesystem_errors(self.path, "create"):  # a name too long for the filesystem
            self._preflight()

    def _preflight(self) -> None:
        existing = self.path
        while not existing.exists() and existing != existing.parent:
            existing = existing.parent
        if not existing.is_dir():
            raise RunFolderError(_not_a_folder(existing))
        if not os.access(existing, os.W_OK | os.X_OK):
            raise RunFolderError(
                f"permission denied: {existing} is not writable, so the run folder {self.path} cannot be "
                "written; make it writable (chmod u+w), or choose another --out"
            )
        if self.path.is_dir() and not self.is_run_folder():
            entries = sorted(p.name for p in self.path.iterdir())
            if entries:  # a run removes and rewrites files by name: not in someone else's folder
                raise RunFolderError(
                    f"{self.path.resolve()} holds other files ({', '.join(entries[:3])}"
                    f"{', ...' if len(entries) > 3 else ''}) and is not a run folder: pass a new or "
                    "empty folder as --out"
                )

    def is_run_folder(self) -> bool:
        """Whether a run has entered this folder: its lock, stage records, features, or a
        manifest or run.json that a run wrote. Not ``stimuli/`` or ``similarity.nc``: a user's
        own folder may hold an image folder named stimuli or an exported similarity file, and a
        run cleans up by name. For the same reason a ``run.json`` or ``manifest.json`` counts
        only with the keys a run writes: another tool's run.json made a user's folder a run
        folder, and the run then removed its summary.txt and stimuli/."""
        marks = (LOCK, STAGES, FEATURES)
        with filesystem_errors(self.path, "read"):  # a path too long for the filesystem
            return any((self.path / name).exists() for name in marks) or any(
                _written_by_a_run(self.path / name, keys)
                for name, keys in (
                    (INFO, ("status", "config_hash")),
                    (MANIFEST, ("config_hash", "files")),
                )
            )

    def create(self) -> RunFolder:
        """Create the folder (and parents); RunFolderError naming the path and fix when it cannot."""
        if self.path.exists() and not self.path.is_dir():
            raise RunFolderError(_not_a_folder(self.path))
        with filesystem_errors(self.path, "create"):
            self.path.mkdir(parents=True, exist_ok=True)
        if not os.access(self.path, os.W_OK | os.X_OK):
            raise RunFolderError(
                f"permission denied: the run folder {self.path} is not writable; make it writable "
                "(chmod u+w), or choose another --out"
            )
        return self

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Hold the folder's lock (fcntl.flock, released when this process ends, even by kill -9).

        Two locks: ``.lock``, which holds the process id for messages, and the folder itself.
        A ``.lock`` deleted during a run (it looks like a stale lock file) would let a second run
        create a new one and lock that; the folder's own lock still keeps it out. Where a
        filesystem cannot lock a folder (some network filesystems), ``.lock`` alone guards it.
        """
        import fcntl

        with filesystem_errors(self.lock_path, "lock"):
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        folder_fd = _open_folder(self.path)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                if folder_fd is not None:
                    _flock_folder(folder_fd, fcntl.LOCK_EX)
            except BlockingIOError:
                raise self._in_use(_lock_holder(fd)) from None
            with filesystem_errors(self.lock_path, "lock"):  # a full disk: named, not raw
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            try:
                yield
            finally:
                os.ftruncate(fd, 0)
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
            if folder_fd is not None:
                os.close(folder_fd)  # releases the folder's lock

    def _in_use(self, other: str | None) -> RunLockedError:
        return RunLockedError(
            f"run folder {self.path} is in use by another run (process {other}); wait for it "
            "to finish (or stop it), or choose another --out"
        )

    def check_not_in_use(self) -> None:
        """RunLockedError when another run holds the folder now: said before a run checks its
        models (seconds, minutes with downloads), not after. The lock itself is taken later
        (:meth:`lock`), which settles a race between two runs starting together."""
        if self.path.is_dir():
            other = self.locked_by()
            if other is not None:
                raise self._in_use(other)

    def check_free_space(self, needed: int, what: str, estimate: bool = False) -> None:
        """NoSpaceError when the folder's disk has less free space than ``needed`` bytes (for
        ``what``), a warning when it would be left with less than a quarter of that to spare.

        Run before the work, so a full disk stops a run in a second and not an hour into
        extraction. ``estimate``: the bytes rest on an assumed upper bound (a feature width not
        known before the model runs), so a shortfall is a warning, never a refusal: a bound must
        not stop a run that may fit.
        """
        try:
            free = shutil.disk_usage(self.path).free
        except OSError as exc:  # cannot be asked (some network filesystems): the writes will tell
            log.info("free space of %s unknown (%s); not checked", self.path, exc)
            return
        about = "an estimated" if estimate else "about"
        where = f"{self.path} (on the filesystem mounted at {_mount_point(self.path)})"
        if free < needed and estimate:
            log.warning(
                "%s has %s free and the run may need up to %s for %s: it may not fit; "
                "free space on that disk or choose another --out if it stops on a full disk",
                where,
                _size(free),
                _size(needed),
                what,
            )
            return
        if free < needed:
            raise NoSpaceError(
                f"not enough free space: the run needs {about} {_size(needed)} for {what} but "
                f"{where} has {_size(free)} free; free space on that disk, choose another --out, "
                "or make the run smaller (fewer models or datasets with select:, a lower "
                "stimuli.max_images, extract.keep_raw off), then rerun"
            )
        if free < needed * 1.25:
            log.warning(
                "%s has %s free and the run needs %s %s for %s: the disk will be nearly full",
                where,
                _size(free),
                about,
                _size(needed),
                what,
            )

    # -- writing -------------------------------------------------------------------------------
    def write_text(self, path: Path, text: str) -> str:
        """Atomically write ``text`` to ``path`` (a path of this folder); returns its SHA-256."""
        return atomic_write_bytes(path, text.encode())

    def write_json(self, path: Path, value: Any) -> str:
        return self.write_text(path, json.dumps(value, indent=1, default=str) + "\n")

    def write_netcdf(self, ds: Any, path: Path) -> str:
        return atomic_write_netcdf(ds, path)

    @property
    def _own_folders(self) -> tuple[Path, ...]:
        """The top-level folders the run writes into (each may be a link to another disk)."""
        return (self.features, self.stages, self.path / STIMULI)

    def _top(self, path: Path) -> Path:
        """The top-level entry of the run that holds ``path`` (``path`` itself outside the run)."""
        try:
            return self.path / Path(path).relative_to(self.path).parts[0]
        except (ValueError, IndexError):
            return Path(path)

    def claim_linked_entries(self) -> None:
        """Record this run folder as the owner of each top-level folder that is a symbolic link
        (features.zarr on another disk); RunFolderError before any work when another run folder
        owns it: two runs sharing one feature store would prune, overwrite and read each other's
        features (and write them at the same time, each under its own lock).

        The owner file holds the run's id and its folder's path. A copy of the run folder made
        with its links kept (``cp -r``) has the same id; while the folder the owner file names
        still has that id and links to the same folder, the copy is refused too. A run folder that
        was moved takes the store with it (the folder named there is gone)."""
        linked = [p for p in self._own_folders if p.is_symlink() and p.is_dir()]
        if not linked:
            return
        mine = self._run_id()
        here = os.path.realpath(self.path)
        record = f"{mine}\n{here}\n"
        for entry in linked:
            owner_file = entry / OWNER
            with filesystem_errors(owner_file, "read"):
                text = owner_file.read_text() if owner_file.is_file() else ""
            owner, where = ([line.strip() for line in text.splitlines()] + ["", ""])[:2]
            if owner and owner != mine:
                raise RunFolderError(
                    f"{entry} is a symbolic link to {os.readlink(entry)}, which another run folder "
                    f"uses (its {OWNER} names run {owner}; this folder is run {mine}): two runs "
                    "would prune and overwrite each other's files there; link this run to a folder "
                    f"of its own, or, if that other run folder is gone, delete {owner_file}"
                )
            if (
                owner
                and where not in ("", here)
                and _run_id_of(Path(where)) == mine
                and os.path.realpath(Path(where) / entry.name) == os.path.realpath(entry)
                and not _same_folder(Path(where), self.path)  # the same one by another path
            ):
                raise RunFolderError(
                    f"{self.path} is a copy of the run folder {where} (it has the same {RUN_ID}) "
                    f"and its {entry.name} is a link to the same folder, {os.readlink(entry)}: two "
                    "runs would prune and overwrite each other's files there; replace the copy's "
                    f"link {entry} with a copy of what it points to (or copy run folders with "
                    "their links resolved), then rerun"
                )
            if text != record:
                atomic_write_bytes(owner_file, record.encode())

    def _run_id(self) -> str:
        """This folder's random id, written on first use."""
        path = self.path / RUN_ID
        with filesystem_errors(path, "read"):
            mine = path.read_text().strip() if path.is_file() else ""
        if not mine:
            mine = uuid.uuid4().hex
            atomic_write_bytes(path, f"{mine}\n".encode())
        return mine

    def check_own_folders(self, leaving: Iterable[Path] = ()) -> None:
        """RunFolderError naming a folder of the run, below its top-level entries, that is a
        symbolic link, before any work: features and records would be read from, and new ones
        written into, another folder (another run's feature store), so the run would mix two
        configs, and cached work reached through it would be removed there at the end. Links in
        ``leaving`` (cached work the run removes, only unlinked) are no reason; a top-level entry
        may be a link (features.zarr on another disk). :meth:`remove` keeps its own guard."""
        leaving = set(leaving)
        for top in self._own_folders:
            for link in _folder_links(top, depth=_LINK_DEPTH):
                if link not in leaving:
                    raise RunFolderError(
                        f"{link} is a symbolic link to {os.readlink(link)}: a run reads and writes "
                        "only its own folders (its features and records would be read from, and "
                        "written into, another folder); replace the link with a copy of what it "
                        "points to, or remove it, then rerun"
                    )

    def remove(self, path: Path) -> bool:
        """Remove a file, folder or link of the run (True when something was there).

        A link is removed, never what it points to; a path reached through a link below the
        run's top-level entries (``features.zarr/<dataset>`` linked to another run's) is
        refused (:func:`remove_path`)."""
        with filesystem_errors(path, "remove"):
            if not (path.exists() or path.is_symlink()):
                return False
            remove_path(path, self._top(path))
        return True

    def remove_results(self, reason: str) -> list[str]:
        """Remove the result files and the manifest (they are rebuilt); the names removed."""
        removed = [
            p.name for p in (*self.result_paths().values(), self.manifest_path) if self.remove(p)
        ]
        if removed:
            log.info("%s: removed %s (%s)", self.path, ", ".join(removed), reason)
        return removed

    def result_tables(self, manifest: dict[str, Any]) -> dict[Path, bytes]:
        """The stimulus tables the results of ``manifest`` were computed from, as they are now: a
        run refused after its stimulus stage replaced some puts them back (:meth:`put_back`), so
        that the results it leaves still verify."""
        tables = {}
        for path in self._input_tables(manifest):
            try:
                tables[path] = path.read_bytes()
            except OSError:  # missing or unreadable: those results do not verify anyway
                pass
        return tables

    def _input_tables(self, manifest: dict[str, Any]) -> dict[Path, str]:
        """The stimulus tables among a manifest's inputs (the tables the analyses read beside the
        results), with the content hashes they had."""
        return {
            self.stimuli(key.removeprefix("stimuli ")): sha
            for key, sha in manifest.get("inputs", {}).items()
            if key.startswith("stimuli ")
        }

    def put_back(self, files: dict[Path, bytes]) -> None:
        """Write back each of ``files`` (path -> content) whose content has changed."""
        for path, content in files.items():
            try:
                unchanged = path.read_bytes() == content
            except OSError:
                unchanged = False
            if not unchanged:
                with filesystem_errors(path):
                    atomic_write_bytes(path, content)

    # -- manifest ------------------------------------------------------------------------------
    def read_manifest(self) -> dict[str, Any]:
        """The manifest ({} when there is none, it is unreadable or it is not of the shape a run
        writes: results are then rebuilt, and readers refuse the folder as unverifiable)."""
        try:
            value = json.loads(_read_text(self.manifest_path))
        except (OSError, ValueError):
            return {}
        return value if _well_formed(value) else {}

    def results_digest(self) -> str | None:
        """SHA-256 of the result files as the manifest lists them (run.json left out: the book
        adds its timings there): what a built book records of the results it showed. None
        without a manifest (no results)."""
        manifest = self.read_manifest()
        if not manifest:
            return None
        files = {k: v for k, v in manifest.get("files", {}).items() if k != "run.json"}
        text = json.dumps(
            {"config_hash": manifest.get("config_hash"), "files": files}, sort_keys=True
        )
        return hashlib.sha256(text.encode()).hexdigest()

    def write_manifest(self, manifest: dict[str, Any]) -> None:
        self.write_json(self.manifest_path, manifest)

    def why_no_results(self) -> str:
        """Why a folder has no results, with the command that makes them: a file given for a
        folder, a run still writing it (its lock is held), or what run.json says."""
        if self.path.exists() and not self.path.is_dir():
            return (
                f"{self.path} is a file, not a run folder: pass the folder a run wrote (its --out)"
            )
        problem = path_problem(self.path, "folder")
        if problem not in (None, DOES_NOT_EXIST):  # a link loop or a dangling link: said so
            return f"{self.path} {problem}: pass the folder a run wrote (its --out)"
        writer = self.locked_by()
        if writer is not None:
            return f"a run is writing {self.path} (process {writer}); wait for it to finish"
        try:
            info = self.read_info()
        except (RunFolderError, PathError):  # unreadable: no record to go by
            info = {}
        info = info if isinstance(info, dict) else {}
        config = info.get("config_path")
        rerun = f"`repsim run {config or 'CONFIG'} --out {self.path}`"
        refused = info.get("refused")
        if isinstance(refused, dict) and refused.get("error"):
            return (
                f"the last run into {self.path} was refused before it started (run.json: "
                f"{refused['error']}); fix the cause and rerun `repsim run "
                f"{refused.get('config_path') or 'CONFIG'} --out {self.path}`"
            )
        status = info.get("status")
        if status == "running":  # no process holds the lock: it was killed, or its machine died
            started = f" at {info['started']}" if info.get("started") else ""
            return (
                f"a run of {config or 'a config'} into {self.path} started{started} and stopped "
                f"without a record (killed, or its machine went down); rerun {rerun} to resume"
            )
        if status not in ("failed", "interrupted"):
            if not info and self._holds_other_files():  # `repsim compare .` in a checkout
                return (
                    f"{self.path} is not a run folder (no run has written it): pass the --out "
                    "folder of a run, such as runs/embedded, or make one with `repsim run "
                    "CONFIG --out NEW_FOLDER` (e.g. CONFIG = data/configs/embedded.yaml)"
                )
            return f"run the pipeline first: {rerun}" + (
                "" if config else " (e.g. CONFIG = data/configs/embedded.yaml)"
            )
        failed = info.get("failed_tasks") if isinstance(info.get("failed_tasks"), list) else []
        errors = [t["error"] for t in failed if isinstance(t, dict) and t.get("error")]
        if info.get("error"):
            errors.insert(0, info["error"])
        cause = f"; its first error: {errors[0]}" if errors else ""
        return (
            f"the run in {self.path} {status} before writing it (run.json{cause}); fix the cause "
            f"and rerun {rerun}"
        )

    def _holds_other_files(self) -> bool:
        """Whether the folder holds entries, none a run's (a user's own folder: no run.json, even
        an unreadable one, and no mark of a run)."""
        try:
            return any(self.path.iterdir()) and not self.info.exists() and not self.is_run_folder()
        except (OSError, RepsimError):
            return False

    def locked_by(self) -> str | None:
        """The process holding the folder's lock (a run writing it), or None; creates nothing.

        "unknown" when the folder is locked but its ``.lock`` was deleted (see :meth:`lock`)."""
        import fcntl

        folder_fd = _open_folder(self.path)
        if folder_fd is not None:
            try:
                _flock_folder(folder_fd, fcntl.LOCK_SH)
            except BlockingIOError:
                return self._pid_in_lock_file()
            finally:
                os.close(folder_fd)
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except OSError:  # no lock file (or none readable): no run has it
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _lock_holder(fd)
        except OSError:
            return None
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return None
        finally:
            os.close(fd)

    def _pid_in_lock_file(self) -> str:
        try:
            fd = os.open(self.lock_path, os.O_RDONLY)
        except OSError:
            return "unknown"
        try:
            return _lock_holder(fd)
        finally:
            os.close(fd)

    def read_info(self) -> dict[str, Any]:
        """``run.json`` ({} when absent)."""
        if not self.info.is_file():
            return {}
        try:
            with filesystem_errors(self.info, "read"):
                return json.loads(self.info.read_text())
        except ValueError as exc:
            raise RunFolderError(
                f"{self.info} is not valid JSON ({exc}); rerun the config into {self.path}"
            ) from exc

    def record_info(self, key: str, value: Any) -> bool:
        """Add ``key`` to ``run.json`` after the run (``repsim book`` records its timings so).

        run.json is listed in the manifest with its hash, so the entry is updated with it, under
        the folder's lock. Nothing is written (False) when run.json or the manifest is missing, or
        when run.json no longer matches its manifest entry: the run is not vouched for anymore,
        and recording would make a changed file verify again.
        """
        with self.lock():
            manifest, entry, vouched = self._info_entry()
            if entry is None:
                return False
            if not vouched:
                log.warning("%s differs from its manifest entry; %s not recorded", self.info, key)
                return False
            info = self.read_info()
            info[key] = value
            entry["sha256"] = self.write_json(self.info, info)
            self.write_manifest(manifest)
        return True

    def record_refusal(self, config: str | Path, error: str, *, held: bool = False) -> None:
        """Say in ``run.json`` that a run with ``config`` was refused before it started (a config,
        id, weights file or device that its checks rejected), and why.

        A batch job's log can be lost; the folder it was pointed at keeps the cause. Nothing of
        the folder's results changes: a new folder gets a run.json with status ``refused``; a
        folder holding a run keeps that run's record, which gains a ``refused`` entry (and its
        manifest entry the new hash, so intact results still verify). The next run that starts
        writes run.json anew. Raises RunLockedError when another run holds the folder (its
        run.json is that run's to write). ``held``: the caller holds the folder's lock already
        (a refusal found under it, before any work).
        """
        refusal = {
            "config_path": str(config),
            "error": error,
            "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self.create()
        with contextlib.nullcontext() if held else self.lock():
            manifest, entry, vouched = self._info_entry()
            try:
                info = self.read_info()
            except RunFolderError:  # not JSON: no record to keep
                info = {}
            if not isinstance(info, dict) or not info:
                info = {
                    "status": "refused",
                    "config_path": str(config),
                    "config_hash": None,
                    "failed_tasks": [],
                    "error": error,
                    "finished": refusal["at"],
                }
            info["refused"] = refusal
            digest = self.write_json(self.info, info)
            if vouched and entry is not None:
                entry["sha256"] = digest
                self.write_manifest(manifest)

    def record_interruption(self, config: str | Path, error: str, *, held: bool = False) -> bool:
        """Say in the finished run's ``run.json`` that a later run with ``config`` was interrupted
        before it replaced any result file: the record gains an ``interrupted`` entry (config
        path, error, time) and its manifest entry the new hash, so the results still verify.

        False, and nothing written, when run.json is not vouched for by the manifest (no finished
        run to keep). ``held``: the caller holds the folder's lock (the interrupted run does).
        """
        with contextlib.nullcontext() if held else self.lock():
            manifest, entry, vouched = self._info_entry()
            if entry is None or not vouched:
                return False
            info = self.read_info()
            info["interrupted"] = {
                "config_path": str(config),
                "error": error,
                "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            entry["sha256"] = self.write_json(self.info, info)
            self.write_manifest(manifest)
        return True

    def results_vouched(self, config_hash: str) -> bool:
        """Whether the manifest is that of a run of ``config_hash`` and still vouches for every
        file it lists, the stimulus tables it names, and no unlisted result file lies beside
        them: the checks of :meth:`open_results`."""
        manifest = self.read_manifest()
        if manifest.get("config_hash") != config_hash or not isinstance(
            manifest.get("files"), dict
        ):
            return False
        try:
            self._verify_manifest(manifest)
        except RunFolderError:
            return False
        return True

    def _info_entry(self) -> tuple[dict[str, Any], dict[str, Any] | None, bool]:
        """The manifest, its run.json entry (None when either is missing) and whether that
        entry vouches for the run.json on disk (same hash): run.json may be rewritten with its
        entry only then, or a changed file would verify again."""
        manifest = self.read_manifest()
        entry = manifest.get("files", {}).get(self.info.name)
        if not self.info.is_file() or not isinstance(entry, dict):
            return manifest, None, False
        return manifest, entry, sha256_file(self.info) == entry.get("sha256")

    def stale_cache(
        self, models: list[str], datasets: list[str], probes: bool = True
    ) -> list[Path]:
        """Cache entries (feature groups, task records, parts) of models or datasets not in the run,
        and every probe record and part when the run has probes off."""
        keep_ds = {safe_name(d) for d in datasets}
        keep_m = {safe_name(m) for m in models}
        stale: list[Path] = []
        if not probes:
            stale += [
                p for p in (self.stages / "probes", self.stages / "parts" / "probes") if p.exists()
            ]
        if self.features.is_dir():
            for d in sorted(self.features.iterdir()):
                if not d.is_dir():
                    continue
                if d.name not in keep_ds:
                    stale.append(d)
                    continue
                stale += [m for m in sorted(d.iterdir()) if m.is_dir() and m.name not in keep_m]
        roots = [self.path / STIMULI]
        if self.stages.is_dir():
            roots += [p for p in self.stages.iterdir() if p.is_dir() and p.name != "parts"]
            roots += [p for p in (self.stages / "parts").glob("*") if p.is_dir()]
            roots = [r for r in roots if r not in stale]
        for root in roots:
            for entry in sorted(root.iterdir()) if root.is_dir() else []:
                if root == self.path / STIMULI and not (entry.is_file() and entry.suffix == ".csv"):
                    continue  # the run writes only <dataset>.csv there: nothing else is its own
                stem = entry.name.rsplit(".", 1)[0] if entry.is_file() else entry.name
                if stem not in keep_ds:
                    stale.append(entry)
                elif entry.is_dir():
                    stale += [
                        f for f in sorted(entry.iterdir()) if f.name.rsplit(".", 1)[0] not in keep_m
                    ]
        return stale

    # -- reading result files --------------------------------------------------------------------
    def open_results(self, *, verify: bool = True) -> RunResults:
        """Open the result files, check their schema and that they belong to one run.

        Checks: similarity.nc exists with (dataset, model_a, model_b) variables; probes.nc and
        consistency.nc, when present, name the same models and datasets; with a manifest, every
        listed file exists with its recorded content hash and no unlisted result file lies beside
        them; without a readable manifest nothing can be verified and the folder is refused. A
        folder that fails a check is never read half-way: RunFolderError says how to fix it.
        """
        import xarray as xr

        with filesystem_errors(self.similarity, "read"):
            present = self.similarity.exists()
        if not present:
            raise StoreError(f"{self.similarity} does not exist: {self.why_no_results()}")
        manifest = self.read_manifest()
        if verify:
            if not isinstance(manifest.get("files"), dict):
                state = "unreadable" if self.manifest_path.exists() else "missing"
                raise RunFolderError(
                    f"{self.manifest_path} is {state}, so the result files of {self.path} cannot "
                    "be verified (the manifest records each file's content hash and is written last, "
                    "when a run finishes); rerun the config into that folder to rebuild them"
                )
            self._verify_manifest(manifest)
        try:
            similarity = xr.load_dataset(self.similarity)
            consistency = xr.load_dataset(self.consistency) if self.consistency.is_file() else None
            probes = xr.load_dataset(self.probes) if self.probes.is_file() else None
        except (OSError, ValueError) as exc:
            raise RunFolderError(
                f"a result file of {self.path} is unreadable ({exc}); rerun the config into that folder "
                "to rebuild it"
            ) from exc
        check_schema(similarity, consistency, probes, where=self.path)
        return RunResults(similarity, consistency, probes, self.read_info(), manifest)

    def _verify_manifest(self, manifest: dict[str, Any]) -> None:
        files = manifest.get("files", {})
        fix = f"rerun the same config into {self.path} to rebuild its result files"
        for name, entry in files.items():
            path = self.path / name
            if not path.exists():  # a folder in its place is named when it is read
                raise RunFolderError(f"{path} is listed in {MANIFEST} but missing; {fix}")
            if sha256_file(path) != entry.get("sha256"):
                raise RunFolderError(
                    f"{path} was changed after the run wrote it (content hash differs); {fix}"
                )
        for table, sha in self._input_tables(manifest).items():
            if not table.exists() or sha256_file(table) != sha:
                raise RunFolderError(
                    f"{table} is not the stimulus table the result files were computed from "
                    f"(missing or changed since); {fix}"
                )
        unlisted = [n for n in RESULT_FILES if n not in files and (self.path / n).exists()]
        if unlisted:
            raise RunFolderError(
                f"{', '.join(unlisted)} in {self.path} were not written by its last run "
                f"(config {manifest.get('config_hash')}); delete them or {fix}"
            )


def _well_formed(manifest: Any) -> bool:
    """Whether ``manifest`` has the shape :func:`repsim.pipeline._write_manifest` gives it: an
    object whose ``files`` map names to objects, whose ``inputs`` is an object and whose
    ``skipped`` is a list. Valid JSON of another shape (an edited file, another tool's) was read
    as a manifest and raised an AttributeError with a traceback in ``repsim run``, ``repsim
    compare`` and ``load_run``, so the rerun that the fix asks for could not run either."""
    if not isinstance(manifest, dict):
        return False
    files = manifest.get("files", {})
    return (
        isinstance(files, dict)
        and all(isinstance(entry, dict) for entry in files.values())
        and isinstance(manifest.get("inputs", {}), dict)
        and isinstance(manifest.get("skipped", []), list)
    )


def check_schema(
    similarity: Any, consistency: Any = None, probes: Any = None, where: Any = ""
) -> None:
    """Dimensions of each result file, and the same models and datasets across the three.

    Raises RunFolderError naming the file and the mismatch (e.g. an 8-model probes.nc beside a
    2-model similarity.nc).
    """
    fix = f"rerun the config into {where} so that every result file is rebuilt by one run"
    if not similarity.data_vars:
        raise RunFolderError(f"{where}/{SIMILARITY} has no measure variables; {fix}")
    for name, var in similarity.data_vars.items():
        if tuple(var.dims) != ("dataset", "model_a", "model_b"):
            raise RunFolderError(
                f"{where}/{SIMILARITY}: {name} has dims {var.dims}, not (dataset, model_a, model_b); {fix}"
            )
    models = [str(m) for m in similarity["model_a"].values]
    datasets = [str(d) for d in similarity["dataset"].values]
    if models != [str(m) for m in similarity["model_b"].values]:
        raise RunFolderError(f"{where}/{SIMILARITY}: model_a and model_b differ; {fix}")
    if probes is not None:
        for dim, want in (("model", models), ("dataset", datasets)):
            got = [str(v) for v in probes[dim].values] if dim in probes.dims else None
            if got is None or sorted(got) != sorted(want):
                raise RunFolderError(
                    f"{where}/{PROBES} has {dim}s {got} but {SIMILARITY} has {want}: the files come from "
                    f"different runs; {fix}"
                )
    if consistency is not None:
        for dim in ("dataset_a", "dataset_b"):
            got = [str(v) for v in consistency[dim].values] if dim in consistency.dims else None
            if got is None or sorted(got) != sorted(datasets):
                raise RunFolderError(
                    f"{where}/{CONSISTENCY} has datasets {got} but {SIMILARITY} has {datasets}: the files "
                    f"come from different runs; {fix}"
                )
        if "measure" in consistency.dims:
            extra = sorted(set(map(str, consistency["measure"].values)) - set(similarity.data_vars))
            if extra:
                raise RunFolderError(
                    f"{where}/{CONSISTENCY} has measures {extra} that {SIMILARITY} lacks; {fix}"
                )
        if "anchor" in consistency.dims:
            anchors = sorted(map(str, consistency["anchor"].values))
            if anchors != sorted(models):
                raise RunFolderError(
                    f"{where}/{CONSISTENCY} has anchor models {anchors} but {SIMILARITY} has {models}: the "
                    f"files come from different runs; {fix}"
                )


def unsafe_names(paths: list[Path]) -> list[str]:
    """Readable ids of cache paths (for log lines)."""
    return [unsafe_name(p.name.rsplit(".", 1)[0] if p.suffix else p.name) for p in paths]
