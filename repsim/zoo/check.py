"""``repsim models --check``: build every model offline on the meta device and check its dims.

On the meta device parameters have shapes but no storage, so building a 1B-parameter model
costs no memory and a forward pass costs no arithmetic: a config of 64 models checks in
seconds, without any weights, and reports the embedding dim at each configured tap.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

from repsim.config import load_config
from repsim.zoo.registry import load_model, parse_models
from repsim.zoo.spec import ModelSpec
from repsim.zoo.taps import FeatureExtractor

log = logging.getLogger(__name__)


def _config(config: Any) -> Mapping[str, Any]:
    if isinstance(config, Mapping):
        return config
    return load_config(Path(config))


def probe_spec(spec: ModelSpec) -> tuple[int, str]:
    """(embedding dim, tapped layer) of ``spec``, found by a forward pass on the meta device."""
    loaded = load_model(spec, pretrained=False, device="meta")
    extractor = FeatureExtractor(loaded, spec)
    size = loaded.preprocess.crop
    with torch.no_grad():
        out = extractor(torch.empty(1, 3, size, size, device="meta"))
    return int(out.shape[1]), extractor.layer or "(output)"


def _table(rows: list[list[str]], header: list[str]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = lambda r: "  ".join(str(c).ljust(w) for c, w in zip(r, widths))  # noqa: E731
    return "\n".join([line(header), line(["-" * w for w in widths]), *map(line, rows)])


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def check_models(config: Any) -> tuple[str, bool]:
    """Check every model of ``config`` (a path or a loaded config); return (table, all_ok).

    A row is ``ok`` when the model builds offline and its tap gives the ``metadata.embed_dim``
    of the config. Errors (a missing optional package, a bad layer name) are written in the row.
    """
    specs = parse_models(_config(config).get("models"))
    rows, ok_all = [], True
    start = time.perf_counter()
    for spec in specs:
        expected = spec.embed_dim
        try:
            with _quiet_root_logger():  # open_clip warns "no pretrained weights" on purpose here
                dim, layer = probe_spec(spec)
            ok = expected is None or dim == expected
            status = "ok" if ok else "dim mismatch"
        except Exception as exc:  # one bad model must not hide the others
            dim, layer, ok = "-", spec.layer or "-", False
            status = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
        ok_all &= ok
        rows.append([spec.id, spec.loader, str(dim), str(expected if expected is not None else "-"), layer, status])
    n_ok = sum(r[-1] == "ok" for r in rows)
    table = _table(rows, ["id", "loader", "dim", "expected", "layer", "status"])
    summary = f"\n{n_ok}/{len(rows)} models ok ({time.perf_counter() - start:.1f} s, meta device, no weights)"
    return table + summary, ok_all and bool(rows)


def list_models(config: Any) -> str:
    """A table of the models of ``config`` with their metadata (nothing is built)."""
    specs = parse_models(_config(config).get("models"))
    keys = ["objective", "architecture_class", "data_class", "size_class", "embed_dim"]
    rows = [[s.id, s.loader, s.identifier, *(str(s.metadata.get(k, "-")) for k in keys)] for s in specs]
    return _table(rows, ["id", "loader", "identifier", *keys])
