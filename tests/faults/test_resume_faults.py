"""Damage a chunk of a feature group; the rerun must extract it again, never seal or read it.

An interrupted extraction leaves unsealed groups that the next run resumes: a written chunk that
was damaged since (a flipped bit in its file, other values that decode) must be extracted again,
and a group written before chunk checksums were kept starts over. A sealed group's damaged raw
features make it fail verification like its features do. Each case reruns a small config with two
chunks per group and checks that the results are byte-identical to a clean run's.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr

from faults.faultkit import write_config
from repsim.pipeline import run
from repsim.runfolder import RunFolder
from repsim.store import FeatureStore, FeatureWriter

pytestmark = pytest.mark.slow

#: batch 2, 16 batches a chunk: 32 rows, so each group of 60 similarity stimuli has two chunks
EXTRACT = "extract: {batch_size: 2}\n"


@pytest.fixture(scope="module")
def chunked(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The config and its clean run."""
    root = tmp_path_factory.mktemp("resume-faults")
    config = write_config(root / "chunked.yaml", extra=EXTRACT)
    run(config, root / "clean", device="cpu")
    return config, root / "clean"


def _same_results(clean: Path, other: Path) -> None:
    a, b = RunFolder(clean), RunFolder(other)
    for path_a, path_b in ((a.similarity, b.similarity), (a.consistency, b.consistency)):
        assert path_b.read_bytes() == path_a.read_bytes(), path_b.name
    b.open_results()


def _killed_after_first_chunk(config: Path, run_dir: Path, monkeypatch) -> Path:
    """Run ``config`` until the second chunk write; the group holding the one written chunk."""
    original = FeatureWriter.write_chunk
    calls = {"n": 0}

    def killed(self, chunk, features, raw=None):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill")
        return original(self, chunk, features, raw)

    with monkeypatch.context() as m:
        m.setattr(FeatureWriter, "write_chunk", killed)
        with pytest.raises(KeyboardInterrupt):
            run(config, run_dir, device="cpu")
    (group,) = [p.parents[3] for p in RunFolder(run_dir).features.rglob("features/c/0/0")]
    assert zarr.open_group(str(group), mode="r")["done"][:].tolist() == [1, 0]
    return group


def _rewrites(monkeypatch) -> list[tuple[str, str, int]]:
    """Record the (dataset, model, chunk) of every chunk written from now on."""
    original = FeatureWriter.write_chunk
    written: list[tuple[str, str, int]] = []

    def recording(self, chunk, features, raw=None):
        written.append((self.group.attrs["dataset"], self.group.attrs["model"], chunk))
        return original(self, chunk, features, raw)

    monkeypatch.setattr(FeatureWriter, "write_chunk", recording)
    return written


def _flip_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def _other_values(group: Path) -> None:
    features = zarr.open_group(str(group), mode="r+")["features"]
    features[0:32] = features[0:32] * 0.5  # a stale chunk: it decodes, only its checksum tells


def _other_ids(group: Path) -> None:
    ids = zarr.open_group(str(group), mode="r+")["ids"]
    ids[0:1] = ids[1:2]  # bookkeeping that does not fit the run's table: the writer refuses it


DAMAGE = {
    "flipped bit in the chunk file": lambda g: _flip_bit(g / "features" / "c" / "0" / "0"),
    "chunk with other values that decode": _other_values,
    "partial group naming other stimulus ids": _other_ids,
    # a group an older version wrote: its written chunks cannot be checked
    "partial group without chunk checksums": lambda g: shutil.rmtree(g / "chunk_sha256"),
}


@pytest.mark.parametrize("case", list(DAMAGE))
def test_damaged_chunk_of_an_interrupted_extraction_is_extracted_again(
    chunked, tmp_path, monkeypatch, case
):
    config, clean = chunked
    run_dir = tmp_path / "run"
    group = _killed_after_first_chunk(config, run_dir, monkeypatch)
    attrs = zarr.open_group(str(group), mode="r").attrs
    dataset, model = attrs["dataset"], attrs["model"]
    DAMAGE[case](group)
    written = _rewrites(monkeypatch)
    run(config, run_dir, device="cpu")
    assert (dataset, model, 0) in written  # the damaged (or unverifiable) chunk, never trusted
    _same_results(clean, run_dir)
    np.testing.assert_array_equal(
        FeatureStore(RunFolder(run_dir).features).read(dataset, model)[1],
        FeatureStore(RunFolder(clean).features).read(dataset, model)[1],
    )


def test_a_partial_group_of_other_inputs_is_extracted_from_scratch(chunked, tmp_path, monkeypatch):
    """A group left half-written under other inputs (here: the models' weights) starts over;
    resuming it would seal chunks of the old model with chunks of the new one."""
    config, _ = chunked
    run_dir = tmp_path / "run"
    group = _killed_after_first_chunk(config, run_dir, monkeypatch)
    attrs = zarr.open_group(str(group), mode="r").attrs
    dataset, model = attrs["dataset"], attrs["model"]
    other = write_config(
        tmp_path / "other.yaml", extra="extract: {batch_size: 2, pretrained: false}\n"
    )
    written = _rewrites(monkeypatch)
    run(other, run_dir, device="cpu")
    assert (dataset, model, 0) in written


def test_a_chunk_damaged_while_its_group_resumes_is_extracted_again(chunked, tmp_path, monkeypatch):
    """The resumed group is verified again once written: a written chunk that changed after the
    writer checked it is caught there and the group starts over, never sealed as it is."""
    config, clean = chunked
    run_dir = tmp_path / "run"
    group = _killed_after_first_chunk(config, run_dir, monkeypatch)
    attrs = zarr.open_group(str(group), mode="r").attrs
    dataset, model = attrs["dataset"], attrs["model"]
    written = _rewrites(monkeypatch)
    recording = FeatureWriter.write_chunk

    def damaging(self, chunk, features, raw=None):
        here = (self.group.attrs["dataset"], self.group.attrs["model"], chunk)
        if here == (dataset, model, 1) and (dataset, model, 0) not in written:
            _other_values(group)  # chunk 0, verified when the group was opened, changes now
        return recording(self, chunk, features, raw)

    monkeypatch.setattr(FeatureWriter, "write_chunk", damaging)
    run(config, run_dir, device="cpu")
    assert written.count((dataset, model, 0)) == 1  # from scratch, after the pass that resumed it
    _same_results(clean, run_dir)
    np.testing.assert_array_equal(
        FeatureStore(RunFolder(run_dir).features).read(dataset, model)[1],
        FeatureStore(RunFolder(clean).features).read(dataset, model)[1],
    )


def test_damaged_raw_features_of_a_sealed_group_are_extracted_again(tmp_path, monkeypatch):
    config = write_config(tmp_path / "raw.yaml", extra="extract: {batch_size: 2, keep_raw: true}\n")
    run_dir = tmp_path / "run"
    run(config, run_dir, device="cpu")
    store = FeatureStore(RunFolder(run_dir).features)
    dataset, model = "faces", "cnn-simclr-s0"
    _, clean_raw = store.read(dataset, model, raw=True)
    similarity = RunFolder(run_dir).similarity.read_bytes()
    raw = store._open(dataset, model)["raw"]
    raw[0:1] = raw[0:1] * 2.0  # a silent change: only the seal can tell
    written = _rewrites(monkeypatch)
    run(config, run_dir, device="cpu")
    assert sorted(written) == [(dataset, model, 0), (dataset, model, 1)]  # that group only
    np.testing.assert_array_equal(store.read(dataset, model, raw=True)[1], clean_raw)
    assert RunFolder(run_dir).similarity.read_bytes() == similarity
