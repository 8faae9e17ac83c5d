"""repsim.fingerprint: a changed weights or data file must change its fingerprint, an untouched
one must not; and a run redoes what was computed from a dataset file whose content changed."""

from __future__ import annotations

import hashlib
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from faults.faultkit import MODELS, REPO, unreadable

from repsim.fingerprint import data_fingerprint, file_fingerprint, folder_fingerprint


def test_file_fingerprint_is_the_sha256_of_the_content_at_any_size(tmp_path):
    a, b = tmp_path / "a.bin", tmp_path / "b.bin"
    a.write_bytes(b"x" * 5000)
    b.write_bytes(b"x" * 4999 + b"y")  # same size, one byte apart
    assert file_fingerprint(a) == hashlib.sha256(b"x" * 5000).hexdigest()
    assert file_fingerprint(a) != file_fingerprint(b)
    assert file_fingerprint(tmp_path / "missing") is None and file_fingerprint(None) is None
    assert file_fingerprint(tmp_path) is None  # a folder is not a file


def test_a_file_changed_in_place_is_hashed_again(tmp_path):
    p = tmp_path / "w.safetensors"
    p.write_bytes(b"first")
    first = file_fingerprint(p)
    st = p.stat()
    p.write_bytes(b"other")  # same size; even with the old modification time put back
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert file_fingerprint(p) == hashlib.sha256(b"other").hexdigest() != first


def test_folder_fingerprint_follows_the_files(tmp_path):
    root = tmp_path / "images"
    (root / "cat").mkdir(parents=True)
    (root / "cat" / "1.png").write_bytes(b"a" * 10)
    first = folder_fingerprint(root)
    assert folder_fingerprint(root) == first
    (root / "cat" / "2.png").write_bytes(b"b")
    added = folder_fingerprint(root)
    assert added != first
    st = (root / "cat" / "1.png").stat()
    (root / "cat" / "1.png").write_bytes(b"c" * 10)  # replaced in place: a new mtime
    os.utime(root / "cat" / "1.png", ns=(st.st_atime_ns, st.st_mtime_ns + 1))
    assert folder_fingerprint(root) != added
    assert folder_fingerprint(tmp_path / "none") is None


