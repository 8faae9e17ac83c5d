"""Exit codes of the ``repsim`` command (documented in CONTRIBUTING.md): 2 a config, model or
folder error (nothing or no more could run), 3 a run whose tasks partly failed (the rest is cached)."""

from __future__ import annotations

import re

import pytest

from repsim import cli
from repsim.errors import ConfigError
from repsim.pipeline import RunFailedError
from repsim.runfolder import RunLockedError


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ConfigError("bad key"), 2),
        (RunLockedError("locked by pid 1"), 2),
        (RunFailedError("1 task(s) failed"), 3),
    ],
)
def test_run_exit_code_follows_the_error(monkeypatch, capsys, error, code):
    def failing_run(*args, **kwargs):
        raise error

    monkeypatch.setattr("repsim.pipeline.run", failing_run)
    assert cli.main(["run", "some.yaml", "--out", "somewhere"]) == code
    assert str(error) in capsys.readouterr().err


def test_sigterm_stops_a_run_as_ctrl_c_does(monkeypatch, capsys):
    """SIGTERM's default action killed the process where it stood (probe workers left behind,
    run.json not updated); under the repsim command it is raised like Ctrl-C: exit 143, the
    message, and the previous handler back afterwards."""
    import os
    import signal

    def run_until_terminated(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not interrupt the run")

    def earlier_handler(signum, frame):  # the caller's own, to be given back
        raise AssertionError("the command's handler was not in place")

    outside = signal.signal(signal.SIGTERM, earlier_handler)
    try:
        monkeypatch.setattr("repsim.pipeline.run", run_until_terminated)
        assert cli.main(["run", "some.yaml", "--out", "somewhere"]) == 143
        assert "interrupted; finished stages are kept" in capsys.readouterr().err
        assert signal.getsignal(signal.SIGTERM) is earlier_handler
    finally:
        signal.signal(signal.SIGTERM, outside)


def test_minizoo_evaluate_without_a_trained_zoo_names_the_fix(tmp_path, capsys):
    assert cli.main(["minizoo", "evaluate", "--zoo", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "manifest.csv is missing or empty; train the zoo first" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("form", ["name", "path"])
def test_paths_too_long_exit_2_with_the_fix_not_a_traceback(tmp_path, capsys, form):
    long = tmp_path / ("x" * 300) if form == "name" else tmp_path.joinpath(*["y" * 200] * 25)
    assert cli.main(["run", "some.yaml", "--out", str(long / "run")]) == 2
    assert cli.main(["run", str(long / "c.yaml"), "--out", str(tmp_path / "run")]) == 2
    assert cli.main(["compare", str(long)]) == 2
    err = capsys.readouterr().err
    assert err.count("shorten it") == 3 and err.count("shorter --out") == 1
    assert "Traceback" not in err and "OSError" not in err


#: every path argument of every command, as (argv with LONG for the path, option named, action)
PATH_ARGUMENTS = [
    (["run", "LONG/c.yaml", "--out", "OK"], "config file", "read"),
    (["run", "c.yaml", "--out", "LONG/run"], "--out", "create"),
    (["book", "--run", "LONG", "--book", "OK"], "--run", "read"),
    (["book", "--book", "LONG", "--no-execute"], "--book", "write"),
    (["models", "--config", "LONG/c.yaml"], "--config", "read"),
    (["datasets", "--config", "LONG/c.yaml"], "--config", "read"),
    (["compare", "LONG"], "run folder", "read"),
    (["bench", "all", "--out", "LONG"], "--out", "write"),
    (["bench", "measures", "--json", "LONG/b.json"], "--json", "write"),
    (["bench", "probe", "--json", "LONG/b.json"], "--json", "write"),
    (["bench", "run", "--config", "LONG/c.yaml"], "--config", "read"),
    (["bench", "run", "--json", "LONG/b.json"], "--json", "write"),
    (["minizoo", "train", "--out", "LONG"], "--out", "write"),
    (["minizoo", "train", "--data", "LONG"], "--data", "read"),
    (["minizoo", "evaluate", "--zoo", "LONG"], "--zoo", "write"),
    (["minizoo", "evaluate", "--data", "LONG"], "--data", "read"),
    (["minizoo", "merge", "LONG", "--into", "OK"], "a zoo folder to merge", "read"),
    (["minizoo", "merge", "OK", "--into", "LONG"], "--into", "write"),
]


@pytest.mark.parametrize("form", ["name", "path"])
@pytest.mark.parametrize(
    ("argv", "option", "action"),
    PATH_ARGUMENTS,
    ids=lambda v: " ".join(v) if isinstance(v, list) else v,
)
def test_every_path_argument_too_long_is_named_before_any_work(
    tmp_path, capsys, form, argv, option, action
):
    """--book, bench --out/--json and the minizoo folders were raw tracebacks (some after the work)."""
    long = tmp_path / ("x" * 300) if form == "name" else tmp_path.joinpath(*["y" * 200] * 25)
    ok = str(tmp_path / "ok")
    argv = [a.replace("LONG", str(long)).replace("OK", ok) for a in argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"repsim: error: {option}: cannot {action} {str(long)[:60]}"), err
    assert "shorten it (rename it, or move or link it to a shorter path)" in err
    fix = f"or choose a shorter {option}"
    assert (fix in err) == (action != "read")
    assert "--out" not in err or option == "--out"  # the fix names the option that was given
    assert "Traceback" not in err and "OSError" not in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("errno_name", "inside", "expected"),
    [
        (
            "ENOSPC",
            True,
            "no space left on the device while trying to write {path}: free space on "
            "that disk (or raise the quota), or choose another --book; rerun to resume",
        ),
        (
            "EACCES",
            True,
            "permission denied while trying to write {path}: make it writable "
            "(chmod u+w), or choose another --book",
        ),
        (
            "EACCES",
            False,
            "permission denied while trying to read {path}: make it readable (chmod u+r)",
        ),
    ],
    ids=["full-disk", "not-writable", "not-readable"],
)
def test_book_filesystem_errors_name_the_file_and_the_book_fix(
    tmp_path, monkeypatch, capsys, errno_name, inside, expected
):
    """A full disk or a folder not writable while the book was built gave a raw traceback; now
    exit 2 with the file, the access (a file of the book is written, any other read) and a fix
    that names --book, never --out."""
    import errno
    import os

    book = tmp_path / "book"
    path = (book / "_build" / "html" / "index.html") if inside else (tmp_path / "nb.ipynb")
    code = getattr(errno, errno_name)

    def failing_build(**kwargs):
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr("repsim.book.build_book", failing_build)
    assert cli.main(["book", "--run", str(tmp_path / "run"), "--book", str(book)]) == 2
    err = capsys.readouterr().err
    assert expected.format(path=path) in err
    assert "--out" not in err and "Traceback" not in err


def test_book_refuses_run_with_no_execute(tmp_path, capsys):
    """--no-execute builds from the notebooks executed last, whatever run they were executed on:
    a --run beside it was ignored, so a book could show another run than the one named."""
    assert cli.main(["book", "--run", str(tmp_path), "--no-execute"]) == 2
    assert "--run does not apply with --no-execute" in capsys.readouterr().err


def test_book_checks_its_folder_and_the_run_before_replacing_notebooks(tmp_path):
    """A run that fails its checks cost the last build's executed notebooks (removed first), and
    a --book without _config.yml failed only after every notebook had run."""
    from repsim.book import BookError, build_book
    from repsim.errors import StoreError

    book = tmp_path / "book"
    (book / "generated").mkdir(parents=True)
    (book / "generated" / "01_last_build.ipynb").write_text("{}")
    with pytest.raises(StoreError, match="has no similarity.nc"):
        build_book(run_dir=tmp_path / "no-run", book_dir=book)
    assert (book / "generated" / "01_last_build.ipynb").is_file()
    with pytest.raises(BookError, match="is not a book folder: it has no _config.yml"):
        build_book(book_dir=book, execute=False)
    assert (book / "generated" / "01_last_build.ipynb").is_file()


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["bench", "all", "--only", "measures", "--out", "FILE"],
            "--out: FILE is a file where a folder is needed",
        ),
        (["bench", "measures", "--json", "DIR"], "--json: DIR is a folder where a file is needed"),
        (
            ["bench", "probe", "--json", "FILE/b.json"],
            "--json: FILE is a file where a folder is needed",
        ),
        (
            ["bench", "run", "--json", "FILE/b.json"],
            "--json: FILE is a file where a folder is needed",
        ),
        (["minizoo", "train", "--out", "FILE"], "--out: FILE is a file where a folder is needed"),
        (
            ["minizoo", "merge", "DIR", "--into", "FILE"],
            "--into: FILE is a file where a folder is needed",
        ),
    ],
    ids=lambda v: " ".join(v) if isinstance(v, list) else None,
)
def test_output_paths_that_cannot_be_written_are_named_before_any_work(
    tmp_path, capsys, monkeypatch, argv, expected
):
    """A file where bench all --out wants a folder, or a folder where --json wants a file, were
    tracebacks after the benchmark had run (minutes); now exit 2 before any work."""
    import repsim.bench
    import repsim.bench.measures
    import repsim.bench.probe
    import repsim.bench.run

    def no_work(*args, **kwargs):
        raise AssertionError("the work started before the output path was checked")

    for module, name in (
        (repsim.bench, "run_benchmarks"),
        (repsim.bench.measures, "run"),
        (repsim.bench.probe, "run"),
        (repsim.bench.run, "run"),
    ):
        monkeypatch.setattr(module, name, no_work)
    (tmp_path / "FILE").write_text("x")
    (tmp_path / "DIR").mkdir()
    monkeypatch.chdir(tmp_path)
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"repsim: error: {expected}"), err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["DIR", "FILE"]


