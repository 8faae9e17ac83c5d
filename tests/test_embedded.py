"""The embedded offline stimulus sets: contents, contract keys, config listing, reproducibility."""

from __future__ import annotations

import json

import numpy as np
import pytest

from repsim.config import load_config
from repsim.embedded import GENERATORS, generate
from repsim.stimuli import DOMAINS, open_dataset, parse_datasets


@pytest.fixture(scope="module")
def specs(repo_root):
    cfg = load_config(repo_root / "data/configs/embedded.yaml")
    return {s.id: s for s in parse_datasets(cfg["datasets"])}


def test_config_lists_every_generated_set_with_its_domain(specs):
    assert len(specs) >= 8
    assert set(specs) == set(GENERATORS)
    for name, spec in specs.items():
        assert spec.domain == GENERATORS[name].domain
    assert {s.domain for s in specs.values()} == set(DOMAINS)


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_embedded_file_contract(name, specs):
    spec = specs[name]
    assert spec.path.stat().st_size < 6_000_000
    with np.load(spec.path, allow_pickle=False) as npz:
        assert {"images", "labels", "split", "ids", "class_names", "attributes"} <= set(npz.files)
        attrs = json.loads(str(npz["attributes"]))
    st = open_dataset(spec)
    n = len(st)
    assert n >= 1000
    assert st.images.shape == (n, 32, 32, 3) and st.images.dtype == np.uint8
    assert (
        st.labels.dtype == np.int64
        and len(attrs) == n
        and all(isinstance(a, dict) and a for a in attrs)
    )
    assert len(np.unique(st.ids)) == n
    assert all(i.startswith(f"{name}/{s}/") for i, s in zip(st.ids, st.split))
    assert st.n_classes == spec.n_classes
    for split in ("train", "test"):
        assert (st.counts(split) > 0).all(), f"{name}: a class is missing from {split}"
    frac = (st.split == "test").mean()
    assert 0.15 < frac < 0.25
    imgs = st.load_images([0, n - 1])
    assert imgs.shape == (2, 32, 32, 3)
    assert st.images.std() > 10  # not blank


def test_faces_views_of_one_source_share_a_split(specs):
    st = open_dataset(specs["faces"])
    src = np.array([a["source_index"] for a in st.attributes])
    for s in np.unique(src):
        assert len(set(st.split[src == s])) == 1


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_regeneration_is_byte_identical(name, specs, tmp_path):
    """Every shipped set is what its generator writes today (with the pinned packages of
    constraints.txt): a generator changed without regenerating its file fails here. All ten
    together take a few seconds; four were checked before, so a change to the photo crops, the
    faces, the wild digits, the spectrograms, the glyphs or the textures went unseen."""
    (path,) = generate([name], tmp_path)
    assert path.read_bytes() == specs[name].path.read_bytes()


def test_the_generator_command_names_a_bad_out_folder_without_a_traceback(tmp_path, capsys):
    """`python -m repsim.embedded --out` (the fix a missing embedded file names) through a file:
    a traceback ending in NotADirectoryError; now the cause and the fix, before any set is built.
    """
    from repsim.embedded.__main__ import main

    (tmp_path / "afile").write_text("x")
    assert main(["faces", "--out", str(tmp_path / "afile" / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m repsim.embedded: error: --out: ")
    assert f"{tmp_path / 'afile'} is a file where a folder is needed" in err


def test_the_generator_command_names_a_write_that_fails(tmp_path, capsys, monkeypatch):
    import errno

    def full(ds, path):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr("repsim.embedded.write_npz", full)
    from repsim.embedded.__main__ import main

    assert main(["shapes", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert f"no space left on the device while trying to write {tmp_path / 'shapes.npz'}" in err
    assert "choose another --out" in err
