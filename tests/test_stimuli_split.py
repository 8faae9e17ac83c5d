"""``stimuli.split``: similarity subsets from the held-out split (the mini-zoo's default)."""

from __future__ import annotations

from pathlib import Path

import pytest

from repsim.config import load_config, parse_config
from repsim.errors import ConfigError
from repsim.stimuli import parse_datasets, stimulus_table

REPO = Path(__file__).resolve().parents[1]
EMBEDDED = REPO / "data" / "configs" / "embedded.yaml"


def _faces(stimuli: dict) -> object:
    entry = {
        "id": "faces",
        "loader": "embedded",
        "path": str(REPO / "data" / "embedded" / "faces.npz"),
        "domain": "Natural (single-domain)",
    }
    return parse_datasets([entry], defaults=parse_config({"stimuli": stimuli}).stimuli.to_dict())[0]


def test_split_is_checked_with_the_choices():
    with pytest.raises(ConfigError, match="one of train, test"):
        parse_config({"stimuli": {"split": "validation"}})
    assert parse_config({"stimuli": {}}).stimuli.to_dict().get("split") is None  # hashes unchanged


def test_similarity_subset_comes_from_the_chosen_split():
    train = stimulus_table(_faces({"max_images": 50}), verify=False)
    test = stimulus_table(_faces({"max_images": 50, "split": "test"}), verify=False)
    assert set(train.loc[train.in_similarity, "split"]) == {"train"}
    assert set(test.loc[test.in_similarity, "split"]) == {"test"}
    assert train.in_similarity.sum() == test.in_similarity.sum() == 50
    # the probe still sees both splits: the table lists every item either way
    assert len(train) == len(test)


def test_the_embedded_config_uses_held_out_images():
    cfg = load_config(EMBEDDED)
    specs = parse_datasets(cfg["datasets"], defaults=parse_config(cfg).stimuli.to_dict())
    assert {s.split for s in specs} == {"test"}
