"""The GPU suite (``repsim bench all --gpu``) and a projection of the study's full scale from it.

Three measurements, sized to finish in at most 5 minutes on one H100:

- extraction of random-weight resnet50, vit_base_patch16_224 and vit_large_patch14_clip_224: the
  whole path from decoded uint8 images to the feature store against the forward pass alone (float32
  as in the study, channels_last, batch 256), via :mod:`repsim.bench.extract`;
- all-pairs similarity of the study's 64 models (their embedding dims from
  ``data/configs/paper_models.yaml``) on random unit-norm features at n = 10,000, one engine call per
  measure (linear CKA, RBF CKA, RSA), plus a few pairs of the naive per-pair loop for comparison;
- the probe sweep of :mod:`repsim.bench.probe` (n = 10,000, d = 768, 100 classes, 3 seeds), one
  larger full probe, and the study's sizes (n in {100k, 300k, 1.28M} x d in {384, 1024, 1536},
  1,000 classes): seconds per training step of each phase of the protocol, in float32 and with
  bfloat16 matmuls, plus the accuracy check of bfloat16 against float32 (within 0.2 points);
- decode-once extraction (:func:`repsim.bench.extract.decode_once`: the chunk-major path that
  decodes each image once for all models, against the per-model path) on the suite's models.

:func:`project` turns these figures into GPU-hours for the study (64 models x 23 datasets) on one GPU
and on 8, with every assumption written next to the numbers; a probe is priced as its number of
training steps (exact) times the seconds per step fitted to the measured study-size points, and
the report says which figures are measured and which extrapolated. Every function takes ``device`` and
runs tiny on a CPU, which is how the tests exercise it.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from repsim.errors import ConfigError

log = logging.getLogger(__name__)

PAPER_MODELS = Path(__file__).resolve().parents[2] / "data" / "configs" / "paper_models.yaml"
#: the measures of data/configs/paper.yaml
PAPER_MEASURES = (
    "cka_linear",
    "cka_rbf_0.2",
    "cka_rbf_0.4",
    "cka_rbf_0.6",
    "cka_rbf_0.8",
    "rsa_spearman",
    "mutual_knn_10",
)
SIMILARITY_MEASURES = ("cka_linear", "cka_rbf_0.4", "rsa_spearman")
FALLBACK_DIM = 1024

#: random-weight timm models of the extraction benchmark, with the parameter count (millions) of
#: each, used to scale throughput to the study's other models
EXTRACT_MODELS: dict[str, tuple[str, str | None, str | None, float]] = {
    "resnet50": ("resnet50", None, None, 25.6),
    "vit_base_patch16_224": ("vit_base_patch16_224", "norm", "cls", 86.6),
    "vit_large_patch14_clip_224": ("vit_large_patch14_clip_224", "norm", "cls", 304.0),
}


@dataclass(frozen=True)
class DatasetSize:
    """Split sizes of one of the study's datasets (for the projection only)."""

    id: str
    n_train: int
    n_test: int
    n_classes: int
    source: str
    n_similarity: int | None = None  # default: min(n_train, 10,000)

    @property
    def similarity(self) -> int:
        return self.n_similarity if self.n_similarity is not None else min(self.n_train, 10_000)


_TV = "torchvision / dataset paper"
_TFDS = "TFDS catalog (VTAB splits)"
_CLIP = "CLIP paper (Radford et al. 2021), Table 9"
_BREEDS = "BREEDS (Santurkar et al. 2021): ~1,281 train / 50 val images per ImageNet subclass; approximate"
#: train/test split sizes of the 23 datasets from public knowledge (clip_benchmark uses the same
#: splits as the sources named); BREEDS counts are approximate (all subclasses, source and target)
STUDY_DATASETS: tuple[DatasetSize, ...] = (
    DatasetSize("wds/fer2013", 28_709, 7_178, 7, _CLIP),
    DatasetSize("wds/voc2007", 5_011, 4_952, 20, _CLIP),
    DatasetSize("wds/cars", 8_144, 8_041, 196, _TV),
    DatasetSize("wds/fgvc_aircraft", 6_667, 3_333, 100, _TV + " (trainval)"),
    DatasetSize("wds/stl10", 5_000, 8_000, 10, _TV),
    DatasetSize("wds/gtsrb", 26_640, 12_630, 43, _TV),
    DatasetSize("wds/country211", 31_650, 21_100, 211, _TV),
    DatasetSize("wds/vtab/caltech101", 3_060, 6_084, 102, _TFDS),
    DatasetSize("wds/vtab/cifar10", 50_000, 10_000, 10, _TV),
    DatasetSize("wds/vtab/cifar100", 50_000, 10_000, 100, _TV),
    DatasetSize("wds/vtab/diabetic_retinopathy", 35_126, 42_670, 5, _TFDS),
    DatasetSize("wds/vtab/dmlab", 65_550, 22_735, 6, _TFDS),
    DatasetSize("wds/vtab/dtd", 1_880, 1_880, 47, _TFDS),
    DatasetSize("wds/vtab/eurosat", 16_200, 5_400, 10, _TFDS + " (60/20/20 of 27,000)"),
    DatasetSize("wds/vtab/flowers", 1_020, 6_149, 102, _TFDS),
    DatasetSize("wds/vtab/pets", 3_680, 3_669, 37, _TFDS),
    DatasetSize("wds/vtab/pcam", 262_144, 32_768, 2, _TFDS),
    DatasetSize("wds/vtab/resisc45", 18_900, 6_300, 45, _TFDS + " (60/20/20 of 31,500)"),
    DatasetSize("wds/vtab/svhn", 73_257, 26_032, 10, _TV),
    DatasetSize("entity30", 307_440, 12_000, 30, _BREEDS + " (240 subclasses)"),
    DatasetSize("living17", 87_108, 3_400, 17, _BREEDS + " (68 subclasses)"),
    DatasetSize("nonliving26", 133_224, 5_200, 26, _BREEDS + " (104 subclasses)"),
    DatasetSize(
        "imagenet-subset-10k", 1_281_167, 50_000, 1000, _TV + "; similarity: 10 per class", 10_000
    ),
)


