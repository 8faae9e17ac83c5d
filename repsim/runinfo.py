"""Facts about the software and machine a run used, for ``run.json`` and feature-store attributes."""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
from pathlib import Path

TRACKED_PACKAGES = (
    "repsim-compendium",
    "numpy",
    "scipy",
    "torch",
    "torchvision",
    "timm",
    "open_clip_torch",
    "xarray",
    "zarr",
    "h5netcdf",
    "dask",
    "distributed",
    "scikit-learn",
    "pandas",
)


def package_versions(names: tuple[str, ...] = TRACKED_PACKAGES) -> dict[str, str]:
    """Installed versions of the packages that can change the numbers."""
    out = {}
    for name in names:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_commit(path: str | Path | None = None) -> str | None:
    """The commit of the checkout holding ``path`` (None outside git), with '+dirty' if modified."""
    cwd = Path(path or Path(__file__).parent)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def resolve_device(device: str | None = None) -> str:
    """'cuda' when available and not overridden, else 'cpu'."""
    import torch

    if device:
        if device.startswith("cuda") and not torch.cuda.is_available():
            from repsim.errors import ConfigError

            raise ConfigError(f"device {device!r} requested but CUDA is not available; use --device cpu")
        return device
    return "cuda" if torch.cuda.is_available() else "cpu"


def machine_info(device: str | None = None) -> dict[str, object]:
    """Machine description: platform, CPU count and GPU name when there is one."""
    import os

    import torch

    info: dict[str, object] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "device": device or resolve_device(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
