"""Build the book: execute the parameterised notebooks on a run folder, then ``jupyter-book build``.

The QuantEcon pattern: papermill runs every notebook of ``notebooks/`` with the run folder as a
parameter into ``BOOK/generated/``, and the course lessons of ``BOOK/course/`` into
``BOOK/generated/course/`` (the teacher version, solutions folded); the student version of each
lesson, its solution cells replaced by a stub, goes unexecuted into ``BOOK/generated/course/student/``
for download. The book then builds with execution off and warnings as errors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

from repsim.errors import BookError, StoreError, brief

log = logging.getLogger(__name__)

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = REPO / "notebooks"


def chapter_notebooks(notebooks_dir: str | Path = NOTEBOOKS) -> list[Path]:
    """The chapter notebooks, in book order (file name order)."""
    return sorted(Path(notebooks_dir).glob("[0-9]*.ipynb"))


#: Cell tag that marks a lesson's solution cells (removed from the student version).
SOLUTION_TAG = "solution"
#: What a student notebook holds where the lesson has a solution cell.
STUDENT_STUB = "# your code here"
#: The zip of every student notebook, beside them in the student folder.
STUDENT_ZIP = "course-student-notebooks.zip"


def course_notebooks(book_dir: str | Path = REPO / "book") -> list[Path]:
    """The course lessons, in order."""
    return sorted((Path(book_dir) / "course").glob("[0-9]*.ipynb"))


def lesson_takes_run(lesson: str | Path) -> bool:
    """Whether a lesson's ``parameters`` cell declares ``run_dir`` (it has exercises on a real run)."""
    import nbformat

    nb = nbformat.read(str(lesson), as_version=4)
    return any(
        c.cell_type == "code"
        and "parameters" in c.metadata.get("tags", [])
        and "run_dir" in c.source
        for c in nb.cells
    )


#: Notebooks executed at once (each in its own kernel process); at most one per core.
BOOK_WORKERS = 2
#: Environment of the kernels while notebooks run side by side: one math thread each, since two
#: kernels with two threads each on two cores mostly wait on each other.
_KERNEL_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_env_lock = threading.Lock()
_io_lock = threading.Lock()
_env_depth = 0
_env_saved: dict[str, str | None] = {}


