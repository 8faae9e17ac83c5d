"""The book's chapters and lessons execute side by side (repsim.book), without running a kernel."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from repsim import book as B


def test_notebooks_run_side_by_side_in_order_with_one_environment(monkeypatch):
    # chapters execute two at a time: results in book order, every kernel sees the inline backend
    # and one math thread per core share, the environment is restored after, a failure is raised
    import threading

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("MPLBACKEND", "agg")
    monkeypatch.setattr(B.os, "cpu_count", lambda: 2)
    barrier = threading.Barrier(2, timeout=30)  # fails unless two run at once
    seen = []

    def fake(path: Path) -> Path:
        barrier.wait()
        seen.append((os.environ.get("MPLBACKEND"), os.environ.get("OMP_NUM_THREADS")))
        return path.with_suffix(".out")

    paths = [Path(f"{i:02d}_x.ipynb") for i in range(4)]
    assert B._run_all(fake, paths, B.book_workers(len(paths))) == [
        p.with_suffix(".out") for p in paths
    ]
    assert set(seen) == {("module://matplotlib_inline.backend_inline", "1")}
    assert os.environ["MPLBACKEND"] == "agg" and "OMP_NUM_THREADS" not in os.environ

    finished = []

    def broken(path: Path) -> Path:
        if path.name[:2] in ("01", "03"):
            raise B.BookError(f"chapter {path.name[:2]} failed")
        finished.append(path.name)
        return path

    # the first failure in book order, once the others have finished
    with pytest.raises(B.BookError, match="chapter 01"):
        B._run_all(broken, paths, 2)
    assert sorted(finished) == ["00_x.ipynb", "02_x.ipynb"]
    assert B.book_workers(10, workers=1) == 1 and B.book_workers(1) == 1
    # never more than the cores, whatever is asked
    monkeypatch.setattr(B.os, "cpu_count", lambda: 8)
    assert B.book_workers(10) == B.BOOK_WORKERS == 2 and B.book_workers(10, workers=3) == 3
    monkeypatch.setattr(B.os, "cpu_count", lambda: 1)
    assert B.book_workers(10) == 1 and B.book_workers(10, workers=3) == 1


def test_side_by_side_kernels_each_run_in_their_own_folder(tmp_path, monkeypatch, capfd):
    # relative notebook paths in two folders, executed two at a time: every kernel starts in its
    # notebook's folder and the process never changes directory (papermill's cwd= would, for all)
    import nbformat

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(B.os, "cpu_count", lambda: 2)
    paths = []
    for folder in ("chapters", "course"):
        (tmp_path / folder).mkdir()
        for i in range(2):
            nb = nbformat.v4.new_notebook()
            nb.metadata["kernelspec"] = {"name": "python3", "language": "python"}
            nb.metadata["language_info"] = {"name": "python"}
            nb.cells = [
                nbformat.v4.new_code_cell("x = 0", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("import os; print(os.getcwd())"),
            ]
            path = Path(folder) / f"{i:02d}_nb.ipynb"
            nbformat.write(nb, path)
            paths.append(path)

    def one(path: Path) -> Path:
        assert Path.cwd() == tmp_path  # never moved by another thread's notebook
        return B.execute_notebook(path, Path("out") / path, {"x": 1})

    done = B._run_all(one, paths, B.book_workers(len(paths)))
    for path, out in zip(paths, done):
        printed = nbformat.read(out, as_version=4).cells[-1].outputs[0]["text"].strip()
        assert Path(printed) == (tmp_path / path.parent).resolve()
        # the kernel process's own messages go to its log beside the executed copy
        assert out.with_name(out.stem + ".kernel.log").is_file()
    assert Path.cwd() == tmp_path
    terminal = capfd.readouterr()
    assert "IPKernelApp" not in terminal.err + terminal.out


def test_papermill_io_never_moves_the_process_directory(tmp_path, monkeypatch):
    # papermill's one local handler changes the process's directory to the one it last kept on
    # every read and write; notebooks on threads left it holding another call's directory, and a
    # side-by-side kernel test saw the working directory move (a red make test, 1 run in 2)
    import nbformat
    from papermill.iorw import papermill_io

    elsewhere, here = tmp_path / "elsewhere", tmp_path / "here"
    elsewhere.mkdir()
    here.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "language": "python", "display_name": "py"}
    nb.cells = [nbformat.v4.new_code_cell("x = 0", metadata={"tags": ["parameters"]})]
    nbformat.write(nb, here / "nb.ipynb")
    monkeypatch.chdir(here)
    B.execute_notebook(Path("nb.ipynb"), Path("out") / "nb.ipynb", {"x": 1})
    handler = papermill_io.get_handler("nb.ipynb")
    handler.cwd(str(elsewhere))  # what an interleaved restore could leave behind
    seen = []
    real_chdir = os.chdir
    monkeypatch.setattr(os, "chdir", lambda p: (seen.append(str(p)), real_chdir(p)))
    assert "nbformat" in handler.read("nb.ipynb")  # relative to the process's directory
    handler.write(handler.read("nb.ipynb"), str(here / "copy.ipynb"))
    assert str(elsewhere) not in seen and Path.cwd() == here
