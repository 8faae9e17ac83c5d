"""Shared pieces of the fault-injection suite: the small config the cases run."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
EMBEDDED = REPO / "data" / "configs" / "embedded.yaml"
MODELS = ("cnn-supervised-s0", "cnn-simclr-s0", "cnn-clip-s0")
DATASETS = ("faces", "textures")


def write_config(
    path: Path,
    *,
    name: str = "faults",
    models=MODELS,
    datasets=DATASETS,
    measures=("cka_linear", "rsa_spearman", "mutual_knn_10"),
    extra: str = "",
) -> Path:
    """A config that includes the embedded config and selects a few models and datasets."""
    path.write_text(
        f"name: {name}\n"
        f"include: [{EMBEDDED}]\n"
        f"select: {{models: [{', '.join(models)}], datasets: [{', '.join(datasets)}]}}\n"
        f"measures: [{', '.join(measures)}]\n"
        "stimuli: {max_images: 60, seed: 42}\n"
        "probe: {enabled: false}\n"
        "threads: 1\n" + extra
    )
    return path


def unreadable(monkeypatch, *paths: Path) -> None:
    """Make ``paths`` what mode 000 makes them for a user other than root (tests may run as root,
    whom chmod does not stop): opening one raises PermissionError, and so does opening or a stat
    of anything inside one that is a folder."""
    import builtins
    import errno
    import io
    import os

    denied = [os.path.realpath(p) for p in paths]
    real_open, real_stat = builtins.open, os.stat

    def refused(path, inside_only: bool) -> bool:
        if not isinstance(path, str | bytes | os.PathLike):
            return False  # a file descriptor
        where = os.path.realpath(os.fsdecode(path))
        return any(where.startswith(d + os.sep) or (not inside_only and where == d) for d in denied)

    def guarded_open(file, *args, **kwargs):
        if refused(file, inside_only=False):
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(file))
        return real_open(file, *args, **kwargs)

    def guarded_stat(path, *args, **kwargs):
        if refused(path, inside_only=True):
            raise PermissionError(errno.EACCES, "Permission denied", os.fsdecode(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded_open)
    monkeypatch.setattr(io, "open", guarded_open)
    monkeypatch.setattr(os, "stat", guarded_stat)
