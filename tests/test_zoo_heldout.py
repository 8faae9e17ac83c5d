"""Chapter 09's table of how well the mini-zoo learned: the zoo's manifest and heldout.csv, read
only for the weights files the run used (matched by SHA-256)."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path

import pandas as pd
import pytest
import xarray as xr

from repsim import analysis as A
from repsim import sentences as T
from repsim.chapter import Run
from repsim.minizoo.data import synthetic_npz


@pytest.fixture(scope="module")
def zoo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-model zoo (MLP supervised and its random control, seed 0) trained on two tiny sets."""
    from repsim.minizoo.train import main

    root = tmp_path_factory.mktemp("zoo")
    synthetic_npz(root / "data" / "squares.npz", n=96, n_classes=3, seed=0)
    synthetic_npz(root / "data" / "blocks.npz", n=64, n_classes=2, seed=1)
    args = ["--data", str(root / "data"), "--seeds", "0", "--epochs", "1", "--batch-size", "32"]
    args += ["--archs", "mlp", "--objectives", "supervised", "random", "--out", str(root / "zoo")]
    assert main(args) == 0
    return root / "zoo"


def _run(zoo: Path, **sha: str) -> Run:
    """A run whose run.json lists the zoo's weights files (hash overridden per model id)."""
    weights = {}
    for row in csv.DictReader((zoo / "manifest.csv").open()):
        path = zoo / row["weights"]
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        weights[row["id"]] = {"path": str(path), "sha256": sha.get(row["id"], digest)}
    return Run(path=zoo, similarity=xr.Dataset(), info={"weights": weights})


def test_zoo_heldout_reads_the_manifest_rows_of_the_files_the_run_used(zoo: Path) -> None:
    models, cells, note = A.zoo_heldout(_run(zoo))
    manifest = {r["id"]: r for r in csv.DictReader((zoo / "manifest.csv").open())}
    assert note == ""
    assert list(models["model"]) == ["mlp-supervised-s0", "mlp-random-s0"]
    for row in models.itertuples():
        assert row.accuracy == float(manifest[row.model]["probe_acc"])
        assert row.epochs == int(manifest[row.model]["epochs"])
    held = pd.read_csv(zoo / "heldout.csv")
    assert len(cells) == len(held) == 4
    assert (
        cells.set_index(["model", "dataset"])["accuracy"].to_dict()
        == held.set_index(["id", "dataset"])["probe_acc"].to_dict()
    )
    assert cells.groupby("model")["trained"].first().to_dict() == {
        "mlp-random-s0": False,
        "mlp-supervised-s0": True,
    }
    table = A.zoo_accuracy_table(models)
    assert (
        table.loc["Cross-entropy", "MLP"]
        == f"{float(manifest['mlp-supervised-s0']['probe_acc']):.3f}"
    )


def test_zoo_heldout_leaves_out_a_model_retrained_after_the_run(zoo: Path) -> None:
    models, cells, note = A.zoo_heldout(_run(zoo, **{"mlp-supervised-s0": "0" * 64}))
    assert list(models["model"]) == ["mlp-random-s0"]
    assert set(cells["model"]) == {"mlp-random-s0"}
    assert "retrained after this run" in note and "mlp-supervised-s0" in note
    text = T.zoo_accuracy_text(models, cells, note)
    assert "Left out:" in text and "mlp-supervised-s0" in text


def test_zoo_heldout_without_weights_says_why() -> None:
    models, cells, note = A.zoo_heldout(Run(path=Path("."), similarity=xr.Dataset(), info={}))
    assert models is None and cells is None
    assert T.zoo_accuracy_text(models, cells, note).startswith("No held-out accuracy")


def test_zoo_accuracy_table_gives_mean_and_range_over_seeds() -> None:
    models = pd.DataFrame(
        {
            "method": ["SimCLR"] * 3 + ["Random init"],
            "architecture": ["SmallCNN"] * 4,
            "accuracy": [0.5, 0.6, 0.7, 0.2],
        }
    )
    table = A.zoo_accuracy_table(models)
    assert table.to_dict() == {
        "SmallCNN": {"SimCLR": "0.600 (0.500-0.700)", "Random init": "0.200"}
    }


