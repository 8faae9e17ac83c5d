"""Fingerprints of the files a run reads (weights, datasets), so that a changed input invalidates
what was computed from it.

A file is identified by the SHA-256 of its whole content, whatever its size: a size or a date
says nothing about the bytes. Hashing is remembered per process for a file whose size, dates and
inode have not changed, so a run that asks once per model and dataset reads each file once.
A folder of data (images, shards) is identified by the list of its files with their sizes,
modification times and change times: hashing every image of a large dataset at each run would cost
more than the run. A file rewritten in place gets a new change time even where a tool (an archive's
extraction, ``rsync -a``, ``os.utime``) puts its old modification time back: the change time is
set by the filesystem, never by a tool. It also moves when anything else about a file changes:
a copy or a restore from a backup, ``chmod``/``chown`` (``chmod -R a-w`` to protect a dataset),
ACLs, extended attributes or relabelling, a hard link made to it (``cp -al``). Each of these
makes the data new to a run, which then recomputes its stimulus tables and features once: the
safe side of a cache, at the cost of that recompute (hours for the study's datasets on a GPU).
"""

from __future__ import annotations

import ast
import functools
import hashlib
import os
from pathlib import Path

from repsim.errors import DatasetError, ModelError, RepsimError
from repsim.runfolder import describe_os_error


def file_fingerprint(path: str | Path | None, error: type[RepsimError] = RepsimError) -> str | None:
    """SHA-256 (hex) of a file's content; None when there is no such file.

    A file that exists but cannot be read, or that a closed folder above hides, raises ``error``,
    the class of the input it is (a :class:`ModelError` for weights, a :class:`DatasetError` for
    data), with the read fix: the culprit is that input, not the run folder."""
    if path is None:
        return None
    p = Path(path)
    try:
        st = p.stat()
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as exc:  # a folder above it closed: the input cannot be read, not absent
        raise error(describe_os_error(exc, p, "read")) from exc
    if not p.is_file():
        return None
    try:
        return _hash_file(str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)
    except OSError as exc:
        raise error(describe_os_error(exc, p, "read")) from exc


def weights_fingerprint(path: str | Path | None) -> str | None:
    """:func:`file_fingerprint` of a model's weights file; unreadable, a :class:`ModelError`.

    A weights folder (hf_transformers reads a save_pretrained folder) is identified by the names
    and contents of every file in it: a model saved again into the same folder changes it."""
    if path is not None and Path(path).is_dir():
        h = hashlib.sha256()
        root = Path(path)
        for f in sorted(p for p in root.rglob("*") if p.is_file()):
            h.update(os.fsencode(f.relative_to(root)) + b"\0")
            h.update((file_fingerprint(f, ModelError) or "").encode() + b"\0")
        return h.hexdigest()
    return file_fingerprint(path, ModelError)


@functools.lru_cache(maxsize=4096)
def _hash_file(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_fingerprint(path: str | Path) -> str | None:
    """SHA-256 of the sorted list of (relative path, size, mtime, ctime) of every file under
    ``path`` (the change time: see the module's docstring).

    Symlinked folders are followed, as the loaders follow them (images rewritten behind a link
    must change the fingerprint), each real folder once (a link back up cannot loop); names are
    hashed as the bytes the filesystem holds, so a name that is not valid UTF-8 hashes too."""
    root = Path(path)
    if not root.is_dir():
        return None
    h = hashlib.sha256()
    seen: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            rel = os.path.relpath(full, root)
            stamp = f"\0{st.st_size}\0{st.st_mtime_ns}\0{st.st_ctime_ns}\n"
            h.update(os.fsencode(rel) + stamp.encode())
    return h.hexdigest()


def data_fingerprint(spec: object) -> str | None:
    """Fingerprint of the data a dataset spec reads (``spec.data_paths()``: its ``path``, a
    user-provided ``root`` such as ImageNet for BREEDS, option files such as a class map): each
    file's content, each folder's listing. None when the spec names no local data (a URL, or a
    torchvision ``root``, which the library writes and checks itself). A file that cannot be read
    is a :class:`DatasetError` naming it."""
    paths = spec.data_paths() if hasattr(spec, "data_paths") else {}
    if not paths:
        return None
    h = hashlib.sha256()
    named = f"dataset '{spec.id}': " if hasattr(spec, "id") else ""
    for role, path in sorted(paths.items()):
        p = Path(path)
        try:
            folder = p.is_dir()
        except OSError as exc:  # is_dir raises for a closed folder above (EACCES), not for absence
            raise DatasetError(named + describe_os_error(exc, p, "read")) from exc
        try:
            content = folder_fingerprint(p) if folder else file_fingerprint(p, DatasetError)
        except DatasetError as exc:
            raise DatasetError(named + str(exc)) from exc
        h.update(f"{role}\0{content}\n".encode())
    return h.hexdigest()


def code_fingerprint(*modules: str) -> str:
    """SHA-256 of the package's own source, so that what other code wrote is not kept as current.

    With no argument: every ``repsim/**/*.py`` (the result files, which any module can shape).
    With module names (``"repsim.measures"``): the source of those modules, of every module of a
    named package, and of every repsim module they import, directly or not. A cached stage keyed
    on it is redone when the code that computes it changes, and only then: an edit to the book or
    the plots leaves the features alone. The package's ``__init__`` is not followed; it only
    re-exports the public API.
    """
    return _code_fingerprint(tuple(modules))


@functools.lru_cache(maxsize=64)
def _code_fingerprint(modules: tuple[str, ...]) -> str:
    root = Path(__file__).resolve().parent
    files = sorted(root.rglob("*.py")) if not modules else source_files(root, modules)
    h = hashlib.sha256()
    for path in files:
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def source_files(root: Path, modules: tuple[str, ...]) -> list[Path]:
    """The files of ``modules`` (dotted names in the package at ``root``) and of every module of
    the package that they import, found by reading their ``import`` statements, including those
    inside functions. A named package stands for all its modules: some are loaded by name."""
    package = root.name
    seen: set[Path] = set()
    todo = [f for name in modules for f in _files_of(root, package, name, whole=True)]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imported(path, root, package):
            todo.extend(_files_of(root, package, name, whole=False))
    return sorted(seen)


def _files_of(root: Path, package: str, name: str, whole: bool) -> list[Path]:
    parts = name.split(".")
    if parts[0] != package or len(parts) == 1:
        return []
    where = root.joinpath(*parts[1:])
    if where.is_dir() and (where / "__init__.py").is_file():
        if whole:
            return sorted(where.rglob("*.py"))
        # an imported package runs its __init__ and the __init__ of every package above it
        return [where / "__init__.py"]
    if where.with_suffix(".py").is_file():
        return [where.with_suffix(".py")]
    return []


def _imported(path: Path, root: Path, package: str) -> set[str]:
    """Dotted names of the package's modules that ``path`` imports (``from a import b`` gives
    ``a`` and ``a.b``, since ``b`` may be a module), and the packages above it, whose
    ``__init__`` runs first."""
    rel = path.relative_to(root).with_suffix("")
    here = [package, *rel.parts]
    if here[-1] == "__init__":
        here = here[:-1]
    else:
        here = here[:-1]  # the package holding this module
    names: set[str] = {".".join(here[:i]) for i in range(2, len(here) + 1)}
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
    return {n for n in names if n.split(".")[0] == package}
