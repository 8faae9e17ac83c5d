"""data/configs/quickstart.yaml checks offline: every model builds, the datasets say how to get them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from repsim.config import load_config
from repsim.stimuli import check_datasets
from repsim.zoo import check_models

QUICKSTART = Path(__file__).resolve().parents[1] / "data" / "configs" / "quickstart.yaml"


def test_quickstart_covers_three_objectives_and_four_domains() -> None:
    cfg = load_config(QUICKSTART)
    objectives = Counter(m["metadata"]["objective"] for m in cfg["models"])
    assert set(objectives) == {"Self-Supervised", "Supervised", "Image-Text"}
    assert 10 <= sum(objectives.values()) <= 16
    assert len({d["domain"] for d in cfg["datasets"]}) == 4
    assert all(
        d["loader"] == "torchvision" and not d["options"].get("download") for d in cfg["datasets"]
    )


@pytest.mark.slow
def test_quickstart_models_build_offline(downloads_on) -> None:
    table, ok = check_models(QUICKSTART)  # no weights here: ok where a run downloads them
    assert ok, table


def test_quickstart_datasets_absent_with_download_hint() -> None:
    if (QUICKSTART.parent.parent / "torchvision").exists():
        pytest.skip("data/torchvision/ exists here: the datasets may have been downloaded")
    table, ok = check_datasets(QUICKSTART)
    assert not ok  # nothing is downloaded on this machine
    lines = table.splitlines()
    for ds in ("cifar10", "flowers102", "eurosat", "dtd"):
        row = next(line for line in lines if line.startswith(ds + " "))
        assert row.rstrip().endswith("absent")
        note = next(line for line in lines if line.startswith(ds + ":"))
        assert "download: true" in note