@pytest.mark.parametrize(
    ("option", "value", "expected"),
    [
        ("--epochs", "0", "epochs must be a whole number of at least 1, got 0"),
        ("--epochs", "-3", "epochs must be a whole number of at least 1, got -3"),
        ("--batch-size", "0", "batch size must be a whole number of at least 2"),
        ("--lr", "-1", "the learning rate must be a positive number, got -1.0"),
        ("--threads", "0", "--threads must be at least 1, got 0"),
    ],
)
def test_minizoo_training_budget_is_checked_before_any_work(
    tmp_path, capsys, option, value, expected
):
    """--epochs 0 wrote untrained weights presented as trained; --batch-size 0, --lr -1 and
    --epochs -3 were tracebacks from inside training."""
    out = tmp_path / "zoo"
    assert (
        cli.main(
            ["minizoo", "train", "--only", "cnn-supervised-s0", "--out", str(out), option, value]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith(f"repsim: error: {expected}"), err
    assert not out.exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["bench", "measures", "--models", "1"], "argument --models: must be at least 2, got 1"),
        (["bench", "measures", "--n", "-5"], "argument --n: must be at least 4, got -5"),
        (["bench", "probe", "--classes", "0"], "argument --classes: must be at least 2, got 0"),
        (["bench", "probe", "--epochs", "0"], "argument --epochs: must be at least 1, got 0"),
        (["bench", "probe", "--batch-size", "x"], "argument --batch-size: 'x' is not a whole"),
        (["bench", "extract", "--decode-images", "0"], "--decode-images: must be at least 1"),
        (["bench", "precision", "--datasets", "nope"], "argument --datasets: invalid choice"),
        (["minizoo", "evaluate", "--threads", "0"], "argument --threads: must be at least 1"),
        (  # --out: were the check lost, the test must not train into the shipped zoo
            ["minizoo", "train", "--seeds", "-1", "--only", "x", "--out", "{tmp}"],
            "argument --seeds: must be at least 0, got -1",
        ),
    ],
)
def test_bad_numbers_are_usage_errors_not_tracebacks(capsys, tmp_path, argv, message):
    """These were a ZeroDivisionError, a numpy ValueError, a torch RuntimeError or a missing
    file from deep in the command (or, for --decode-images 0, the default used silently)."""
    with pytest.raises(SystemExit) as exit_:
        cli.main([a.replace("{tmp}", str(tmp_path)) for a in argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        # values the full options refuse: taken as --settings and --models, they fail at once
        # (a regression must not run a benchmark for minutes)
        (["bench", "probe", "--set", "x"], "unrecognized arguments: --set x"),
        (["bench", "measures", "--mod", "1"], "unrecognized arguments: --mod 1"),
        (["run", "c.yaml", "--ou", "o"], "required: --out"),
        (["models", "--conf", "c.yaml"], "required: --config"),
    ],
)
def test_options_are_taken_by_their_full_name_only(capsys, argv, message):
    """argparse took any unambiguous prefix: ``bench probe --set 5`` (``--set`` is an option of
    ``bench all``) ran the benchmark with ``--settings 5`` without a word."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "usage", "message"),
    [
        (
            ["run", "c.yaml", "--devcie", "cpu", "--out", "o"],
            "repsim run",
            "unrecognized arguments: --devcie cpu; repsim run has no option '--devcie' "
            "(did you mean '--device'?)",
        ),
        (  # argparse reports the missing --out first; the misspelling is still named
            ["run", "c.yaml", "--output", "o"],
            "repsim run",
            "required: --out; repsim run has no option '--output' (did you mean '--out'?)",
        ),
        (["models", "--confg", "c.yaml"], "repsim models", "(did you mean '--config'?)"),
        (["--verbos", "book"], "repsim book", "no option '--verbos' (did you mean '--verbose'?)"),
        (["book", "--timout=5"], "repsim book", "no option '--timout' (did you mean '--timeout'?)"),
        (
            ["bench", "probe", "--epoch", "1"],
            "repsim bench probe",
            "repsim bench probe has no option '--epoch' (did you mean '--epochs'?)",
        ),
        (
            ["run", "c.yaml", "--out", "o", "--zzz", "--outt", "p"],
            "repsim run",
            "repsim run has no options '--zzz', '--outt' (did you mean '--out'?); repsim run -h "
            "lists them",
        ),
    ],
    ids=["devcie", "output", "confg", "before-the-command", "option=value", "bench", "several"],
)
def test_a_misspelt_option_is_named_with_the_closest_option_of_its_command(
    capsys, argv, usage, message
):
    """``repsim run CONFIG --devcie cpu`` said only "unrecognized arguments", under the usage of
    ``repsim``, and ``--output DIR`` only that ``--out`` is required."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.startswith(f"usage: {usage} ") and message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "usage", "message"),
    [
        (
            ["rnu", "c.yaml", "--out", "o"],
            "repsim",
            "argument command: invalid choice: 'rnu' (did you mean 'run'?) (choose from 'run', "
            "'book', 'models', 'datasets', 'bench', 'compare', 'minizoo')",
        ),
        (["-vv", "bok"], "repsim", "invalid choice: 'bok' (did you mean 'book'?) (choose from"),
        (["bench", "precison"], "repsim bench", "'precison' (did you mean 'precision'?)"),
        (["minizoo", "trian"], "repsim minizoo", "'trian' (did you mean 'train'?)"),
        (["run", "c", "--out", "o", "--cluster", "slrum"], "repsim run", "(did you mean 'slurm'?)"),
        (["zzz"], "repsim", "invalid choice: 'zzz' (choose from 'run', 'book', "),
    ],
    ids=["command", "after-vv", "bench", "minizoo", "option-choice", "nothing-close"],
)
def test_a_misspelt_command_is_named_with_the_closest_command(capsys, argv, usage, message):
    """``repsim rnu`` listed the commands but named none; the closest is named like a misspelt
    option's (:func:`repsim.config.did_you_mean`)."""
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.startswith(f"usage: {usage} ") and message in err and "Traceback" not in err
    assert "has no option" not in err


