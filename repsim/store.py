"""The feature store (zarr) and atomic result files (netCDF).

Layout: one zarr group per ``(dataset, model)`` under ``ROOT/<dataset>/<model>`` with arrays
``features`` (n, dim) float32 (L2-normalised), optional ``raw``, ``ids`` (utf-8 bytes, one row per
stimulus), ``done`` (one flag per chunk of rows) and ``chunk_sha256`` (the SHA-256 of each chunk's
rows as written). A group is created complete with its ids and attributes in a temporary folder
and renamed into place, so readers never see half a group; rows are written chunk by chunk (zarr
writes each chunk file atomically), then the chunk's digest, and its ``done`` flag is set last, so
a killed extraction resumes from the last complete chunk. A resumed group's written chunks are
checked against their digests first (:meth:`FeatureStore.writer`): one that does not decode or
hash to its digest is extracted again, never trusted. Different models live in different folders,
so concurrent writers do not touch the same files. Every array is compressed with zstd's frame
checksum on, so a flipped bit in a chunk file is a decoding error. A finished group is sealed: the
SHA-256 of its ids, features and raw features is kept in its attributes and checked on every read,
so a deleted chunk (which zarr would read as NaN) or a flipped byte is an error, never a silent
number; an unsealed group is checked against its chunk digests. Groups written before chunk
digests were kept still read (their missing rows are still an error) but cannot be verified.
This module does not import torch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import zarr
from zarr.codecs import ZstdCodec

from repsim.errors import StoreError
from repsim.runfolder import (
    atomic_write_netcdf,
    filesystem_errors,
    remove_path,
    safe_name,
    temporary_name,
)

log = logging.getLogger(__name__)

_GROUP_JSON = {"zarr_format": 3, "node_type": "group", "attributes": {}}
#: zarr's default codec (zstd level 0) with the frame checksum on: a flipped bit in a chunk file
#: fails to decode instead of decoding to other floats (the decoded values are the same as without)
_COMPRESSOR = ZstdCodec(level=0, checksum=True)
#: the array of per-chunk digests (absent in groups written before they were kept)
_DIGESTS = "chunk_sha256"
#: the attribute listing the arrays a seal covers (absent: sealed before raw was covered)
_COVERS = "sha256_covers"


def _key(name: str) -> str:
    """A folder-safe form of a dataset or model id (reversible; never a separator or leading dot)."""
    return safe_name(name)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(temporary_name(path.name))
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:  # a full disk leaves no half-written temporary file
        tmp.unlink(missing_ok=True)


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


#: The fix for a damaged or unreadable group: a rerun checks every group it reuses and extracts
#: a damaged one again by itself (nothing to delete first).
REEXTRACT = "rerun `repsim run` on the run folder: it extracts that group again"


class FeatureWriter:
    """Writes the chunks of one (dataset, model) group; obtained from :meth:`FeatureStore.writer`."""

    def __init__(self, group: zarr.Group) -> None:
        self.group = group
        self.chunk_rows = int(group.attrs["chunk_rows"])
        self.n = int(group.attrs["n"])
        self.n_chunks = int(group.attrs["n_chunks"])
        self.keep_raw = "raw" in group
        #: whether each chunk's digest is kept (groups written before they were: False)
        self.verifiable = _DIGESTS in group

    def _done(self) -> np.ndarray:
        try:
            return self.group["done"][:]
        except Exception as exc:  # noqa: BLE001 - a flag chunk that does not decode
            where = f"{self.group.attrs.get('model')!r} on {self.group.attrs.get('dataset')!r}"
            raise StoreError(
                f"the done flags of the features of {where} are unreadable ({exc}); {REEXTRACT}"
            ) from exc

    def pending_chunks(self) -> list[int]:
        """Chunks without a ``done`` flag, in order."""
        done = self._done()
        return [i for i in range(self.n_chunks) if not done[i]]

    def rows(self, chunk: int) -> slice:
        return slice(chunk * self.chunk_rows, min((chunk + 1) * self.chunk_rows, self.n))

    def write_chunk(self, chunk: int, features: np.ndarray, raw: np.ndarray | None = None) -> None:
        """Write the rows of ``chunk`` then mark it done (the flag is the commit point)."""
        rows = self.rows(chunk)
        expected = (rows.stop - rows.start, self.group["features"].shape[1])
        if features.shape != expected:
            raise StoreError(f"chunk {chunk} must have shape {expected}, got {features.shape}")
        features = features.astype(np.float32, copy=False)
        self.group["features"][rows] = features
        if self.keep_raw:
            if raw is None:
                raise StoreError("this group keeps raw features; pass raw= for every chunk")
            raw = raw.astype(np.float32, copy=False)
            self.group["raw"][rows] = raw
        if self.verifiable:
            self.group[_DIGESTS][chunk] = _chunk_digest(features, raw if self.keep_raw else None)
        self.group["done"][chunk] = 1

    def damaged_chunks(
        self, features: np.ndarray | None = None, raw: np.ndarray | None = None
    ) -> list[int] | None:
        """Done chunks whose rows do not decode or do not hash to the digest recorded when they
        were written, in order; None when the group keeps no digests (it cannot be verified).

        ``features`` and ``raw``: the whole arrays, when already read (else read chunk by chunk,
        so one chunk that does not decode is reported, not raised).
        """
        if not self.verifiable:
            return None
        done = self._done()
        try:
            digests = self.group[_DIGESTS][:]
        except Exception:  # noqa: BLE001 - digests that do not decode verify nothing
            return [c for c in range(self.n_chunks) if done[c]]
        bad = []
        for chunk in range(self.n_chunks):
            if not done[chunk]:
                continue
            rows = self.rows(chunk)
            try:
                f = self.group["features"][rows] if features is None else features[rows]
                r = None
                if self.keep_raw:
                    r = self.group["raw"][rows] if raw is None else raw[rows]
            except Exception:  # noqa: BLE001 - a chunk that does not decode is damaged
                bad.append(chunk)
                continue
            if not np.array_equal(digests[chunk], _chunk_digest(f, r)):
                bad.append(chunk)
        return bad

    def redo(self, chunks: Sequence[int]) -> None:
        """Clear the ``done`` flags of ``chunks``: they are pending again (extracted again)."""
        for chunk in chunks:
            self.group["done"][chunk] = 0

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
        with filesystem_errors(d, "read"):
            if not (d / "zarr.json").exists():
                return None
        try:
            return zarr.open_group(str(d), mode="r+")
        except Exception as exc:
            raise StoreError(f"feature group {d} is unreadable ({exc}); {REEXTRACT}") from exc

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
    def checksum(self, dataset: str, model: str, *, sealed_only: bool = False) -> str | None:
        """SHA-256 of a complete group's ids, feature and raw feature values (None when there is
        no complete group); StoreError when the group is sealed and the seal is not this hash,
        and with ``sealed_only`` when it has no seal: the readers of a run's results take a group
        only by its seal, so the pipeline must not keep an unsealed one as finished.

        Hashing the decoded values, not the chunk files, catches every kind of damage: a deleted
        chunk (zarr would read its fill value), a flipped byte, a truncated file. StoreError when the
        group cannot be read at all. A group without raw features hashes as it always has; one with
        them sealed before they were covered hashes differently now (so it is extracted again).
        """
        group = self._open(dataset, model)
        try:
            if group is None or not FeatureWriter(group).complete:
                return None
            digest = _content_hash(*_read_all(group))
        except Exception as exc:  # noqa: BLE001 - any decoding failure means a damaged group
            raise StoreError(
                f"feature group {self._dir(dataset, model)} is unreadable ({exc})"
            ) from exc
        sealed = group.attrs.get("sha256")
        if sealed is None and sealed_only:
            raise StoreError(
                f"feature group {self._dir(dataset, model)} is complete but has no seal (its "
                "zarr.json was altered or replaced): its content is checked and sealed again"
            )
        if sealed is not None and sealed != digest:
            # :meth:`read` checks the seal: a group whose seal does not fit its content (an
            # altered or foreign zarr.json) would pass here and be refused by every reader
            raise StoreError(
                f"feature group {self._dir(dataset, model)} does not match its seal (a chunk was "
                "changed or deleted, or its zarr.json altered or copied from another group)"
            )
        return digest

    def seal(self, dataset: str, model: str) -> str:
        """Record the checksum of a complete group in its attributes; :meth:`read` verifies it.

        StoreError, and no seal, when a chunk does not hash to the digest recorded when it was
        written: a damaged chunk is never sealed.
        """
        group = self._open(dataset, model)
        if group is None or not FeatureWriter(group).complete:
            raise StoreError(
                f"features of {model!r} on {dataset!r} are incomplete; they cannot be sealed"
            )
        try:
            ids, features, raw = _read_all(group)
            damaged = FeatureWriter(group).damaged_chunks(features, raw)
        except Exception as exc:  # noqa: BLE001 - any decoding failure means a damaged group
            raise StoreError(
                f"feature group {self._dir(dataset, model)} is unreadable ({exc}); it cannot be sealed"
            ) from exc
        if damaged:
            raise StoreError(
                f"features of {model!r} on {dataset!r} are damaged (chunks {damaged} differ from "
                "the checksums recorded when they were written); they cannot be sealed"
            )
        digest = _content_hash(ids, features, raw)
        group.attrs.update(
            {"sha256": digest, _COVERS: ["ids", "features"] + (["raw"] if raw is not None else [])}
        )
        return digest

    def has_chunk_digests(self, dataset: str, model: str) -> bool:
        """Whether the group keeps a digest of each chunk, so a resume can verify what it trusts
        (False for a missing group and for one written before digests were kept)."""
        group = self._open(dataset, model)
        return group is not None and FeatureWriter(group).verifiable

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
        writer = FeatureWriter(group)
        # what is checked: a sealed group against its seal (raw too, if the seal covers it), an
        # unsealed one against its chunk digests (raw too); one with neither only for missing rows
        covers_raw = "raw" in group.attrs.get(_COVERS, ())
        if raw and "raw" not in group:
            raise StoreError(
                f"{model!r} on {dataset!r} has no raw features; extract with keep_raw=True"
            )
        if raw and sealed is not None and not covers_raw:
            raise StoreError(
                f"raw features of {model!r} on {dataset!r} were sealed without a checksum of "
                f"them, so they cannot be verified; {fix}"
            )
        try:
            id_bytes = group["ids"][:]
            normed = group["features"][:]
            need_raw = raw or (covers_raw if sealed is not None else writer.verifiable)
            raw_values = group["raw"][:] if need_raw and "raw" in group else None
            if sealed is not None:
                hashed = _content_hash(id_bytes, normed, raw_values if covers_raw else None)
                if hashed != sealed:
                    raise StoreError(
                        f"features of {model!r} on {dataset!r} are damaged (checksum differs from "
                        f"the one recorded when they were written); {fix}"
                    )
            stored = decode_ids(id_bytes)
            feats = raw_values if raw else normed
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - a chunk that does not decode
            raise StoreError(
                f"features of {model!r} on {dataset!r} are unreadable ({exc}); {fix}"
            ) from exc
        for values in (normed, raw_values):
            if values is None:
                continue
            empty = np.isnan(values).all(axis=1) if values.size else np.zeros(0, dtype=bool)
            if empty.any():
                # a missing chunk file reads as the fill value (NaN): never hand it on as features
                raise StoreError(
                    f"features of {model!r} on {dataset!r} have {int(empty.sum())} rows with no "
                    f"data (missing chunk files); {fix}"
                )
        if sealed is None:
            damaged = writer.damaged_chunks(normed, raw_values)
            if damaged:
                raise StoreError(
                    f"features of {model!r} on {dataset!r} are damaged (chunks {damaged} differ "
                    f"from the checksums recorded when they were written); {fix}"
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
        sealed = group.attrs.get("sha256")
        writer = FeatureWriter(group)
        covers_raw = sealed is not None and "raw" in group.attrs.get(_COVERS, ())
        try:
            # an unsealed group: each chunk against its digest before any of its rows is handed on
            digests = group[_DIGESTS][:] if sealed is None and writer.verifiable else None
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
            for chunk, start in enumerate(range(0, n, step)):
                block = feats[start : start + step]
                h.update(np.ascontiguousarray(block).tobytes())
                if np.isnan(block).all(axis=1).any():
                    raise StoreError(
                        f"features of {model!r} on {dataset!r} have rows with no data (missing "
                        f"chunk files); {fix}"
                    )
                if digests is not None:
                    raw_block = group["raw"][start : start + step] if writer.keep_raw else None
                    if not np.array_equal(digests[chunk], _chunk_digest(block, raw_block)):
                        raise StoreError(
                            f"features of {model!r} on {dataset!r} are damaged (chunk {chunk} "
                            f"differs from the checksum recorded when it was written); {fix}"
                        )
                take = np.nonzero(position[start : start + step] >= 0)[0]
                if take.size:
                    yield position[start + take], block[take]
            if covers_raw:  # the seal covers the raw features too: hashed after the features
                raw_values = group["raw"]
                _hash_raw_header(h, raw_values.shape, raw_values.dtype)
                for start in range(0, n, step):
                    h.update(np.ascontiguousarray(raw_values[start : start + step]).tobytes())
        except StoreError:
            raise
        except Exception as exc:  # noqa: BLE001 - a chunk that does not decode
            raise StoreError(
                f"features of {model!r} on {dataset!r} are unreadable ({exc}); {fix}"
            ) from exc
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

        The written chunks of an unsealed group are checked against their digests first: one that
        does not decode or hash to its digest loses its ``done`` flag, so it is written again.
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
        writer = FeatureWriter(group)
        if "sha256" in group.attrs:
            return writer  # sealed: every read checks the seal
        damaged = writer.damaged_chunks()
        if damaged is None:
            log.info(
                "features of %r on %r were written without chunk checksums: their written chunks "
                "cannot be verified (delete %s to recompute them)",
                model,
                dataset,
                self._dir(dataset, model),
            )
        elif damaged:
            log.warning(
                "features of %r on %r: chunks %s do not match the checksums recorded when they "
                "were written; they are extracted again",
                model,
                dataset,
                damaged,
            )
            writer.redo(damaged)
        return writer

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
        if overwrite and (final.is_dir() or final.is_symlink()):
            remove_path(final, self.path)
        existing = self.writer(dataset, model, ids)
        if existing is not None:
            return existing
        _ensure_group(final.parent)
        # built beside its final place (same folder, hidden name) and renamed: no temp folder is
        # left behind, and readers skip hidden names
        tmp = final.parent / temporary_name(final.name)
        try:
            self._build(tmp, dataset, model, ids, dim, chunk_rows, attrs, keep_raw)
        except BaseException:  # a full disk half-way: the temporary group would hold its space
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            os.rename(tmp, final)
        except OSError:
            # another writer created the same group first: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
            if not (final / "zarr.json").exists():
                raise
        return FeatureWriter(zarr.open_group(str(final), mode="r+"))

    @staticmethod
    def _build(
        tmp: Path,
        dataset: str,
        model: str,
        ids: list[str],
        dim: int,
        chunk_rows: int,
        attrs: Mapping[str, Any] | None,
        keep_raw: bool,
    ) -> None:
        """Create a complete empty group at ``tmp``: attributes, arrays, ids, digests, done flags."""
        n = len(ids)
        n_chunks = max(1, -(-n // chunk_rows))
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
                name,
                shape=(n, dim),
                chunks=(chunk_rows, dim),
                dtype="float32",
                fill_value=np.nan,
                compressors=_COMPRESSOR,
            )
        enc = encode_ids(ids)
        group.create_array(
            "ids", shape=enc.shape, chunks=enc.shape, dtype="uint8", compressors=_COMPRESSOR
        )[:] = enc
        group.create_array(
            _DIGESTS,
            shape=(n_chunks, 32),
            chunks=(1, 32),
            dtype="uint8",
            fill_value=0,
            compressors=_COMPRESSOR,
        )
        group.create_array(
            "done",
            shape=(n_chunks,),
            chunks=(1,),
            dtype="uint8",
            fill_value=0,
            compressors=_COMPRESSOR,
        )

    def delete(self, dataset: str, model: str) -> None:
        """Remove the group of (dataset, model); through a link into another store, refused. A
        file in the group's place is not the store's: left for creation to name it."""
        group = self._dir(dataset, model)
        if group.is_dir() or group.is_symlink():
            with filesystem_errors(group, "remove"):
                remove_path(group, self.path)


def _read_all(group: zarr.Group) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """A group's ids, features and raw features (None when it keeps none), read whole."""
    raw = group["raw"][:] if "raw" in group else None
    return group["ids"][:], group["features"][:], raw


