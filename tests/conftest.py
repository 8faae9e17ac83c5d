"""Shared fixtures. Tests never touch the network: hub downloads are switched off."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
from hypothesis import settings  # noqa: E402

# CI replays a fixed set of examples (a red CI must mean a regression, not a new random draw);
# local runs keep exploring, and any failure they find is stored and replayed by hypothesis.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def tiny_config() -> Path:
    return REPO / "data" / "configs" / "tiny.yaml"


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, tiny_config: Path) -> Path:
    """One pipeline run of the tiny config, shared by every test that reads a run folder."""
    from repsim.pipeline import run

    out = tmp_path_factory.mktemp("runs") / "tiny"
    run(tiny_config, out, device="cpu")
    return out
