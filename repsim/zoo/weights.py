"""Finding pretrained weights: local files, the torch.hub and Hugging Face caches, downloads.

Offline (``HF_HUB_OFFLINE=1`` or ``REPSIM_OFFLINE=1``) nothing is downloaded: a weight that is
not in a cache fails at once with a :class:`MissingWeightsError` that names the identifier and
the two ways to provide the file (the spec's ``weights:`` field, or the cache path).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from repsim.errors import MissingWeightsError, ModelError
from repsim.zoo.spec import ModelSpec

log = logging.getLogger(__name__)

_TRUE = {"1", "true", "yes", "on"}


def is_offline() -> bool:
    """Whether downloads are switched off (HF_HUB_OFFLINE, TRANSFORMERS_OFFLINE or REPSIM_OFFLINE)."""
    return any(
        os.environ.get(var, "").strip().lower() in _TRUE
        for var in ("REPSIM_OFFLINE", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")
    )


def local_weights(spec: ModelSpec) -> Path | None:
    """The spec's ``weights:`` file, checked to exist (None when the spec has none)."""
    if spec.weights is None:
        return None
    path = Path(spec.weights)
    if not path.exists():
        raise MissingWeightsError(
            f"model {spec.id!r}: weights file {path} does not exist; fix the 'weights:' path in the "
            "model spec (relative paths are relative to the config file)"
        )
    return path


def missing(spec: ModelSpec, what: str, cache_hint: str | Path | None = None) -> MissingWeightsError:
    """The offline error for ``spec``: names the identifier, the spec field and the cache path."""
    where = f" or place it at {cache_hint}" if cache_hint else ""
    return MissingWeightsError(
        f"model {spec.id!r} ({spec.loader} {spec.identifier!r}): {what} is not available offline. "
        f"Download it on a machine with internet and set 'weights: /path/to/file' in the model spec{where}; "
        "or unset HF_HUB_OFFLINE/REPSIM_OFFLINE to allow downloads"
    )


def url_cache_path(url: str) -> Path:
    """Where torch.hub keeps the file of ``url`` (``$TORCH_HOME/hub/checkpoints/<name>``)."""
    import torch.hub

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url.split("?")[0])


def fetch_url(spec: ModelSpec, url: str) -> Path:
    """The local copy of ``url``: from the torch.hub cache, else downloaded (unless offline)."""
    import torch.hub

    path = url_cache_path(url)
    if path.exists():
        return path
    if is_offline():
        raise missing(spec, f"checkpoint {url}", path)
    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading %s to %s", url, path)
    tmp = path.with_name(path.name + ".part")
    torch.hub.download_url_to_file(url, str(tmp), progress=True)
    os.replace(tmp, path)
    return path


def hf_cached(repo_id: str, filenames: Iterable[str]) -> str | None:
    """Path of the first of ``filenames`` cached for Hugging Face repo ``repo_id``, else None."""
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for name in filenames:
        hit = try_to_load_from_cache(repo_id, name)
        if isinstance(hit, str):
            return hit
    return None


def hf_cache_dir(repo_id: str) -> str:
    """The Hugging Face cache folder of ``repo_id`` (for error messages)."""
    try:
        from huggingface_hub.constants import HF_HUB_CACHE
    except ImportError:
        return "~/.cache/huggingface/hub"
    return str(Path(HF_HUB_CACHE) / ("models--" + repo_id.replace("/", "--")))


def load_state_dict(path: str | Path, *, weights_only: bool = True) -> dict[str, Any]:
    """Read a ``.safetensors`` or torch pickle file onto the CPU."""
    path = Path(path)
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except Exception as exc:
        raise ModelError(
            f"cannot read weights file {path}: {exc}. If the file is trusted and holds non-tensor "
            "objects, set 'options: {weights_only: false}' in the model spec"
        ) from exc