@dataclass(frozen=True)
class StudyModel:
    """What the projection needs of one of the study's models (``params_m``: of the network that
    is run, i.e. the image tower of a CLIP model, whose published count includes its text tower)."""

    id: str
    embed_dim: int
    params_m: float
    architecture_class: str


def study_models(path: str | Path = PAPER_MODELS) -> list[StudyModel]:
    """The study's models (id, embedding dim, parameters, architecture class) from its config.

    Without the config file (an installed package without ``data/``), 64 models of d = 1024 and
    ViT-B size stand in, and a warning says so.
    """
    p = Path(path)
    if not p.is_file():
        log.warning("%s not found; using 64 models of d=%d for the GPU suite", p, FALLBACK_DIM)
        return [StudyModel(f"model{i:02d}", FALLBACK_DIM, 86.6, "Transformer") for i in range(64)]
    entries = (yaml.safe_load(p.read_text()) or {}).get("models") or []
    out = []
    for e in entries:
        meta = e.get("metadata") or {}
        out.append(
            StudyModel(
                str(e["id"]),
                int(meta.get("embed_dim") or FALLBACK_DIM),
                float(meta.get("image_params_m") or meta.get("params_m") or 86.6),
                str(meta.get("architecture_class") or "Transformer"),
            )
        )
    return out


def _sync(device: Any) -> None:
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


# ----------------------------------------------------------------------------------------------
# the three measurements


def bench_extraction(
    device: str,
    models: Sequence[str] = tuple(EXTRACT_MODELS),
    n_images: int = 2048,
    batch_size: int = 256,
    image_size: int = 256,
) -> dict[str, Any]:
    """Whole path vs forward-only images/s of random-weight models (see :mod:`repsim.bench.extract`)."""
    from repsim.bench import extract as extract_bench
    from repsim.zoo import ModelSpec

    unknown = sorted(set(models) - set(EXTRACT_MODELS))
    if unknown:
        raise ConfigError(
            f"extraction models {unknown} are not benchmarked; choose from {', '.join(EXTRACT_MODELS)}"
        )
    for name in models:  # register the suite's models with the extract benchmark's table
        ident, layer, token, _ = EXTRACT_MODELS[name]
        extract_bench.MODELS.setdefault(
            name, ModelSpec(name, "timm", ident, layer=layer, token=token)
        )
    result = extract_bench.run(
        list(models), n_images=n_images, batch_size=batch_size, image_size=image_size, device=device
    )
    for name, row in result["models"].items():
        row["params_m"] = EXTRACT_MODELS[name][3]
    return result


def random_features(
    dims: Sequence[int], n: int, device: str, seed: int = 0
) -> dict[str, np.ndarray]:
    """Random unit-norm float32 features (n, d) per model, drawn on ``device`` (fast on a GPU)."""
    import torch

    gen = torch.Generator(device=torch.device(device)).manual_seed(seed)
    out = {}
    for i, d in enumerate(dims):
        x = torch.randn(n, int(d), generator=gen, device=device)
        out[f"model{i:02d}"] = torch.nn.functional.normalize(x, dim=1).cpu().numpy()
    return out


def bench_similarity(
    device: str,
    n: int = 10_000,
    models: int | None = None,
    measures: Sequence[str] = SIMILARITY_MEASURES,
    naive_pairs: int = 2,
    dims: Sequence[int] | None = None,
) -> dict[str, Any]:
    """Seconds for all pairs of the study's models on random features, one engine call per measure.

    ``dims``: embedding dims (default: the study's, first ``models`` of them). The naive per-pair
    loop is timed on ``naive_pairs`` pairs per measure for comparison (0 skips it).
    """
    import torch

    from repsim.bench.measures import naive_pair
    from repsim.measures import similarity_matrices

    if dims is None:
        dims = [m.embed_dim for m in study_models()]
    dims = list(dims)[: models or None]
    if len(dims) < 2:
        raise ConfigError(f"similarity needs at least 2 models, got {len(dims)}; raise 'models'")
    feats = random_features(dims, n, device)
    ids = list(feats)
    cuda = torch.device(device).type == "cuda"
    result: dict[str, Any] = {
        "device": device,
        "n": n,
        "models": len(dims),
        "pairs": len(dims) * (len(dims) - 1) // 2,
        "dims": {"min": min(dims), "max": max(dims), "mean": float(np.mean(dims))},
        "measures": {},
    }
    for m in measures:
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        _sync(device)
        t0 = time.perf_counter()
        ds = similarity_matrices(feats, [m], device=device)
        _sync(device)
        row: dict[str, Any] = {"seconds": time.perf_counter() - t0}
        if cuda:
            row["peak_gpu_gib"] = torch.cuda.max_memory_allocated() / 2**30
        if naive_pairs > 0:
            pairs = [(ids[0], ids[j]) for j in range(1, min(naive_pairs, len(ids) - 1) + 1)]
            t0, worst = time.perf_counter(), 0.0
            for a, b in pairs:
                X = torch.from_numpy(feats[a]).to(device, torch.float64)
                Y = torch.from_numpy(feats[b]).to(device, torch.float64)
                worst = max(
                    worst, abs(naive_pair(X, Y, m) - float(ds[m].sel(model_a=a, model_b=b)))
                )
            _sync(device)
            per_pair = (time.perf_counter() - t0) / len(pairs)
            row.update(
                naive_s_per_pair=per_pair,
                naive_s_extrapolated=per_pair * result["pairs"],
                speedup=per_pair * result["pairs"] / row["seconds"],
                max_abs_diff_vs_naive=worst,
            )
        result["measures"][m] = row
        log.info("similarity %s: %d models x n=%d in %.2f s", m, len(dims), n, row["seconds"])
    return result


