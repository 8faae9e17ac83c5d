"""One small clean run, copied per fault case (shutil.copytree is much cheaper than a run).

The small config keeps the suite fast: 3 mini-zoo models of 3 objectives, 2 embedded datasets,
3 measures, no probes (so only the 60 similarity stimuli per dataset are extracted).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from faults.faultkit import write_config


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
