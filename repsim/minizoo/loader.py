"""The ``minizoo`` loader: mini-zoo weight files as models of the zoo registry.

``identifier`` is the architecture name (``cnn``, ``vit``, ``mlp``); ``weights`` is the
safetensors file (default: ``data/minizoo/<id>.safetensors``). The module's output is the
embedding the zoo was trained to produce, so there is no layer to tap (``default_layer=None``) and
no token to pick (``"none"``). Inputs are 32x32 images normalised with the zoo's fixed mean/std.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from repsim.minizoo.archs import IMG_SIZE, MEAN, STD, arch_kwargs, build_arch
from repsim.minizoo.weights import load_encoder
from repsim.zoo.registry import register_loader
from repsim.zoo.spec import LoadedModel, ModelSpec, PreprocessSpec
from repsim.zoo.weights import check_weights_path

#: where ``repsim minizoo train`` writes the zoo by default (the repository's data/minizoo)
DEFAULT_DIR = Path(__file__).resolve().parents[2] / "data" / "minizoo"

PREPROCESS = PreprocessSpec(
    resize=IMG_SIZE, crop=IMG_SIZE, mean=MEAN, std=STD, interpolation="bilinear"
)


@register_loader("minizoo")
def load_minizoo(spec: ModelSpec, *, pretrained: bool = True, device: Any = "cpu") -> LoadedModel:
    """Build a mini-zoo encoder; ``pretrained=False`` gives the architecture at random init."""
    if pretrained:
        path = (
            Path(spec.weights)
            if spec.weights is not None
            else DEFAULT_DIR / f"{spec.id}.safetensors"
        )
        check_weights_path(spec, path)
        if path.suffix != ".safetensors":  # read as one, a torch file is "header too large"
            from repsim.errors import ModelError

            raise ModelError(
                f"model {spec.id!r}: {path} is a {path.suffix or 'suffix-less'} file; the mini-zoo "
                "loader reads the safetensors files `repsim minizoo train` writes "
                "(weights/<id>.safetensors): point 'weights:' at one, or load another file with "
                "the loader of its own library"
            )
        _check_manifest_digest(spec, path)
        module, meta = load_encoder(path)
        if meta.get("arch") != spec.identifier:
            from repsim.errors import ModelError

            raise ModelError(
                f"model {spec.id!r}: {path} holds architecture {meta.get('arch')!r}, but the spec's "
                f"identifier is {spec.identifier!r}; fix the identifier or the weights path"
            )
        _check_recorded_training(spec, path, meta)
        source, record = str(path), {"weights": str(path), **meta}
    else:
        kwargs = {**arch_kwargs(spec.identifier), **dict(spec.options)}
        module = build_arch(spec.identifier, **kwargs)
        source, record = "random-init", {"weights": None, "arch": spec.identifier}
    record.update(embed_dim=int(module.embed_dim), input_size=[3, IMG_SIZE, IMG_SIZE])
    return LoadedModel.built(
        spec,
        module,
        PREPROCESS,
        loader="minizoo",
        pretrained=pretrained,
        source=source,
        device=device,
        default_token="none",
        **record,
    )


#: training facts a weights file records that the config's metadata also states; the analyses
#: group models by them, so a file of another model under this id would mislabel its results
RECORDED_TRAINING = ("objective", "method", "seed", "training_data")


def _check_recorded_training(spec: ModelSpec, path: Path, meta: dict[str, str]) -> None:
    """ModelError when ``path`` records training facts other than the ones the spec states (a
    SimCLR file at the supervised model's path was accepted and counted as supervised)."""
    from repsim.errors import ModelError

    stated = dict(spec.metadata or {})
    differ = [
        f"{key} {meta[key]!r} (the config says {str(stated[key])!r})"
        for key in RECORDED_TRAINING
        if stated.get(key) is not None and key in meta and str(stated[key]) != meta[key]
    ]
    if differ:
        raise ModelError(
            f"model {spec.id!r}: {path} was trained with {'; '.join(differ)}: it is the file of "
            "another model, and the analyses would group this one by the wrong labels; fix the "
            "weights path, or the metadata if the file is the intended one"
        )


def _check_manifest_digest(spec: ModelSpec, path: Path) -> None:
    """ModelError when the ``manifest.csv`` beside ``path`` records another SHA-256 for it: a
    damaged or replaced weights file still loads (a flipped bit in a weight is a valid float) and
    would change every number of the model without a word. Files without a manifest row (a user's
    own weights) are not checked."""
    import csv

    from repsim.errors import ModelError
    from repsim.minizoo.manifest import read_manifest
    from repsim.runfolder import sha256_file

    manifest = path.parent / "manifest.csv"
    try:
        rows = [r for r in read_manifest(manifest) if r.get("weights") == path.name]
    except (OSError, UnicodeDecodeError, csv.Error):
        return  # no readable manifest: nothing recorded to check against
    recorded = rows[-1].get("sha256") if rows else None
    if not recorded:
        return
    actual = sha256_file(path)
    if actual != recorded:
        raise ModelError(
            f"model {spec.id!r}: {path} does not match the SHA-256 that {manifest.name} records for "
            f"it ({actual[:12]}... against {recorded[:12]}...): the file was damaged or replaced; "
            f"restore it (git checkout, or a copy), or retrain it with `repsim minizoo train --only "
            f"{spec.id} --out {path.parent}`, which writes the file and its manifest row together"
        )
