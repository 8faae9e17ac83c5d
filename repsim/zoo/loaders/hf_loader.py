"""The ``hf_transformers`` loader for ALIGN (``kakaobrain/align-base``): the vision tower's pooled output.

transformers is an optional extra (``pip install -e '.[align]'`` in the repository). ``weights:`` may
point to a local folder saved with ``save_pretrained``. Only ALIGN models load: a config of another
model type is refused wherever it can be read (a local folder, the cache, the hub).
"""

from __future__ import annotations

from typing import Any

import torch

from repsim.errors import ModelError, UnknownArchitectureError
from repsim.zoo.registry import register_loader
from repsim.zoo.spec import LoadedModel, ModelSpec, PreprocessSpec
from repsim.zoo.weights import (
    WeightsSource,
    hf_cache_dir,
    hf_cached,
    hf_source,
    is_offline,
    local_weights,
    missing,
    register_locator,
)

#: the ALIGN model whose architecture transformers' default config is (built without a config)
ALIGN_BASE = "kakaobrain/align-base"

#: ALIGN's processor: 289 px, pixel values scaled to [-1, 1] (= mean 0.5, std 0.5)
ALIGN_PREPROCESS = PreprocessSpec(289, 289, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), "bilinear", "squash")


def _transformers() -> Any:
    try:
        import transformers
    except ImportError as exc:
        raise ModelError(
            "the hf_transformers loader (ALIGN) needs transformers: in the repository, pip install "
            "-c constraints.txt -e '.[align]' (the environment of make setup has it)"
        ) from exc
    return transformers


class AlignVision(torch.nn.Module):
    """ALIGN's vision tower returning ``pooler_output`` (batch, 640)."""

    def __init__(self, vision: torch.nn.Module) -> None:
        super().__init__()
        self.vision = vision

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.vision(pixel_values=x).pooler_output


def _readable_config(spec: ModelSpec) -> str | None:
    """Where ``spec``'s config.json is read without a download: its ``weights:`` folder, or the
    Hugging Face cache of its identifier; None when neither has it."""
    path = local_weights(spec)
    if path is not None:
        return str(path)
    return spec.identifier if hf_cached(spec.identifier, ("config.json",)) else None


def _align_config(tf: Any, spec: ModelSpec, where: str, *, local_only: bool = True) -> Any:
    """The ALIGN config at ``where``; a model of another kind is refused by name (transformers
    would build ALIGN around it with a warning, and a meta-device check would report ALIGN's
    default 640-d features for any identifier)."""
    try:
        config = tf.AutoConfig.from_pretrained(where, local_files_only=local_only)
    except Exception as exc:  # noqa: BLE001 - any unreadable config is the same user error
        reason = " ".join(str(exc).split())[:300]
        raise ModelError(
            f"model {spec.id!r}: cannot read the model config (config.json) at {where}: "
            f"{type(exc).__name__}: {reason}"
        ) from exc
    kind = getattr(config, "model_type", None)
    if kind != "align":
        raise ModelError(
            f"model {spec.id!r}: the hf_transformers loader builds ALIGN (model_type 'align'), "
            f"and {where} holds a {kind!r} model; use the loader made for that model (timm, "
            "open_clip, torchvision), or an ALIGN model such as kakaobrain/align-base"
        )
    return config


@register_locator("hf_transformers")
def locate(spec: ModelSpec) -> WeightsSource:
    """The Hugging Face repo ``identifier`` (cached when its config.json is)."""
    return hf_source(
        spec, spec.identifier, ("config.json",), f"Hugging Face model {spec.identifier}"
    )


@register_loader("hf_transformers")
def load_hf(spec: ModelSpec, *, pretrained: bool = True, device: Any = "cpu") -> LoadedModel:
    """Build ALIGN's vision model (random init from the config when ``pretrained=False``)."""
    tf = _transformers()
    source = "random-init"
    if pretrained:
        path = local_weights(spec)
        where = str(path) if path else spec.identifier
        if path is None and is_offline() and not hf_cached(spec.identifier, ("config.json",)):
            raise missing(
                spec, f"Hugging Face model {spec.identifier}", hf_cache_dir(spec.identifier)
            )
        cached = path is None and bool(hf_cached(spec.identifier, ("config.json",)))
        # a cached model loads without asking the hub for updates (no retries without network)
        config = _align_config(tf, spec, where, local_only=path is not None or cached)
        full, info = tf.AlignModel.from_pretrained(
            where, config=config, local_files_only=cached, output_loading_info=True
        )
        lost = [k for k in info.get("missing_keys", []) if k.startswith("vision_model")]
        if lost:  # transformers would initialise them at random and only warn
            raise ModelError(
                f"model {spec.id!r}: weights at {where} do not cover {len(lost)} keys of the vision "
                f"tower (first: {lost[:5]}); save the full model with save_pretrained, or fix 'weights:'"
            )
        model = full.vision_model
        source = where
    else:
        # the architecture of the configured model where its config can be read offline (a
        # meta-device check then reports its real width); ALIGN-base's is known without one
        where = _readable_config(spec)
        if where is None and spec.identifier != ALIGN_BASE:
            raise UnknownArchitectureError(
                f"model {spec.id!r}: the architecture of Hugging Face model {spec.identifier} is "
                "read from its config.json, which is neither in a 'weights:' folder nor in the "
                f"Hugging Face cache ({hf_cache_dir(spec.identifier)}); download the model once, "
                "or point 'weights:' at a folder saved with save_pretrained"
            )
        config = _align_config(tf, spec, where).vision_config if where else tf.AlignVisionConfig()
        with torch.device(device):
            model = tf.AlignVisionModel(config)
    return LoadedModel.built(
        spec,
        AlignVision(model),
        ALIGN_PREPROCESS,
        loader="hf_transformers",
        pretrained=pretrained,
        source=source,
        device=device,
    )