@contextlib.contextmanager
def _kernel_env(threads: int | None = None) -> Iterator[None]:
    """Set the kernels' environment (inline matplotlib backend; ``threads`` math threads) for the
    duration, re-entrant across threads: the outermost use sets it, the last to leave restores it,
    so notebooks started side by side all see the same environment."""
    global _env_depth
    wanted = {"MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    if threads is not None:
        wanted.update({var: str(threads) for var in _KERNEL_THREAD_VARS})
    with _env_lock:
        if _env_depth == 0:
            _env_saved.clear()
            _env_saved.update({k: os.environ.get(k) for k in wanted})
            os.environ.update(wanted)
        _env_depth += 1
    try:
        yield
    finally:
        with _env_lock:
            _env_depth -= 1
            if _env_depth == 0:
                for key, value in _env_saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value


def book_workers(n_notebooks: int, workers: int | None = None) -> int:
    """Notebooks to execute at once: ``workers``, else :data:`BOOK_WORKERS`, at most the cores."""
    cores = os.cpu_count() or 1
    return max(1, min(n_notebooks, cores, workers if workers is not None else BOOK_WORKERS))


def _run_all(func: Callable[[Path], Path], paths: Sequence[Path], workers: int) -> list[Path]:
    """``[func(p) for p in paths]``, ``workers`` at a time (threads: each notebook runs in its
    own kernel process), in order; the first failure is raised after the others finished."""
    if workers <= 1:
        return [func(p) for p in paths]
    with _kernel_env(threads=max(1, (os.cpu_count() or 1) // workers)):
        with ThreadPoolExecutor(workers) as pool:  # waits for every notebook on leaving
            futures = [pool.submit(func, p) for p in paths]
    return [f.result() for f in futures]


def _logged_kernel_manager(log_file: IO[bytes]) -> type:
    """A kernel manager whose kernel process writes its stdout and stderr to ``log_file``.

    The kernel's own messages (a warning about TCP transport at every start, "KeyboardInterrupt
    caught in kernel" when it is shut down) would otherwise interleave with the build's progress
    on the terminal, 14 chapters and 7 lessons of them. A cell's output and errors reach the
    executed notebook either way; the log keeps what the kernel process itself says.
    """
    from jupyter_client.manager import AsyncKernelManager

    class LoggedKernelManager(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:
            kw.setdefault("stdout", log_file)
            kw.setdefault("stderr", log_file)
            await AsyncKernelManager.start_kernel(self, **kw)

    return LoggedKernelManager


def _papermill_io_without_chdir() -> None:
    """Make papermill's local file handler leave the process's working directory alone.

    papermill has one local handler per process. Each ``execute_notebook`` sets the handler's
    directory to the caller's current one and restores the previous value when it returns, and
    every read and write changes the *process's* directory to it for a moment. Notebooks run on
    threads (:func:`_run_all`), so the restores interleave, the handler can keep a directory of
    an earlier call (a test's deleted temporary folder, say), and one thread's write moves every
    other thread's working directory. The paths given to papermill here are absolute, so the
    handler is swapped for one whose directory stays unset (papermill offers no public switch:
    a second "local" handler registered with it is never chosen). Idempotent.
    """
    from papermill.iorw import LocalHandler, papermill_io

    class AbsolutePathHandler(LocalHandler):
        def cwd(self, new_path: Any) -> None:  # papermill's hook: ignore it, keep None
            return None

    with _io_lock:
        papermill_io._handlers = [
            (scheme, AbsolutePathHandler())
            if scheme == "local" and type(handler) is LocalHandler
            else (scheme, handler)
            for scheme, handler in papermill_io._handlers
        ]


def execute_notebook(
    src: Path,
    dest: Path,
    parameters: Mapping[str, Any] | None = None,
    cwd: Path | None = None,
    timeout: int = 600,
) -> Path:
    """Run one notebook with papermill (parameters injected after the ``parameters`` cell); any
    cell running longer than ``timeout`` seconds stops it. BookError names the notebook, what
    stopped it and the executed copy."""
    import papermill as pm
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    # Absolute paths, and the working directory given to the kernel alone: papermill's own cwd=
    # changes the directory of the whole process, which races when notebooks run on threads.
    src, dest = Path(src).resolve(), Path(dest).resolve()
    _papermill_io_without_chdir()
    workdir = str(Path(cwd or src.parent).resolve())
    dest.parent.mkdir(parents=True, exist_ok=True)
    kernel_log = dest.with_name(dest.stem + ".kernel.log")
    t0 = time.perf_counter()
    try:
        with _kernel_env(), kernel_log.open("wb") as log_file:
            pm.execute_notebook(
                str(src),
                str(dest),
                parameters=dict(parameters or {}),
                kernel_name="python3",
                kernel_manager_class=_logged_kernel_manager(log_file),
                resources={"metadata": {"path": workdir}},
                progress_bar=False,
                execution_timeout=timeout,
                log_output=False,
            )
    except pm.PapermillExecutionError as exc:
        raise BookError(
            f"notebook {src.name} failed ({exc.ename}: {exc.evalue}); the executed "
            f"copy with the traceback is {dest} (the kernel's own log: {kernel_log})"
        ) from exc
    # nbclient's own errors, which papermill lets through (a timeout is an OSError, which the
    # book command would have called a file it could not write)
    except CellTimeoutError as exc:
        raise BookError(
            f"notebook {src.name} stopped: a cell ran longer than {timeout} s; the executed copy "
            f"is {dest}. Give the cells more time (`repsim book --timeout SECONDS`)"
        ) from exc
    except DeadKernelError as exc:
        raise BookError(
            f"notebook {src.name} stopped: its kernel died (out of memory, or killed); the kernel's "
            f"own log is {kernel_log} and the executed copy {dest}"
        ) from exc
    _hide_injected_parameters(dest, parameters or {})
    log.info("executed %s in %.1f s", src.name, time.perf_counter() - t0)
    return dest


def _hide_injected_parameters(path: Path, parameters: Mapping[str, Any]) -> None:
    """Drop papermill's injected cell from the page: it is machinery, not prose. The shown
    parameters cell gets the ``run_dir`` the notebook ran with in place of its default (a page
    rendered from another run showed ``runs/embedded``); the run is also named in the captions.
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
        if "parameters" in tags and parameters.get("run_dir") is not None:
            cell.source = _shown_run_dir(cell.source, str(parameters["run_dir"]))
    nbformat.write(nb, str(path))


def _shown_run_dir(source: str, run_dir: str) -> str:
    """``source`` of a parameters cell with its ``run_dir = "..."`` line set to ``run_dir``, where
    that is not already its value."""
    lines = source.splitlines()
    for i, line in enumerate(lines):
        match = re.match(r"""run_dir\s*=\s*(["'])(.*?)\1""", line)
        if match and match.group(2) != run_dir:
            lines[i] = (
                f"run_dir = {json.dumps(run_dir)}  # the run shown on this page, relative to the notebook"
            )
    return "\n".join(lines)


def check_run(run_dir: str | Path) -> Path:
    """``run_dir`` resolved, once its results verify (schema, hashes, one run): before any
    notebook starts, and before the notebooks of the last build are replaced."""
    from repsim.chapter import load_run
    from repsim.runfolder import RunFolder, filesystem_errors

    folder = RunFolder(run_dir)
    with filesystem_errors(folder.similarity, "read"):  # a path too long for the filesystem
        present = folder.similarity.exists()
    if not present:  # before resolve(), which raised RuntimeError on a symbolic-link loop
        raise StoreError(
            f"{run_dir} has no {folder.similarity.name}: {folder.why_no_results()} (or pass "
            "--run with a finished run folder)"
        )
    run_dir = Path(run_dir).resolve()
    load_run(run_dir).check_features()
    return run_dir


#: the book's table of contents, beside its _config.yml
BOOK_TOC = "_toc.yml"


def check_book_folder(book_dir: str | Path) -> None:
    """BookError unless ``book_dir`` is a book: a _config.yml that reads as a YAML mapping and a
    _toc.yml, what jupyter-book needs. Said before the notebooks run, not after minutes of them
    (a damaged _config.yml was a traceback there, a missing _toc.yml jupyter-book's own)."""
    from repsim.pathcheck import DOES_NOT_EXIST, path_problem

    fix = "pass --book with the book folder of a checkout (default: book)"
    for name in ("_config.yml", BOOK_TOC):
        problem = path_problem(Path(book_dir) / name, "file")
        if problem == DOES_NOT_EXIST:
            raise BookError(f"{book_dir} is not a book folder: it has no {name}; {fix}")
        if problem is not None:
            raise BookError(f"{Path(book_dir) / name} {problem}; {fix}")
        _read_book_yaml(Path(book_dir) / name)


def _read_book_yaml(path: Path) -> dict[str, Any]:
    """A YAML file of the book (_config.yml, _toc.yml) as a mapping, or BookError naming it."""
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BookError(
            f"{path} is not valid YAML text ({brief(str(exc), 200)}); restore it (git checkout "
            "-- that file in a checkout)"
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise BookError(
            f"{path} must hold a YAML mapping, got {type(data).__name__}; restore it (git "
            "checkout -- that file in a checkout)"
        )
    return data


def execute_chapters(
    run_dir: str | Path,
    out_dir: str | Path,
    notebooks: Sequence[Path] | None = None,
    parameters: Mapping[str, Any] | None = None,
    workers: int | None = None,
    timeout: int = 600,
) -> list[Path]:
    """Execute every chapter notebook on ``run_dir`` into ``out_dir``, ``workers`` at a time
    (``timeout``: the seconds any one cell may run).

    The chapters only read the run folder and write their own executed copy, so they can run side
    by side (default :data:`BOOK_WORKERS`, at most one per core; each kernel then gets an equal
    share of the cores as math threads)."""
    return _execute_checked(check_run(run_dir), out_dir, notebooks, parameters, workers, timeout)


def _check_chapter_parameters(parameters: Mapping[str, Any] | None) -> None:
    """BookError when the chapters' parameters name a run: they would read a run nobody checked."""
    if "run_dir" in (parameters or {}):
        raise BookError(
            "parameters cannot set run_dir: the chapters read the run folder passed as run_dir, "
            "which is verified (and held) first; pass the run there"
        )


def _execute_checked(
    run_dir: Path,
    out_dir: str | Path,
    notebooks: Sequence[Path] | None,
    parameters: Mapping[str, Any] | None,
    workers: int | None = None,
    timeout: int = 600,
) -> list[Path]:
    """:func:`execute_chapters` on a run folder :func:`check_run` has verified and resolved."""
    _check_chapter_parameters(parameters)
    out = Path(out_dir)
    paths = list(notebooks or chapter_notebooks())
    # run where the executed copies are written, the run folder relative to there: the published
    # .ipynb files hold no machine paths and rerun as they are where they sit in a checkout (the
    # page's download, Binder); relative to the sources, book/generated/ pointed into book/
    params = {**dict(parameters or {}), "run_dir": _relative_to(run_dir, out)}
    return _run_all(
        lambda nb: execute_notebook(nb, out / nb.name, params, cwd=out, timeout=timeout),
        paths,
        book_workers(len(paths), workers),
    )


def _relative_to(run_dir: str | Path, folder: Path) -> str:
    """``run_dir`` as a path relative to ``folder`` (where an executed notebook sits and runs)."""
    return os.path.relpath(Path(run_dir).resolve(), folder.resolve())


def execute_course(
    book_dir: str | Path,
    out_dir: str | Path,
    run_dir: str | Path | None = None,
    lessons: Sequence[Path] | None = None,
    timeout: int = 600,
    workers: int | None = None,
) -> list[Path]:
    """Execute the course lessons into ``out_dir``: the teacher version, with the solutions.

    Lessons that declare ``run_dir`` get the run folder (relative to the executed copy, which runs
    where it is written, so it holds no machine path and reruns where it sits); with
    ``run_dir=None`` they get None and skip their exercises on a real run with a message.
    """
    out = Path(out_dir)
    paths = list(lessons if lessons is not None else course_notebooks(book_dir))

    def one(nb: Path) -> Path:
        params = None
        if lesson_takes_run(nb):
            params = {"run_dir": None if run_dir is None else _relative_to(run_dir, out)}
        return execute_notebook(nb, out / nb.name, params, cwd=out, timeout=timeout)

    return _run_all(one, paths, book_workers(len(paths), workers))


def student_notebook(lesson: str | Path):
    """A lesson without its solutions: every cell tagged ``solution`` becomes a ``# your code here``
    stub, and no cell keeps outputs, so a student starts from the prose and the setup cells."""
    import nbformat

    nb = nbformat.read(str(lesson), as_version=4)
    if not any(SOLUTION_TAG in c.metadata.get("tags", []) for c in nb.cells):
        raise BookError(
            f"{Path(lesson).name} has no cell tagged {SOLUTION_TAG!r}: tag each solution "
            "cell so the student notebook can leave it out"
        )
    cells = []
    for cell in nb.cells:
        if SOLUTION_TAG in cell.metadata.get("tags", []):
            # the solution's cell id: the student notebook is the same file on every build
            cell = nbformat.v4.new_code_cell(STUDENT_STUB, id=cell.get("id"))
        elif cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cells.append(cell)
    nb.cells = cells
    nb.metadata.pop("papermill", None)
    return nb


def write_student_notebooks(book_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Write the student version of every lesson into ``out_dir``, and a zip of all of them.

    Student notebooks are not executed (their stubs leave later cells without the names they use);
    the book links them for download.
    """
    import nbformat

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for lesson in course_notebooks(book_dir):
        dest = out / lesson.name
        nbformat.write(student_notebook(lesson), str(dest))
        paths.append(dest)
    with zipfile.ZipFile(out / STUDENT_ZIP, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in paths:
            zf.write(path, path.name)
    log.info("wrote %d student notebooks to %s", len(paths), out)
    return paths


def _jupyter_book_cmd() -> list[str]:
    exe = Path(sys.executable).with_name("jupyter-book")
    if exe.exists():
        return [str(exe)]
    found = shutil.which("jupyter-book")
    if found:
        return [found]
    raise BookError("jupyter-book (version 1) is not installed: `pip install 'jupyter-book>=1,<2'`")


#: the services behind the launch buttons, switched on by ``repository.url`` in _config.yml
LAUNCH_SERVICES = {
    "binderhub_url": "https://mybinder.org",
    "colab_url": "https://colab.research.google.com",
}


def book_config(book_dir: str | Path) -> dict[str, Any]:
    """The book's _config.yml with the launch buttons derived from its one setting.

    ``repository.url`` set: Binder and Colab buttons (and the repository button) on every
    notebook page; empty: none of them, whatever ``launch_buttons`` says, since the theme needs
    a repository to build their links. Thebe (live kernels from a CDN) is off and not loaded.
    """
    config = _read_book_yaml(Path(book_dir) / "_config.yml")
    url = str((config.get("repository") or {}).get("url") or "").strip()
    launch = dict(config.get("launch_buttons") or {})
    for key, service in LAUNCH_SERVICES.items():
        launch[key] = service if url else ""
    launch["thebe"] = False
    config["launch_buttons"] = launch
    config.setdefault("html", {})["use_repository_button"] = bool(url)
    # jupyter-book always loads sphinx-thebe, whose inline script names its CDN; the pages have
    # no live kernels, so the extension list is jupyter-book's own without it
    from jupyter_book.config import get_default_sphinx_config

    sphinx = config.setdefault("sphinx", {})
    extensions = [e for e in get_default_sphinx_config()["extensions"] if e != "sphinx_thebe"]
    extensions += [e for e in sphinx.get("extra_extensions") or [] if e not in extensions]
    sphinx.setdefault("config", {})["extensions"] = extensions
    if url:
        config["repository"]["url"] = url
    else:
        config.pop("repository", None)  # jupyter-book would fill in its own repository instead
    return config


def build_html(book_dir: str | Path, warnings_as_errors: bool = True) -> Path:
    """``jupyter-book build`` (execution off in _config.yml); returns the built index.html."""
    import yaml

    book = Path(book_dir).resolve()
    derived = book / "_build" / "_config.derived.yml"
    derived.parent.mkdir(parents=True, exist_ok=True)
    derived.write_text(yaml.safe_dump(book_config(book), sort_keys=False))
    cmd = [*_jupyter_book_cmd(), "build", str(book), "--builder", "html", "--config", str(derived)]
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


def build_book(
    run_dir: str | Path = "runs/embedded",
    book_dir: str | Path = "book",
    execute: bool = True,
    parameters: Mapping[str, Any] | None = None,
    notebooks_dir: str | Path | None = None,
    timeout: int = 600,
) -> Path:
    """Execute the notebooks on ``run_dir`` (unless ``execute`` is False; ``timeout``: the
    seconds any one cell may run) and build the book.

    Returns the path of the built ``index.html``.
    """
    book = Path(book_dir)
    generated = book / "generated"
    timings: dict[str, float] = {}
    t_start = time.perf_counter()
    with _holding(run_dir) if execute else contextlib.nullcontext():
        # all before the last build's notebooks are replaced, and before any notebook runs
        run = check_run(run_dir) if execute else None
        check_book_folder(book)
        _check_chapter_parameters(parameters)
        if run is not None:
            from repsim.runfolder import RunFolder

            # the run is locked: the results the notebooks will read
            results = RunFolder(run).results_digest()
            if generated.exists():
                shutil.rmtree(generated)
            chapters = chapter_notebooks(notebooks_dir or NOTEBOOKS)
            workers = book_workers(len(chapters))
            log.info(
                "executing %d chapter notebooks on %s, %d at a time",
                len(chapters),
                run_dir,
                workers,
            )
            t0 = time.perf_counter()
            _execute_checked(run, generated, chapters, parameters, timeout=timeout)
            timings["chapters"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            execute_course(book, generated / "course", run_dir, timeout=timeout)
            timings["course"] = time.perf_counter() - t0
            _write_executed_on(generated, run, results)
        elif not generated.exists():
            raise BookError(f"{generated} does not exist: build once with execution on")
        else:
            check_executed_on(generated)
    write_student_notebooks(book, generated / "course" / "student")
    t0 = time.perf_counter()
    index = build_html(book)
    timings["html"] = time.perf_counter() - t0
    timings["book"] = time.perf_counter() - t_start
    log.info("%s", format_book_timings(timings))
    if execute:
        _record_timings(run_dir, timings)
    return index


#: The record, in ``BOOK/generated/``, of the run the notebooks there were executed on.
EXECUTED_ON = "executed_on.json"


def _write_executed_on(generated: Path, run_dir: Path, digest: str | None) -> None:
    """The record :func:`check_executed_on` reads: the run's place (relative to the book, so a
    book moved with its run still finds it; and absolute, so a book moved alone does too) and
    its results' digest. Written last, so a build that failed leaves none."""

    generated.mkdir(parents=True, exist_ok=True)
    run = Path(run_dir).resolve()
    record = {"run_dir": os.path.relpath(run, generated.resolve()), "run_path": str(run)}
    (generated / EXECUTED_ON).write_text(json.dumps({**record, "results": digest}, indent=1))


def check_executed_on(generated: str | Path) -> None:
    """BookError when the notebooks in ``generated`` cannot be shown as a run's: no record of
    the run they were executed on (a build that failed, or one by an older repsim), or that
    run has other results now (a rerun since), which a build without execution would publish
    as the old numbers. A run folder that is gone (a book moved to another machine) cannot be
    checked: logged, and the notebooks are shown as they were executed."""
    from repsim.runfolder import RunFolder

    generated = Path(generated)
    rebuild = "build with execution on: repsim book --run RUN"
    try:
        record = json.loads((generated / EXECUTED_ON).read_text())
        places = [(generated / record["run_dir"]).resolve(), Path(record["run_path"])]
    except (OSError, ValueError, KeyError, TypeError):
        raise BookError(
            f"{generated} holds no record of the run its notebooks were executed on (a build "
            f"that failed, or one by an older repsim), so they cannot be shown as a run's; "
            f"{rebuild}"
        ) from None
    run_dir = next((p for p in places if p.is_dir()), None)
    if run_dir is None:
        log.warning(
            "the run folder %s the notebooks were executed on is gone: the book shows its "
            "numbers as they were",
            places[-1],
        )
        return
    now = RunFolder(run_dir).results_digest()
    if now != record.get("results"):
        what = "have been removed" if now is None else "differ from theirs"
        raise BookError(
            f"the notebooks in {generated} were executed on {run_dir}, whose results {what} "
            "now (a rerun since): the book would show the old numbers as this run's; "
            f"{rebuild.replace('RUN', str(run_dir))}"
        )


@contextlib.contextmanager
def _holding(run_dir: str | Path) -> Iterator[None]:
    """Hold the run folder's lock while the notebooks read it: a ``repsim run`` in the folder
    meanwhile (a rerun replacing its results) could leave a book whose chapters come from two
    runs. A run already in the folder is named; a folder where this user cannot make the lock
    file (read-only) is read without it."""
    from repsim.runfolder import RunFolder, RunFolderError, RunLockedError, filesystem_errors

    folder = RunFolder(run_dir)
    with filesystem_errors(folder.similarity, "read"):
        present = folder.similarity.exists()
    if not present:  # not a run's results: said as such, and no lock file left in the folder
        check_run(run_dir)
    held = contextlib.ExitStack()
    try:
        held.enter_context(folder.lock())
    except RunLockedError as exc:
        raise RunLockedError(
            str(exc).replace("or choose another --out", "then build the book")
        ) from None
    except RunFolderError as exc:
        log.info("building the book without the run folder's lock: %s", exc)
    with held:
        yield


def _record_timings(run_dir: str | Path, timings: Mapping[str, float]) -> None:
    """Add the book's time per stage to the run's run.json (``book_timings_s``), beside the
    pipeline's ``timings_s``; a folder that cannot take it (read-only, in use) only logs why."""
    from repsim.errors import StoreError
    from repsim.runfolder import RunFolder

    try:
        RunFolder(run_dir).record_info(
            "book_timings_s", {k: round(v, 3) for k, v in timings.items()}
        )
    except StoreError as exc:
        log.warning("book timings not recorded in run.json: %s", exc)


def format_book_timings(timings: Mapping[str, float]) -> str:
    """The book's line of the time per stage (the run's stages are in its summary and run.json)."""
    parts = [f"{k} {v:.1f} s" for k, v in timings.items() if k != "book"]
    return f"Time per stage: book {timings.get('book', 0.0):.1f} s ({', '.join(parts)})"
