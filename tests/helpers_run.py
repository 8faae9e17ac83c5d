"""A tiny run folder for the notebook, plot and book tests.

``tiny_run_available()`` is the ONE place that decides where the test run comes from: the real
pipeline on ``data/configs/tiny.yaml`` when it can run (and REPSIM_FAKE_RUN is not set; the
``tiny_run`` session fixture of conftest.py runs it once), else
``write_fake_run``, which writes the fixed result-file schema with random but structured numbers:
models of the same objective are more alike, and self-supervised models keep their similarity
pattern across datasets better than the others (so the figures have something to show).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
from pathlib import Path

import numpy as np
import xarray as xr

from repsim.names import CATEGORY_FIELDS, MODEL_FIELDS
from repsim.plan import DEFAULT_MEASURES

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "data" / "configs" / "tiny.yaml"
log = logging.getLogger(__name__)

OBJECTIVES = ("Supervised", "Self-Supervised", "Image-Text", "Random")
ARCHS = ("Convolutional", "Transformer", "MLP")
DATASETS = {
    "shapes": "Natural (multi-domain)",
    "objects": "Natural (multi-domain)",
    "flowers": "Natural (single-domain)",
    "textures": "Specialized",
    "digits": "Structured",
    "counts": "Structured",
}
MEASURES = DEFAULT_MEASURES  # the synthetic runs use the default measures of a config
NC_ENGINE = "scipy"  # h5py is not installed; netCDF3 via scipy reads everywhere
GROUPINGS = CATEGORY_FIELDS


def tiny_run_available() -> bool:
    """Whether the real pipeline can run the tiny config here (config, code and local weights),
    and REPSIM_FAKE_RUN does not ask for the fake run."""
    if os.environ.get("REPSIM_FAKE_RUN") or not TINY_CONFIG.exists():
        return False
    try:
        from repsim.pipeline import run  # noqa: F401
        from repsim.plan import load_plan

        plan = load_plan(TINY_CONFIG)
    except Exception as exc:  # a missing module, a missing weights file, ...: use the fake run
        log.info("the tiny config cannot run here (%s); tests use the fake run", exc)
        return False
    return all(m.weights is None or Path(m.weights).exists() for m in plan.models)


def make_test_run(path: Path) -> Path:
    """Write a tiny run into ``path``: the real pipeline when it can run, else the fake one."""
    if tiny_run_available():
        from repsim.pipeline import run

        run(str(TINY_CONFIG), str(path), device="cpu")
        return path
    return write_fake_run(path)


def _models(n_per: int) -> list[dict]:
    out = []
    for obj, k in itertools.product(OBJECTIVES, range(n_per)):
        arch = ARCHS[k % len(ARCHS)]
        out.append(
            {
                "id": f"{obj[:3].lower()}-{arch[:3].lower()}-{k}",
                "objective": obj,
                "architecture_class": arch,
                "architecture": f"{arch[:3]}Net",
                "data_class": "embedded",
                "size_class": "small" if k % 2 else "medium",
                "params_m": 0.1 + k,
                "embed_dim": 32 * (1 + k % 2),
            }
        )
    return out


def _latents(models: list[dict], rng: np.random.Generator, n_data: int) -> np.ndarray:
    """(dataset, model, dim) latent codes; distances between them give the similarities."""
    dim = 8
    base = {o: rng.normal(size=dim) for o in OBJECTIVES}
    noise = {"Self-Supervised": 0.15, "Image-Text": 0.5, "Supervised": 0.8, "Random": 1.0}
    own = rng.normal(size=(len(models), dim)) * 0.6
    z = np.empty((n_data, len(models), dim))
    for d in range(n_data):
        for i, m in enumerate(models):
            z[d, i] = base[m["objective"]] + own[i] + noise[m["objective"]] * rng.normal(size=dim)
    return z


def _similarity(z: np.ndarray, scale: float) -> np.ndarray:
    d2 = ((z[:, :, None, :] - z[:, None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / scale)


def _pearson_pairs(sim: np.ndarray, idx_a: list[int], idx_b: list[int]) -> np.ndarray:
    pairs = sorted({tuple(sorted((i, j))) for i in idx_a for j in idx_b if i != j})
    n_d = sim.shape[0]
    out = np.full((n_d, n_d), np.nan)
    if len(pairs) < 2:
        return out
    ii, jj = np.array(pairs).T
    vec = sim[:, ii, jj]
    out = np.corrcoef(vec) if len(pairs) > 2 else out
    np.fill_diagonal(out, 1.0)
    return out


def write_fake_run(
    path: Path, n_per_objective: int = 4, seed: int = 0, features: bool = True, probes: bool = True
) -> Path:
    """Write similarity.nc, consistency.nc, probes.nc, run.json (and features when possible)."""
    from repsim.runfolder import RunFolder

    path = Path(path)
    folder = RunFolder(path).create()
    rng = np.random.default_rng(seed)
    models = _models(n_per_objective)
    ids = [m["id"] for m in models]
    dsets = list(DATASETS)
    z = _latents(models, rng, len(dsets))
    data_vars = {}
    for k, name in enumerate(MEASURES):
        sim = _similarity(z, 20.0 + 10 * k)
        data_vars[name] = (("dataset", "model_a", "model_b"), sim)
    coords = {
        "dataset": dsets,
        "model_a": ids,
        "model_b": ids,
        "domain": ("dataset", [DATASETS[d] for d in dsets]),
        "n_stimuli": ("dataset", [200] * len(dsets)),
        "dataset_name": ("dataset", [d.title() for d in dsets]),
    }
    for key in (k for k in MODEL_FIELDS if k in models[0]):  # the fake models have no method
        coords[f"{key}_a"] = ("model_a", [m[key] for m in models])
        coords[f"{key}_b"] = ("model_b", [m[key] for m in models])
    sim_ds = xr.Dataset(
        data_vars, coords=coords, attrs={"run": "fake-tiny", "config": "tests/helpers_run.py"}
    )
    sim_ds.to_netcdf(folder.similarity, engine=NC_ENGINE)

    # consistency: all pairs and every category pair (>= 2 model pairs), plus anchors
    gp_labels, gp_meta, values = [], [], []
    for group_by in ("all", *GROUPINGS):
        if group_by == "all":
            combos = [("all", "all", list(range(len(ids))), list(range(len(ids))))]
        else:
            cats = sorted({m[group_by] for m in models})
            combos = [
                (
                    a,
                    b,
                    [i for i, m in enumerate(models) if m[group_by] == a],
                    [i for i, m in enumerate(models) if m[group_by] == b],
                )
                for a, b in itertools.combinations_with_replacement(cats, 2)
            ]
        for a, b, ia, ib in combos:
            per_measure = [_pearson_pairs(data_vars[me][1], ia, ib) for me in MEASURES]
            label = "all" if group_by == "all" else f"{group_by}: {a} | {b}"
            gp_labels.append(label)
            gp_meta.append((group_by, a, b, len(ia) * len(ib)))
            values.append(per_measure)
    cons = np.array(values).transpose(1, 0, 2, 3)  # measure, group_pair, da, db
    anchors = np.array(
        [
            [_pearson_pairs(data_vars[me][1], [i], list(range(len(ids)))) for i in range(len(ids))]
            for me in MEASURES
        ]
    )
    cons_ds = xr.Dataset(
        {
            "consistency": (("measure", "group_pair", "dataset_a", "dataset_b"), cons),
            "consistency_spearman": (("measure", "group_pair", "dataset_a", "dataset_b"), cons),
            "anchor_consistency": (("measure", "anchor", "dataset_a", "dataset_b"), anchors),
        },
        coords={
            "measure": list(MEASURES),
            "group_pair": gp_labels,
            "dataset_a": dsets,
            "dataset_b": dsets,
            "anchor": ids,
            "group_by": ("group_pair", [g[0] for g in gp_meta]),
            "group_a": ("group_pair", [g[1] for g in gp_meta]),
            "group_b": ("group_pair", [g[2] for g in gp_meta]),
            "n_pairs": ("group_pair", [g[3] for g in gp_meta]),
            "objective": ("anchor", [m["objective"] for m in models]),
        },
    )
    cons_ds.to_netcdf(folder.consistency, engine=NC_ENGINE)

    if probes:
        skill = {"Self-Supervised": 0.8, "Image-Text": 0.75, "Supervised": 0.7, "Random": 0.3}
        acc = np.array(
            [
                [
                    [
                        np.clip(
                            skill[m["objective"]] - 0.1 * j / len(dsets) + 0.05 * rng.normal(), 0, 1
                        )
                        for _ in range(3)
                    ]
                    for j in range(len(dsets))
                ]
                for m in models
            ]
        )
        pcoords = {
            "model": ids,
            "dataset": dsets,
            "seed": [0, 1, 2],
            "domain": ("dataset", [DATASETS[d] for d in dsets]),
        }
        for key in ("objective", "architecture_class", "data_class", "size_class"):
            pcoords[key] = ("model", [m[key] for m in models])
        xr.Dataset(
            {
                "accuracy": (("model", "dataset", "seed"), acc),
                "balanced_accuracy": (("model", "dataset", "seed"), acc * 0.98),
                "lr": (("model", "dataset"), np.full((len(ids), len(dsets)), 1e-2)),
                "wd": (("model", "dataset"), np.full((len(ids), len(dsets)), 1e-4)),
            },
            coords=pcoords,
        ).to_netcdf(folder.probes, engine=NC_ENGINE)

    if features:
        _write_features(path, models, dsets, z, rng)
    folder.info.write_text(
        json.dumps(
            {
                "config": {"name": "fake-tiny"},
                "versions": {},
                "git_commit": None,
                "device": "cpu",
                "timings": {},
                "skipped": [],
            },
            indent=1,
        )
    )
    write_manifest_for(path)
    return path


def write_manifest_for(path: Path, config_hash: str = "fake") -> None:
    """The manifest a finished run writes last (each result file with its content hash), for a
    folder whose result files a test wrote itself."""
    from repsim.runfolder import RunFolder, sha256_file

    folder = RunFolder(path)
    written = [p for p in (*folder.result_paths().values(), folder.info) if p.is_file()]
    files = {p.name: {"sha256": sha256_file(p)} for p in written}
    folder.write_manifest({"config_hash": config_hash, "files": files})


def _write_features(
    path: Path, models: list[dict], dsets: list[str], z: np.ndarray, rng: np.random.Generator
) -> None:
    """Features whose geometry follows the latents, if the feature store module exists."""
    try:
        from repsim.store import FeatureStore
    except ImportError:
        log.info("repsim.store not available: the fake run has no features")
        return
    from repsim.runfolder import RunFolder

    store = FeatureStore(RunFolder(path).features)
    n = 80
    stim = [f"s{i:03d}" for i in range(n)]
    for d, ds in enumerate(dsets):
        x0 = rng.normal(size=(n, 16))
        for i, m in enumerate(models):
            w = np.outer(z[d, i], np.ones(4)).reshape(-1)[:16] + rng.normal(size=16)
            f = np.tanh(x0 * w) + 0.3 * rng.normal(size=(n, 16))
            f /= np.linalg.norm(f, axis=1, keepdims=True)
            writer = store.create(ds, m["id"], stim, f.shape[1], chunk_rows=n, overwrite=True)
            writer.write_chunk(0, f.astype(np.float32))
