"""Mini-zoo weight files: an encoder's state dict as float16 safetensors, hyperparameters as metadata.

float16 halves the files (every model stays under 1 MB); reading casts back to float32. The
metadata carries the architecture name and its keyword arguments, so a file alone rebuilds its
model, and the training facts (objective, seed) for provenance.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from repsim.errors import MissingWeightsError, ModelError
from repsim.minizoo.archs import build_arch

FORMAT = "repsim-minizoo/1"


def _canonical(blob: bytes) -> bytes:
    """The same safetensors file with its JSON header's keys sorted.

    safetensors writes metadata in hash-map order, which differs between runs; sorting makes a
    retrained file byte-identical, so git sees no change when the weights did not change.
    """
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    text = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blob[8 + n :]


def save_encoder(
    module: nn.Module,
    path: str | Path,
    arch: str,
    arch_kwargs: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``module``'s state dict to ``path`` (float tensors as float16), atomically."""
    from safetensors.torch import save

    tensors = {
        k: (v.detach().to(torch.float16) if v.is_floating_point() else v.detach())
        .contiguous()
        .clone()
        for k, v in module.state_dict().items()
    }
    meta = {
        "format": FORMAT,
        "arch": arch,
        "arch_kwargs": json.dumps(dict(arch_kwargs), sort_keys=True),
    }
    meta.update({k: str(v) for k, v in (extra or {}).items()})
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(_canonical(save(tensors, metadata=meta)))
    tmp.replace(path)
    return path


def read_metadata(path: str | Path) -> dict[str, str]:
    """The metadata of a mini-zoo weight file (without reading the tensors)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return dict(f.metadata() or {})


def _kwargs(meta: Mapping[str, str], path: Path) -> tuple[str, dict[str, Any]]:
    if meta.get("format") != FORMAT or "arch" not in meta:
        raise ModelError(
            f"{path} is not a mini-zoo weight file (metadata format {meta.get('format')!r}, expected {FORMAT!r})"
        )
    kwargs = {
        k: tuple(v) if isinstance(v, list) else v
        for k, v in json.loads(meta["arch_kwargs"]).items()
    }
    return meta["arch"], kwargs


def load_encoder(path: str | Path) -> tuple[nn.Module, dict[str, str]]:
    """Rebuild the encoder stored at ``path`` in float32 eval mode; returns it and its metadata.

    Raises MissingWeightsError naming the file and the command that recreates it.
    """
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise MissingWeightsError(
            f"mini-zoo weights {path} do not exist; retrain the zoo with `repsim minizoo train` "
            f"(or `repsim minizoo train --only {path.stem}` for this model)"
        )
    meta = read_metadata(path)
    arch, kwargs = _kwargs(meta, path)
    module = build_arch(arch, **kwargs)
    state = {k: v.float() if v.is_floating_point() else v for k, v in load_file(str(path)).items()}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"{path} does not match architecture {arch!r} {kwargs}: {exc}") from exc
    return module.eval(), meta