@pytest.mark.parametrize(
    "argv",
    [
        ["bench", "measures", "--n", "-5"],  # a negative number is a value, not an option
        ["bench", "nope", "--n", "3"],  # the benchmark's options are the benchmark's to check
        ["compare", "a", "b"],  # an extra positional argument
        ["run", "c.yaml", "--out", "o", "--", "--x"],  # after --, nothing is an option
        ["run", "-vv", "c.yaml"],  # flags run together (argparse takes -vv), --out missing
        ["-vv", "rnu"],  # a misspelt command: named with the closest command, not as an option
    ],
)
def test_only_options_the_command_does_not_know_are_named(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        cli.main(argv)
    assert exit_.value.code == 2
    assert "has no option" not in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "verbose"),
    [
        (["run", "c.yaml", "--out", "o"], False),
        (["-v", "run", "c.yaml", "--out", "o"], True),
        (["run", "c.yaml", "--out", "o", "-v"], True),
        (["run", "-v", "c.yaml", "--out", "o"], True),
        (["book", "--verbose"], True),
        (["compare", "r", "-v"], True),
        (["models", "--config", "c.yaml", "-v"], True),
        (["-v", "bench", "measures"], True),
        (["bench", "-v", "measures"], True),
    ],
)
def test_verbose_goes_before_or_after_the_command(argv, verbose):
    """``-v`` was taken only before the command; ``repsim run ... -v`` was a usage error."""
    assert cli.build_parser().parse_args(argv).verbose is verbose


