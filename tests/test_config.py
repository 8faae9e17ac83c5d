from pathlib import Path

import pytest

from repsim.config import load_config, resolve_path
from repsim.errors import ConfigError


def test_include_merges_lists_and_resolves_paths(tmp_path: Path):
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "models.yaml").write_text("models:\n  - {id: a, weights: w.bin}\n")
    (tmp_path / "main.yaml").write_text(
        "include: [sub/models.yaml]\nmodels:\n  - {id: b}\nmeasures: [cka_linear]\n"
    )
    cfg = load_config(tmp_path / "main.yaml")
    assert [m["id"] for m in cfg["models"]] == ["a", "b"]
    assert resolve_path("w.bin", cfg["models"][0]) == sub / "w.bin"
    assert cfg["name"] == "main"


def test_missing_and_cyclic_configs(tmp_path: Path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    (tmp_path / "a.yaml").write_text("include: [b.yaml]\n")
    (tmp_path / "b.yaml").write_text("include: [a.yaml]\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")
