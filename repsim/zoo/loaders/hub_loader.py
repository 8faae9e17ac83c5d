"""The optional ``torch_hub`` loader: ``identifier`` is ``"owner/repo[:ref] ENTRY"``.

torch.hub downloads the entry point's *code* from GitHub, so offline it works only for a repo
already in the hub cache, or for a local checkout written as ``"local:/path/to/repo ENTRY"``.
The study's hub models are in ``paper_models.yaml`` through the ``checkpoint`` loader instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from repsim.errors import ConfigError, ModelError
from repsim.zoo.loaders.checkpoint_loader import load_into
from repsim.zoo.registry import register_loader
from repsim.zoo.spec import SSL_PREPROCESS, LoadedModel, ModelSpec
from repsim.zoo.weights import (
    WeightsSource,
    is_offline,
    load_state_dict,
    local_weights,
    missing,
    register_locator,
)


def split_identifier(spec: ModelSpec) -> tuple[str, str, str]:
    """(source, repo, entry) of a hub identifier."""
    parts = spec.identifier.split()
    if len(parts) != 2:
        raise ConfigError(
            f"model {spec.id!r}: torch_hub identifier must be 'owner/repo[:ref] ENTRY', got {spec.identifier!r}"
        )
    repo, entry = parts
    if repo.startswith("local:"):
        return "local", repo[len("local:") :], entry
    return "github", repo, entry


def _hub_cache_dir(repo: str) -> Path:
    owner_name, _, ref = repo.partition(":")
    owner, _, name = owner_name.partition("/")
    return Path(torch.hub.get_dir()) / f"{owner}_{name}_{ref or 'main'}"


@register_locator("torch_hub")
def locate(spec: ModelSpec) -> WeightsSource:
    """The entry point's code: a local checkout, the hub cache, or a GitHub archive to download."""
    source, repo, entry = split_identifier(spec)
    if source == "local":
        if not Path(repo).is_dir():
            raise missing(spec, f"the local torch.hub repo {repo}")
        return WeightsSource("cached", repo, what=f"the torch.hub repo {repo}")
    cache = _hub_cache_dir(repo)
    if cache.exists():
        return WeightsSource("cached", str(cache), what=f"the torch.hub code of {repo}")
    owner_name, _, ref = repo.partition(":")
    owner, _, name = owner_name.partition("/")
    link = getattr(torch.hub, "_git_archive_link", None)
    url = link(owner, name, ref or "main") if link is not None else None
    return WeightsSource("remote", repo, url, f"the torch.hub code of {repo}", str(cache))


@register_loader("torch_hub")
def load_hub(spec: ModelSpec, *, pretrained: bool = True, device: Any = "cpu") -> LoadedModel:
    """Build a torch.hub entry point (code from GitHub or a local repo)."""
    source, repo, entry = split_identifier(spec)
    if source == "github" and is_offline() and not _hub_cache_dir(repo).exists():
        raise missing(spec, f"the torch.hub code of {repo}", _hub_cache_dir(repo))
    path = local_weights(spec) if pretrained else None
    kwargs = {k: v for k, v in spec.options.items() if k != "weights_only"}
    hub_pretrained = pretrained and path is None
    try:
        with torch.device(device):
            model = torch.hub.load(
                repo, entry, source=source, pretrained=hub_pretrained, trust_repo=True, **kwargs
            )
    except Exception as exc:  # hub code can raise anything
        raise ModelError(
            f"model {spec.id!r}: torch.hub.load({repo!r}, {entry!r}) failed: {exc}"
        ) from exc
    if isinstance(model, tuple):
        model = model[0]
    if path is not None:
        state = load_state_dict(path, weights_only=spec.options.get("weights_only", True))
        load_into(model, state, spec, spec.identifier)  # every parameter covered
    return LoadedModel.built(
        spec,
        model,
        SSL_PREPROCESS,
        loader="torch_hub",
        pretrained=pretrained,
        source=str(path) if path else (repo if pretrained else "random-init"),
        device=device,
    )