def test_folder_fingerprint_sees_a_rewrite_whose_old_mtime_was_put_back(tmp_path):
    """Images rewritten with other pixels of the same size, their modification times put back
    (as an archive's extraction or rsync -a does), were read as the same data: the run reused
    features of the old images (similarity off by up to 0.065). The change time, which no tool
    sets, tells. The test waits for the filesystem's clock to move on (its ticks are coarse), so
    it cannot pass or fail by the timing of its steps."""
    root = tmp_path / "images"
    (root / "cat").mkdir(parents=True)
    image = root / "cat" / "1.bmp"
    image.write_bytes(b"a" * 10)
    before = folder_fingerprint(root)
    st = image.stat()
    deadline = time.monotonic() + 10
    while True:
        image.write_bytes(b"b" * 10)
        os.utime(image, ns=(st.st_atime_ns, st.st_mtime_ns))
        now = image.stat()
        if now.st_ctime_ns != st.st_ctime_ns or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert (now.st_size, now.st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    assert now.st_ctime_ns != st.st_ctime_ns, "the filesystem's change time did not move in 10 s"
    assert folder_fingerprint(root) != before
    assert folder_fingerprint(root) == folder_fingerprint(root)  # stable while nothing changes


def _dataset(**entry):
    from repsim.stimuli import parse_datasets

    (spec,) = parse_datasets([{"id": "d", "domain": "Structured", **entry}])
    return spec


def test_data_fingerprint_of_a_spec(tmp_path):
    (tmp_path / "d.npz").write_bytes(b"npz")
    spec = _dataset(loader="embedded", path=str(tmp_path / "d.npz"))
    assert spec.data_paths() == {"path": tmp_path / "d.npz"}
    one = data_fingerprint(spec)
    (tmp_path / "d.npz").write_bytes(b"npz, other content")
    assert data_fingerprint(spec) != one
    # a torchvision root is the library's: the spec identifies it
    assert (
        data_fingerprint(
            _dataset(loader="torchvision", root=str(tmp_path), options={"name": "CIFAR10"})
        )
        is None
    )


def test_breeds_is_identified_by_its_imagenet_folder_and_label_files(tmp_path):
    """ImageNet is provided by the user (it can be replaced, e.g. by the face-blurred release),
    and the hierarchy and class-map files set the labels: each of them changes the fingerprint."""
    imagenet, hierarchy = tmp_path / "imagenet", tmp_path / "hierarchy"
    (imagenet / "train" / "n01").mkdir(parents=True)
    (imagenet / "train" / "n01" / "a.JPEG").write_bytes(b"jpeg")
    hierarchy.mkdir()
    (hierarchy / "class_hierarchy.txt").write_text("n0 n01\n")
    (tmp_path / "map.txt").write_text("n01 n9\n")
    spec = _dataset(
        loader="breeds",
        root=str(imagenet),
        options={
            "task": "living17",
            "hierarchy": str(hierarchy),
            "class_map": str(tmp_path / "map.txt"),
        },
    )
    assert set(spec.data_paths()) == {"root", "options.hierarchy", "options.class_map"}
    seen = {data_fingerprint(spec)}
    (imagenet / "train" / "n01" / "b.JPEG").write_bytes(b"jpeg")  # an image more
    seen.add(data_fingerprint(spec))
    (hierarchy / "class_hierarchy.txt").write_text("n0 n01\nn0 n02\n")
    seen.add(data_fingerprint(spec))
    (tmp_path / "map.txt").write_text("n01 n8\n")
    seen.add(data_fingerprint(spec))
    assert len(seen) == 4 and None not in seen


def test_the_data_is_fingerprinted_once_per_plan_not_once_per_model(tmp_path, monkeypatch):
    from repsim import stages
    from repsim.plan import load_plan

    data = tmp_path / "data"
    data.mkdir()
    for name in ("faces.npz", "textures.npz"):
        shutil.copy(REPO / "data" / "embedded" / name, data / name)
    calls = []
    real = stages.data_fingerprint
    monkeypatch.setattr(stages, "data_fingerprint", lambda ds: calls.append(ds.id) or real(ds))
    plan = load_plan(_config(tmp_path / "c.yaml", data), check_models=False)
    stages.fingerprint_data(plan)
    keys = {stages.features_key(plan, m, ds) for m in plan.models for ds in plan.datasets}
    assert len(keys) == len(plan.models) * len(plan.datasets)
    assert sorted(calls) == ["faces", "textures"]
    again = load_plan(_config(tmp_path / "c.yaml", data), check_models=False)
    assert stages.stimuli_key(again, again.datasets[0]) == stages.stimuli_key(
        plan, plan.datasets[0]
    )


def _config(path, data_dir, models=MODELS):
    path.write_text(
        "name: data-change\n"
        f"include: [{REPO / 'data' / 'minizoo' / 'models.yaml'}]\n"
        f"select: {{models: [{', '.join(models)}]}}\n"
        "measures: [cka_linear]\n"
        "stimuli: {max_images: 60, seed: 42}\n"
        "probe: {enabled: false}\n"
        "threads: 1\n"
        "datasets:\n"
        f"  - {{id: faces, loader: embedded, path: {data_dir / 'faces.npz'}, "
        'domain: "Natural (single-domain)", n_classes: 2}\n'
        f"  - {{id: textures, loader: embedded, path: {data_dir / 'textures.npz'}, "
        "domain: Structured, n_classes: 5}\n"
    )
    return path


READ_FIX = r"permission denied while trying to read {}: make it readable \(chmod u\+r\)"


def test_an_unreadable_weights_file_is_the_models_error_not_the_run_folders(tmp_path, monkeypatch):
    """Fingerprinting reads each weights file whole: one at mode 000 was a RunFolderError, which
    blames the run folder and is recorded as its failure; the culprit is the model."""
    import dataclasses
    import re

    from repsim import stages
    from repsim.errors import ModelError
    from repsim.plan import load_plan
    from repsim.runfolder import RunFolderError

    data = tmp_path / "data"
    data.mkdir()
    for name in ("faces.npz", "textures.npz"):
        (data / name).write_bytes(name.encode())  # fingerprinted, never opened here
    plan = load_plan(_config(tmp_path / "c.yaml", data), check_models=False)
    weights = tmp_path / "w.safetensors"
    shutil.copy(plan.models[0].weights, weights)  # a new file: not in the per-process hash cache
    model = dataclasses.replace(plan.models[0], weights=weights)
    unreadable(monkeypatch, weights)
    with pytest.raises(ModelError, match=READ_FIX.format(re.escape(str(weights)))) as err:
        stages.features_key(plan, model, plan.datasets[0])
    assert not isinstance(err.value, RunFolderError)


@pytest.mark.parametrize("closed", ["the file", "its folder"])
def test_an_unreadable_dataset_file_is_the_datasets_error_in_the_cli_and_run_json(
    tmp_path, monkeypatch, capsys, closed
):
    """The run fingerprints its data before any task: a dataset file at mode 000 stopped it with a
    RunFolderError, and run.json said so; it is a DatasetError, named without a traceback. So is a
    file in a folder at mode 000 (its stat fails: it was taken for absent, or raised from is_file).
    Both are refusals: found before the run folder is touched."""
    import json
    import re

    from repsim.cli import main
    from repsim.errors import DatasetError

    data = tmp_path / "data"
    data.mkdir()
    for name in ("faces.npz", "textures.npz"):
        (data / name).write_bytes(name.encode())
    unreadable(monkeypatch, data / "faces.npz" if closed == "the file" else data)
    fix = "make it readable (chmod u+r)"
    if closed == "its folder":  # the fix names the folder to open (os.access says so for root)
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda p, m: str(p) != str(data) and real_access(p, m))
        fix = f"make {data} readable (chmod -R u+rX)"
    read = re.escape(f"permission denied while trying to read {data / 'faces.npz'}: {fix}")
    with pytest.raises(DatasetError, match=read):
        file_fingerprint(data / "faces.npz", DatasetError)
    with pytest.raises(DatasetError, match=read):
        data_fingerprint(_dataset(loader="embedded", path=str(data / "faces.npz")))
    config = _config(tmp_path / "c.yaml", data, models=MODELS[:1])
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert re.search(read, err) and "Traceback" not in err
    if closed == "its folder":  # the plan's presence check: its stat fails
        assert err.startswith("repsim: error: datasets cannot be opened, so nothing was run:\n")
        assert f"\n  dataset 'faces': permission denied while trying to read {data}" in err
    else:  # the file is there: its fingerprint, before the folder is touched; named by dataset
        assert err.startswith("repsim: error: dataset 'faces': permission denied while trying to")
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [".lock", "run.json"]
    info = json.loads((tmp_path / "run" / "run.json").read_text())
    assert info["status"] == "refused" and info["error"].startswith("DatasetError: ")
    assert re.search(read, info["error"])


