"""Feature store: id-keyed reads, resumable chunks, concurrent writers, atomic netCDF."""

from __future__ import annotations

import multiprocessing as mp
import threading
from pathlib import Path

import numpy as np
import pytest
import xarray as xr

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
    assert store.checksum("ds", "m") != digest
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
