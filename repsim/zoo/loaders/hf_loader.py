"""The ``hf_transformers`` loader for ALIGN (``kakaobrain/align-base``): the vision tower's pooled output.

transformers is an optional extra (``pip install -e '.[align]'`` in the repository). ``weights:`` may
point to a local folder saved with ``save_pretrained``.
"""

from __future__ import annotations

from typing import Any

import torch

from repsim.errors import ModelError
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
        full, info = tf.AlignModel.from_pretrained(
            where, local_files_only=cached, output_loading_info=True
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
        config = tf.AlignVisionConfig()
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
