"""``repsim models --check``: every study model builds offline on the meta device with its dim."""

from __future__ import annotations

from pathlib import Path

import pytest

from repsim.zoo import check_models, list_models


def test_check_reports_mismatch_and_errors(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "models:\n"
        "  - {id: good, loader: torchvision, identifier: resnet18, layer: avgpool, token: pooled, metadata: {embed_dim: 512}}\n"
        "  - {id: wrongdim, loader: timm, identifier: resnet18, metadata: {embed_dim: 100}}\n"
        "  - {id: badlayer, loader: timm, identifier: resnet18, layer: nolayer, metadata: {embed_dim: 512}}\n"
    )
    table, ok = check_models(cfg)
    assert not ok
    lines = {line.split()[0]: line for line in table.splitlines()[2:5]}
    assert lines["good"].rstrip().endswith("ok")
    assert "dim mismatch" in lines["wrongdim"]
    assert "does not exist" in lines["badlayer"]
    assert "good" in list_models(cfg)


@pytest.mark.slow
def test_paper_models_all_resolve(repo_root: Path) -> None:
    table, ok = check_models(repo_root / "data" / "configs" / "paper_models.yaml")
    assert "64/64 models ok" in table, table
    assert ok
