"""One small clean run, copied per fault case (shutil.copytree is much cheaper than a run).

The small config keeps the suite fast: 3 mini-zoo models of 3 objectives, 2 embedded datasets,
3 measures, no probes (so only the 60 similarity stimuli per dataset are extracted).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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


@pytest.fixture(scope="session")
def small_config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_config(tmp_path_factory.mktemp("faults-config") / "small.yaml")


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory, small_config: Path) -> Path:
    """The clean reference run of the small config (never modified by a test)."""
    from repsim.pipeline import run

    out = tmp_path_factory.mktemp("faults-run") / "clean"
    run(small_config, out, device="cpu")
    return out


@pytest.fixture
def run_copy(small_run: Path, tmp_path: Path) -> Path:
    """A private copy of the clean run for one fault case."""
    dest = tmp_path / "run"
    shutil.copytree(small_run, dest)
    return dest
