"""``repsim bench precision``: what a bfloat16 (or float16) forward does to CKA.

The study extracted features in float32; a GPU run is about twice as fast under bfloat16
autocast. This measures the price: every model is run twice on the same images, through the
extraction path itself (:class:`repsim.extract._Runner`), once in float32 and once in the
reduced precision, and the model x model CKA matrices of the two are compared (max and median
absolute difference over model pairs and datasets), for linear CKA and RBF CKA (sigma 0.4,
unbiased, as in the run). Models: mini-zoo models (trained weights, shipped) and random-init
timm ResNet-50 and ViT-B/16 at their own resolution (224 px); images: the embedded sets. On a
CPU, autocast runs bfloat16 kernels too (slowly where the CPU has no bfloat16 instructions).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from repsim.argtypes import DEVICE_HELP, Parser, at_least
from repsim.device import EXTRACT_PRECISIONS, resolve_device
from repsim.extract import _Runner
from repsim.measures import parse_measure
from repsim.zoo import ModelSpec, load_model

log = logging.getLogger(__name__)

DATA = Path(__file__).resolve().parents[2] / "data"
TIMM = {
    "resnet50": ModelSpec("resnet50", "timm", "resnet50"),
    "vit_base_patch16_224": ModelSpec(
        "vit_base_patch16_224", "timm", "vit_base_patch16_224", layer="norm", token="cls"
    ),
}
DATASETS = ("photo_patches", "digits", "textures")
#: every embedded set shipped in data/embedded (the choices of --datasets)
EMBEDDED_SETS = sorted(p.stem for p in (DATA / "embedded").glob("*.npz"))
MEASURES = ("cka_linear", "cka_rbf_0.4")


def minizoo_specs(seed: int = 0) -> list[ModelSpec]:
    """The mini-zoo models of one training seed (one per objective and architecture)."""
    from repsim.config import load_config
    from repsim.zoo import parse_models

    specs = parse_models(load_config(DATA / "minizoo" / "models.yaml")["models"])
    return [s for s in specs if s.id.endswith(f"-s{seed}")]


def embedded_images(name: str, n: int, seed: int = 0) -> np.ndarray:
    """``n`` train images of an embedded set, drawn without replacement (fixed seed)."""
    with np.load(DATA / "embedded" / f"{name}.npz") as z:
        train = np.flatnonzero(z["split"] == "train")
        pick = np.sort(np.random.default_rng(seed).choice(train, min(n, len(train)), replace=False))
        return z["images"][pick]


def _features(
    spec: ModelSpec,
    images: list[np.ndarray],
    precisions: tuple[str, ...],
    dev: torch.device,
    batch: int,
) -> dict[str, list[np.ndarray]]:
    """Normalised features of each image set under each precision, one model load."""
    torch.manual_seed(0)
    loaded = load_model(spec, pretrained=spec.loader == "minizoo", device=dev)
    out: dict[str, list[np.ndarray]] = {}
    for precision in precisions:
        runner = _Runner(loaded, spec, dev, precision)
        out[precision] = [
            np.concatenate([runner(imgs[i : i + batch])[0] for i in range(0, len(imgs), batch)])
            for imgs in images
        ]
    return out


def _pairs(matrix: np.ndarray) -> np.ndarray:
    return matrix[np.triu_indices(len(matrix), k=1)]


def run(
    groups: dict[str, list[ModelSpec]],
    n_images: dict[str, int],
    *,
    datasets: tuple[str, ...] = DATASETS,
    precision: str = "bfloat16",
    device: str | None = None,
    batch_size: int = 16,
) -> dict[str, Any]:
    """|CKA(float32 features) - CKA(``precision`` features)| over model pairs, per model group.

    ``groups``: group name -> model specs (pairs are taken within a group); ``n_images``: images
    per dataset for each group. Returns per group and measure the max, median and all differences,
    and each model's own linear CKA between its float32 and reduced-precision features.
    """
    from repsim.measures import cka, similarity_matrix

    if precision not in EXTRACT_PRECISIONS or precision == "float32":
        raise ValueError(f"precision must be bfloat16 or float16, got {precision!r}")
    dev = resolve_device(device)
    out: dict[str, Any] = {
        "device": str(dev),
        "precision": precision,
        "datasets": list(datasets),
        "groups": {},
    }
    for group, specs in groups.items():
        images = [embedded_images(d, n_images[group]) for d in datasets]
        feats: dict[str, dict[str, list[np.ndarray]]] = {}
        self_cka: dict[str, float] = {}
        t0 = time.perf_counter()
        for spec in specs:
            feats[spec.id] = _features(spec, images, ("float32", precision), dev, batch_size)
            self_cka[spec.id] = min(
                float(cka(a, b))
                for a, b in zip(feats[spec.id]["float32"], feats[spec.id][precision])
            )
            log.info(
                "%s: features in float32 and %s (%.0f s so far)",
                spec.id,
                precision,
                time.perf_counter() - t0,
            )
        res: dict[str, Any] = {
            "models": [s.id for s in specs],
            "n_images": n_images[group],
            "self_cka_min": self_cka,
        }
        for measure in MEASURES:
            diffs = []
            for k in range(len(datasets)):
                mats = [
                    similarity_matrix(
                        {m: feats[m][p][k] for m in feats}, measure, device="cpu"
                    ).values
                    for p in ("float32", precision)
                ]
                diffs.append(np.abs(_pairs(mats[0]) - _pairs(mats[1])))
            d = np.concatenate(diffs)
            res[measure] = {
                "max": float(d.max()),
                "median": float(np.median(d)),
                "n_pairs": int(d.size),
            }
        out["groups"][group] = res
    return out


def table(res: dict[str, Any]) -> str:
    """The result as a markdown table (one row per model group)."""
    p = res["precision"]
    lines = [
        f"| models | images per set | pairs x sets | linear CKA: max / median abs. diff. | RBF CKA (sigma 0.4): max / median | min CKA(float32, {p}) of a model |",
        "|---|---|---|---|---|---|",
    ]
    for group, r in res["groups"].items():
        lin, rbf = r["cka_linear"], r["cka_rbf_0.4"]
        lines.append(
            f"| {group} ({len(r['models'])}) | {r['n_images']} | {lin['n_pairs']} | "
            f"{lin['max']:.1e} / {lin['median']:.1e} | {rbf['max']:.1e} / {rbf['median']:.1e} | "
            f"{min(r['self_cka_min'].values()):.6f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = Parser(prog="repsim bench precision", description=__doc__)
    p.add_argument(
        "--precision", choices=[k for k in EXTRACT_PRECISIONS if k != "float32"], default="bfloat16"
    )
    p.add_argument(
        "--datasets", nargs="+", choices=EMBEDDED_SETS, default=list(DATASETS), help="embedded sets"
    )
    # fewer images than the measures are defined on failed after the features were extracted
    fewest = max(parse_measure(m).min_n for m in MEASURES)
    p.add_argument(
        "--minizoo-images",
        type=at_least(fewest, zero="skip"),
        default=200,
        help="images per set for the mini-zoo (0: skip)",
    )
    p.add_argument(
        "--timm-images",
        type=at_least(fewest),
        default=200,
        help="images per set for the timm models",
    )
    p.add_argument(
        "--timm", nargs="*", choices=list(TIMM), default=list(TIMM), help="timm models (none: skip)"
    )
    p.add_argument("--device", default=None, help=DEVICE_HELP)
    p.add_argument("--batch-size", type=at_least(1), default=16)
    args = p.parse_args(argv)
    groups: dict[str, list[ModelSpec]] = {}
    n_images: dict[str, int] = {}
    if args.minizoo_images > 0:
        groups["mini-zoo"] = minizoo_specs()
        n_images["mini-zoo"] = args.minizoo_images
    if args.timm:
        groups["timm, random init"] = [TIMM[t] for t in dict.fromkeys(args.timm)]
        n_images["timm, random init"] = args.timm_images
    if not groups:
        p.error("nothing to measure: --minizoo-images 0 and --timm without models skip both groups")
    for group, specs in groups.items():
        if len(specs) < 2:  # the differences are over model pairs within a group
            p.error(f"the {group} group has {len(specs)} model; name at least 2 to compare pairs")
    res = run(
        groups,
        n_images,
        datasets=tuple(args.datasets),
        precision=args.precision,
        device=args.device,
        batch_size=args.batch_size,
    )
    print(
        f"precision benchmark on {res['device']}: float32 against {res['precision']} on {', '.join(res['datasets'])}"
    )
    print(table(res))  # the benchmark's report is its output
    return 0
