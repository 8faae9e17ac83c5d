"""Benchmark reports: the machine a figure was measured on, and JSON + markdown files of the results.

A benchmark number means little without the machine, so every report starts with the CPU, core
count, memory, GPU and the torch/CUDA versions. The report dict is the single source: the JSON file
is that dict, the markdown file is rendered from it.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from repsim.cache import atomic_write_text

log = logging.getLogger(__name__)

#: a table: header row, then data rows (cells already formatted as strings)
Table = tuple[Sequence[str], Sequence[Sequence[str]]]


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A GitHub-flavoured markdown table; cells are written with ``str``."""
    esc = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = [
        "| " + " | ".join(map(esc, header)) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    lines += ["| " + " | ".join(map(esc, row)) + " |" for row in rows]
    return "\n".join(lines)


_MACHINE_ROWS = (
    ("CPU", "cpu"),
    ("cores (logical / available)", None),
    ("memory (GiB)", "memory_gib"),
    ("GPU", "gpu"),
    ("GPU memory (GiB)", "gpu_memory_gib"),
    ("torch", "torch"),
    ("torch threads", "torch_threads"),
    ("CUDA", "cuda"),
    ("cuDNN", "cudnn"),
    ("python", "python"),
    ("platform", "platform"),
    ("git commit", "git_commit"),
    ("date (UTC)", "date_utc"),
)


def machine_table(info: Mapping[str, Any]) -> str:
    """The machine facts of :func:`repsim.runinfo.machine_info` as a two-column markdown table."""
    rows = []
    for label, key in _MACHINE_ROWS:
        if key is None:
            value = f"{info.get('cpu_cores_logical')} / {info.get('cpu_cores_available')}"
        else:
            value = info.get(key)
            value = "-" if value is None else value
        rows.append((label, value))
    return markdown_table(("", "value"), rows)


def render_markdown(report: Mapping[str, Any]) -> str:
    """The markdown page of a report dict (see :func:`write_report` for its keys)."""
    parts = [
        f"# {report.get('title', 'repsim benchmarks')}",
        "",
        "## Machine",
        "",
        machine_table(report.get("machine", {})),
    ]
    for name, entry in report.get("benchmarks", {}).items():
        parts += ["", f"## {name}", ""]
        if entry.get("status") != "ok":
            parts.append(
                f"**failed** after {entry.get('seconds', 0.0):.1f} s: {entry.get('error', 'unknown error')}"
            )
            continue
        if entry.get("description"):
            parts += [entry["description"], ""]
        for header, rows in entry.get("tables", []):
            parts += [markdown_table(header, rows), ""]
        parts.append(f"(benchmark wall time {entry.get('seconds', 0.0):.1f} s)")
    if report.get("extra_markdown"):
        parts += ["", str(report["extra_markdown"])]
    return "\n".join(parts).rstrip() + "\n"


def _jsonable(value: Any) -> Any:
    """numpy scalars, tuples and paths as plain JSON values."""
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "item"):
        return value.item()
    return str(value)


def write_report(
    report: Mapping[str, Any], out_dir: str | Path, stem: str = "bench"
) -> tuple[Path, Path]:
    """Write ``OUT/<stem>.json`` and ``OUT/<stem>.md`` atomically; return both paths.

    ``report`` has ``title``, ``machine`` (:func:`repsim.runinfo.machine_info`) and ``benchmarks``: name ->
    ``{status, seconds, result, tables, description | error}``; ``extra_markdown`` is appended.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / f"{stem}.json", out / f"{stem}.md"
    atomic_write_text(json_path, json.dumps(_jsonable(report), indent=2) + "\n")
    atomic_write_text(md_path, render_markdown(report))
    log.info("benchmark report written to %s and %s", json_path, md_path)
    return json_path, md_path