def _probe_data(n: int, dim: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Noisy Gaussian classes on the unit sphere; every class appears."""
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(12345).normal(size=(classes, dim)).astype(np.float32)
    y = np.concatenate([np.arange(classes), rng.integers(0, classes, size=max(n - classes, 0))])[:n]
    X = means[y] + 3.0 * rng.normal(size=(len(y), dim)).astype(np.float32)
    return X / np.linalg.norm(X, axis=1, keepdims=True), y


def bench_probe(
    device: str,
    n: int = 10_000,
    dim: int = 768,
    classes: int = 100,
    seeds: Sequence[int] = (0, 1, 2),
    settings: int = 56,
    epochs: int = 20,
    sequential: int = 4,
    scale_point: Sequence[int] | None = (20_000, 768, 1000),
    study: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The probe sweep benchmark, a full probe at ``scale_point`` = (n, d, classes), and ``study``.

    ``points`` lists (n, dim, classes, seconds) of full probes with all ``seeds``. ``study``
    (``ns``, ``dims``, ``classes``, ``steps``, ``precisions``, ``precision_check``) times training
    steps at the study's sizes (:func:`repsim.bench.probe.study_sweep`) per precision, and runs
    :func:`repsim.bench.probe.precision_check` with the given sizes: the figures the projection
    prices the probes with.
    """
    from repsim.bench import probe as probe_bench
    from repsim.probe import linear_probe

    sweep = probe_bench.run(
        n=n,
        dim=dim,
        classes=classes,
        settings=settings,
        epochs=epochs,
        seeds=tuple(seeds),
        device=device,
        sequential=sequential,
    )
    points = [{"n": n, "dim": dim, "classes": classes, "seconds": sweep["full_probe_s"]}]
    if scale_point:
        sn, sd, sc = (int(v) for v in scale_point)
        X, y = _probe_data(sn, sd, sc, seed=0)
        Xt, yt = _probe_data(max(sc, sn // 5), sd, sc, seed=1)
        _sync(device)
        t0 = time.perf_counter()
        res = linear_probe(X, y, Xt, yt, seeds=tuple(seeds), epochs=epochs, device=device)
        _sync(device)
        points.append(
            {
                "n": sn,
                "dim": sd,
                "classes": sc,
                "seconds": time.perf_counter() - t0,
                "mean_accuracy": float(res.mean_accuracy),
            }
        )
    out: dict[str, Any] = {
        "device": device,
        "seeds": [int(s) for s in seeds],
        "epochs": epochs,
        "sweep": sweep,
        "points": points,
    }
    if study:
        opts = dict(study)
        check = opts.pop("precision_check", None)
        precisions = opts.pop("precisions", ["float32"])
        ns, dims = opts.pop("ns", probe_bench.STUDY_N), opts.pop("dims", probe_bench.STUDY_DIMS)
        classes_s = opts.pop("classes", probe_bench.STUDY_CLASSES)
        out["study"] = {
            p: probe_bench.study_sweep(ns, dims, classes_s, device=device, precision=p, **opts)
            for p in precisions
        }
        if check:
            out["precision_check"] = probe_bench.precision_check(device=device, **check)
    return out


def bench_decode_once(
    device: str,
    models: Sequence[str] = ("resnet50", "vit_base_patch16_224"),
    n_images: int = 512,
    batch_size: int = 128,
    repeats: int = 1,
    precision: str = "float32",
) -> dict[str, Any]:
    """Decode-once (chunk-major) extraction against the per-model path on JPEG files
    (:func:`repsim.bench.extract.decode_once`, the extraction's own benchmark) for suite models."""
    from repsim.bench import extract as extract_bench
    from repsim.zoo import ModelSpec

    specs = []
    for name in models:
        ident, layer, token, _ = EXTRACT_MODELS[name]
        specs.append(ModelSpec(name, "timm", ident, layer=layer, token=token))
    return extract_bench.decode_once(
        specs,
        n_images=n_images,
        batch_size=batch_size,
        device=device,
        repeats=repeats,
        precision=precision,
    )


# ----------------------------------------------------------------------------------------------
# projection


@dataclass(frozen=True)
class Assumptions:
    """The knobs of the projection; each one is printed with the result."""

    gpus: tuple[int, ...] = (1, 8)
    decode_img_s_per_core: float = 180.0  # PIL decode + resize, one core (MEASURED.md)
    cpu_cores: int = 16
    similarity_target_h: float = 1.0
    study_target_gpu_h: float = 12.0
    measures: tuple[str, ...] = PAPER_MEASURES
    notes: tuple[str, ...] = field(
        default=(
            "a model's throughput is that of the benchmarked model of its kind (CNN: resnet50; Transformer up to "
            "150M parameters: vit_base_patch16_224; larger: vit_large_patch14_clip_224), scaled down by parameter "
            "count when the model is larger (OpenCLIP models by their image tower, image_params_m, since the "
            "published count includes the text tower; the other published counts include classification "
            "heads, up to 20% above the backbone for ImageNet-21k heads, so those are slightly pessimistic; "
            "input resolutions above 224, e.g. EfficientNet-B7, are not modelled)",
            "similarity time per dataset scales with (stimuli / benchmark n)^2 and with the number of pairs; each "
            "measure is timed alone, so work the engine shares between CKA variants is counted once per variant; "
            "RBF variants cost the timed RBF; mutual k-NN costs the timed linear CKA",
            "a probe (all seeds, coarse + fine search, retrain) costs a * n*d*C + b * n*d seconds, fitted to the "
            "measured full probes (n = train rows, d = embedding dim, C = classes)",
            "the full study extracts the train and test splits of every dataset (the similarity stimuli are part "
            "of the train split); the similarity part extracts only the similarity stimuli",
            "images are decoded once per dataset on the CPU and shared by all models; decode overlaps GPU work",
            "8 GPUs: tasks (model x dataset extraction and probes, dataset x measure similarity) are placed longest "
            "first on the least loaded GPU; stages run one after another",
        )
    )


def _fit_probe(points: Sequence[Mapping[str, Any]]) -> tuple[float, float]:
    """(a, b) >= 0 of ``seconds = a*n*d*C + b*n*d``, each point weighted by its relative error."""
    if not points:
        raise ConfigError("no probe timings to project from; run the probe part of the GPU suite")
    A = np.array(
        [[p["n"] * p["dim"] * p["classes"], p["n"] * p["dim"]] for p in points], dtype=np.float64
    )
    t = np.array([p["seconds"] for p in points], dtype=np.float64)
    if len(points) == 1 or np.linalg.matrix_rank(A) < 2:
        j = int(np.argmax(A[:, 0]))
        return float(t[j] / A[j, 0]), 0.0
    from scipy.optimize import nnls

    coef, _ = nnls(A / t[:, None], np.ones_like(t))
    return float(coef[0]), float(coef[1])


def _probe_pricer(probe: Mapping[str, Any], coef: tuple[float, float]) -> dict[str, Any]:
    """Seconds of one full probe (n, d, C) per precision.

    With study-size figures: the protocol's steps (exact, :func:`repsim.bench.probe.study_probe_seconds`)
    x seconds per step fitted to the measured points of that precision
    (:func:`repsim.bench.probe.fit_step_cost`). Without: ``a*n*d*C + b*n*d`` fitted to full probes.
    """
    from repsim.bench import probe as probe_bench

    study = {p: r for p, r in (probe.get("study") or {}).items() if r.get("points")}
    if not study:
        return {"float32": lambda n, d, c: probe_seconds(n, d, c, coef)}
    out = {}
    for precision, res in study.items():
        fit = probe_bench.fit_step_cost(res["points"])
        batch = int(res.get("batch_size", 1024))
        out[precision] = lambda n, d, c, fit=fit, batch=batch: probe_bench.study_probe_seconds(
            n, probe_bench.step_cost(d, c, fit), batch_size=batch
        )
    if "float32" not in out:
        out["float32"] = lambda n, d, c: probe_seconds(n, d, c, coef)
    return out


def _measured_points(figures: Mapping[str, Any]) -> list[dict[str, str]]:
    """What the projection rests on: each measured figure, and what is extrapolated from it."""
    rows = []
    ex = figures["extract"]
    for name, m in ex.get("models", {}).items():
        rows.append(
            {
                "figure": f"extraction {name}",
                "measured": f"{m['whole_img_s']:.0f} img/s whole path ({ex.get('n_images', '?')} images)",
                "extrapolated": "every study model of its kind, scaled by parameters; all images",
            }
        )
    sim = figures["similarity"]
    rows.append(
        {
            "figure": "similarity",
            "measured": f"{sim.get('models', '?')} models, {sim['pairs']} pairs, n={sim['n']}",
            "extrapolated": "each dataset's stimuli, (n / bench n)^2",
        }
    )
    probe = figures["probe"]
    for precision, res in (probe.get("study") or {}).items():
        for p in res.get("points", []):
            rows.append(
                {
                    "figure": f"probe steps {precision}",
                    "measured": f"n={p['n']:,} d={p['dim']} C={p['classes']}: "
                    + ", ".join(f"{k} {v * 1e3:.2f} ms" for k, v in p["per_step"].items()),
                    "extrapolated": f"full probe {p['full_probe_s']:.0f} s = steps x measured step",
                }
            )
        for p in res.get("skipped", []):
            rows.append(
                {
                    "figure": f"probe steps {precision}",
                    "measured": f"n={p['n']:,} d={p['dim']}: not measured ({p['why']})",
                    "extrapolated": "from the fitted step cost",
                }
            )
    for p in probe.get("points", []):
        rows.append(
            {
                "figure": "full probe",
                "measured": f"n={p['n']:,} d={p['dim']} C={p['classes']}: {p['seconds']:.1f} s",
                "extrapolated": "-" if probe.get("study") else "a*n*d*C + b*n*d to every probe",
            }
        )
    chk = probe.get("precision_check")
    if chk:
        rows.append(
            {
                "figure": "bfloat16 accuracy check",
                "measured": f"n={chk['n']:,} d={chk['dim']} C={chk['classes']}: max difference "
                f"{chk['max_abs_diff_points']:.3f} points (limit 0.2)",
                "extrapolated": "-",
            }
        )
    return rows


def probe_seconds(n: int, dim: int, classes: int, coef: tuple[float, float]) -> float:
    """Projected seconds of one full probe (all seeds) from the fitted cost model."""
    return coef[0] * n * dim * classes + coef[1] * n * dim


def _reference_for(model: StudyModel, available: Sequence[str]) -> str:
    if model.architecture_class == "Convolutional":
        wanted = ["resnet50", "vit_base_patch16_224", "vit_large_patch14_clip_224"]
    elif model.params_m <= 150:
        wanted = ["vit_base_patch16_224", "vit_large_patch14_clip_224", "resnet50"]
    else:
        wanted = ["vit_large_patch14_clip_224", "vit_base_patch16_224", "resnet50"]
    for name in wanted:
        if name in available:
            return name
    raise ConfigError(
        f"no extraction figure to scale from; need one of {', '.join(EXTRACT_MODELS)}"
    )


def model_rate(model: StudyModel, rates: Mapping[str, float]) -> float:
    """Projected whole-path images/s of ``model`` from the benchmarked models' rates."""
    ref = _reference_for(model, list(rates))
    return rates[ref] * min(1.0, EXTRACT_MODELS[ref][3] / model.params_m)


def _measure_seconds(measure: str, timed: Mapping[str, float]) -> float:
    """Seconds of ``measure``: timed, or the timed measure of its kind (RBF CKA, RSA), else linear CKA."""
    if measure in timed:
        return timed[measure]
    for prefix in ("cka_rbf", "rsa"):
        same = [s for m, s in timed.items() if m.startswith(prefix)]
        if measure.startswith(prefix) and same:
            return max(same)
    if "cka_linear" in timed:
        return timed["cka_linear"]
    raise ConfigError(f"no similarity timing to project {measure} from; time cka_linear at least")


def makespan(tasks: Sequence[float], gpus: int) -> float:
    """Wall time of independent tasks on ``gpus`` devices, longest first to the least loaded one."""
    if gpus < 1:
        raise ConfigError(f"gpus must be >= 1, got {gpus}")
    loads = [0.0] * gpus
    for t in sorted(tasks, reverse=True):
        heapq.heappush(loads, heapq.heappop(loads) + t)
    return max(loads)


def project(
    figures: Mapping[str, Any],
    models: Sequence[StudyModel] | None = None,
    datasets: Sequence[DatasetSize] = STUDY_DATASETS,
    assumptions: Assumptions = Assumptions(),
) -> dict[str, Any]:
    """GPU-hours and wall hours of the study's scale from measured figures (pure arithmetic).

    ``figures``: ``extract`` (result of :func:`bench_extraction`), ``similarity``
    (:func:`bench_similarity`), ``probe`` (:func:`bench_probe`). Returns the stages in seconds
    (one GPU), the wall time on each GPU count, the targets and whether they are met.
    """
    models = list(models) if models is not None else study_models()
    rates = {k: float(v["whole_img_s"]) for k, v in figures["extract"]["models"].items()}
    sim = figures["similarity"]
    timed = {m: float(v["seconds"]) for m, v in sim["measures"].items()}
    bench_pairs, bench_n = sim["pairs"], sim["n"]
    coef = _fit_probe(figures["probe"]["points"])
    probe_cost = _probe_pricer(figures["probe"], coef)
    M = len(models)
    pairs = M * (M - 1) // 2

    model_rates = {m.id: model_rate(m, rates) for m in models}
    stages: dict[str, list[float]] = {
        "extract_similarity_stimuli": [
            ds.similarity / model_rates[m.id] for m in models for ds in datasets
        ],
        "similarity": [
            _measure_seconds(meas, timed) * (ds.similarity / bench_n) ** 2 * pairs / bench_pairs
            for ds in datasets
            for meas in assumptions.measures
        ],
        "extract_train_test": [
            (ds.n_train + ds.n_test) / model_rates[m.id] for m in models for ds in datasets
        ],
        "probes": [
            probe_cost["float32"](ds.n_train, m.embed_dim, ds.n_classes)
            for m in models
            for ds in datasets
        ],
    }
    probe_by_precision = {
        p: float(
            sum(price(ds.n_train, m.embed_dim, ds.n_classes) for m in models for ds in datasets)
        )
        for p, price in probe_cost.items()
    }
    totals = {k: float(sum(v)) for k, v in stages.items()}
    parts = {
        "similarity_part": ("extract_similarity_stimuli", "similarity"),
        "full_study": ("extract_train_test", "similarity", "probes"),
    }
    wall = {
        part: {g: float(sum(makespan(stages[s], g) for s in names)) for g in assumptions.gpus}
        for part, names in parts.items()
    }
    wall["similarity_compute"] = {g: makespan(stages["similarity"], g) for g in assumptions.gpus}
    gpu_s = {part: float(sum(totals[s] for s in names)) for part, names in parts.items()}
    decode_rate = assumptions.decode_img_s_per_core * assumptions.cpu_cores
    by_dataset = sorted(
        (
            (
                ds.id,
                float(
                    sum(
                        probe_cost["float32"](ds.n_train, m.embed_dim, ds.n_classes)
                        + (ds.n_train + ds.n_test) / model_rates[m.id]
                        for m in models
                    )
                ),
            )
            for ds in datasets
        ),
        key=lambda kv: -kv[1],
    )
    return {
        "models": M,
        "datasets": len(datasets),
        "pairs": pairs,
        "similarity_stimuli": int(sum(ds.similarity for ds in datasets)),
        "train_test_images": int(sum(ds.n_train + ds.n_test for ds in datasets)),
        "stage_gpu_s": totals,
        "gpu_s": gpu_s,
        "wall_s": wall,
        "decode_cpu_wall_s": {
            "similarity_part": sum(ds.similarity for ds in datasets) / decode_rate,
            "full_study": sum(ds.n_train + ds.n_test for ds in datasets) / decode_rate,
        },
        "similarity_compute_h_one_gpu": totals["similarity"] / 3600,
        "targets": {
            "similarity_h_one_gpu": assumptions.similarity_target_h,
            "similarity_met": totals["similarity"] / 3600 <= assumptions.similarity_target_h,
            "similarity_part_met": gpu_s["similarity_part"] / 3600
            <= assumptions.similarity_target_h,
            "study_gpu_h": assumptions.study_target_gpu_h,
            "study_met": gpu_s["full_study"] / 3600 <= assumptions.study_target_gpu_h,
        },
        "probe_cost_coef": {"a_s_per_ndc": coef[0], "b_s_per_nd": coef[1]},
        "probe_model": "steps x fitted step cost"
        if figures["probe"].get("study")
        else "a*n*d*C + b*n*d fitted to full probes",
        "probes_gpu_s_by_precision": probe_by_precision,
        "measured": _measured_points(figures),
        "extract_rates_img_s": rates,
        "costliest_datasets_full_study_gpu_h": [(k, v / 3600) for k, v in by_dataset[:5]],
        "assumptions": {
            "gpus": list(assumptions.gpus),
            "decode_img_s_per_core": assumptions.decode_img_s_per_core,
            "cpu_cores": assumptions.cpu_cores,
            "measures": list(assumptions.measures),
            "notes": list(assumptions.notes),
            "dataset_sizes": [
                {
                    "id": d.id,
                    "n_train": d.n_train,
                    "n_test": d.n_test,
                    "classes": d.n_classes,
                    "similarity": d.similarity,
                    "source": d.source,
                }
                for d in datasets
            ],
        },
    }


def format_projection(p: Mapping[str, Any]) -> str:
    """The projection as markdown: a table of GPU-hours and wall hours, then the assumptions."""
    from repsim.bench.report import markdown_table

    h = lambda s: f"{s / 3600:.2f}"  # noqa: E731
    gpus = p["assumptions"]["gpus"]
    t = p["targets"]
    header = [
        "part",
        "GPU-hours",
        *[f"wall h on {g} GPU{'s' if g > 1 else ''}" for g in gpus],
        "target",
        "met",
    ]
    rows = [
        [
            "similarity compute (all measures)",
            h(p["stage_gpu_s"]["similarity"]),
            *[h(p["wall_s"]["similarity_compute"][g]) for g in gpus],
            f"<= {t['similarity_h_one_gpu']:g} h on 1 GPU",
            "yes" if t["similarity_met"] else "NO",
        ],
        [
            "similarity part: extraction of the similarity stimuli + similarity",
            h(p["gpu_s"]["similarity_part"]),
            *[h(p["wall_s"]["similarity_part"][g]) for g in gpus],
            f"<= {t['similarity_h_one_gpu']:g} h on 1 GPU",
            "yes" if t["similarity_part_met"] else "NO",
        ],
        [
            "full study: extraction of train+test splits + similarity + probes",
            h(p["gpu_s"]["full_study"]),
            *[h(p["wall_s"]["full_study"][g]) for g in gpus],
            f"<= {t['study_gpu_h']:g} GPU-h",
            "yes" if t["study_met"] else "NO",
        ],
    ]
    stage_rows = [[k, h(v)] for k, v in p["stage_gpu_s"].items()]
    lines = [
        f"## Projection: {p['models']} models x {p['datasets']} datasets ({p['pairs']} pairs per dataset)",
        "",
        markdown_table(header, rows),
        "",
        markdown_table(["stage", "GPU-hours (1 GPU)"], stage_rows),
        "",
        f"Images: {p['similarity_stimuli']:,} similarity stimuli; {p['train_test_images']:,} train+test images. "
        f"CPU decode wall time ({p['assumptions']['cpu_cores']} cores x {p['assumptions']['decode_img_s_per_core']:g} img/s): "
        f"{h(p['decode_cpu_wall_s']['similarity_part'])} h for the similarity stimuli, "
        f"{h(p['decode_cpu_wall_s']['full_study'])} h for the train+test splits.",
        "",
        "Costliest datasets of the full study (extraction + probes, GPU-hours): "
        + ", ".join(f"{k} {v:.1f}" for k, v in p["costliest_datasets_full_study_gpu_h"]),
        "",
        "Measured rates scaled from (whole path, img/s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in p["extract_rates_img_s"].items())
        + f"; probes priced as {p.get('probe_model', 'a*n*d*C + b*n*d')}"
        + (
            "; probe GPU-hours by precision: "
            + ", ".join(f"{k} {v / 3600:.2f}" for k, v in p["probes_gpu_s_by_precision"].items())
            if p.get("probes_gpu_s_by_precision")
            else ""
        )
        + ".",
        "",
        "### Measured and extrapolated",
        "",
        markdown_table(
            ["figure", "measured", "extrapolated to the study"],
            [[r["figure"], r["measured"], r["extrapolated"]] for r in p.get("measured", [])],
        ),
        "",
        "Assumptions:",
        *[f"- {note}" for note in p["assumptions"]["notes"]],
        f"- measures: {', '.join(p['assumptions']['measures'])}",
        "- dataset sizes (train / test / classes / similarity stimuli, source):",
        *[
            f"  - {d['id']}: {d['n_train']:,} / {d['n_test']:,} / {d['classes']} / {d['similarity']:,} ({d['source']})"
            for d in p["assumptions"]["dataset_sizes"]
        ],
    ]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# the suite


#: sizes of the suite on a GPU (its full sizes) and tiny ones for a CPU (tests, laptops)
GPU_SIZES: dict[str, dict[str, Any]] = {
    "extract": {"n_images": 2048, "batch_size": 256},
    "similarity": {"n": 10_000, "naive_pairs": 2},
    "probe": {
        "n": 10_000,
        "dim": 768,
        "classes": 100,
        "seeds": [0, 1, 2],
        "scale_point": [20_000, 768, 1000],
        "study": {
            "ns": [100_000, 300_000, 1_281_167],
            "dims": [384, 1024, 1536],
            "classes": 1000,
            "steps": 10,
            "precisions": ["float32", "bfloat16"],
            "precision_check": {"n": 100_000, "dim": 384, "classes": 1000, "n_test": 50_000},
        },
    },
    "decode_once": {"n_images": 512, "batch_size": 128, "repeats": 1},
}
CPU_SIZES: dict[str, dict[str, Any]] = {
    "extract": {"models": ["resnet50"], "n_images": 8, "batch_size": 4},
    "similarity": {"n": 300, "models": 8, "naive_pairs": 1},
    "probe": {
        "n": 600,
        "dim": 32,
        "classes": 10,
        "seeds": [0],
        "epochs": 2,
        "settings": 8,
        "sequential": 1,
        "scale_point": [1200, 32, 40],
        "study": {
            "ns": [2048],
            "dims": [16, 32],
            "classes": 10,
            "steps": 1,
            "precisions": ["float32", "bfloat16"],
            "precision_check": {"n": 600, "dim": 16, "classes": 5, "n_test": 1000, "epochs": 1},
        },
    },
    "decode_once": {"models": ["resnet50"], "n_images": 8, "batch_size": 4, "repeats": 1},
}


#: the parts the projection is computed from (decode_once is reported beside it)
PROJECTION_PARTS = ("extract", "similarity", "probe")


def _tables_extract(r: Mapping[str, Any]) -> list[tuple[list[str], list[list[str]]]]:
    from repsim.bench import _tables_extract as tables

    return tables(r)


def _tables_similarity(r: Mapping[str, Any]) -> list[tuple[list[str], list[list[str]]]]:
    header = [
        f"measure ({r['models']} models, {r['pairs']} pairs, n={r['n']}, d {r['dims']['min']}-{r['dims']['max']})",
        "engine s",
        "naive s/pair",
        "naive all pairs s (extrapolated)",
        "speed-up",
        "peak GPU GiB",
    ]
    f = lambda v, fmt: "-" if v is None else format(v, fmt)  # noqa: E731
    rows = [
        [
            m,
            f(v["seconds"], ".2f"),
            f(v.get("naive_s_per_pair"), ".3f"),
            f(v.get("naive_s_extrapolated"), ".1f"),
            f(v.get("speedup"), ".0f"),
            f(v.get("peak_gpu_gib"), ".1f"),
        ]
        for m, v in r["measures"].items()
    ]
    return [(header, rows)]


def _tables_probe(r: Mapping[str, Any]) -> list[tuple[list[str], list[list[str]]]]:
    from repsim.bench import _tables_probe as tables

    points = [
        [str(p["n"]), str(p["dim"]), str(p["classes"]), f"{p['seconds']:.2f}"] for p in r["points"]
    ]
    out = [
        *tables(r["sweep"]),
        ([f"full probe, seeds {r['seeds']}: n", "d", "classes", "seconds"], points),
    ]
    for precision, res in (r.get("study") or {}).items():
        rows = [
            [
                f"{p['n']:,}",
                str(p["dim"]),
                str(p["classes"]),
                *[f"{p['per_step'][k] * 1e3:.2f}" for k in ("coarse", "fine", "final")],
                f"{p['full_probe_s']:.1f}",
            ]
            for p in res["points"]
        ] + [[f"{p['n']:,}", str(p["dim"]), "-", "-", "-", "-", p["why"]] for p in res["skipped"]]
        header = [f"study size, {precision}: n", "d", "classes", "coarse ms/step",
                  "fine ms/step", "final ms/step", "full probe s (steps x step)"]  # fmt: skip
        out.append((header, rows))
    chk = r.get("precision_check")
    if chk:
        out.append(
            (
                ["bfloat16 against float32", "value"],
                [
                    ["problem", f"n={chk['n']} d={chk['dim']} C={chk['classes']}, {chk['n_test']} test rows"],
                    ["float32 accuracy per seed", ", ".join(f"{a:.4f}" for a in chk["float32"]["accuracy"])],
                    ["bfloat16 accuracy per seed", ", ".join(f"{a:.4f}" for a in chk["bfloat16"]["accuracy"])],
                    ["max difference (points)", f"{chk['max_abs_diff_points']:.3f} (limit 0.2)"],
                    ["same lr/wd chosen", str(chk["same_choice"])],
                    ["seconds float32 / bfloat16", f"{chk['float32']['seconds']:.1f} / {chk['bfloat16']['seconds']:.1f}"],
                ],
            )
        )  # fmt: skip
    return out


def _tables_decode_once(r: Mapping[str, Any]) -> list[tuple[list[str], list[list[str]]]]:
    rows = [
        [
            path,
            str(r[path]["decoded"]),
            f"{r[path]['seconds']:.2f}",
            f"{r[path]['img_s']:.1f}",
        ]
        for path in ("per_model", "chunk_major")
    ]
    header = [
        f"path ({len(r['models'])} models x {r['n_images']} images)",
        "images decoded",
        "seconds",
        "dataset img/s",
    ]
    return [(header, rows)]


def _registry() -> dict[str, Any]:
    from repsim.bench import Benchmark

    return {
        "extract": Benchmark(
            bench_extraction,
            _tables_extract,
            "Random-weight models, whole path from decoded uint8 images incl. the feature store "
            "against forward-only (float32 as in the study, channels_last on CUDA).",
        ),
        "similarity": Benchmark(
            bench_similarity,
            _tables_similarity,
            "All pairs of the study's models (their embedding dims) on random unit-norm "
            "features, one engine call per measure; a few naive per-pair runs for comparison.",
        ),
        "probe": Benchmark(
            bench_probe,
            _tables_probe,
            "The batched probe sweep against one setting at a time, the full probe, one "
            "larger full probe, and seconds per training step at the study's sizes (float32 and "
            "bfloat16 matmuls) that the projection prices probes with.",
        ),
        "decode_once": Benchmark(
            bench_decode_once,
            _tables_decode_once,
            "Decode-once (chunk-major) extraction against the per-model path: images decoded "
            "and dataset images/s with all models.",
        ),
    }


#: the modules each part imports: checked before any part runs (see :func:`missing_modules`)
PART_IMPORTS: dict[str, tuple[str, ...]] = {
    "extract": ("repsim.bench.extract",),
    "similarity": ("repsim.measures", "repsim.bench.measures"),
    "probe": ("repsim.probe", "repsim.bench.probe", "scipy.optimize"),
    "decode_once": ("repsim.bench.extract",),
}

#: how to bring a missing package to a GPU machine, in the error that names it
INSTALL_HINT = (
    "install the project (pip install -e .); on a GPU machine that cannot reach the package "
    "index, run `bash tests/benchmarks/device_wheels.sh` where pip works, copy the repository "
    "with its .whl/ folder, and `bash tests/benchmarks/gpu_check.sh` installs them"
)


def missing_modules(parts: Sequence[str]) -> dict[str, list[str]]:
    """The packages that ``parts`` cannot import, each with the parts that need it.

    Checked before the suite starts, so that a machine without (say) zarr stops in a second with
    the fix instead of spending its GPU minutes on the parts that can run and reporting no
    projection. Importing the project's own modules catches every package they pull in.
    """
    import importlib

    missing: dict[str, list[str]] = {}
    for part in parts:
        for module in PART_IMPORTS.get(part, ()):
            try:
                importlib.import_module(module)
            except ImportError as exc:
                name = (exc.name or module).split(".")[0]
                missing.setdefault(name, []).append(part)
                break
    return missing


def suite_sizes(device: str) -> dict[str, dict[str, Any]]:
    """The suite's sizes for ``device``: the full ones on CUDA, tiny ones elsewhere."""
    src = GPU_SIZES if device.startswith("cuda") else CPU_SIZES
    return {k: dict(v) for k, v in src.items()}


def run_suite(
    device: str,
    only: Sequence[str] | None = None,
    overrides: Sequence[str] = (),
    sizes: Mapping[str, Mapping[str, Any]] | None = None,
    assumptions: Assumptions = Assumptions(),
) -> dict[str, Any]:
    """Run the GPU suite on ``device`` and project the study's scale; returns a report dict.

    The projection needs all three parts; with ``only`` or a failed part it is skipped and the
    report says why.
    """
    from repsim.bench import apply_overrides, run_benchmarks
    from repsim.runinfo import machine_info

    registry = _registry()
    names = list(only or registry)
    unknown = sorted(set(names) - set(registry))
    if unknown:
        raise ConfigError(
            f"--only with --gpu: unknown parts {unknown}; choose from {', '.join(registry)}"
        )
    chosen = apply_overrides(
        {k: dict(v) for k, v in (sizes or suite_sizes(device)).items()}, overrides
    )
    absent = missing_modules(names)
    if absent:
        needs = "; ".join(f"{m} (for {', '.join(parts)})" for m, parts in sorted(absent.items()))
        raise ConfigError(
            f"the GPU suite cannot start: missing packages {needs}. Fix: {INSTALL_HINT}"
        )
    t0 = time.perf_counter()
    benchmarks = run_benchmarks([n for n in registry if n in names], device, chosen, registry)
    log.info("GPU suite measured in %.1f s", time.perf_counter() - t0)
    report: dict[str, Any] = {
        "title": f"repsim GPU suite ({device})",
        "machine": machine_info(device),
        "benchmarks": benchmarks,
        "suite_seconds": time.perf_counter() - t0,
    }
    missing = [n for n in PROJECTION_PARTS if benchmarks.get(n, {}).get("status") != "ok"]
    if missing:
        report["extra_markdown"] = (
            f"## Projection\n\nnot computed: no figures from {', '.join(missing)}."
        )
        return report
    figures = {n: benchmarks[n]["result"] for n in PROJECTION_PARTS}
    proj = project(figures, assumptions=assumptions)
    report["projection"] = proj
    report["extra_markdown"] = format_projection(proj)
    if not str(device).startswith("cuda"):  # the dry run prints the same tables: said first
        proj["dry_run"] = DRY_RUN_NOTE
        report["extra_markdown"] = f"**{DRY_RUN_NOTE}**\n\n" + report["extra_markdown"]
    return report


#: What a projection from a run without CUDA says above its tables.
DRY_RUN_NOTE = (
    "No CUDA: a dry run at the suite's CPU sizes. The figures below were measured on a CPU and "
    "are not GPU-hours; run tests/benchmarks/gpu_check.sh on a GPU for the projection."
)