@pytest.mark.slow
def test_changed_dataset_file_redoes_its_features_and_results(tmp_path):
    import json

    import xarray as xr

    from repsim.pipeline import run
    from repsim.runfolder import RunFolder

    data = tmp_path / "data"
    data.mkdir()
    for name in ("faces.npz", "textures.npz"):
        shutil.copy(REPO / "data" / "embedded" / name, data / name)
    config = _config(tmp_path / "c.yaml", data)
    run(config, tmp_path / "run", device="cpu")
    before = xr.load_dataset(RunFolder(tmp_path / "run").similarity)
    with np.load(data / "faces.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["images"] = 255 - arrays["images"]  # same ids, labels and split; other pixels
    np.savez(data / "faces.npz", **arrays)
    run(config, tmp_path / "run", device="cpu")
    again = xr.load_dataset(RunFolder(tmp_path / "run").similarity)
    run(config, tmp_path / "fresh", device="cpu")
    fresh = xr.load_dataset(RunFolder(tmp_path / "fresh").similarity)
    xr.testing.assert_identical(again["cka_linear"], fresh["cka_linear"])
    assert not np.allclose(
        again["cka_linear"].sel(dataset="faces"), before["cka_linear"].sel(dataset="faces")
    )
    xr.testing.assert_identical(  # the untouched dataset keeps its values
        again["cka_linear"].sel(dataset="textures"), before["cka_linear"].sel(dataset="textures")
    )
    redone = json.loads(RunFolder(tmp_path / "run").info.read_text())["redone"]
    assert any(line.startswith("stimuli") and "faces" in line for line in redone), redone
    assert not any("textures" in line for line in redone), redone
    # work done for the first time was not redone
    assert json.loads(RunFolder(tmp_path / "fresh").info.read_text())["redone"] == []


# ----------------------------------------------------------------------------- code
def _package(root, files):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_source_files_follow_imports_and_take_named_packages_whole(tmp_path):
    from repsim.fingerprint import source_files

    pkg = _package(
        tmp_path / "pkg",
        {
            "__init__.py": "from pkg.unrelated import thing\n",  # the API: not followed
            "a.py": "def f():\n    import pkg.b\n",  # an import inside a function counts
            "b.py": "from . import c\n",  # relative
            "c.py": "import numpy\n",  # other packages are not ours
            "unrelated.py": "thing = 1\n",
            "sub/__init__.py": "",
            "sub/x.py": "from ..c import f\n",
            "sub/y.py": "",  # loaded by name only: in when its package is named
            "d.py": "from pkg.sub import x\n",
        },
    )
    names = lambda mods: {str(p.relative_to(pkg)) for p in source_files(pkg, mods)}  # noqa: E731
    assert names(("pkg.a",)) == {"a.py", "b.py", "c.py"}
    assert names(("pkg.sub",)) == {"sub/__init__.py", "sub/x.py", "sub/y.py", "c.py"}
    assert names(("pkg.d",)) == {"d.py", "sub/__init__.py", "sub/x.py", "c.py"}
    assert names(("pkg.unrelated", "pkg.c")) == {"unrelated.py", "c.py"}


def test_a_code_fingerprint_follows_the_source_it_covers(tmp_path, monkeypatch):
    """A stage's fingerprint changes with the content of a module it imports and only then; the
    whole package's (no module named) with any module, its content or its name."""
    from repsim import fingerprint

    pkg = _package(
        tmp_path / "pkg",
        {"__init__.py": "", "fingerprint.py": "", "a.py": "import pkg.b\n", "b.py": "x = 1\n"},
    )
    (pkg / "c.py").write_text("y = 1\n")
    monkeypatch.setattr(fingerprint, "__file__", str(pkg / "fingerprint.py"))

    def now(*modules):
        fingerprint._code_fingerprint.cache_clear()  # as a new process would
        return fingerprint.code_fingerprint(*modules)

    try:
        seen = [(now("pkg.a"), now())]
        (pkg / "b.py").write_text("x = 2\n")  # imported by a
        seen.append((now("pkg.a"), now()))
        (pkg / "c.py").write_text("y = 2\n")  # imported by no module of the stage
        seen.append((now("pkg.a"), now()))
        (pkg / "c.py").rename(pkg / "d.py")
        seen.append((now("pkg.a"), now()))
    finally:
        fingerprint._code_fingerprint.cache_clear()
    stage, whole = zip(*seen)
    assert stage[0] != stage[1] == stage[2] == stage[3]
    assert len(set(whole)) == 4


def test_each_stage_hashes_its_own_code_only():
    from repsim.fingerprint import code_fingerprint, source_files
    from repsim.stages import STAGE_CODE

    root = REPO / "repsim"
    files = {
        stage: {str(p.relative_to(root)) for p in source_files(root, modules)}
        for stage, (modules, _) in STAGE_CODE.items()
    }
    assert "measures/batched.py" in files["similarity"]  # loaded by name, still covered
    assert "zoo/loaders/timm_loader.py" in files["features"]
    assert "stimuli/loaders/wds.py" in files["stimuli"]
    assert "probe.py" in files["probes"] and "probe.py" not in files["similarity"]
    for stage in STAGE_CODE:  # the book, its sentences and figures never redo a stage
        assert not files[stage] & {"plots.py", "book.py", "sentences.py", "chapter.py"}
    # nor the analyses: an edit to the statistics or the analysis tables redid every feature
    # group (the mini-zoo's manifest imported a formatter from stats.py), and an edit to the
    # probe every stimulus table and so everything after it (the config read its precisions
    # from the probe and the extractor)
    for stage in STAGE_CODE:
        assert not files[stage] & {"stats.py", "analysis.py", "consistency.py", "behavior.py"}
    assert not files["stimuli"] & {"extract.py", "probe.py", "store.py", "preprocess.py"}
    assert "probe.py" not in files["features"] and "extract.py" not in files["probes"]
    fingerprints = {code_fingerprint(*STAGE_CODE[s][0]) for s in STAGE_CODE} | {code_fingerprint()}
    assert len(fingerprints) == len(STAGE_CODE) + 1


@pytest.mark.parametrize(
    "stage, work",
    [
        (
            "similarity",
            "from repsim.measures import similarity_matrices\n"
            "f = {m: np.random.default_rng(i).normal(size=(40, 8)) for i, m in enumerate('abc')}\n"
            "similarity_matrices(f, ['cka_linear', 'cka_rbf_0.4', 'cka_linear_biased',"
            " 'rsa_spearman', 'rsa_pearson', 'mutual_knn_5', 'procrustes'])\n",
        ),
        (
            "probes",
            "from repsim.probe import linear_probe\n"
            "rng = np.random.default_rng(0)\n"
            "x, y = rng.normal(size=(60, 4)).astype('float32'), np.arange(60) % 3\n"
            "linear_probe(x[:40], y[:40], x[40:], y[40:], seeds=[0], epochs=1)\n",
        ),
    ],
)
def test_the_modules_a_stage_runs_are_in_its_fingerprint(stage, work):
    """The static reading of imports is checked against what the stage's work really loads,
    after ``import repsim`` (whose API re-exports load some modules whatever the stage)."""
    import subprocess
    import sys

    from repsim.fingerprint import source_files
    from repsim.stages import STAGE_CODE

    root = REPO / "repsim"
    covered = {
        ".".join(p.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        for p in source_files(root, STAGE_CODE[stage][0])
    }
    script = (
        "import sys\nimport numpy as np\nimport repsim\nbefore = set(sys.modules)\n"
        + work
        + "print(' '.join(m for m in set(sys.modules) - before if m.startswith('repsim.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, cwd=REPO
    ).stdout.split()
    loaded = {m.removeprefix("repsim.") for m in out}
    assert len(loaded) >= 2, loaded  # the stage's work loaded its modules in this process
    assert loaded <= covered, loaded - covered


def test_folder_fingerprint_follows_symlinked_folders_and_odd_names(tmp_path):
    """The loaders follow a symlinked class folder; the fingerprint did not, so images rewritten
    behind the link left the stimuli and features cached (mean CKA -0.02 where a fresh run gave
    0.57). A link back up does not loop; a name that is not UTF-8 hashes (it raised)."""
    real = tmp_path / "real" / "a"
    real.mkdir(parents=True)
    (real / "0.png").write_bytes(b"one")
    view = tmp_path / "view"
    view.mkdir()
    (view / "a").symlink_to(real, target_is_directory=True)
    (view / "loop").symlink_to(view, target_is_directory=True)
    first = folder_fingerprint(view)
    (real / "0.png").write_bytes(b"other")
    os.utime(real / "0.png", ns=(1, 1))
    assert folder_fingerprint(view) != first
    with open(os.path.join(os.fsencode(real), b"\xff.png"), "wb") as f:
        f.write(b"x")
    assert folder_fingerprint(view) is not None


def test_links_back_up_add_nothing_to_a_folders_fingerprint(tmp_path):
    """Each real folder is hashed once: links back up leave the fingerprint what it is without
    them (two of them, were they not pruned, would be walked 2**40 times)."""
    root = tmp_path / "images"
    (root / "a").mkdir(parents=True)
    (root / "a" / "0.png").write_bytes(b"one")
    (root / "labels.txt").write_text("a\n")
    plain = folder_fingerprint(root)
    (root / "up").symlink_to(root, target_is_directory=True)
    (root / "a" / "back").symlink_to(root, target_is_directory=True)
    assert folder_fingerprint(root) == plain


def test_a_broken_link_in_a_folder_is_left_out_of_its_fingerprint(tmp_path):
    """A link to nothing has no size or time of its own: it is left out, not hashed with the
    facts of the file before it (or failing the run)."""
    root = tmp_path / "images"
    root.mkdir()
    (root / "0.png").write_bytes(b"one")
    plain = folder_fingerprint(root)
    (root / "1.png").symlink_to(tmp_path / "gone.png")
    assert folder_fingerprint(root) == plain


def _listed_in_order(reverse: bool):
    """``os.scandir``, listing a folder in name order or in reverse (filesystems differ)."""
    real = os.scandir

    class Listing:
        def __init__(self, path="."):
            with real(path) as entries:
                self.entries = iter(sorted(entries, key=lambda e: e.name, reverse=reverse))

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def __iter__(self):
            return self

        def __next__(self):
            return next(self.entries)

    return Listing


def test_a_folders_fingerprint_does_not_depend_on_the_listing_order(tmp_path, monkeypatch):
    """A filesystem lists a folder in an order of its own: a copy of the data elsewhere, with the
    same names, sizes and times, must not redo every stage built on it."""
    root = tmp_path / "images"
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for name in ("0.png", "1.png"):
            (root / label / name).write_bytes(name.encode())
    fingerprints = []
    for reverse in (False, True):
        monkeypatch.setattr(os, "scandir", _listed_in_order(reverse))
        assert next(os.walk(root))[1] == sorted(["cat", "dog"], reverse=reverse)
        fingerprints.append(folder_fingerprint(root))
    assert fingerprints[0] == fingerprints[1]


def test_a_minizoo_model_without_weights_is_keyed_by_its_default_file(tmp_path, monkeypatch):
    """An entry without ``weights:`` reads the zoo's default ``<id>.safetensors``; that file was in
    no key, so retraining it in place (what ``repsim minizoo train`` does by default) reused the
    old model's features with nothing redone."""
    import dataclasses

    from repsim import stages
    from repsim.minizoo import loader
    from repsim.plan import load_plan

    data = tmp_path / "data"
    data.mkdir()
    for name in ("faces.npz", "textures.npz"):
        (data / name).write_bytes(name.encode())
    plan = load_plan(_config(tmp_path / "c.yaml", data), check_models=False)
    zoo = tmp_path / "zoo"
    zoo.mkdir()
    model = dataclasses.replace(plan.models[0], weights=None)
    shutil.copy(plan.models[0].weights, zoo / f"{model.id}.safetensors")
    monkeypatch.setattr(loader, "DEFAULT_DIR", zoo)
    before = stages.features_key(plan, model, plan.datasets[0])
    assert before == stages.features_key(plan, model, plan.datasets[0])
    shutil.copy(plan.models[1].weights, zoo / f"{model.id}.safetensors")  # retrained in place
    assert stages.features_key(plan, model, plan.datasets[0]) != before


def test_a_weights_file_changed_within_one_process_is_loaded_again(tmp_path):
    """Built models are kept per process; a file changed between two runs of one process (a
    notebook, a long-lived dask worker) was a cache hit, so the redone features came from the
    old model."""
    import torch

    from repsim import stages
    from repsim.zoo.spec import ModelSpec

    weights = tmp_path / "w.safetensors"
    shutil.copy(REPO / "data" / "minizoo" / "cnn-supervised-s0.safetensors", weights)
    spec = ModelSpec("m", "minizoo", "cnn", weights=weights)
    first = stages._loaded_model(spec, "cpu")
    assert stages._loaded_model(spec, "cpu") is first  # the same file: reused
    shutil.copy(REPO / "data" / "minizoo" / "cnn-supervised-s1.safetensors", weights)
    second = stages._loaded_model(spec, "cpu")
    assert second is not first
    old, new = (next(m.module.parameters()) for m in (first, second))
    assert not torch.equal(old, new)


def test_built_models_are_kept_up_to_the_memory_budget_oldest_let_go_first(tmp_path, monkeypatch):
    """Models built for one dataset are kept for the next while their sizes fit the budget; past
    it the oldest go, and a model larger than the budget alone is still kept (and used)."""
    import repsim.extract
    from repsim import stages
    from repsim.zoo.spec import ModelSpec

    specs = [
        ModelSpec(f"m{s}", "minizoo", "cnn", weights=REPO / "data" / "minizoo" / f"{m}.safetensors")
        for s, m in enumerate(MODELS)
    ]
    monkeypatch.setattr(stages, "_MODELS", {})
    sizes = {repsim.extract.module_bytes(stages._loaded_model(s, "cpu").module) for s in specs}
    (size,) = sizes  # three models of one size
    monkeypatch.setattr(repsim.extract, "model_memory_budget", lambda device: 2 * size)
    stages._MODELS.clear()
    a, b = (stages._loaded_model(s, "cpu") for s in specs[:2])
    assert stages._loaded_model(specs[0], "cpu") is a  # two fit: both kept
    c = stages._loaded_model(specs[2], "cpu")  # the third does not: the oldest (a) goes
    assert stages._loaded_model(specs[1], "cpu") is b
    assert stages._loaded_model(specs[2], "cpu") is c
    assert stages._loaded_model(specs[0], "cpu") is not a
    monkeypatch.setattr(repsim.extract, "model_memory_budget", lambda device: size // 2)
    big = stages._loaded_model(specs[1], "cpu")  # over the budget alone: the others go, it stays
    assert list(stages._MODELS.values()) == [(big, size)]
    assert stages._loaded_model(specs[1], "cpu") is big


def test_a_weights_folder_is_fingerprinted_by_its_files(tmp_path):
    from repsim.fingerprint import weights_fingerprint

    folder = tmp_path / "align"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors").write_bytes(b"a" * 10)
    first = weights_fingerprint(folder)
    assert first is not None and weights_fingerprint(folder) == first
    (folder / "model.safetensors").write_bytes(b"b" * 10)  # saved again into the same folder
    second = weights_fingerprint(folder)
    assert second != first
    (folder / "model.safetensors").rename(folder / "other.safetensors")
    assert weights_fingerprint(folder) not in (first, second)


# ----------------------------------------------------------------------------- stage keys
def _plan_of_placeholder_data(tmp_path):
    """The plan of ``_config`` on dataset files that are fingerprinted but never opened."""
    from repsim.plan import load_plan

    data = tmp_path / "data"
    data.mkdir()
    for name in ("faces.npz", "textures.npz"):
        (data / name).write_bytes(name.encode())
    return load_plan(_config(tmp_path / "c.yaml", data), check_models=False)


_TABLE_SHAS = {"table": "table", "feature rows": "ids", "probe rows": "ids, labels, splits"}


def _stage_keys(plan, run_dir, shas=_TABLE_SHAS):
    """The key of each stage of the first model on the first dataset, from the hashes of the
    stimulus table (similarity) and of the rows of it that features and probes read."""
    from repsim import stages

    ds, model = plan.datasets[0], plan.models[0]
    return {
        "stimuli": stages.stimuli_key(plan, ds),
        "features": stages.features_key(plan, model, ds, shas["feature rows"]),
        "similarity": stages.similarity_key(plan, ds, run_dir, shas["table"]),
        "probes": stages.probe_key(plan, model, ds, run_dir, shas["probe rows"]),
    }


@pytest.mark.parametrize(
    ("change", "redone"),
    [
        # the subset rules make another table; what features and probes read of it enters by
        # its hashes (below), so a subset of rows they do not read leaves them (a run test below)
        ({"stimuli": {"max_images": 50, "seed": 42}}, {"stimuli"}),
        ({"stimuli": {"seed": 7}}, {"stimuli"}),
        ({"dataset": {"per_class": 5}}, {"stimuli"}),
        ({"dataset": {"split": "test"}}, {"stimuli"}),
        ({"model": {"layer": "other"}}, {"features"}),
        ({"data": "other images"}, {"stimuli", "features"}),
        ({"extract": {"keep_raw": True}}, {"features"}),
        ({"extract": {"pretrained": False}}, {"features"}),
        ({"extract": {"precision": "bfloat16"}}, {"features"}),
        ({"extract": {"batch_size": 7}}, {"features"}),
        # all rows are extracted; a probe is the probe of its features (their sha), enabled or not
        ({"probe": {"enabled": True}}, {"features"}),
        ({"probe": {"enabled": False, "epochs": 3}}, {"probes"}),
        ({"measures": ("cka_linear", "rsa_spearman")}, {"similarity"}),
        ({"similarity": {"memory_budget_gb": 1.0}}, {"similarity"}),
        ({"similarity": {"progress": True}}, set()),  # bars change no number
        ({"similarity": {"progress": False}}, set()),
        ({"threads": 2}, {"features", "similarity", "probes"}),
        ({"device_type": "cuda"}, {"features", "similarity", "probes"}),
        # a project, config or dataset moved elsewhere: its places are not in the keys, the
        # content of what is there is
        ({"moved": "data"}, set()),
        ({"moved": "weights"}, set()),
        ({"moved": "data", "bytes": "other"}, {"stimuli", "features"}),
        ({"moved": "weights", "bytes": "other"}, {"features"}),
        ({"sha of table": "other table"}, {"similarity"}),
        ({"sha of feature rows": "other ids"}, {"features"}),
        ({"sha of probe rows": "other labels"}, {"probes"}),
        ({"sha of model 0": "other"}, {"similarity", "probes"}),
        ({"sha of model 1": "other"}, {"similarity"}),  # the probe of model 0 does not read it
        ({"code of": "stimuli"}, {"stimuli"}),  # repsim.stimuli is in the features' code too
        ({"code of": "features"}, {"features"}),
        ({"code of": "similarity"}, {"similarity"}),
        ({"code of": "probes"}, {"probes"}),
    ],
    ids=lambda v: "-".join(v) if isinstance(v, dict) else None,
)
def test_each_input_of_a_stage_is_in_its_key_and_no_other(tmp_path, monkeypatch, change, redone):
    """A stage is redone when an input it depends on changes (a key that leaves one out reuses a
    stale output) and only then (one that takes another stage's option recomputes needlessly).
    Upstream results enter by their content: the stimulus table's hash, the feature groups'."""
    import dataclasses

    from repsim import stages
    from repsim.cache import StageCache
    from repsim.pipeline import config_hash

    plan = _plan_of_placeholder_data(tmp_path)
    ds = plan.datasets[0]
    cache = StageCache(tmp_path / "run")
    for m in plan.models:
        cache.mark_done("features", (ds.id, m.id), "key", sha256=f"features of {m.id}")
    before = _stage_keys(plan, tmp_path / "run")
    change = dict(change)
    shas = {k: change.pop(f"sha of {k}", v) for k, v in _TABLE_SHAS.items()}
    for i, m in enumerate(plan.models[:2]):
        if f"sha of model {i}" in change:
            cache.mark_done(
                "features", (ds.id, m.id), "key", sha256=change.pop(f"sha of model {i}")
            )
    if "dataset" in change:
        change["datasets"] = (dataclasses.replace(ds, **change.pop("dataset")), *plan.datasets[1:])
    if "model" in change:
        model = dataclasses.replace(plan.models[0], **change.pop("model"))
        change["models"] = (model, *plan.models[1:])
    if "code of" in change:
        edited, real = change.pop("code of"), stages.stage_code
        monkeypatch.setattr(stages, "stage_code", lambda s: "edited" if s == edited else real(s))
    if "data" in change:
        change["data_fingerprints"] = {**plan.data_fingerprints, ds.id: change.pop("data")}
    if "moved" in change:  # a copy at another place, with the same bytes or others
        moved, elsewhere = change.pop("moved"), tmp_path / "elsewhere"
        elsewhere.mkdir()
        source = ds.path if moved == "data" else plan.models[0].weights
        copy = elsewhere / source.name
        copy.write_bytes(source.read_bytes() + (b"!" if change.pop("bytes", "") else b""))
        if moved == "data":
            moved_ds = dataclasses.replace(ds, path=copy, config_dir=elsewhere)
            change["datasets"] = (moved_ds, *plan.datasets[1:])
            change["data_fingerprints"] = {}  # taken again, at the new place
        else:
            change["models"] = (dataclasses.replace(plan.models[0], weights=copy), *plan.models[1:])
    for section in ("stimuli", "extract", "probe", "similarity"):
        if section in change:
            change[section] = {**getattr(plan, section), **change[section]}
    changed = dataclasses.replace(plan, **change)
    after = _stage_keys(changed, tmp_path / "run", shas)
    assert {stage for stage in before if after[stage] != before[stage]} == redone
    if not redone:  # nor does the run folder take it for another config and rebuild its results
        assert config_hash(changed) == config_hash(plan)


def test_the_config_hash_follows_the_content_of_data_and_weights_not_their_place(tmp_path):
    """A config pointed at other data (same file names, other images) is another config: the
    folder's old results are removed before the new run's work, not read as current while it
    runs; the same bytes at another place are the same config."""
    import dataclasses

    from repsim.pipeline import config_hash

    plan = _plan_of_placeholder_data(tmp_path)
    ds, model = plan.datasets[0], plan.models[0]
    before = config_hash(plan)
    for name, data in (("same", ds.path.read_bytes()), ("other", b"other images")):
        (tmp_path / name).mkdir()
        (tmp_path / name / ds.path.name).write_bytes(data)
        moved = dataclasses.replace(ds, path=tmp_path / name / ds.path.name)
        there = dataclasses.replace(
            plan, datasets=(moved, *plan.datasets[1:]), data_fingerprints={}
        )
        assert (config_hash(there) == before) == (name == "same")
    (tmp_path / "w").mkdir()
    for name, extra in (("same", b""), ("other", b"!")):
        weights = tmp_path / "w" / f"{name}.safetensors"
        weights.write_bytes(model.weights.read_bytes() + extra)
        swapped = dataclasses.replace(model, weights=weights)
        there = dataclasses.replace(plan, models=(swapped, *plan.models[1:]))
        assert (config_hash(there) == before) == (name == "same")


def _small_project(project: Path, *, name: str, probes: bool, **stimuli) -> Path:
    """A project folder with two mini-zoo models, two embedded datasets and their config (paths
    relative to it), at ``project``; ``stimuli`` options over max_images 60, seed 42."""
    import yaml

    (project / "data").mkdir(parents=True)
    zoo = yaml.safe_load((REPO / "data" / "minizoo" / "models.yaml").read_text())["models"]
    models = [m for m in zoo if m["id"] in MODELS[:2]]
    for m in models:
        shutil.copy(REPO / "data" / "minizoo" / m["weights"], project / "data" / m["weights"])
        m["weights"] = f"data/{m['weights']}"
    datasets = []
    for ds_name, domain, n in (
        ("faces", "Natural (single-domain)", 2),
        ("textures", "Structured", 5),
    ):
        shutil.copy(REPO / "data" / "embedded" / f"{ds_name}.npz", project / "data")
        datasets.append(
            {"id": ds_name, "loader": "embedded", "path": f"data/{ds_name}.npz", "domain": domain,
             "n_classes": n}
        )  # fmt: skip
    config = {
        "name": name,
        "models": models,
        "datasets": datasets,
        "measures": ["cka_linear"],
        "stimuli": {"max_images": 60, "seed": 42, **stimuli},
        "probe": {"enabled": probes, "epochs": 2, "seeds": [0]} if probes else {"enabled": False},
        "threads": 1,
    }
    (project / "config.yaml").write_text(yaml.safe_dump(config))
    return project


def test_a_project_moved_elsewhere_reuses_all_its_work(tmp_path):
    """A project (config, data, weights, run folder) renamed as a whole: the rerun redoes no
    stage, where every stimulus table and feature group was recomputed when the stage keys held
    the absolute places of the data and weights (hours for the study's models on a GPU)."""
    import json

    import xarray as xr

    from repsim.pipeline import run

    project = _small_project(tmp_path / "project", name="moved", probes=False)
    run(project / "config.yaml", project / "run", device="cpu")
    before = xr.load_dataset(project / "run" / "similarity.nc")
    moved = project.rename(tmp_path / "moved")  # a rename keeps every file's change time
    run(moved / "config.yaml", moved / "run", device="cpu")
    info = json.loads((moved / "run" / "run.json").read_text())
    assert info["status"] == "finished" and info["redone"] == []
    xr.testing.assert_equal(xr.load_dataset(moved / "run" / "similarity.nc"), before)


@pytest.mark.parametrize("probes", [True, False], ids=["probes-on", "probes-off"])
def test_another_similarity_subset_keeps_the_features_and_probes_of_every_row(tmp_path, probes):
    """stimuli.seed chooses the similarity subset only. With probes on, every row of a dataset is
    extracted and probed, yet another seed extracted and probed every row again (at the study's
    size, every model on the whole of each train split); now only the similarities are redone,
    equal to a fresh run's with that seed. With probes off the extracted rows are the subset, so
    the features are extracted again."""
    import json

    import pandas as pd
    import xarray as xr
    import yaml

    from repsim.pipeline import run

    project = _small_project(tmp_path / "project", name="subset", probes=probes)
    config, out = project / "config.yaml", project / "run"
    run(config, out, device="cpu")
    table_before = pd.read_csv(out / "stimuli" / "faces.csv")
    probes_before = xr.load_dataset(out / "probes.nc") if probes else None
    raw = yaml.safe_load(config.read_text())
    raw["stimuli"]["seed"] = 7
    config.write_text(yaml.safe_dump(raw))
    run(config, out, device="cpu")
    table_after = pd.read_csv(out / "stimuli" / "faces.csv")
    assert (table_after["in_similarity"] != table_before["in_similarity"]).any()  # a new subset
    redone = json.loads((out / "run.json").read_text())["redone"]
    stages_redone = {line.split(" ", 1)[0] for line in redone}
    assert ("features" in stages_redone) == (not probes), redone
    assert "probes" not in stages_redone and "similarity" in stages_redone, redone

    fresh = _small_project(tmp_path / "fresh", name="subset", probes=probes, seed=7)
    run(fresh / "config.yaml", fresh / "run", device="cpu")
    xr.testing.assert_equal(
        xr.load_dataset(out / "similarity.nc"), xr.load_dataset(fresh / "run" / "similarity.nc")
    )
    if probes:
        for probes_nc in (out / "probes.nc", fresh / "run" / "probes.nc"):
            xr.testing.assert_equal(xr.load_dataset(probes_nc), probes_before)


@pytest.mark.parametrize(
    "change",
    [
        {"models": "first two"},
        {"datasets": "first only"},
        {"measures": ("cka_linear", "rsa_spearman")},
        {"stimuli": {"max_images": 50}},
        {"extract": {"batch_size": 7}},
        {"probe": {"epochs": 3}},
        {"similarity": {"memory_budget_gb": 1.0}},
        {"threads": 2},
    ],
    ids=lambda change: next(iter(change)),
)
def test_each_option_of_the_result_files_is_in_the_config_hash(tmp_path, change):
    """A config that differs in anything its result files are built from has another config
    hash: the run folder removes an earlier config's result files before any work only when the
    hashes differ, and run.json and the manifest name the config by it."""
    import dataclasses

    from repsim.pipeline import config_hash

    plan = _plan_of_placeholder_data(tmp_path)
    ((key, value),) = change.items()
    if key == "models":
        value = plan.models[:2]
    elif key == "datasets":
        value = plan.datasets[:1]
    elif isinstance(value, dict):
        value = {**getattr(plan, key), **value}
    changed = dataclasses.replace(plan, **{key: value})
    assert config_hash(changed) != config_hash(plan)
    assert config_hash(dataclasses.replace(changed)) == config_hash(changed)


@pytest.mark.parametrize("stage", ["stimuli", "features", "similarity", "probes"])
@pytest.mark.parametrize("edit", ["its modules", "the stage definitions", "a library"])
def test_a_stage_key_follows_the_code_behind_it(monkeypatch, stage, edit):
    """An output made by other code is redone: the stage's modules, repsim.stages itself and the
    versions of the libraries that compute it are each in its code fingerprint."""
    from repsim import stages

    modules, libraries = stages.STAGE_CODE[stage]
    before = stages.stage_code(stage)
    if edit == "its modules":
        real = stages.code_fingerprint
        monkeypatch.setattr(
            stages, "code_fingerprint", lambda *m: "edited" if m == modules else real(*m)
        )
    elif edit == "the stage definitions":
        real = stages.file_fingerprint
        monkeypatch.setattr(
            stages,
            "file_fingerprint",
            lambda path: "edited" if path == stages.__file__ else real(path),
        )
    else:
        real = stages.package_versions
        monkeypatch.setattr(
            stages,
            "package_versions",
            lambda names: (
                {**real(names), libraries[-1]: "9.9"} if names == libraries else real(names)
            ),
        )
    assert stages.stage_code(stage) != before


def test_a_feature_group_made_by_other_code_is_said_to_be_redone_for_its_code(tmp_path):
    """The reason a feature group is redone names the code when the record's code differs, the
    inputs when only they do."""
    from repsim import stages
    from repsim.cache import StageCache

    plan = _plan_of_placeholder_data(tmp_path)
    model, ds, run_dir = plan.models[0], plan.datasets[0], tmp_path / "run"
    cache = StageCache(run_dir)
    for code, reason in [("other code", "the code that computes it changed"), (None, "inputs")]:
        code = code or stages.stage_code("features")
        cache.mark_done("features", (ds.id, model.id), "old key", code=code, sha256="x")
        ok, why = stages.check_features(plan, model, ds, run_dir, "table")
        assert not ok and reason in why, why
