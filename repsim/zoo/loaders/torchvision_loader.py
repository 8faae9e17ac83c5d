"""The ``torchvision`` loader: ``identifier`` is ``"NAME"`` or ``"NAME:WEIGHTS"`` (default DEFAULT).

Weights come from the weights enum (``torchvision.models.get_model_weights``), whose
``transforms()`` gives the preprocessing; a local state dict goes in through ``weights:``.
Options (``repsim.zoo.spec.LOADER_OPTIONS``): ``weights`` (the enum tag when the identifier has
none) and ``weights_only`` (false: read a trusted local file that holds non-tensor objects).
"""

from __future__ import annotations

from typing import Any

import torch

from repsim.config import did_you_mean
from repsim.errors import ModelError, brief
from repsim.zoo.registry import register_loader
from repsim.zoo.spec import LoadedModel, ModelSpec, PreprocessSpec
from repsim.zoo.weights import (
    WeightsSource,
    fetch_url,
    load_state_dict,
    local_weights,
    register_locator,
    url_source,
)


def weights_enum(spec: ModelSpec) -> Any:
    """The weights enum member of ``spec`` (``NAME:TAG``; DEFAULT when no tag)."""
    import torchvision

    name, _, tag = spec.identifier.partition(":")
    tag = tag or spec.options.get("weights", "DEFAULT")
    known = torchvision.models.list_models()
    if name not in known:
        raise ModelError(
            f"model {spec.id!r}: torchvision has no model {name!r}{did_you_mean(name, known)}; "
            f"set 'identifier' to a name of torchvision.models.list_models() (torchvision "
            f"{torchvision.__version__})"
        )
    enum = torchvision.models.get_model_weights(name)
    tags = [w.name for w in enum]
    try:
        return enum[tag]
    except KeyError as exc:
        raise ModelError(
            f"model {spec.id!r}: {name} has no weights {tag!r}{did_you_mean(tag, tags)}; choose "
            f"from {tags}"
        ) from exc


@register_locator("torchvision")
def locate(spec: ModelSpec) -> WeightsSource:
    """The weights enum's checkpoint URL, or its copy in the torch.hub cache."""
    url = weights_enum(spec).url
    return url_source(spec, url, f"torchvision weights {url}")


def preprocess_from_weights(weights: Any) -> PreprocessSpec:
    """The enum's ``ImageClassification`` transform as a spec."""
    t = weights.transforms()
    return PreprocessSpec(
        resize=int(t.resize_size[0]),
        crop=int(t.crop_size[0]),
        mean=tuple(float(v) for v in t.mean),
        std=tuple(float(v) for v in t.std),
        interpolation=t.interpolation.value,
    )


@register_loader("torchvision")
def load_torchvision(
    spec: ModelSpec, *, pretrained: bool = True, device: Any = "cpu"
) -> LoadedModel:
    """Build a torchvision classification model with its weights enum's state dict."""
    import torchvision

    weights = weights_enum(spec)
    name = spec.identifier.partition(":")[0]
    with torch.device(device):
        model = torchvision.models.get_model(name, weights=None)
    source = "random-init"
    if pretrained:
        path = local_weights(spec)
        if path is None:
            path = fetch_url(spec, weights.url)
            source = weights.url
        else:
            source = str(path)
        state = load_state_dict(path, weights_only=spec.options.get("weights_only", True))
        try:
            model.load_state_dict(state)
        except RuntimeError as exc:
            raise ModelError(
                f"model {spec.id!r}: weights {path} do not fit {name}: {brief(exc)}. The file is "
                f"for another architecture: point 'weights:' at the file made for {name}"
            ) from exc
    return LoadedModel.built(
        spec,
        model,
        preprocess_from_weights(weights),
        loader="torchvision",
        pretrained=pretrained,
        source=source,
        resolved=f"{name}:{weights.name}",
        device=device,
    )
