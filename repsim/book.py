"""Build the book: execute the parameterised notebooks on a run folder, then ``jupyter-book build``.

The QuantEcon pattern: papermill runs every notebook of ``notebooks/`` with the run folder as a
parameter into ``BOOK/generated/``, and the course lessons of ``BOOK/course/`` into
``BOOK/generated/course/``; the book then builds with execution off and warnings as errors.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from repsim.errors import RepsimError, StoreError

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"


class BookError(RepsimError):
    """A notebook failed to execute or the book failed to build."""


def chapter_notebooks(notebooks_dir: str | Path = NOTEBOOKS) -> list[Path]:
    """The chapter notebooks, in book order (file name order)."""
    return sorted(Path(notebooks_dir).glob("[0-9]*.ipynb"))


def course_notebooks(book_dir: str | Path = REPO / "book") -> list[Path]:
    """The course lessons, in order."""
    return sorted((Path(book_dir) / "course").glob("[0-9]*.ipynb"))


def execute_notebook(src: Path, dest: Path, parameters: Mapping[str, Any] | None = None,
                     cwd: Path | None = None, timeout: int = 600) -> Path:
    """Run one notebook with papermill (parameters injected after the ``parameters`` cell)."""
    import papermill as pm

    dest.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    env_backend = os.environ.get("MPLBACKEND")
    os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    try:
        pm.execute_notebook(
            str(src), str(dest), parameters=dict(parameters or {}), kernel_name="python3",
            cwd=str(cwd or src.parent), progress_bar=False, execution_timeout=timeout,
            log_output=False,
        )
    except pm.PapermillExecutionError as exc:
        raise BookError(f"notebook {src.name} failed ({exc.ename}: {exc.evalue}); the executed "
                        f"copy with the traceback is {dest}") from exc
    finally:
        if env_backend is None:
            os.environ.pop("MPLBACKEND", None)
        else:
            os.environ["MPLBACKEND"] = env_backend
    _hide_injected_parameters(dest)
    log.info("executed %s in %.1f s", src.name, time.perf_counter() - t0)
    return dest


def _hide_injected_parameters(path: Path) -> None:
    """Drop papermill's injected cell from the page: it holds this machine's paths, not prose.

    The run a figure comes from is named in its caption instead.
    """
    import nbformat

    nb = nbformat.read(str(path), as_version=4)
    pm_meta = nb.metadata.get("papermill", {})
    for key in ("input_path", "output_path"):
        if pm_meta.get(key):
            pm_meta[key] = Path(pm_meta[key]).name
    for cell in nb.cells:
        tags = cell.metadata.setdefault("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    nbformat.write(nb, str(path))


def execute_chapters(run_dir: str | Path, out_dir: str | Path,
                     notebooks: Sequence[Path] | None = None,
                     parameters: Mapping[str, Any] | None = None) -> list[Path]:
    """Execute every chapter notebook on ``run_dir`` into ``out_dir``."""
    run_dir = Path(run_dir).resolve()
    if not (run_dir / "similarity.nc").exists():
        raise StoreError(f"{run_dir} has no similarity.nc: run `repsim run CONFIG --out {run_dir}` "
                         "first, or pass --run with an existing run folder")
    out = Path(out_dir)
    paths = list(notebooks or chapter_notebooks())
    # relative to where the notebooks run: the published .ipynb files hold no machine paths and
    # rerun as they are from a checkout
    cwd = paths[0].parent.resolve() if paths else Path.cwd()
    params = {"run_dir": os.path.relpath(run_dir, cwd), **dict(parameters or {})}
    return [execute_notebook(nb, out / nb.name, params) for nb in paths]


def execute_course(book_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Execute the course lessons (they need no run folder) into ``out_dir``."""
    out = Path(out_dir)
    return [execute_notebook(nb, out / nb.name, cwd=nb.parent) for nb in course_notebooks(book_dir)]


def _jupyter_book_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("jupyter-book")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("jupyter-book")
    if found:
        return [found]
    raise BookError("jupyter-book (version 1) is not installed: `pip install 'jupyter-book>=1,<2'`")


def build_html(book_dir: str | Path, warnings_as_errors: bool = True) -> Path:
    """``jupyter-book build`` (execution off in _config.yml); returns the built index.html."""
    book = Path(book_dir).resolve()
    cmd = [*_jupyter_book_cmd(), "build", str(book), "--builder", "html"]
    if warnings_as_errors:
        cmd += ["-W", "-n", "--keep-going"]
    log.info("building the book: %s", " ".join(cmd))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-40:])
        raise BookError(f"jupyter-book build failed (exit {proc.returncode}):\n{tail}")
    index = book / "_build" / "html" / "index.html"
    log.info("built the book in %.1f s: %s", time.perf_counter() - t0, index)
    return index


def build_book(run_dir: str | Path = "runs/embedded", book_dir: str | Path = "book",
               execute: bool = True, parameters: Mapping[str, Any] | None = None,
               notebooks_dir: str | Path | None = None) -> Path:
    """Execute the notebooks on ``run_dir`` (unless ``execute`` is False) and build the book.

    Returns the path of the built ``index.html``.
    """
    book = Path(book_dir)
    generated = book / "generated"
    if execute:
        if generated.exists():
            shutil.rmtree(generated)
        chapters = chapter_notebooks(notebooks_dir or NOTEBOOKS)
        log.info("executing %d chapter notebooks on %s", len(chapters), run_dir)
        execute_chapters(run_dir, generated, chapters, parameters)
        execute_course(book, generated / "course")
    elif not generated.exists():
        raise BookError(f"{generated} does not exist: build once with execution on")
    return build_html(book)
