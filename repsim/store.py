"""The feature store (zarr) and atomic result files (netCDF).

Layout: one zarr group per ``(dataset, model)`` under ``ROOT/<dataset>/<model>`` with arrays
``features`` (n, dim) float32 (L2-normalised), optional ``raw``, ``ids`` (utf-8 bytes, one row per
stimulus) and ``done`` (one flag per chunk of rows). A group is created complete with its ids and
attributes in a temporary folder and renamed into place, so readers never see half a group;
rows are written chunk by chunk (zarr writes each chunk file atomically) and a chunk's ``done``
flag is set only after its rows are written, so a killed extraction resumes from the last complete
chunk. Different models live in different folders, so concurrent writers do not touch the same
files. A finished group is sealed: the SHA-256 of its ids and features is kept in its attributes
and checked on every read, so a deleted chunk (which zarr would read as NaN) or a flipped byte is
an error, never a silent number. This module does not import torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import zarr

from repsim.errors import StoreError
from repsim.runfolder import atomic_write_netcdf, safe_name

log = logging.getLogger(__name__)

_GROUP_JSON = {"zarr_format": 3, "node_type": "group", "attributes": {}}


def _key(name: str) -> str:
    """A folder-safe form of a dataset or model id (reversible; never a separator or leading dot)."""
    return safe_name(name)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _ensure_group(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    meta = path / "zarr.json"
    if not meta.exists():
        _atomic_write_text(meta, json.dumps(_GROUP_JSON))


def encode_ids(ids: Sequence[str]) -> np.ndarray:
    """Ids as a zero-padded (n, width) uint8 array of utf-8 bytes (a stable zarr dtype)."""
    raw = [str(i).encode("utf-8") for i in ids]
    width = max((len(b) for b in raw), default=1) or 1
    out = np.zeros((len(raw), width), dtype=np.uint8)
    for row, b in enumerate(raw):
        out[row, : len(b)] = np.frombuffer(b, dtype=np.uint8)
    return out


def decode_ids(arr: np.ndarray) -> np.ndarray:
    """Inverse of :func:`encode_ids` (an object array of str)."""
    arr = np.ascontiguousarray(arr, dtype=np.uint8)
    flat = arr.view(f"S{arr.shape[1]}").ravel()
    return np.array([b.decode("utf-8") for b in flat], dtype=object)


def check_ids(ids: Sequence[str]) -> list[str]:
    """Stimulus ids as a list of unique strings, or StoreError naming a duplicate."""
    ids = [str(i) for i in ids]
    if len(set(ids)) != len(ids):
        seen: set[str] = set()
        dup = next(i for i in ids if i in seen or seen.add(i))
        raise StoreError(f"stimulus ids must be unique; {dup!r} appears more than once")
    return ids


class FeatureWriter:
    """Writes the chunks of one (dataset, model) group; obtained from :meth:`FeatureStore.writer`."""

    def __init__(self, group: zarr.Group) -> None:
        self.group = group
        self.chunk_rows = int(group.attrs["chunk_rows"])
        self.n = int(group.attrs["n"])
        self.n_chunks = int(group.attrs["n_chunks"])
        self.keep_raw = "raw" in group

    def pending_chunks(self) -> list[int]:
        """Chunks without a ``done`` flag, in order."""
        done = self.group["done"][:]
        return [i for i in range(self.n_chunks) if not done[i]]

    def rows(self, chunk: int) -> slice:
        return slice(chunk * self.chunk_rows, min((chunk + 1) * self.chunk_rows, self.n))

    def write_chunk(self, chunk: int, features: np.ndarray, raw: np.ndarray | None = None) -> None:
        """Write the rows of ``chunk`` then mark it done (the flag is the commit point)."""
        rows = self.rows(chunk)
        expected = (rows.stop - rows.start, self.group["features"].shape[1])
        if features.shape != expected:
            raise StoreError(f"chunk {chunk} must have shape {expected}, got {features.shape}")
        self.group["features"][rows] = features.astype(np.float32, copy=False)
        if self.keep_raw:
            if raw is None:
                raise StoreError("this group keeps raw features; pass raw= for every chunk")
            self.group["raw"][rows] = raw.astype(np.float32, copy=False)
        self.group["done"][chunk] = 1

    @property
    def complete(self) -> bool:
        return not self.pending_chunks()


class FeatureStore:
    """A zarr feature store with one group per (dataset, model), rows keyed by stimulus id."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        _ensure_group(self.path)

    # -- layout -------------------------------------------------------------------------------
    def _dir(self, dataset: str, model: str) -> Path:
        return self.path / _key(dataset) / _key(model)

    def _open(self, dataset: str, model: str) -> zarr.Group | None:
        d = self._dir(dataset, model)
        if not (d / "zarr.json").exists():
            return None
        try:
            return zarr.open_group(str(d), mode="r+")
        except Exception as exc:
            raise StoreError(
                f"feature group {d} is unreadable ({exc}); delete that folder to recompute it"
            ) from exc

    def datasets(self) -> list[str]:
        return sorted(
            unquote(p.name)
            for p in self.path.iterdir()
            if not p.name.startswith(".") and (p / "zarr.json").exists()
        )

    def models(self, dataset: str) -> list[str]:
        d = self.path / _key(dataset)
        if not d.is_dir():
            return []
        return sorted(
            unquote(p.name)
            for p in d.iterdir()
            if not p.name.startswith(".") and (p / "zarr.json").exists()
        )

    # -- checksums ----------------------------------------------------------------------------
    def checksum(self, dataset: str, model: str) -> str | None:
        """SHA-256 of a complete group's ids and feature values (None when there is no complete group).

        Hashing the decoded values, not the chunk files, catches every kind of damage: a deleted
        chunk (zarr would read its fill value), a flipped byte, a truncated file. StoreError when the
        group cannot be read at all.
        """
        group = self._open(dataset, model)
        try:
            if group is None or not FeatureWriter(group).complete:
                return None
            return _content_hash(group)
        except Exception as exc:  # noqa: BLE001 - any decoding failure means a damaged group
            raise StoreError(
                f"feature group {self._dir(dataset, model)} is unreadable ({exc})"
            ) from exc

    def seal(self, dataset: str, model: str) -> str:
        """Record the checksum of a complete group in its attributes; :meth:`read` verifies it."""
        digest = self.checksum(dataset, model)
        if digest is None:
            raise StoreError(
                f"features of {model!r} on {dataset!r} are incomplete; they cannot be sealed"
            )
        group = self._open(dataset, model)
        group.attrs["sha256"] = digest
        return digest

    # -- reading ------------------------------------------------------------------------------
    def has(self, dataset: str, model: str) -> bool:
        """Whether the features of ``model`` on ``dataset`` are complete."""
        group = self._open(dataset, model)
        return group is not None and FeatureWriter(group).complete

    def _complete_group(self, dataset: str, model: str) -> zarr.Group:
        group = self._open(dataset, model)
        if group is None:
            raise StoreError(
                f"no features for model {model!r} on dataset {dataset!r} in {self.path}; run the extraction first"
            )
        pending = FeatureWriter(group).pending_chunks()
        if pending:
            raise StoreError(
                f"features of {model!r} on {dataset!r} are incomplete ({len(pending)} chunks missing); "
                "rerun the extraction to resume"
            )
        return group

    def attrs(self, dataset: str, model: str) -> dict[str, Any]:
        """The group's attributes: spec, pretrained_cfg, versions, device, embed_dim, dtype, ..."""
        group = self._open(dataset, model)
        if group is None:
            raise StoreError(
                f"no features for model {model!r} on dataset {dataset!r} in {self.path}"
            )
        return dict(group.attrs)

    def ids(self, dataset: str, model: str) -> np.ndarray:
        group = self._complete_group(dataset, model)
        return decode_ids(group["ids"][:])

    def read(
        self, dataset: str, model: str, ids: Sequence[str] | None = None, *, raw: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(ids, features)`` with rows in the order of ``ids`` (all stored rows when None)."""
        group = self._complete_group(dataset, model)
        fix = "rerun `repsim run` on the run folder to re-extract them"
        sealed = group.attrs.get("sha256")
        try:
            id_bytes = group["ids"][:]
            normed = group["features"][:]
            if sealed is not None and _content_hash(group, id_bytes, normed) != sealed:
                raise StoreError(
                    f"features of {model!r} on {dataset!r} are damaged (checksum differs from the one "
                    f"recorded when they were written); {fix}"
                )
            stored = decode_ids(id_bytes)
            if raw and "raw" not in group:
                raise StoreError(
                    f"{model!r} on {dataset!r} has no raw features; extract with keep_raw=True"
                )
            feats = group["raw"][:] if raw else normed
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - a chunk that does not decode
            raise StoreError(
                f"features of {model!r} on {dataset!r} are unreadable ({exc}); {fix}"
            ) from exc
        empty = np.isnan(feats).all(axis=1) if feats.size else np.zeros(0, dtype=bool)
        if empty.any():
            # a missing chunk file reads as the fill value (NaN): never hand it on as features
            raise StoreError(
                f"features of {model!r} on {dataset!r} have {int(empty.sum())} rows with no data "
                f"(missing chunk files); {fix}"
            )
        if ids is None:
            return stored, feats
        rows = self._rows_of(stored, ids, dataset, model)
        return np.array([str(i) for i in ids], dtype=object), feats[rows]

    def iter_rows(
        self, dataset: str, model: str, ids: Sequence[str]
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The rows of ``ids``, one stored chunk at a time: ``(positions in ids, features)``.

        For a split too large to hold whole (and again as a selection) in memory: only one stored
        chunk is read at a time. The group's checksum is computed along the way and checked after
        the last chunk, so a consumer must take every chunk before it uses what it built; a
        damaged or partly missing group raises :class:`StoreError` there, as :meth:`read` does.
        """
        group = self._complete_group(dataset, model)
        fix = "rerun `repsim run` on the run folder to re-extract them"
        try:
            id_bytes = group["ids"][:]
            feats = group["features"]
            n, step = int(feats.shape[0]), int(feats.chunks[0])
            rows = self._rows_of(decode_ids(id_bytes), ids, dataset, model)
            if len(set(rows.tolist())) != len(rows):
                raise StoreError(
                    f"iter_rows of {model!r} on {dataset!r}: some stimulus ids are repeated; "
                    "pass each id once (read() repeats rows)"
                )
            position = np.full(n, -1, dtype=np.int64)
            position[rows] = np.arange(len(rows))
            h = _hash_start(id_bytes, feats.shape, feats.dtype)
            for start in range(0, n, step):
                block = feats[start : start + step]
                h.update(np.ascontiguousarray(block).tobytes())
                if np.isnan(block).all(axis=1).any():
                    raise StoreError(
                        f"features of {model!r} on {dataset!r} have rows with no data (missing "
                        f"chunk files); {fix}"
                    )
                take = np.nonzero(position[start : start + step] >= 0)[0]
                if take.size:
                    yield position[start + take], block[take]
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - a chunk that does not decode
            raise StoreError(
                f"features of {model!r} on {dataset!r} are unreadable ({exc}); {fix}"
            ) from exc
        sealed = group.attrs.get("sha256")
        if sealed is not None and h.hexdigest() != sealed:
            raise StoreError(
                f"features of {model!r} on {dataset!r} are damaged (checksum differs from the one "
                f"recorded when they were written); {fix}"
            )

    @staticmethod
    def _rows_of(stored: np.ndarray, ids: Sequence[str], dataset: str, model: str) -> np.ndarray:
        """Row numbers of ``ids`` among the stored ids; StoreError naming the missing ones."""
        index = {s: i for i, s in enumerate(stored)}
        wanted = [str(i) for i in ids]
        missing = [i for i in wanted if i not in index]
        if missing:
            raise StoreError(
                f"{len(missing)} stimulus ids are not in the features of {model!r} on {dataset!r} "
                f"(first: {missing[:5]}); re-extract with the current stimulus table"
            )
        return np.array([index[i] for i in wanted], dtype=np.int64)

    # -- writing ------------------------------------------------------------------------------
    def writer(self, dataset: str, model: str, ids: Sequence[str]) -> FeatureWriter | None:
        """The writer of an existing group for these ids (to resume), or None if there is none.

        StoreError when the stored ids differ (the stimulus table changed): delete the group.
        """
        group = self._open(dataset, model)
        if group is None:
            return None
        stored = decode_ids(group["ids"][:])
        if list(stored) != [str(i) for i in ids]:
            raise StoreError(
                f"stored features of {model!r} on {dataset!r} were extracted for other stimulus ids; "
                f"delete {self._dir(dataset, model)} (or pass overwrite=True) to recompute"
            )
        return FeatureWriter(group)

    def create(
        self,
        dataset: str,
        model: str,
        ids: Sequence[str],
        dim: int,
        *,
        chunk_rows: int,
        attrs: Mapping[str, Any] | None = None,
        keep_raw: bool = False,
        overwrite: bool = False,
    ) -> FeatureWriter:
        """Create the group of (dataset, model) atomically and return its writer."""
        ids = check_ids(ids)
        final = self._dir(dataset, model)
        if overwrite and final.exists():
            shutil.rmtree(final)
        existing = self.writer(dataset, model, ids)
        if existing is not None:
            return existing
        _ensure_group(final.parent)
        n = len(ids)
        n_chunks = max(1, -(-n // chunk_rows))
        # built beside its final place (same folder, hidden name) and renamed: no temp folder is
        # left behind, and readers skip hidden names
        tmp = final.parent / f".{final.name}.{uuid.uuid4().hex}.tmp"
        group = zarr.open_group(str(tmp), mode="w")
        meta = {
            **dict(attrs or {}),
            "dataset": dataset,
            "model": model,
            "n": n,
            "embed_dim": int(dim),
            "dtype": "float32",
            "chunk_rows": int(chunk_rows),
            "n_chunks": n_chunks,
            "l2_normalised": True,
        }
        group.attrs.update(json.loads(json.dumps(meta, default=str)))
        for name in ("features", "raw") if keep_raw else ("features",):
            group.create_array(
                name, shape=(n, dim), chunks=(chunk_rows, dim), dtype="float32", fill_value=np.nan
            )
        enc = encode_ids(ids)
        group.create_array("ids", shape=enc.shape, chunks=enc.shape, dtype="uint8")[:] = enc
        group.create_array("done", shape=(n_chunks,), chunks=(1,), dtype="uint8", fill_value=0)
        try:
            os.rename(tmp, final)
        except OSError:
            # another writer created the same group first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
            if not (final / "zarr.json").exists():
                raise
        return FeatureWriter(zarr.open_group(str(final), mode="r+"))

    def delete(self, dataset: str, model: str) -> None:
        shutil.rmtree(self._dir(dataset, model), ignore_errors=True)


def _content_hash(
    group: zarr.Group, ids: np.ndarray | None = None, features: np.ndarray | None = None
) -> str:
    """SHA-256 of a group's ids and (normalised) features, from arrays already read when given."""
    ids = group["ids"][:] if ids is None else ids
    features = group["features"][:] if features is None else features
    h = _hash_start(ids, features.shape, features.dtype)
    h.update(np.ascontiguousarray(features).tobytes())
    return h.hexdigest()


def _hash_start(ids: np.ndarray, shape: tuple[int, ...], dtype: Any) -> Any:
    """The content hash up to the feature bytes, which follow in row order (whole or by chunk)."""
    h = hashlib.sha256()
    ids = np.ascontiguousarray(ids)
    h.update(f"ids{ids.shape}{ids.dtype}".encode())
    h.update(ids.tobytes())
    h.update(f"features{tuple(shape)}{np.dtype(dtype)}".encode())
    return h


def write_netcdf_atomic(ds: Any, path: str | Path, **kwargs: Any) -> Path:
    """Write an xarray Dataset to ``path`` via a temporary file and ``os.replace`` (mode 0644)."""
    atomic_write_netcdf(ds, path, **kwargs)
    return Path(path)