def test_zoo_accuracy_text_lists_the_near_chance_cells_of_trained_models_only() -> None:
    models = pd.DataFrame(
        {"objective": ["Supervised", "Random"], "epochs": [20, 0], "model": ["a", "r"]}
    )
    cells = pd.DataFrame(
        {
            "model": ["a", "a", "r"],
            "dataset": ["glyphs", "faces", "glyphs"],
            "accuracy": [0.07, 0.98, 0.04],
            "threshold": [1 / 26 + 0.05, 1 / 26 + 0.05, 1 / 26 + 0.05],
            "near_chance": [True, False, True],
            "trained": [True, True, False],
        }
    )
    text = T.zoo_accuracy_text(models, cells, "")
    assert "trained for 20 epochs each" in text
    assert "1 of the 2 (trained model, set) cells is near chance" in text
    assert "a on glyphs (0.070)" in text and "r on glyphs" not in text
    none = T.zoo_accuracy_text(models, cells.assign(near_chance=False), "")
    assert "none of the 2 (trained model, set) cells is near chance" in none
    # no per-set table: the budget alone
    alone = T.zoo_accuracy_text(models, None, "")
    assert "trained for 20 epochs each." in alone and "near chance" not in alone


def test_zoo_accuracy_text_adds_the_runs_own_near_chance_probes() -> None:
    """Chapter 9 said no trained cell is near chance (the zoo's ridge probe) while chapter 8
    left 11 of the same run's probes out as near chance; the sentence now says both."""
    models = pd.DataFrame(
        {"objective": ["Supervised", "Random"], "epochs": [20, 0], "model": ["a", "r"]}
    )
    cells = pd.DataFrame(
        {
            "model": ["a", "a"],
            "dataset": ["glyphs", "faces"],
            "accuracy": [0.6, 0.98],
            "near_chance": [False, False],
            "trained": [True, True],
        }
    )
    run_chance = pd.DataFrame(
        {
            "model": ["a", "a", "r", "r"],
            "dataset": ["glyphs", "faces", "glyphs", "faces"],
            "near_chance": [True, False, True, True],
        }
    )
    text = T.zoo_accuracy_text(models, cells, "", run_chance)
    assert "none of the 2 (trained model, set) cells is near chance" in text
    assert (
        "The run's own probes (the behaviour chapter: the study's logistic probe on the run's "
        "smaller train sample, judged by its interval over probe seeds) put 1 of the 2 trained "
        "(model, dataset) cells near chance (glyphs 1). The two probes differ"
    ) in text
    calm = T.zoo_accuracy_text(models, cells, "", run_chance.assign(near_chance=False))
    assert "put 0 of the 2 trained (model, dataset) cells near chance. The two" in calm
    assert "The run's own probes" not in T.zoo_accuracy_text(models, cells, "")


def test_zoo_heldout_keeps_the_sets_of_the_run(zoo: Path) -> None:
    run = _run(zoo)
    run.info["datasets"] = ["squares"]
    _, cells, _ = A.zoo_heldout(run)
    assert set(cells["dataset"]) == {"squares"} and len(cells) == 2


def test_zoo_heldout_of_a_chapters_selection_keeps_its_models_and_sets(zoo: Path) -> None:
    """A chapter run with ``models=``/``datasets=`` shows the zoo rows of those only."""
    from dataclasses import replace

    run = _run(zoo)
    run.info["datasets"] = ["squares", "blocks"]
    ids = ["mlp-random-s0"]
    sim = xr.Dataset(coords={"model_a": ids, "model_b": ids, "dataset": ["blocks"]})
    part = replace(run, similarity=sim, selection="1 of 2 models and 1 of 2 datasets")
    models, cells, note = A.zoo_heldout(part)
    assert list(models["model"]) == ids and note == ""
    assert set(cells["model"]) == set(ids) and set(cells["dataset"]) == {"blocks"}
    assert len(cells) == 1


