"""Feature store: id-keyed reads, resumable chunks, concurrent writers, atomic netCDF."""

from __future__ import annotations

import multiprocessing as mp
import threading
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

from repsim.errors import StoreError
from repsim.store import FeatureStore, decode_ids, encode_ids, write_netcdf_atomic


def _fill(path: str, model: str, n: int, dim: int, seed: int) -> None:
    store = FeatureStore(path)
    ids = [f"img/{i:04d}" for i in range(n)]
    feats = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    w = store.create("ds", model, ids, dim, chunk_rows=8, attrs={"seed": seed})
    for c in w.pending_chunks():
        w.write_chunk(c, feats[w.rows(c)])


def test_ids_roundtrip() -> None:
    ids = ["a", "ünïcode/é", "x" * 40, "b.c"]
    assert list(decode_ids(encode_ids(ids))) == ids


def test_write_read_in_id_order(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "f.zarr")
    ids = [f"s{i}" for i in range(20)]
    feats = np.arange(20 * 3, dtype=np.float32).reshape(20, 3)
    w = store.create("cifar", "m/1", ids, 3, chunk_rows=8, attrs={"pretrained_cfg": {"tag": "x"}})
    assert w.n_chunks == 3 and not store.has("cifar", "m/1")
    for c in (2, 0):
        w.write_chunk(c, feats[w.rows(c)])
    assert w.pending_chunks() == [1]
    with pytest.raises(StoreError, match="incomplete"):
        store.read("cifar", "m/1")
    w.write_chunk(1, feats[w.rows(1)])
    assert store.has("cifar", "m/1")
    got_ids, got = store.read("cifar", "m/1", ids=["s5", "s0", "s19"])
    assert list(got_ids) == ["s5", "s0", "s19"]
    np.testing.assert_array_equal(got, feats[[5, 0, 19]])
    with pytest.raises(StoreError, match="nope"):
        store.read("cifar", "m/1", ids=["s1", "nope"])
    attrs = store.attrs("cifar", "m/1")
    assert attrs["pretrained_cfg"] == {"tag": "x"} and attrs["embed_dim"] == 3
    assert store.datasets() == ["cifar"] and store.models("cifar") == ["m/1"]


def test_other_ids_refused_and_duplicates(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "f.zarr")
    store.create("d", "m", ["a", "b"], 2, chunk_rows=4)
    with pytest.raises(StoreError, match="other stimulus ids"):
        store.writer("d", "m", ["a", "c"])
    with pytest.raises(StoreError, match="'x'"):
        store.create("d", "m2", ["x", "x"], 2, chunk_rows=4)


def test_concurrent_threads(tmp_path: Path) -> None:
    path = str(tmp_path / "f.zarr")
    threads = [
        threading.Thread(target=_fill, args=(path, f"model{i}", 50, 16, i)) for i in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store = FeatureStore(path)
    for i in range(4):
        _, feats = store.read("ds", f"model{i}")
        np.testing.assert_array_equal(
            feats, np.random.default_rng(i).normal(size=(50, 16)).astype(np.float32)
        )


def test_concurrent_processes(tmp_path: Path) -> None:
    path = str(tmp_path / "f.zarr")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_fill, args=(path, f"p{i}", 40, 8, 10 + i)) for i in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(300)  # spawned interpreters import numpy and zarr: slow on a loaded machine
        assert p.exitcode == 0
    store = FeatureStore(path)
    for i in range(2):
        _, feats = store.read("ds", f"p{i}")
        np.testing.assert_array_equal(
            feats, np.random.default_rng(10 + i).normal(size=(40, 8)).astype(np.float32)
        )


def test_netcdf_atomic(tmp_path: Path) -> None:
    ds = xr.Dataset({"a": ("x", np.arange(3.0))})
    try:
        import h5py  # noqa: F401

        kw: dict = {}
    except ImportError:  # h5netcdf without h5py: fall back to the scipy (netCDF3) engine
        kw = {"engine": "scipy"}
    out = write_netcdf_atomic(ds, tmp_path / "r" / "sim.nc", **kw)
    assert xr.load_dataset(out)["a"].values.tolist() == [0.0, 1.0, 2.0]
    assert [p.name for p in out.parent.iterdir()] == ["sim.nc"]


