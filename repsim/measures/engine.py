"""The all-pairs engine: a whole model x model similarity matrix per measure, in batches.

Each requested measure is resolved in the registry (:mod:`repsim.measures.registry`) and grouped
by family; a family with a batched kernel (``batched.py``: CKA, RSA, mutual kNN) computes all pairs
of all its measures at once, sharing per-model work, blocked over stimuli to stay under a memory
budget, on CUDA when available, accumulating in float64 with TF32 off. A family without one falls
back to its single-pair function, called once for every pair of models (correct, slower). A model
whose features are NaN/Inf, constant or of unusable magnitude (``MAX_MAGNITUDE`` in ``_inputs.py``),
or for which a measure is undefined, gets a NaN row and column and a warning naming it; the other
models go on.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import xarray as xr
from tqdm import tqdm

from repsim.device import resolve_device
from repsim.errors import InputError, UndefinedMeasureError
from repsim.measures._inputs import (
    RESCALE_FIX,
    first_bad_row,
    is_constant,
    magnitude_problem,
    to_float64,
)
from repsim.measures.batched import warn_nan
from repsim.measures.registry import FAMILIES, MeasureSpec, get_family, parse_measures

#: Keywords of the per-pair measure functions (cka, rsa, mutual_knn, procrustes), which the engine
#: takes in the measure's name instead (cka_rbf_0.4, mutual_knn_10, ...).
MEASURE_KEYWORDS = frozenset(
    {"kernel", "unbiased", "sigma", "sigma_mode", "rdm", "compare", "k", "angular"}
)


def similarity_matrix(
    features: Mapping[str, Any],
    measure: str = "cka_linear",
    *,
    device: str | torch.device | None = None,
    memory_budget_gb: float | None = None,
    progress: bool = False,
    **options: Any,
) -> xr.DataArray:
    """All-pairs similarity of models under one measure.

    Parameters
    ----------
    features : model id -> array (n_stimuli, d_model); the same stimuli in the same order for every
        model, feature dims may differ. numpy or torch; computed in float64.
    measure : a registry name (``cka_linear``, ``cka_rbf_0.4``, ``rsa_spearman``, ``mutual_knn_10``,
        ``procrustes``, ...).
    device : ``"cuda"``, ``"cpu"``, or None / ``"auto"`` (CUDA when available).
    memory_budget_gb : working-memory budget for blocks; default half the free RAM (CPU) or 80% of
        the free GPU memory.
    progress : show tqdm progress bars.

    Returns
    -------
    xr.DataArray (model_a, model_b), symmetric, named and with attr ``measure``. A model whose
    features hold NaN or inf, are constant, or are of a magnitude float64 cannot square gets NaN
    similarities and a ``RuntimeWarning`` naming it, so one bad model does not stop the others
    (the per-pair functions such as :func:`repsim.cka` raise instead).
    """
    if not isinstance(measure, str):
        raise InputError(
            f"measure must be one measure name such as 'cka_linear', got {measure!r}; for several "
            "measures at once use repsim.similarity_matrices(features, measures)"
        )
    unknown = sorted(set(options) - MEASURE_KEYWORDS)
    if unknown:  # a misspelt engine option is Python's own error, not a measure's
        raise TypeError(f"similarity_matrix() got an unexpected keyword argument {unknown[0]!r}")
    if options:  # cka(X, Y, sigma=0.4) takes them; the engine reads them from the name
        raise InputError(
            f"similarity_matrix takes a measure's parameters in its name, not as "
            f"{', '.join(f'{k}=' for k in options)}: e.g. 'cka_rbf_0.4' (sigma 0.4), "
            "'cka_rbf_median_1' (sigma 1 x the median distance), 'mutual_knn_10' (k 10), "
            "'cka_linear_biased'"
        )
    ds = similarity_matrices(
        features, [measure], device=device, memory_budget_gb=memory_budget_gb, progress=progress
    )
    return ds[measure]


def similarity_matrices(
    features: Mapping[str, Any],
    measures: Sequence[str],
    *,
    device: str | torch.device | None = None,
    memory_budget_gb: float | None = None,
    progress: bool = False,
) -> xr.Dataset:
    """All-pairs similarity for several measures, sharing per-model work between them.

    Each family's measures go to its batched kernel together: kernel blocks of the features are
    computed once for the linear and all RBF CKA variants, biased and unbiased CKA share the same
    statistics, and one kNN search serves every k. A family without a batched kernel runs
    :func:`pairwise_all`. Returns an ``xr.Dataset`` with one variable (model_a, model_b) per
    measure, named as given.
    """
    if isinstance(measures, str):
        measures = [measures]
    specs = parse_measures(measures)
    if not specs:
        raise InputError("no measures given; pass e.g. measures=['cka_linear']")
    ids, arrays = _read_features(features)
    n = arrays[0].shape[0]
    for spec in specs.values():
        if n < spec.min_n:
            fix = get_family(spec.family).too_few_stimuli
            raise InputError(f"{spec.name} needs at least {spec.min_n} stimuli, got n={n}; {fix}")
    dev = resolve_device(device)
    budget = _budget_bytes(dev, memory_budget_gb)
    ok = _usable(ids, arrays)
    results: dict[str, np.ndarray] = {}
    with _no_tf32():
        for family in FAMILIES.values():  # registration order: the same order on every run
            mine = {k: s for k, s in specs.items() if s.family == family.name}
            if mine:
                kernel = family.batched or pairwise_all
                results.update(kernel(ids, arrays, ok, mine, dev, budget, progress))
    coords = {"model_a": list(ids), "model_b": list(ids)}
    data_vars = {
        name: xr.DataArray(
            results[name],
            dims=("model_a", "model_b"),
            coords=coords,
            name=name,
            attrs={
                "measure": name,
                "canonical_name": spec.name,
                "description": spec.description,
                "larger_is_more_similar": int(spec.larger_is_more_similar),
            },
        )
        for name, spec in specs.items()
    }
    return xr.Dataset(data_vars, attrs={"n_stimuli": n, "device": str(dev)})


# ---------------------------------------------------------------------------------------- inputs


def _read_features(features: Mapping[str, Any]) -> tuple[list[str], list[np.ndarray]]:
    if not isinstance(features, Mapping) or len(features) == 0:
        raise InputError("features must be a non-empty mapping {model_id: array (n_stimuli, d)}")
    ids = [str(k) for k in features]
    if len(set(ids)) != len(ids):  # e.g. 1 and "1": one label for two models in the result
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise InputError(
            f"model ids {dup} name more than one model once read as strings (e.g. 1 and '1'); "
            "give every model a distinct name"
        )
    arrays = [to_float64(features[k], f"model {k!r}") for k in features]
    counts = {i: a.shape[0] for i, a in zip(ids, arrays)}
    if len(set(counts.values())) > 1:
        raise InputError(
            f"models have different numbers of stimuli {counts}; read every model's features with the "
            "same stimulus ids so rows are aligned"
        )
    return ids, arrays


def _usable(ids: list[str], arrays: list[np.ndarray]) -> np.ndarray:
    """Mask of models with finite, non-constant features of usable magnitude; warn about the others."""
    ok = np.ones(len(ids), dtype=bool)
    for i, (mid, A) in enumerate(zip(ids, arrays)):
        row, count = first_bad_row(A)
        why = magnitude_problem(A) if row is None else None
        if row is not None:
            ok[i] = False
            warn_nan(
                f"model {mid!r} has NaN or Inf in {count} rows (first bad row {row}); its similarities are NaN"
            )
        elif why is not None:
            ok[i] = False
            fix = RESCALE_FIX.format(name="X")
            warn_nan(f"model {mid!r} {why}, so its similarities are NaN; {fix}")
        elif is_constant(A):
            ok[i] = False
            warn_nan(
                f"model {mid!r} has zero variance (the same vector for every stimulus); its similarities are NaN"
            )
    return ok


def _budget_bytes(dev: torch.device, memory_budget_gb: float | None) -> float:
    if memory_budget_gb is not None:
        if isinstance(memory_budget_gb, (str, bytes, bool, np.bool_)) or not isinstance(
            memory_budget_gb, (int, float, np.integer, np.floating)
        ):
            raise InputError(
                f"memory_budget_gb must be a number of GiB, e.g. 8, got {memory_budget_gb!r}"
            )
        if not memory_budget_gb > 0:
            raise InputError(f"memory_budget_gb must be > 0, got {memory_budget_gb!r}")
        return float(memory_budget_gb) * 2**30
    if dev.type == "cuda":
        free, _ = torch.cuda.mem_get_info(dev)
        return 0.8 * free
    try:
        with open("/proc/meminfo") as fh:
            info = {line.split(":")[0]: int(line.split()[1]) for line in fh}
        return 0.5 * info["MemAvailable"] * 1024
    except (OSError, KeyError, ValueError):
        return 4.0 * 2**30


@contextlib.contextmanager
def _no_tf32() -> Iterator[None]:
    """Switch TF32 off inside the engine (float64 does not use it; guard anyway) and restore after."""
    old = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old


# ------------------------------------------------------------------------------ per-pair fallback


def pairwise_all(
    ids: list[str],
    arrays: list[np.ndarray],
    ok: np.ndarray,
    specs: dict[str, MeasureSpec],
    dev: torch.device,
    budget: float,
    progress: bool = False,
) -> dict[str, np.ndarray]:
    """All pairs from the single-pair function: the engine's path for a family without a kernel.

    Every unordered pair of usable models, each model with itself included, is one call of
    ``spec(X, Y)`` (the registry's single-pair function, on the CPU in float64; ``dev`` and
    ``budget`` are not used). Measures are symmetric, so ``[b, a]`` is ``[a, b]``. A pair for which
    the measure is undefined is NaN, with one warning per measure.
    """
    M = len(ids)
    idx = np.flatnonzero(ok)
    pairs = [(int(a), int(b)) for i, a in enumerate(idx) for b in idx[i:]]
    out = {}
    for name, spec in specs.items():
        sim = np.full((M, M), np.nan)
        undefined: list[tuple[int, int, str]] = []
        for a, b in tqdm(pairs, desc=spec.name, disable=not progress, leave=False):
            try:
                sim[a, b] = sim[b, a] = spec(arrays[a], arrays[b])
            except UndefinedMeasureError as err:
                undefined.append((a, b, str(err)))
        if undefined:
            a, b, why = undefined[0]
            warn_nan(
                f"{spec.name} is undefined for {len(undefined)} model pair(s), first "
                f"({ids[a]!r}, {ids[b]!r}): {why}; their similarities are NaN"
            )
        out[name] = sim
    return out
