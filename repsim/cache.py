"""Stage caching that verifies content: a task is reused only when its inputs and output both check.

A task's *key* is the SHA-256 of a canonical JSON of everything that determines its output (specs,
parameters, and the content hashes of the files it reads). After the output is written, a record
``RUN/.stages/<stage>/<dataset>[/<model>].json`` stores the key and the output's content hash; it
is written last, atomically, so a task killed half-way has no record and reruns. On the next run
:meth:`StageCache.check` reuses the output only when the recorded key equals the current key *and*
the output's content still hashes to the recorded value; otherwise it says why it must be redone
(missing, truncated or altered output; changed inputs), and that reason is logged once.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from repsim.runfolder import RunFolder, atomic_write_bytes, sha256_file


def _canonical(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _canonical(asdict(value))
    if isinstance(value, dict):
        return {
            str(k): _canonical(v)
            for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))
            if not str(k).startswith("_")
        }
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


def stage_key(*parts: Any) -> str:
    """Stable hash of the inputs of a stage (dataclasses, dicts, lists, paths, numbers, strings)."""
    blob = json.dumps(_canonical(list(parts)), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def _present(present: Callable[[], bool] | None) -> bool:
    """Whether an output is there by ``present`` (an unreadable one counts as there)."""
    if present is None:
        return False
    try:
        return bool(present())
    except Exception:  # noqa: BLE001 - something is there that does not read
        return True


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (mode 0644, never half-written)."""
    atomic_write_bytes(path, text.encode())


#: A task's name in the records: a dataset id (per-dataset stages) or a (dataset id, model id)
#: pair. A pair is never joined into one string: ids may hold '/' (``wds/cars``), and
#: ``"wds/cars"`` read as dataset ``wds``, model ``cars`` put its records where the end of the
#: run removed them as belonging to no dataset, so every rerun recomputed them.
TaskName = str | tuple[str, str]


class StageCache:
    """Records of finished tasks under ``RUN/.stages``: input key, output content hash, facts."""

    def __init__(self, run_dir: str | Path | RunFolder):
        self.folder = run_dir if isinstance(run_dir, RunFolder) else RunFolder(run_dir)
        self.root = self.folder.stages

    def _marker(self, stage: str, name: TaskName) -> Path:
        if isinstance(name, tuple):
            return self.folder.marker(stage, *name)
        return self.folder.marker(stage, name)

    def info(self, stage: str, name: TaskName) -> dict[str, Any]:
        """The record of ``name`` (a dataset id, or a ``(dataset, model)`` pair of ids) in
        ``stage``; {} when absent or damaged."""
        marker = self._marker(stage, name)
        try:
            value = json.loads(marker.read_text())
        except (OSError, ValueError):
            return {}
        return value if isinstance(value, dict) else {}

    def check(
        self,
        stage: str,
        name: TaskName,
        key: str,
        output: Path | None = None,
        content_hash: Callable[[], str | None] | None = None,
        code: str | None = None,
        present: Callable[[], bool] | None = None,
    ) -> tuple[bool, str]:
        """``(True, "")`` when the recorded task can be reused, else ``(False, why)``.

        ``output`` is a file hashed with SHA-256; ``content_hash`` computes the hash of an output
        that is not one file (a feature group). Either is compared with the recorded hash.
        ``code`` (part of ``key``, recorded by :meth:`mark_done`) names the reason when it is the
        code that changed. ``present`` says cheaply whether a finished output of a kind that is
        not one file exists, so an output whose record was deleted is said to be redone.
        """
        if output is None and content_hash is None:  # a record alone proves no output
            raise TypeError("StageCache.check needs the output: pass output= or content_hash=")
        info = self.info(stage, name)
        if not info:
            if self._marker(stage, name).exists():
                return False, "its record in .stages is unreadable"
            if (output is not None and output.exists()) or _present(present):
                return False, (
                    "its output has no record in .stages (left unfinished by an interrupted run, "
                    "or its record was deleted), so it cannot be verified"
                )
            return False, "not done yet"
        if info.get("key") != key:
            if code is not None and info.get("code") not in (None, code):
                return False, "the code that computes it changed (repsim or a library's version)"
            return False, "its inputs changed (config, weights, stimuli or upstream results)"
        recorded = info.get("sha256")
        if output is not None:
            if not output.is_file():
                return False, f"{output.name} is missing"
            actual = sha256_file(output)
        else:
            try:
                actual = content_hash()
            except Exception as exc:  # noqa: BLE001 - any read failure means a damaged output
                return False, f"its output is unreadable ({exc})"
            if actual is None:
                return False, "its output is missing or incomplete"
        if actual != recorded:
            return False, "its output was truncated or altered (content hash differs)"
        return True, ""

    def mark_done(self, stage: str, name: TaskName, key: str, **info: Any) -> None:
        """Record a finished task (pass ``sha256=`` the output's content hash)."""
        record = {"key": key, **_canonical(info)}
        atomic_write_text(self._marker(stage, name), json.dumps(record, indent=1, default=str))

    def forget(self, stage: str, name: TaskName) -> None:
        self._marker(stage, name).unlink(missing_ok=True)