def test_the_closing_hint_quotes_a_run_folder_with_spaces(monkeypatch, capsys, tmp_path):
    """The hint to build the book printed a folder with spaces unquoted: pasted, it failed."""
    from types import SimpleNamespace

    out = tmp_path / "my runs" / "run 1"
    monkeypatch.setattr(
        "repsim.pipeline.run",
        lambda *a, **k: SimpleNamespace(summary="done", run_dir=out),
    )
    assert cli.main(["run", "c.yaml", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"the book: repsim book --run '{out}'" in printed


def test_an_empty_run_option_is_refused_not_replaced_by_the_default(monkeypatch, capsys):
    """``repsim book --run ""`` (an unset shell variable) rendered runs/embedded without a word."""
    monkeypatch.setattr("repsim.book.build_book", lambda **kw: pytest.fail("the book was built"))
    assert cli.main(["book", "--run", ""]) == 2
    assert "--run is empty" in capsys.readouterr().err


def test_python_m_repsim_is_the_command():
    """``python -m repsim`` said "No module named repsim.__main__"."""
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "repsim", "--help"], capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0 and "usage: repsim" in out.stdout


def test_a_finished_run_prints_its_summary_and_the_result_files_it_has(
    monkeypatch, capsys, tmp_path
):
    """What ``repsim run`` ends with: the run's summary, then the result files written (only
    those there: a run without probes has no probes.nc) and how to build the book."""
    from types import SimpleNamespace

    out = tmp_path / "run"
    out.mkdir()
    for name in ("similarity.nc", "run.json"):
        (out / name).write_text("x")
    calls = []
    monkeypatch.setattr(
        "repsim.pipeline.run",
        lambda *a, **k: (
            calls.append((a, k)) or SimpleNamespace(summary="Time per stage: ...", run_dir=out)
        ),
    )
    assert cli.main(["run", "c.yaml", "--out", str(out)]) == 0
    # in process unless asked otherwise; the device chosen by the run
    assert calls == [
        (("c.yaml", str(out)), {"scheduler": "synchronous", "cluster": None, "device": None})
    ]
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "Time per stage: ...",
        f"results: {out}/ (similarity.nc, run.json); the book: repsim book --run {out}",
    ]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], {"run_dir": "runs/embedded", "book_dir": "book", "execute": True, "timeout": 600}),
        (
            ["--run", "r", "--book", "b", "--timeout", "3600"],
            {"run_dir": "r", "book_dir": "b", "execute": True, "timeout": 3600},
        ),
        (
            ["--no-execute"],
            {"run_dir": "runs/embedded", "book_dir": "book", "execute": False, "timeout": 600},
        ),
    ],
)
def test_book_options_reach_build_book(monkeypatch, argv, expected):
    """Without --run the book renders the run `make run` writes; --no-execute builds from the
    notebooks as they are; --timeout is the seconds a cell may run (600 by default)."""
    built = []
    monkeypatch.setattr("repsim.book.build_book", lambda **kw: built.append(kw))
    assert cli.main(["book", *argv]) == 0
    assert built == [expected]