def test_sealed_groups_detect_damage_and_missing_chunks(tmp_path: Path) -> None:
    path = tmp_path / "f.zarr"
    _fill(str(path), "m", 20, 3, seed=1)
    store = FeatureStore(path)
    digest = store.seal("ds", "m")
    assert store.checksum("ds", "m") == digest
    ids, clean = store.read("ds", "m")
    chunks = sorted(
        p
        for p in (path / "ds" / "m" / "features").rglob("*")
        if p.is_file() and p.name != "zarr.json"
    )
    chunks[1].unlink()  # zarr would read the fill value (NaN) here
    with pytest.raises(StoreError, match="does not match its seal .a chunk was changed or deleted"):
        store.checksum("ds", "m")  # so the pipeline extracts it again
    with pytest.raises(StoreError, match="checksum"):
        store.read("ds", "m")
    group = store._open("ds", "m")
    del group.attrs["sha256"]  # an unsealed group: the missing rows are still an error, not NaN
    with pytest.raises(StoreError, match="no data"):
        store.read("ds", "m")


def test_no_temp_folder_is_left(tmp_path: Path) -> None:
    _fill(str(tmp_path / "f.zarr"), "m", 10, 2, seed=0)
    hidden = [p for p in tmp_path.rglob("*") if p.name.startswith(".") or p.name.endswith(".tmp")]
    assert hidden == []


def _streamed(store: FeatureStore, ids: list[str]) -> np.ndarray:
    out = None
    for positions, rows in store.iter_rows("ds", "m", ids):
        out = np.full((len(ids), rows.shape[1]), np.nan, np.float32) if out is None else out
        assert np.isnan(out[positions]).all()  # each row handed on once
        out[positions] = rows
    return out


