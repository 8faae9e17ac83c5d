"""Held-out accuracies of mini-zoo models: a ridge linear probe for every model, the head for supervised.

The probe is a closed-form ridge classifier on L2-normalised embeddings (as the study normalises
features before any probe), with the penalty chosen on a fixed 80/20 split of the train part. It
is deterministic and takes well under a second, so every model, random controls included, gets a
comparable number in the manifest. The study's own AdamW probe lives in :mod:`repsim.probe`.
"""

from __future__ import annotations

import numpy as np
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


@torch.no_grad()
def head_accuracy(head: nn.Module, test_z: torch.Tensor, test_y: torch.Tensor) -> float:
    """Accuracy of a trained classifier head on test embeddings."""
    return float((head(test_z).argmax(1) == test_y).float().mean())