@pytest.mark.parametrize("command", ["models", "datasets"])
@pytest.mark.parametrize("ok", [True, False])
def test_the_checking_commands_exit_1_only_for_a_check_that_found_something(
    monkeypatch, capsys, command, ok
):
    """``repsim models --check`` and ``repsim datasets --check`` exit 1 when something cannot be
    used (CONTRIBUTING.md); listing without --check exits 0 whatever the table says, and only
    --check decodes every image."""
    calls = []

    def checked(config, **kwargs):
        calls.append(kwargs)
        return "TABLE", ok

    monkeypatch.setattr("repsim.zoo.check_models", checked)
    monkeypatch.setattr("repsim.zoo.list_models", lambda config: "TABLE")
    monkeypatch.setattr("repsim.stimuli.check_datasets", checked)
    assert cli.main([command, "--config", "c.yaml", "--check"]) == (0 if ok else 1)
    assert cli.main([command, "--config", "c.yaml"]) == 0
    assert capsys.readouterr().out == "TABLE\nTABLE\n"
    if command == "datasets":
        assert calls == [{"decode": True}, {"decode": False}]


@pytest.mark.parametrize("flags", [[], ["--all"]])
def test_compare_lists_the_numbers_a_run_cannot_compute_only_with_all(monkeypatch, capsys, flags):
    import pandas as pd

    shown = []
    table = pd.DataFrame({"id": ["design/models"], "status": ["agrees"]})
    monkeypatch.setattr("repsim.reference.compare", lambda run: table)
    monkeypatch.setattr(
        "repsim.reference.format_comparison", lambda t, all_rows: shown.append(all_rows) or "T"
    )
    assert cli.main(["compare", "run", *flags]) == 0
    assert shown == [bool(flags)] and capsys.readouterr().out == "T\n"


