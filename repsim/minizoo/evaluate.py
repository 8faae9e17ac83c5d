"""Held-out accuracies of mini-zoo models: a ridge linear probe for every model, the head for supervised.

The probe is a closed-form ridge classifier on L2-normalised embeddings (as the study normalises
features before any probe), with the penalty chosen on a fixed 80/20 split of the train part. It
is deterministic and takes well under a second, so every model, random controls included, gets a
comparable number in the manifest. The study's own AdamW probe lives in :mod:`repsim.probe`.

:func:`dataset_accuracies` applies the same probe within each embedded set (its own classes, its own
train and test split), so a reader can see that no trained model guesses on a set the behaviour
chapter uses; ``repsim minizoo evaluate`` writes those rows to ``heldout.csv``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch import nn

from repsim.minizoo.augment import normalize, to_unit

PENALTIES = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)


@torch.no_grad()
def embed(encoder: nn.Module, images: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Embeddings ``(n, d)`` of uint8 images ``(n, 3, 32, 32)`` in eval mode."""
    encoder.eval()
    out = [
        encoder(normalize(to_unit(images[i : i + batch_size])))
        for i in range(0, len(images), batch_size)
    ]
    return torch.cat(out)


def _design(z: np.ndarray) -> np.ndarray:
    z = z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)
    return np.hstack([z, np.ones((len(z), 1))])


def _ridge(x: np.ndarray, y: np.ndarray, n_classes: int, penalty: float) -> np.ndarray:
    onehot = np.eye(n_classes)[y]
    gram = x.T @ x + penalty * len(x) * np.eye(x.shape[1])
    return np.linalg.solve(gram, x.T @ onehot)


def ridge_probe(
    train_z: torch.Tensor,
    train_y: torch.Tensor,
    test_z: torch.Tensor,
    test_y: torch.Tensor,
    n_classes: int,
) -> float:
    """Test accuracy of a ridge classifier fitted on the train embeddings (penalty by validation)."""
    x, y = _design(train_z.double().numpy()), train_y.numpy()
    order = np.random.default_rng(0).permutation(len(x))
    cut = int(0.8 * len(x))
    fit, val = order[:cut], order[cut:]

    def val_acc(p: float) -> float:
        w = _ridge(x[fit], y[fit], n_classes, p)
        return float(((x[val] @ w).argmax(1) == y[val]).mean())

    best = max(PENALTIES, key=val_acc)
    w = _ridge(x, y, n_classes, best)
    return float(((_design(test_z.double().numpy()) @ w).argmax(1) == test_y.numpy()).mean())


def dataset_accuracies(
    train_z: torch.Tensor,
    train_y: torch.Tensor,
    test_z: torch.Tensor,
    test_y: torch.Tensor,
    class_names: list[str],
) -> list[dict[str, object]]:
    """Ridge-probe accuracy within each dataset: trained on its train rows, tested on its test rows.

    ``class_names`` is the zoo's joint label space (``"<dataset>/<class>"``); a dataset's labels are
    re-indexed to its own classes, so chance is ``1 / n_classes`` of that dataset. One row per
    dataset, in label order: ``dataset, n_classes, n_train, n_test, probe_acc``.
    """
    owner = np.array([name.split("/", 1)[0] for name in class_names])
    tr_y, te_y = train_y.numpy(), test_y.numpy()
    rows: list[dict[str, object]] = []
    for dataset in dict.fromkeys(owner.tolist()):
        labels = np.flatnonzero(owner == dataset)  # contiguous block of the joint label space
        offset = int(labels[0])
        tr = np.flatnonzero(np.isin(tr_y, labels))
        te = np.flatnonzero(np.isin(te_y, labels))
        if tr.size == 0 or te.size == 0:
            continue
        acc = ridge_probe(
            train_z[tr],
            torch.from_numpy(tr_y[tr] - offset),
            test_z[te],
            torch.from_numpy(te_y[te] - offset),
            labels.size,
        )
        rows.append(
            {
                "dataset": str(dataset),
                "n_classes": int(labels.size),
                "n_train": int(tr.size),
                "n_test": int(te.size),
                "probe_acc": round(acc, 4),
            }
        )
    return rows


def heldout_chance(rows: list[dict[str, object]]) -> pd.DataFrame:
    """The behaviour chapter's chance rule (:func:`repsim.behavior.probe_chance`) on ``heldout.csv``
    rows: one deterministic probe per (model, dataset), near chance when its accuracy is at most
    ``1 / n_classes + CHANCE_MARGIN``."""
    import xarray as xr

    from repsim.behavior import probe_chance

    models = list(dict.fromkeys(str(r["id"]) for r in rows))
    datasets = list(dict.fromkeys(str(r["dataset"]) for r in rows))
    acc = np.full((len(models), len(datasets)), np.nan)
    for r in rows:
        acc[models.index(str(r["id"])), datasets.index(str(r["dataset"]))] = float(r["probe_acc"])
    classes = {str(r["dataset"]): int(r["n_classes"]) for r in rows}
    da = xr.DataArray(acc, coords={"model": models, "dataset": datasets}, dims=("model", "dataset"))
    return probe_chance(da, classes)


@torch.no_grad()
def head_accuracy(head: nn.Module, test_z: torch.Tensor, test_y: torch.Tensor) -> float:
    """Accuracy of a trained classifier head on test embeddings."""
    return float((head(test_z).argmax(1) == test_y).float().mean())
