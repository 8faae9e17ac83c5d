"""Stage caching: a stage is skipped when a marker with the same input key exists beside its output.

A key is the SHA-256 of a canonical JSON of everything that determines the stage's output (specs,
parameters, upstream keys). Markers are written after the output, atomically, so a stage killed
half-way has no marker and reruns; a stage whose inputs changed has a different key and reruns.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any


def _canonical(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return _canonical(asdict(value))
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))
                if not str(k).startswith("_")}
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


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and a rename (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class StageCache:
    """Markers under ``RUN/.stages/<stage>/<name>.json`` recording the key of a finished stage."""

    def __init__(self, run_dir: str | Path):
        self.root = Path(run_dir) / ".stages"

    def _marker(self, stage: str, name: str) -> Path:
        safe = name.replace("/", "__")
        return self.root / stage / f"{safe}.json"

    def is_done(self, stage: str, name: str, key: str) -> bool:
        marker = self._marker(stage, name)
        if not marker.is_file():
            return False
        try:
            return json.loads(marker.read_text()).get("key") == key
        except (OSError, json.JSONDecodeError):
            return False

    def mark_done(self, stage: str, name: str, key: str, **info: Any) -> None:
        atomic_write_text(self._marker(stage, name), json.dumps({"key": key, **_canonical(info)}, indent=1))

    def info(self, stage: str, name: str) -> dict[str, Any]:
        marker = self._marker(stage, name)
        return json.loads(marker.read_text()) if marker.is_file() else {}
