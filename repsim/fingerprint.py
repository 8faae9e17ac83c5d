"""Fingerprints of the files a run reads (weights, datasets), so that a changed input invalidates
what was computed from it.

A file is identified by the SHA-256 of its whole content, whatever its size: a size or a date
says nothing about the bytes. Hashing is remembered per process for a file whose size, dates and
inode have not changed, so a run that asks once per model and dataset reads each file once.
A folder of data (images, shards) is identified by the list of its files with their sizes and
modification times: hashing every image of a large dataset at each run would cost more than the
run, and a file replaced in place gets a new modification time.
"""

from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path


def file_fingerprint(path: str | Path | None) -> str | None:
    """SHA-256 (hex) of a file's content; None when there is no such file."""
    if path is None:
        return None
    p = Path(path)
    try:
        st = p.stat()
    except OSError:
        return None
    if not p.is_file():
        return None
    return _hash_file(str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino)


@functools.lru_cache(maxsize=4096)
def _hash_file(path: str, size: int, mtime_ns: int, ctime_ns: int, inode: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def folder_fingerprint(path: str | Path) -> str | None:
    """SHA-256 of the sorted list of (relative path, size, mtime) of every file under ``path``."""
    root = Path(path)
    if not root.is_dir():
        return None
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            try:
                st = os.stat(full)
            except OSError:
                continue
            rel = os.path.relpath(full, root)
            h.update(f"{rel}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def data_fingerprint(spec: object) -> str | None:
    """Fingerprint of the data a dataset spec points at through ``path``: the file's content, or
    the folder's listing. A ``root`` that a library manages (torchvision, ImageNet for BREEDS) is
    identified by the spec alone: such roots are written by their library, not edited by hand."""
    path = getattr(spec, "path", None)
    if path is None:
        return None
    p = Path(path)
    return file_fingerprint(p) if p.is_file() else folder_fingerprint(p)


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """SHA-256 of the package's own source (every ``repsim/**/*.py``, by relative path), so result
    files written by other code, a commit or an uncommitted edit, are not kept as current."""
    root = Path(__file__).resolve().parent
    h = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        h.update(str(path.relative_to(root)).encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()
