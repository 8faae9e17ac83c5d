"""What the ``repsim`` commands other than ``run`` do with inputs that cannot be used: a symbolic-
link loop, a dangling link, a FIFO, a damaged file, a run or book folder that does not hold what
the command needs. Each ends with exit 2 and a message naming the cause and the fix, before any
work, never a traceback (found by an audit of ``book``, ``models``, ``datasets``, ``bench``,
``compare`` and ``minizoo``)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from repsim import cli


def _loop(folder: Path, name: str = "loop") -> Path:
    """``folder/name``: a symbolic link in a loop with a sibling."""
    (folder / f"{name}-b").symlink_to(folder / name)
    (folder / name).symlink_to(folder / f"{name}-b")
    return folder / name


def _no_work(*args, **kwargs):
    raise AssertionError("the work started before the input was checked")


#: (argv with LOOP for a symbolic-link loop and OK for a fresh path) of every command that reads
#: a config file, a run folder or a zoo folder
LOOP_ARGUMENTS = [
    ["models", "--config", "LOOP"],
    ["models", "--config", "LOOP", "--check"],
    ["datasets", "--config", "LOOP", "--check"],
    ["run", "LOOP", "--out", "OK"],
    ["bench", "run", "--config", "LOOP"],
    ["models", "--config", "INCLUDES_LOOP"],
    ["compare", "LOOP"],
    ["book", "--run", "LOOP", "--book", "OK"],
    ["minizoo", "merge", "LOOP", "--into", "OK"],
    ["minizoo", "evaluate", "--zoo", "LOOP"],
    ["minizoo", "train", "--data", "LOOP", "--only", "mlp-random-s0", "--out", "OK"],
]


@pytest.mark.parametrize("argv", LOOP_ARGUMENTS, ids=" ".join)
def test_a_symbolic_link_loop_is_named_not_a_traceback(tmp_path, monkeypatch, capsys, argv):
    """A config file, run folder or zoo folder that is a symbolic-link loop was a RuntimeError
    traceback ("Symlink loop from ...", from Path.resolve) or said not to exist ("run the
    pipeline first", "manifest.csv is missing or empty; train the zoo first")."""
    monkeypatch.setattr("repsim.minizoo.train.train_zoo", _no_work)  # never trains here
    loop = _loop(tmp_path)
    includes = tmp_path / "includes.yaml"
    includes.write_text("include: [loop]\n")
    subs = {"LOOP": str(loop), "OK": str(tmp_path / "ok"), "INCLUDES_LOOP": str(includes)}
    assert cli.main([subs.get(a, a) for a in argv]) == 2
    err = capsys.readouterr().err
    assert "is a symbolic-link loop (links that point at each other)" in err, err
    assert "Traceback" not in err and "run the pipeline first" not in err
    assert "train the zoo first" not in err and "is missing" not in err


def test_a_run_folder_that_is_a_dangling_link_is_named(tmp_path, capsys):
    """It was "does not exist: run the pipeline first", of a link the user made on purpose."""
    (tmp_path / "run").symlink_to(tmp_path / "elsewhere")
    assert cli.main(["compare", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"is a dangling symbolic link to {tmp_path / 'elsewhere'}" in err, err


@pytest.mark.parametrize("kind", ["fifo", "folder"])
def test_compare_names_a_similarity_file_that_is_not_a_file(tmp_path, capsys, kind):
    """A FIFO or a folder named like a similarity file was said not to exist."""
    path = tmp_path / "similarity.nc"
    os.mkfifo(path) if kind == "fifo" else path.mkdir()
    assert cli.main(["compare", str(path)]) == 2
    err = capsys.readouterr().err
    expected = "is not a regular file (a FIFO" if kind == "fifo" else "is a folder, not a file"
    assert f"{path} {expected}" in err, err


# ------------------------------------------------------------------------------------ repsim book
def _run_with_sealed_features(path: Path) -> Path:
    """A fake run whose manifest lists its sealed feature groups among the results' inputs, as a
    finished ``repsim run`` does."""
    from helpers_run import write_fake_run

    from repsim.runfolder import RunFolder
    from repsim.store import FeatureStore

    write_fake_run(path, n_per_objective=1, features=True)
    folder = RunFolder(path)
    store = FeatureStore(folder.features)
    inputs = {
        f"features {d}/{m}": store.seal(d, m) for d in store.datasets() for m in store.models(d)
    }
    folder.write_manifest({**folder.read_manifest(), "inputs": inputs})
    return path


def _book(path: Path) -> Path:
    """A book folder (what check_book_folder asks of it) holding the last build's notebooks."""
    (path / "generated").mkdir(parents=True)
    (path / "_config.yml").write_text("title: a book\n")
    (path / "_toc.yml").write_text("format: jb-book\nroot: intro\n")
    (path / "generated" / "01_last_build.ipynb").write_text("{}")
    return path


@pytest.mark.parametrize("damage", ["store gone", "group gone", "group sealed again"])
def test_book_refuses_a_run_whose_features_are_not_its_results_before_any_notebook(
    tmp_path, monkeypatch, capsys, damage
):
    """The chapters read the features the results were computed from: a store deleted since the
    run passed the book's check, the last build's notebooks were removed, and the first chapter
    failed (StoreError inside the notebook)."""
    import shutil

    from repsim.book import check_run
    from repsim.runfolder import RunFolder
    from repsim.store import FeatureStore

    run = _run_with_sealed_features(tmp_path / "run")
    book = _book(tmp_path / "book")
    check_run(run)  # the intact run passes
    store = FeatureStore(RunFolder(run).features)
    dataset = store.datasets()[0]
    model = store.models(dataset)[0]
    if damage == "store gone":
        shutil.rmtree(RunFolder(run).features)
    elif damage == "group gone":
        shutil.rmtree(store._dir(dataset, model))
    else:
        store._open(dataset, model).attrs["sha256"] = "0" * 64
    monkeypatch.setattr("repsim.book.execute_notebook", _no_work)
    assert cli.main(["book", "--run", str(run), "--book", str(book)]) == 2
    err = capsys.readouterr().err
    expected = {
        "store gone": "features.zarr is gone: deleted or moved since the run",
        "group gone": f"features of {model!r} on {dataset!r}, which the result files of this run "
        "were computed from, are missing or incomplete",
        "group sealed again": f"features of {model!r} on {dataset!r} are not those the result "
        "files of this run were computed from",
    }[damage]
    assert expected in err and "rerun the config into the run folder" in err, err
    assert (book / "generated" / "01_last_build.ipynb").is_file()


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("no toc", "BOOK is not a book folder: it has no _toc.yml; pass --book"),
        ("config not yaml", "BOOK/_config.yml is not valid YAML text (while parsing"),
        ("config a list", "BOOK/_config.yml must hold a YAML mapping, got list"),
        ("config not utf-8", "BOOK/_config.yml is not valid YAML text ('utf-8' codec"),
        ("toc a folder", "BOOK/_toc.yml is a folder, not a file; pass --book"),
    ],
)
@pytest.mark.parametrize("execute", [True, False], ids=["execute", "no-execute"])
def test_book_checks_its_config_and_toc_before_any_notebook(
    tmp_path, monkeypatch, capsys, damage, expected, execute
):
    """A _config.yml that is not a YAML mapping was a traceback (yaml, AttributeError,
    UnicodeDecodeError) and a missing _toc.yml jupyter-book's own traceback, both after every
    notebook had run (minutes)."""
    from helpers_run import write_fake_run

    from repsim.book import _write_executed_on
    from repsim.runfolder import RunFolder

    run = write_fake_run(tmp_path / "run", n_per_objective=1, features=False)
    book = _book(tmp_path / "book")
    # the last build's record, so that --no-execute would build from its notebooks
    _write_executed_on(book / "generated", run, RunFolder(run).results_digest())
    config, toc = book / "_config.yml", book / "_toc.yml"
    if damage == "no toc":
        toc.unlink()
    elif damage == "config not yaml":
        config.write_text("title: [\n")
    elif damage == "config a list":
        config.write_text("- title\n")
    elif damage == "config not utf-8":
        config.write_bytes(b"title: \x92\xff\n")
    else:
        toc.unlink()
        toc.mkdir()
    monkeypatch.setattr("repsim.book.execute_notebook", _no_work)
    monkeypatch.setattr("repsim.book.build_html", _no_work)
    argv = ["--run", str(run)] if execute else ["--no-execute"]
    assert cli.main(["book", *argv, "--book", str(book)]) == 2
    err = capsys.readouterr().err
    assert expected.replace("BOOK", str(book)) in err, err
    assert "Traceback" not in err
    assert (book / "generated" / "01_last_build.ipynb").is_file()


# ----------------------------------------------------------------------------------- repsim bench
@pytest.mark.parametrize("name", ["measures", "probe", "run"])
def test_bench_json_that_is_a_symbolic_link_loop_is_refused_before_the_work(
    tmp_path, monkeypatch, capsys, name
):
    """The check of --json probed its folder, not the file: a link loop there failed with an
    OSError traceback where the result was written, after the benchmark (bench run: after two
    pipeline runs)."""
    import importlib

    monkeypatch.setattr(importlib.import_module(f"repsim.bench.{name}"), "run", _no_work)
    loop = _loop(tmp_path, "b.json")
    assert cli.main(["bench", name, "--json", str(loop)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"repsim: error: --json: {loop} is a symbolic-link loop"), err
    assert "choose another --json" in err


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
def test_bench_json_that_cannot_be_written_after_the_work_is_named(capsys):
    """A disk that filled up during the benchmark (here /dev/full, which refuses every write)
    was an OSError traceback at the end; now exit 2 naming --json, the results printed."""
    argv = ["--models", "2", "--n", "8", "--dim", "4", "--measures", "cka_linear"]
    assert cli.main(["bench", "measures", *argv, "--device", "cpu", "--json", "/dev/full"]) == 2
    captured = capsys.readouterr()
    assert "speedup:" in captured.out  # the benchmark's own output is there
    assert captured.err.startswith(
        "repsim: error: --json: no space left on the device while trying to write /dev/full"
    ), captured.err


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("measures.models=1", "must be at least 2, got 1 (as --models of repsim bench measures)"),
        ("measures.naive_pairs=0", "must be at least 1, got 0 (as --naive-pairs of repsim"),
        ("probe.classes=1", "must be at least 2, got 1 (as --classes of repsim bench probe)"),
        ("probe.seeds=[0, -1]", "must be at least 0, got -1 (as --seeds of repsim bench probe)"),
        ("extract.batch_size=0", "must be at least 1, got 0 (as --batch-size of repsim bench"),
    ],
)
def test_bench_all_set_is_held_to_the_bounds_of_the_benchmark_s_own_option(
    tmp_path, monkeypatch, capsys, setting, message
):
    """``repsim bench measures --models 1`` is a usage error, but ``bench all --set
    measures.models=1`` ran every benchmark and reported measures failed (an InputError inside),
    exit 1 after minutes."""
    monkeypatch.setattr("repsim.bench.run_benchmarks", _no_work)
    out = tmp_path / "bench"
    assert cli.main(["bench", "all", "--device", "cpu", "--out", str(out), "--set", setting]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"repsim: error: --set {setting!r}: {message}"), err
    assert not out.exists()


