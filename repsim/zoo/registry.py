"""Loader registry: loader name -> function ``(spec, *, pretrained, device) -> LoadedModel``.

Loaders live in their own modules and register with :func:`register_loader`. The registry knows
where each built-in (and the mini-zoo's) loader lives, so a loader is imported only when a model
needs it: parsing a config never imports timm, open_clip or transformers.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from repsim.errors import ConfigError, ModelError
from repsim.zoo.spec import LoadedModel, ModelSpec, spec_from_entry

log = logging.getLogger(__name__)

Loader = Callable[..., LoadedModel]

#: loader name -> module that registers it when imported
LAZY_LOADERS: dict[str, str] = {
    "timm": "repsim.zoo.loaders.timm_loader",
    "open_clip": "repsim.zoo.loaders.open_clip_loader",
    "torchvision": "repsim.zoo.loaders.torchvision_loader",
    "torch_hub": "repsim.zoo.loaders.hub_loader",
    "checkpoint": "repsim.zoo.loaders.checkpoint_loader",
    "hf_transformers": "repsim.zoo.loaders.hf_loader",
    "minizoo": "repsim.minizoo.loader",
}

_LOADERS: dict[str, Loader] = {}


def register_loader(name: str) -> Callable[[Loader], Loader]:
    """Decorator registering a loader function under ``name``."""

    def deco(fn: Loader) -> Loader:
        _LOADERS[name] = fn
        return fn

    return deco


def known_loaders() -> list[str]:
    """Every loader name a config may use (registered or importable on demand)."""
    return sorted({*_LOADERS, *LAZY_LOADERS})


def get_loader(name: str) -> Loader:
    """The loader function for ``name``, importing its module on first use."""
    if name not in _LOADERS:
        module = LAZY_LOADERS.get(name)
        if module is None:
            raise ConfigError(f"unknown loader {name!r}; registered loaders are {known_loaders()}")
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise ModelError(
                f"loader {name!r} lives in module {module}, which cannot be imported ({exc}); "
                "install the missing package or check that the module exists"
            ) from exc
        if name not in _LOADERS:
            raise ModelError(f"module {module} was imported but did not register loader {name!r}")
    return _LOADERS[name]


def parse_models(entries: Iterable[Mapping[str, Any]] | None) -> list[ModelSpec]:
    """Validate the ``models:`` entries of a config and return their specs.

    Raises ConfigError naming each bad entry (an unknown loader, a missing id or identifier, a
    duplicate id, ...), all of them at once, before any model is built.
    """
    from repsim.config import parse_entries

    loaders = known_loaders()
    return parse_entries(
        entries,
        lambda entry: spec_from_entry(entry, loaders),
        "model",
        "model id {id!r} appears twice in models:; ids must be unique",
    )


def load_model(
    spec: ModelSpec, *, pretrained: bool = True, device: Any = "cpu", seed: int = 0
) -> LoadedModel:
    """Build ``spec``'s model in eval mode on ``device`` with its preprocessing and tap defaults.

    Parameters not covered by the weights (all of them when ``pretrained=False``) are drawn
    under ``seed``, so a random-init model is the same network in every run and every process.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        loaded = get_loader(spec.loader)(spec, pretrained=pretrained, device=device)
    if spec.preprocess:
        loaded.preprocess = loaded.preprocess.replace(**spec.preprocess)
    loaded.module.eval()
    loaded.pretrained_cfg = {**loaded.pretrained_cfg, "preprocess": loaded.preprocess.to_dict()}
    return loaded