def test_bench_runs_the_named_benchmark_with_its_options(monkeypatch):
    import repsim.bench.probe

    seen = []
    monkeypatch.setattr(repsim.bench.probe, "main", lambda rest: seen.append(rest) or 4)
    assert cli.main(["bench", "probe", "--quick"]) == 4
    assert seen == [["--quick"]]


@pytest.mark.parametrize(("flag", "level"), [(["-v"], "DEBUG"), ([], "INFO")])
def test_verbose_shows_repsims_debug_messages(monkeypatch, flag, level):
    import logging

    monkeypatch.setattr("repsim.zoo.list_models", lambda config: "")
    logger = logging.getLogger("repsim")
    before = logger.level
    try:
        assert cli.main([*flag, "models", "--config", "c.yaml"]) == 0
        assert logging.getLevelName(logger.level) == level
    finally:
        logger.setLevel(before)


@pytest.mark.parametrize("value", ["0", "-5", "ten"])
def test_book_refuses_a_timeout_that_is_not_a_positive_whole_number(monkeypatch, capsys, value):
    monkeypatch.setattr("repsim.book.build_book", lambda **kw: pytest.fail("the book was built"))
    with pytest.raises(SystemExit) as exit_:
        cli.main(["book", "--timeout", value])
    assert exit_.value.code == 2 and "--timeout" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["run"],
        ["bench", "all"],
        ["bench", "measures"],
        ["bench", "extract"],
        ["bench", "probe"],
        ["bench", "run"],
        ["bench", "precision"],
        ["minizoo", "train"],
        ["minizoo", "evaluate"],
        ["minizoo", "merge"],
        ["book"],
        ["models"],
        ["datasets"],
        ["compare"],
        [],
    ],
    ids=lambda argv: " ".join(argv) or "repsim",
)
def test_help_texts_read_as_plain_text_and_name_every_device(capsys, argv) -> None:
    """--help printed the module docstrings' Sphinx roles (``:func:`repsim...```) as they are,
    and --device said ``cpu | cuda`` where the error message recommends ``--device auto``."""
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0
    assert not re.search(r":[a-z]+:`|``", out), out
    if "--device" in out:
        assert "auto (default: auto, CUDA when available, else the CPU)" in " ".join(out.split())


def test_plain_text_keeps_a_role_target_and_sphinx_short_form() -> None:
    from repsim.argtypes import plain_text

    text = (
        "the engine (:func:`repsim.measures.similarity_matrices`, :class:`~repsim.extract._Runner`)"
    )
    assert plain_text(text + " ``MEASURES[n]``") == (
        "the engine (repsim.measures.similarity_matrices, _Runner) MEASURES[n]"
    )