def test_zoo_heldout_names_a_manifest_of_another_kind(tmp_path: Path) -> None:
    """Weights beside a manifest.csv that is not the zoo's: noted, not a KeyError."""
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "m.safetensors").write_bytes(b"x")
    (folder / "manifest.csv").write_text("name,size\nm,1\n")
    info = {"weights": {"m": {"path": str(folder / "m.safetensors"), "sha256": "0" * 64}}}
    models, cells, note = A.zoo_heldout(Run(path=tmp_path, similarity=xr.Dataset(), info=info))
    assert models is None and cells is None
    assert "weights/manifest.csv is not a mini-zoo table (no column id" in note
    assert "no manifest row for 1 model(s): m" in note


def test_zoo_accuracy_text_counts_many_near_chance_cells_by_set_and_architecture() -> None:
    ids = [f"m{i}" for i in range(10)]
    models = pd.DataFrame(
        {
            "model": ids,
            "objective": ["Supervised"] * 10,
            "epochs": [2] * 10,
            "architecture": ["ViT"] * 7 + ["MLP"] * 3,
        }
    )
    cells = pd.DataFrame(
        {
            "model": ids,
            "dataset": ["glyphs"] * 6 + ["gratings"] * 4,
            "accuracy": [0.05] * 10,
            "threshold": [0.09] * 10,
            "near_chance": [True] * 10,
            "trained": [True] * 10,
        }
    )
    text = T.zoo_accuracy_text(models, cells, "")
    assert "10 of the 10 (trained model, set) cells are near chance" in text
    assert "glyphs 6, gratings 4 (by architecture: ViT 7, MLP 3;" in text
    assert "m0 on glyphs" not in text
    # up to 8 near-chance cells are named one by one
    eight = T.zoo_accuracy_text(models, cells.iloc[:8], "")
    assert "8 of the 8 (trained model, set) cells are near chance" in eight
    assert "m0 on glyphs (0.050)" in eight and "m7 on gratings (0.050)" in eight
    assert "by architecture" not in eight


@pytest.mark.parametrize("cut", [-20, -70])
def test_zoo_heldout_names_a_truncated_manifest_not_a_retrained_model(
    zoo: Path, tmp_path: Path, cut: int
) -> None:
    """A manifest cut inside its last row (in the hash, or before it) is damaged, not a model
    retrained after the run; the intact row still counts."""
    import shutil

    copy = tmp_path / "zoo"
    shutil.copytree(zoo, copy)
    run = _run(copy)
    text = (copy / "manifest.csv").read_text()
    (copy / "manifest.csv").write_text(text.rstrip("\n")[:cut])
    last = list(csv.DictReader(text.splitlines()))[-1]["id"]
    models, _, note = A.zoo_heldout(run)
    assert "retrained" not in note
    assert f"zoo/manifest.csv has 1 damaged row(s) (truncated or edited), left out: {last}" in note
    assert "no manifest row" not in note
    assert last not in set(models["model"]) and len(models) == 1


def test_zoo_heldout_leaves_out_a_damaged_heldout_row_with_a_note(
    zoo: Path, tmp_path: Path
) -> None:
    import shutil

    copy = tmp_path / "zoo"
    shutil.copytree(zoo, copy)
    held = pd.read_csv(copy / "heldout.csv", dtype=str)
    held.loc[0, "probe_acc"] = "0.8x"
    held.to_csv(copy / "heldout.csv", index=False)
    _, cells, note = A.zoo_heldout(_run(copy))
    assert "zoo/heldout.csv has 1 damaged row(s) (truncated or edited), left out: " in note
    acc = cells.set_index(["model", "dataset"])["accuracy"]
    assert acc.isna().sum() == 1 and acc.isna()[(held.loc[0, "id"], held.loc[0, "dataset"])]


def test_a_near_chance_accuracy_is_shown_at_most_its_threshold() -> None:
    """An accuracy of 0.2166 at most 1/6 + 0.05 = 0.21667 (near chance) showed as 0.217, above
    the threshold of the rule it is listed under."""
    models = pd.DataFrame({"objective": ["Supervised"], "epochs": [20], "model": ["a"]})
    cells = pd.DataFrame(
        {
            "model": ["a"],
            "dataset": ["shapes"],
            "threshold": [1 / 6 + 0.05],
            "accuracy": [0.2166],
            "near_chance": [True],
            "trained": [True],
        }
    )
    assert "a on shapes (0.2166)" in T.zoo_accuracy_text(models, cells, "")
