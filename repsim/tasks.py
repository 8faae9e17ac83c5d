"""Task wrappers that keep one failure from ending a run, and keep its cause.

A failed task (a model whose weights are corrupt, a dataset that cannot be decoded) becomes a
:class:`TaskFailure` value instead of an exception: it carries the stage, model, dataset,
exception type and message. Tasks that depend on it are skipped and point at that root failure,
every other task still runs and caches its result, and the run reports all of them at the end.
Unexpected errors are retried first; RepsimErrors and filesystem errors such as a full disk are
not (they would fail the same way again), whatever type the writer raised a full disk as
(:func:`repsim.runfolder.full_disk`).
"""

from __future__ import annotations

import errno
import logging
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from repsim.errors import RepsimError
from repsim.runfolder import describe_os_error, full_disk

log = logging.getLogger(__name__)

#: OSErrors that a retry cannot fix.
_PERMANENT_ERRNOS = {
    errno.ENOSPC,
    errno.EDQUOT,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EEXIST,
    errno.ENAMETOOLONG,
}


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError ``exc`` is or stands for (h5py words a full disk as a RuntimeError), else None."""
    if isinstance(exc, OSError) and exc.errno is not None:
        return exc
    return full_disk(exc) or (exc if isinstance(exc, OSError) else None)


@dataclass(frozen=True)
class TaskFailure:
    """A task that failed, or was skipped because a task it needs failed (then ``cause`` names it)."""

    task: str
    error: str
    skipped: bool = False
    stage: str = ""
    model: str | None = None
    dataset: str | None = None
    exc_type: str = ""
    message: str = ""
    cause: str | None = None
    #: the failure behind a skipped task: a task whose result feeds only other tasks (a
    #: dataset's extraction) is reported through it, or its cause would never be shown
    root: TaskFailure | None = field(default=None, repr=False, compare=False)

    def __str__(self) -> str:
        where = ", ".join(
            f"{k} {v}" for k, v in (("model", self.model), ("dataset", self.dataset)) if v
        )
        head = f"{self.task}" + (f" ({where})" if where else "")
        if self.skipped:
            return f"{head}: skipped because {self.cause} failed"
        return f"{head}: {self.exc_type}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("root")
        return out


class Guarded:
    """Call ``func``; turn an exception into a TaskFailure after ``retries`` further attempts."""

    def __init__(
        self,
        func: Callable[..., Any],
        name: str,
        retries: int = 1,
        *,
        stage: str = "",
        model: str | None = None,
        dataset: str | None = None,
    ):
        self.func, self.name, self.retries = func, name, retries
        self.stage, self.model, self.dataset = stage or name.split("-", 1)[0], model, dataset

    def _failure(self, exc: BaseException, message: str | None = None) -> TaskFailure:
        message = str(exc) if message is None else message
        return TaskFailure(
            self.name,
            f"{type(exc).__name__}: {message}",
            stage=self.stage,
            model=self.model,
            dataset=self.dataset,
            exc_type=type(exc).__name__,
            message=message,
        )

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        upstream = [a for a in args if isinstance(a, TaskFailure)]
        if upstream:
            first = upstream[0]
            root = first.root if first.skipped else first
            name = first.cause if first.skipped else first.task
            return TaskFailure(
                self.name,
                f"skipped because {name} failed",
                skipped=True,
                stage=self.stage,
                model=self.model,
                dataset=self.dataset,
                cause=name,
                root=root,
            )
        for attempt in range(self.retries + 1):
            try:
                return self.func(*args, **kwargs)
            except RepsimError as exc:
                log.error("%s failed: %s", self.name, exc)
                return self._failure(exc)
            except Exception as exc:  # noqa: BLE001 - any failure of one task must not end the run
                os_error = _os_error(exc)
                if os_error is not None and (
                    os_error.errno in _PERMANENT_ERRNOS or attempt >= self.retries
                ):
                    message = describe_os_error(os_error, action="access")
                    log.error("%s failed: %s", self.name, message)
                    return self._failure(exc, message)
                if attempt < self.retries:
                    log.warning("%s failed (%s: %s); retrying", self.name, type(exc).__name__, exc)
                    continue
                log.exception("%s failed", self.name)
                return self._failure(exc)
        raise AssertionError("unreachable")


def failures(results: Iterable[Any]) -> list[TaskFailure]:
    """The TaskFailures among task results (first the failed tasks, then the skipped ones),
    with the failure behind each skipped task added when it is not among the results itself."""
    found = [r for r in results if isinstance(r, TaskFailure)]
    named = {f.task for f in found}
    for f in list(found):
        if f.skipped and f.root is not None and f.root.task not in named:
            found.append(f.root)
            named.add(f.root.task)
    return sorted(found, key=lambda f: f.skipped)


def failure_report(failed: list[TaskFailure]) -> str:
    """Failed tasks one per line with their cause; skipped tasks counted per root failure."""
    lines = [str(f) for f in failed if not f.skipped]
    by_cause: dict[str, list[str]] = {}
    for f in failed:
        if f.skipped:
            by_cause.setdefault(str(f.cause), []).append(f.task)
    for cause, tasks in by_cause.items():
        shown = ", ".join(tasks[:6]) + (f", ... ({len(tasks)} in all)" if len(tasks) > 6 else "")
        lines.append(f"skipped because {cause} failed: {shown}")
    return "\n  ".join(lines)
