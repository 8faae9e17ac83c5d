"""Task wrappers that keep one failure from ending a run.

A failed task (a model whose weights are corrupt, a dataset that cannot be decoded) becomes a
:class:`TaskFailure` value instead of an exception: tasks that depend on it are skipped, every
other task still runs and caches its result, and the run reports all failures at the end.
Unexpected errors are retried first; RepsimErrors are not (they would fail the same way again).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from repsim.errors import RepsimError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TaskFailure:
    """The outcome of a task that failed, or was skipped because a task it needs failed."""

    task: str
    error: str
    skipped: bool = False

    def __str__(self) -> str:
        return f"{self.task}: {self.error}"


class Guarded:
    """Call ``func``; turn an exception into a TaskFailure after ``retries`` further attempts."""

    def __init__(self, func: Callable[..., Any], name: str, retries: int = 1):
        self.func, self.name, self.retries = func, name, retries

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        upstream = [a for a in args if isinstance(a, TaskFailure)]
        if upstream:
            return TaskFailure(self.name, f"skipped because {upstream[0].task} failed", skipped=True)
        for attempt in range(self.retries + 1):
            try:
                return self.func(*args, **kwargs)
            except RepsimError as exc:
                log.error("%s failed: %s", self.name, exc)
                return TaskFailure(self.name, f"{type(exc).__name__}: {exc}")
            except Exception as exc:  # noqa: BLE001 - any failure of one task must not end the run
                if attempt < self.retries:
                    log.warning("%s failed (%s: %s); retrying", self.name, type(exc).__name__, exc)
                    continue
                log.exception("%s failed", self.name)
                return TaskFailure(self.name, f"{type(exc).__name__}: {exc}")
        raise AssertionError("unreachable")


def failures(results: Iterable[Any]) -> list[TaskFailure]:
    """The TaskFailures among task results (first the failed tasks, then the skipped ones)."""
    found = [r for r in results if isinstance(r, TaskFailure)]
    return sorted(found, key=lambda f: f.skipped)
