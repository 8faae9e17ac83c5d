"""Exit codes of the ``repsim`` command (documented in CONTRIBUTING.md): 2 a config, model or
folder error (nothing or no more could run), 3 a run whose tasks partly failed (the rest is cached)."""

from __future__ import annotations

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

    before = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr("repsim.pipeline.run", run_until_terminated)
    assert cli.main(["run", "some.yaml", "--out", "somewhere"]) == 143
    assert "interrupted; finished stages are kept" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGTERM) == before


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