def _content_hash(ids: np.ndarray, features: np.ndarray, raw: np.ndarray | None = None) -> str:
    """SHA-256 of a group's ids, (normalised) features and raw features (when given).

    Without raw features it is the hash groups have always been sealed with.
    """
    h = _hash_start(ids, features.shape, features.dtype)
    h.update(np.ascontiguousarray(features).tobytes())
    if raw is not None:
        _hash_raw_header(h, raw.shape, raw.dtype)
        h.update(np.ascontiguousarray(raw).tobytes())
    return h.hexdigest()


def _hash_raw_header(h: Any, shape: tuple[int, ...], dtype: Any) -> None:
    """The content hash's header of the raw feature bytes, which follow the feature bytes."""
    h.update(f"raw{tuple(shape)}{np.dtype(dtype)}".encode())


def _chunk_digest(features: np.ndarray, raw: np.ndarray | None) -> np.ndarray:
    """SHA-256 of one chunk's rows as stored (float32 features, then raw ones): 32 uint8."""
    h = hashlib.sha256()
    for name, values in (("features", features), ("raw", raw)):
        if values is None:
            continue
        values = np.ascontiguousarray(values, dtype=np.float32)
        h.update(f"{name}{values.shape}{values.dtype}".encode())
        h.update(values.tobytes())
    return np.frombuffer(h.digest(), dtype=np.uint8)


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
