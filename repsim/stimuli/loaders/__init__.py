"""Loader registry: one function per ``loader:`` name, ``(DatasetSpec) -> StimulusSet``.

Modules are imported on first use, so opening an embedded set never imports torchvision.
A new loader is one module and one line here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

from repsim.errors import ConfigError

if TYPE_CHECKING:
    from repsim.stimuli.spec import DatasetSpec
    from repsim.stimuli.stimset import StimulusSet

LOADERS: dict[str, str] = {
    "embedded": "repsim.stimuli.loaders.embedded:load",
    "imagefolder": "repsim.stimuli.loaders.imagefolder:load",
    "wds": "repsim.stimuli.loaders.wds:load",
    "torchvision": "repsim.stimuli.loaders.tv:load",
    "breeds": "repsim.stimuli.loaders.breeds:load",
}


def get_loader(name: str) -> Callable[[DatasetSpec], StimulusSet]:
    """The loader function registered under ``name``."""
    target = LOADERS.get(name)
    if target is None:
        raise ConfigError(f"unknown dataset loader {name!r}; choose one of {', '.join(LOADERS)}")
    module, func = target.split(":")
    return getattr(importlib.import_module(module), func)