def test_iter_rows_gives_read_rows_one_stored_chunk_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "f.zarr"
    _fill(str(path), "m", 37, 5, seed=3)
    store = FeatureStore(path)
    store.seal("ds", "m")
    all_ids, _ = store.read("ds", "m")
    rng = np.random.default_rng(0)
    subset = [str(i) for i in rng.permutation(all_ids)[:23]]  # any order, rows from every chunk
    np.testing.assert_array_equal(_streamed(store, subset), store.read("ds", "m", subset)[1])
    step = store._open("ds", "m")["features"].chunks[0]
    assert len(list(store.iter_rows("ds", "m", subset))) <= -(-37 // step) and step < 37
    with pytest.raises(StoreError, match="repeated"):
        list(store.iter_rows("ds", "m", [subset[0], subset[0]]))
    with pytest.raises(StoreError, match="nope"):
        list(store.iter_rows("ds", "m", ["nope"]))


def test_iter_rows_detects_damage_after_the_last_chunk(tmp_path: Path) -> None:
    path = tmp_path / "f.zarr"
    _fill(str(path), "m", 20, 3, seed=1)
    store = FeatureStore(path)
    store.seal("ds", "m")
    ids = [str(i) for i in store.read("ds", "m")[0]]
    features = store._open("ds", "m")["features"]
    features[0:1] = features[0:1] + 1.0  # a silent change of one stored value
    with pytest.raises(StoreError, match="checksum"):
        _streamed(store, ids[5:])  # even when the changed row is not among those asked for
    del store._open("ds", "m").attrs["sha256"]  # unsealed: missing rows are still an error
    chunks = sorted(p for p in (path / "ds" / "m" / "features").rglob("*") if p.name != "zarr.json")
    next(p for p in chunks if p.is_file()).unlink()
    with pytest.raises(StoreError, match="no data"):
        _streamed(store, ids)


# -- damaged chunks: detected in unsealed (resuming) groups too, raw features under the seal ---------
def _ids(n: int) -> list[str]:
    return [f"img/{i:04d}" for i in range(n)]


def _values(n: int, dim: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def _flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _legacy_hash(ids: np.ndarray, features: np.ndarray) -> str:
    """The seal of a group without raw features, as it has always been computed."""
    import hashlib

    h = hashlib.sha256()
    h.update(f"ids{ids.shape}{ids.dtype}".encode())
    h.update(np.ascontiguousarray(ids).tobytes())
    h.update(f"features{features.shape}{features.dtype}".encode())
    h.update(np.ascontiguousarray(features).tobytes())
    return h.hexdigest()


def test_chunk_files_carry_the_zstd_frame_checksum(tmp_path: Path) -> None:
    import json

    path = tmp_path / "f.zarr"
    _fill(str(path), "m", 20, 3, seed=1)
    for array in ("features", "ids", "done"):
        codecs = json.loads((path / "ds" / "m" / array / "zarr.json").read_text())["codecs"]
        zstd = [c for c in codecs if c["name"] == "zstd"]
        assert zstd and zstd[0]["configuration"]["checksum"] is True, (array, codecs)
    store = FeatureStore(path)
    _flip_bit(path / "ds" / "m" / "features" / "c" / "1" / "0")
    with pytest.raises(StoreError, match="unreadable"):  # not other floats
        store.read("ds", "m")


@pytest.mark.parametrize("damage", ["flipped bit in the chunk file", "other values that decode"])
def test_resume_extracts_a_damaged_written_chunk_again(tmp_path: Path, damage: str) -> None:
    path = tmp_path / "f.zarr"
    store = FeatureStore(path)
    ids, feats = _ids(20), _values(20, 3, seed=2)
    w = store.create("ds", "m", ids, 3, chunk_rows=8)
    for c in (0, 1):  # killed before chunk 2
        w.write_chunk(c, feats[w.rows(c)])
    if damage == "flipped bit in the chunk file":
        _flip_bit(path / "ds" / "m" / "features" / "c" / "0" / "0")
    else:  # e.g. a stale file: it decodes, and only its checksum tells
        store._open("ds", "m")["features"][0:8] = feats[0:8] + 1.0
    resumed = store.writer("ds", "m", ids)
    assert resumed.pending_chunks() == [0, 2]  # chunk 1 verified, chunk 0 written again
    for c in resumed.pending_chunks():
        resumed.write_chunk(c, feats[resumed.rows(c)])
    np.testing.assert_array_equal(store.read("ds", "m")[1], feats)
    store.seal("ds", "m")
    np.testing.assert_array_equal(store.read("ds", "m")[1], feats)


def test_unsealed_group_is_checked_against_its_chunk_checksums(tmp_path: Path) -> None:
    path = tmp_path / "f.zarr"
    _fill(str(path), "m", 20, 3, seed=1)
    store = FeatureStore(path)
    ids = [str(i) for i in store.ids("ds", "m")]
    group = store._open("ds", "m")
    group["features"][9:10] = group["features"][9:10] + 1.0  # chunk 1, a silent change
    with pytest.raises(StoreError, match=r"chunks \[1\] differ"):
        store.read("ds", "m")
    with pytest.raises(StoreError, match="chunk 1 differs"):
        _streamed(store, ids)
    with pytest.raises(StoreError, match="cannot be sealed"):
        store.seal("ds", "m")  # a damaged chunk is never sealed
    assert "sha256" not in store.attrs("ds", "m")
    assert store.writer("ds", "m", ids).pending_chunks() == [1]


def _fill_raw(path: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    store = FeatureStore(path)
    ids, feats, raw = _ids(20), _values(20, 3, seed=4), _values(20, 3, seed=5)
    w = store.create("ds", "m", ids, 3, chunk_rows=8, keep_raw=True)
    for c in w.pending_chunks():
        w.write_chunk(c, feats[w.rows(c)], raw[w.rows(c)])
    return ids, feats, raw


@pytest.mark.parametrize("sealed", [True, False])
def test_raw_features_are_verified_like_features(tmp_path: Path, sealed: bool) -> None:
    path = tmp_path / "f.zarr"
    ids, feats, raw = _fill_raw(path)
    store = FeatureStore(path)
    if sealed:
        store.seal("ds", "m")
    np.testing.assert_array_equal(store.read("ds", "m", raw=True)[1], raw)
    assert [p for _, p in store.iter_rows("ds", "m", ids)]  # verifies, raw included
    group = store._open("ds", "m")
    group["raw"][17:18] = group["raw"][17:18] * 2.0  # chunk 2 of the raw features, silently
    with pytest.raises(StoreError, match="checksum"):
        store.read("ds", "m", raw=True)
    with pytest.raises(StoreError, match="checksum"):
        store.read("ds", "m")  # the group as a whole is damaged
    with pytest.raises(StoreError, match="checksum"):
        _streamed(store, ids)
    if sealed:
        with pytest.raises(StoreError, match="does not match its seal"):
            store.checksum("ds", "m")  # so the pipeline extracts it again
    else:
        assert store.writer("ds", "m", ids).pending_chunks() == [2]


def test_an_unsealed_complete_group_has_no_checksum_for_the_pipeline(tmp_path: Path) -> None:
    """A group that lost its seal (zarr.json altered) hashed as before, so the pipeline kept it
    as finished, and the book, which takes a group only by its seal, refused it at every rerun."""
    path = tmp_path / "f.zarr"
    _fill(str(path), "m", 20, 3, seed=1)
    store = FeatureStore(path)
    digest = store.seal("ds", "m")
    assert store.checksum("ds", "m", sealed_only=True) == digest
    del store._open("ds", "m").attrs["sha256"]
    assert store.checksum("ds", "m") == digest  # the content is unchanged
    with pytest.raises(StoreError, match="has no seal"):
        store.checksum("ds", "m", sealed_only=True)


def test_groups_written_before_chunk_checksums_still_read(tmp_path: Path) -> None:
    import shutil

    path = tmp_path / "f.zarr"
    _fill(str(path), "m", 20, 3, seed=1)
    shutil.rmtree(path / "ds" / "m" / "chunk_sha256")  # as an older version wrote it
    store = FeatureStore(path)
    ids, feats = store.read("ds", "m")
    np.testing.assert_array_equal(feats, _values(20, 3, seed=1))
    assert store.has_chunk_digests("ds", "m") is False
    assert store.writer("ds", "m", list(ids)).pending_chunks() == []  # cannot be checked: kept
    digest = store.seal("ds", "m")
    # a group without raw features seals as it always has: finished runs stay valid
    assert digest == _legacy_hash(store._open("ds", "m")["ids"][:], feats)
    np.testing.assert_array_equal(store.read("ds", "m")[1], feats)

    # an older seal of a group with raw features: its features read, its raw features cannot
    # be verified (refused), and its checksum is no longer the recorded one (extracted again)
    raw_path = tmp_path / "raw.zarr"
    _, feats, _ = _fill_raw(raw_path)
    shutil.rmtree(raw_path / "ds" / "m" / "chunk_sha256")
    store = FeatureStore(raw_path)
    group = store._open("ds", "m")
    group.attrs["sha256"] = _legacy_hash(group["ids"][:], feats)
    np.testing.assert_array_equal(store.read("ds", "m")[1], feats)
    with pytest.raises(StoreError, match="cannot be verified"):
        store.read("ds", "m", raw=True)
    with pytest.raises(StoreError, match="does not match its seal"):
        store.checksum("ds", "m")


def test_a_group_that_cannot_be_built_leaves_no_temporary_folder(tmp_path: Path, monkeypatch):
    """A full disk half-way through creating a group: its hidden temporary folder would hold space."""
    import errno

    calls = []
    real = zarr.Group.create_array

    def full(self, name, **kwargs):
        calls.append(name)
        if name == "ids":
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, name, **kwargs)

    monkeypatch.setattr(zarr.Group, "create_array", full)
    store = FeatureStore(tmp_path / "f.zarr")
    with pytest.raises(OSError, match="No space left"):
        store.create("ds", "m", ["a", "b"], 3, chunk_rows=2)
    assert calls == ["features", "ids"]
    assert [p.name for p in (tmp_path / "f.zarr" / "ds").iterdir()] == ["zarr.json"]


# -- mutation audit (session 35): each test below kills a change that no other test noticed ------
def test_chunk_checksums_that_do_not_decode_verify_nothing(tmp_path: Path) -> None:
    # an unsealed group whose digest array is damaged cannot vouch for any written chunk
    path = tmp_path / "f.zarr"
    _fill(str(path), "m", 20, 3, seed=1)
    store = FeatureStore(path)
    ids = [str(i) for i in store.ids("ds", "m")]
    _flip_bit(path / "ds" / "m" / "chunk_sha256" / "c" / "1" / "0")
    with pytest.raises(StoreError, match=r"chunks \[0, 1, 2\] differ"):
        store.read("ds", "m")
    assert store.writer("ds", "m", ids).pending_chunks() == [0, 1, 2]


def test_write_chunk_refuses_rows_of_the_wrong_shape(tmp_path: Path) -> None:
    store = FeatureStore(tmp_path / "f.zarr")
    w = store.create("d", "m", _ids(20), 3, chunk_rows=8)
    with pytest.raises(StoreError, match=r"chunk 0 must have shape \(8, 3\)"):
        w.write_chunk(0, _values(1, 3, seed=0))  # one row would broadcast over all eight
    with pytest.raises(StoreError, match=r"chunk 2 must have shape \(4, 3\)"):
        w.write_chunk(2, _values(8, 3, seed=0))  # the last chunk is short
    assert w.pending_chunks() == [0, 1, 2]


# -- mutation audit of the store's trust checks (session audit-store) --------------------------
def test_an_incomplete_group_has_no_checksum_and_is_never_sealed(tmp_path: Path) -> None:
    """A group with a chunk still pending hashes to None (the pipeline redoes it) and refuses a
    seal: a seal over its unwritten (NaN) rows would vouch for features never extracted."""
    store = FeatureStore(tmp_path / "f.zarr")
    feats = _values(20, 3, seed=1)
    w = store.create("ds", "m", _ids(20), 3, chunk_rows=8)
    w.write_chunk(0, feats[w.rows(0)])
    assert store.checksum("ds", "m") is None
    with pytest.raises(StoreError, match="incomplete"):
        store.seal("ds", "m")
    assert "sha256" not in store.attrs("ds", "m")


def test_a_resume_refuses_the_same_ids_in_another_order(tmp_path: Path) -> None:
    """Rows are stored in the order of the ids they were created for: a stimulus table that lists
    the same ids in another order would put each new chunk's rows under other ids."""
    path = tmp_path / "f.zarr"
    _fill(str(path), "m", 20, 3, seed=1)
    store = FeatureStore(path)
    ids = [f"img/{i:04d}" for i in range(20)]
    assert store.writer("ds", "m", ids) is not None
    with pytest.raises(StoreError, match="other stimulus ids"):
        store.writer("ds", "m", ids[::-1])


def test_missing_raw_rows_of_a_group_without_checksums_are_an_error(tmp_path: Path) -> None:
    """A group written before chunk digests were kept has only the missing-rows check: a deleted
    raw chunk file (read as NaN) must fail a raw read, like a deleted feature chunk."""
    import shutil

    path = tmp_path / "f.zarr"
    _fill_raw(path)
    shutil.rmtree(path / "ds" / "m" / "chunk_sha256")  # as an older version wrote it
    chunks = sorted(
        p for p in (path / "ds" / "m" / "raw").rglob("*") if p.is_file() and p.name != "zarr.json"
    )
    chunks[1].unlink()
    store = FeatureStore(path)
    with pytest.raises(StoreError, match="no data"):
        store.read("ds", "m", raw=True)


def test_a_temporary_group_is_never_listed(tmp_path: Path) -> None:
    """A group being built (or left by a killed writer) under its hidden temporary name is not a
    dataset or model of the store, even with its zarr.json written."""
    path = tmp_path / "f.zarr"
    _fill(str(path), "m", 4, 3, seed=1)
    for hidden in (path / "ds" / ".m.0123.tmp", path / ".ds.0123.tmp"):
        hidden.mkdir()
        (hidden / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    store = FeatureStore(path)
    assert store.datasets() == ["ds"]
    assert store.models("ds") == ["m"]


def test_overwrite_replaces_a_dangling_link_in_the_groups_place(tmp_path: Path) -> None:
    """overwrite=True removes whatever holds the group's place, a link to a folder that is gone
    too (the link is unlinked, never followed), and builds a new group there."""
    path = tmp_path / "f.zarr"
    store = FeatureStore(path)
    (path / "ds").mkdir()
    (path / "ds" / "m").symlink_to(tmp_path / "gone")
    w = store.create("ds", "m", _ids(4), 3, chunk_rows=8, overwrite=True)
    assert not (path / "ds" / "m").is_symlink()
    assert w.pending_chunks() == [0]


@pytest.mark.parametrize("damage", ["truncated zarr.json", "done flags that do not decode"])
def test_an_unreadable_group_says_the_rerun_extracts_it_again(tmp_path: Path, damage: str) -> None:
    """A truncated group zarr.json told the user to "delete that folder", while `repsim run`
    extracts a group it cannot read again by itself (and the book, which lists the group as an
    input of the results, refuses it deleted as much as damaged): the message says the rerun."""
    path = tmp_path / "f.zarr"
    _fill(str(path), "m", 20, 3, seed=1)
    group = path / "ds" / "m"
    if damage == "truncated zarr.json":
        meta = group / "zarr.json"
        meta.write_text(meta.read_text()[:40])
    else:
        _flip_bit(group / "done" / "c" / "0")
    store = FeatureStore(path)
    for call in (store.has, store.checksum):
        with pytest.raises(StoreError) as err:
            call("ds", "m")
        message = str(err.value)
        assert "unreadable" in message and "delete" not in message
        assert "rerun `repsim run` on the run folder: it extracts that group again" in message