# --------------------------------------------------------------------------------- repsim minizoo
def _small_zoo(path: Path, ids: tuple[str, ...] = ("cnn-random-s0", "mlp-random-s0")) -> Path:
    """A zoo folder holding a few models of the shipped zoo (files, manifest and held-out rows
    as training writes them), made without training."""
    import shutil

    from repsim.minizoo.loader import DEFAULT_DIR
    from repsim.minizoo.manifest import read_manifest, write_heldout, write_manifest

    path.mkdir(parents=True)
    rows = [r for r in read_manifest(DEFAULT_DIR / "manifest.csv") if r["id"] in ids]
    for row in rows:
        shutil.copyfile(DEFAULT_DIR / row["weights"], path / row["weights"])
    write_manifest(rows, path / "manifest.csv")
    held = read_manifest(DEFAULT_DIR / "heldout.csv")
    write_heldout([h for h in held if h["id"] in ids], path / "heldout.csv")
    return path


def test_merge_on_a_full_disk_names_the_target_and_into_and_leaves_no_partial_file(
    tmp_path, monkeypatch, capsys
):
    """The error of a copy that filled the disk named the source's file ("while trying to merge
    into SOURCE/x.safetensors"), the fix named --out, and the partial x.safetensors.tmp stayed
    in the target zoo."""
    import errno

    import repsim.minizoo.merge

    source, into = _small_zoo(tmp_path / "source"), tmp_path / "zoo"

    def copy_until_full(src, dst):
        Path(dst).write_bytes(b"half a file")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src))

    monkeypatch.setattr(repsim.minizoo.merge.shutil, "copyfile", copy_until_full)
    assert cli.main(["minizoo", "merge", str(source), "--into", str(into)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(
        f"repsim: error: no space left on the device while trying to write {into}: free space "
        "on that disk (or raise the quota), or choose another --into"
    ), err
    assert list(into.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--only", "zzz-*"], "--only ['zzz-*'] matches no model id"),
        (["--datasets", "nope"], "nope.npz does not exist; generate it with `python -m repsim"),
    ],
)
def test_minizoo_train_leaves_no_out_folder_when_it_refuses_its_options(
    tmp_path, monkeypatch, capsys, argv, message
):
    """--only matching no model and an unknown --datasets name were refused after --out was made:
    an empty folder was left (the budget's checks leave none)."""
    from repsim.minizoo.data import synthetic_npz

    data = tmp_path / "data"
    data.mkdir()
    synthetic_npz(data / "blocks.npz")
    monkeypatch.setattr("repsim.minizoo.train.train_zoo", _no_work)  # never trains here
    out = tmp_path / "zoo"
    assert cli.main(["minizoo", "train", "--data", str(data), "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert not out.exists()


# --------------------------------------------------------------------------------------- Ctrl-C
@pytest.mark.parametrize(
    ("argv", "target", "said"),
    [
        (["run", "c.yaml", "--out", "o"], "repsim.pipeline.run", "finished stages are kept"),
        (["models", "--config", "c.yaml", "--check"], "repsim.zoo.check_models", "rerun the"),
        (["compare", "r"], "repsim.reference.compare", "rerun the command to start it again"),
        (["book", "--run", "r"], "repsim.book.build_book", "rerun the command to start it again"),
        (["bench", "all"], "repsim.bench.run_all", "rerun the command to start it again"),
        (
            ["minizoo", "train", "--out", "z"],
            "repsim.minizoo.train.main",
            "the models trained so far are kept; rerun with --resume",
        ),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_ctrl_c_says_what_each_command_leaves(monkeypatch, capsys, argv, target, said):
    """Every command said "finished stages are kept and a rerun resumes", of a models check, a
    comparison or a benchmark that keeps nothing (exit 130 either way)."""

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(target, interrupted)
    assert cli.main(argv) == 130
    err = capsys.readouterr().err
    assert err.startswith("repsim: interrupted; ") and said in err, err
    assert ("finished stages" in err) == (argv[0] == "run")


# --------------------------------------------------------------------------------- repsim compare
@pytest.mark.parametrize("name", ["manifest.json", "similarity.nc", "run.json"])
def test_a_fifo_in_place_of_a_run_s_file_is_named_not_waited_on(tmp_path, capsys, name):
    """compare (and the book, and every reader of a run folder) opened it and waited for a writer
    that never came: the command hung until killed."""
    import signal

    from helpers_run import write_fake_run

    run = write_fake_run(tmp_path / "run", n_per_objective=1, features=False)
    (run / name).unlink()
    os.mkfifo(run / name)

    def hung(signum, frame):
        raise AssertionError(f"repsim compare waited on the FIFO {name}")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        assert cli.main(["compare", str(run)]) == 2
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    err = capsys.readouterr().err
    expected = (
        f"{run / name} is unreadable, so the result files of {run} cannot be verified"
        if name == "manifest.json"
        else f"{run / name} is not a regular file (a FIFO, device or socket"
    )
    assert expected in err, err
