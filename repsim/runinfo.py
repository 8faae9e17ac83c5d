"""Facts about the software and machine a run used: ``run.json``, feature groups, benchmark reports."""

from __future__ import annotations

import datetime as _dt
import functools
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

TRACKED_PACKAGES = (
    "repsim-compendium",
    "numpy",
    "scipy",
    "torch",
    "torchvision",
    "timm",
    "open_clip_torch",
    "transformers",
    "pillow",
    "xarray",
    "zarr",
    "h5netcdf",
    "dask",
    "distributed",
    "scikit-learn",
    "pandas",
)


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    """Python and the installed versions of the packages that can change the numbers.

    One record for ``run.json`` and every feature group, so a number can be traced to its software.
    Looked up once per process (about 20 ms), not once per feature group.
    """
    return dict(_versions(tuple(names)))


@functools.cache
def _versions(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    out = {"python": platform.python_version()}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return tuple(out.items())


def git_commit(path: str | Path | None = None) -> str | None:
    """The commit of the checkout holding ``path`` (None outside git), with '+dirty' if modified."""
    cwd = Path(path or Path(__file__).parent)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def machine_info(device: str | None = None) -> dict[str, Any]:
    """Facts about this machine and its software that a run or a benchmark figure depends on.

    Used for ``run.json`` and benchmark reports alike. The GPU fields are filled only when CUDA is
    available, so this never fails on a CPU machine. ``device`` is the device the work ran on
    (default: what :func:`repsim.device.resolve_device` picks).
    """
    import torch

    from repsim.device import resolve_device

    info: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M:%S"),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_model(),
        "cpu_cores_logical": os.cpu_count(),
        "cpu_cores_available": _cores_available(),
        "memory_gib": round(m, 1) if (m := _memory_gb()) is not None else None,
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "gpu": None,
        "gpu_memory_gib": None,
        "gpu_count": 0,
        "device": str(device) if device is not None else str(resolve_device()),
        "git_commit": git_commit(Path(__file__).resolve().parent),
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name,
            gpu_memory_gib=round(props.total_memory / 2**30, 1),
            gpu_count=torch.cuda.device_count(),
        )
    return info


def _cpu_model() -> str:
    """The CPU's marketing name (Linux /proc/cpuinfo; else what ``platform`` knows)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _memory_gb() -> float | None:
    """Total physical memory in GiB, or None where it cannot be read."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    except (ValueError, OSError, AttributeError):
        return None


def _cores_available() -> int | None:
    """Cores this process may run on (affinity), which can be fewer than the machine has."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count()
