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
