"""Reading a run's results must not pay for torch: the chapters import only what they call."""

from __future__ import annotations

import subprocess
import sys

import pytest

import repsim
import repsim.measures


def test_chapter_imports_do_not_load_torch() -> None:
    code = (
        "import sys\n"
        "import repsim, repsim.chapter, repsim.plots, repsim.stats, repsim.sentences\n"
        "from repsim.measures import cka, rsa, procrustes\n"
        "from repsim.chapter import A, C, P, T, display, say, setup\n"
        "print(sorted(m for m in sys.modules if m == 'torch' or m.startswith('torch.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stdout[:500]


@pytest.mark.parametrize("module", [repsim, repsim.measures], ids=lambda m: m.__name__)
def test_every_public_name_resolves(module) -> None:
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        module.not_a_name  # noqa: B018


def test_lazy_measures_names_are_the_defining_modules_objects() -> None:
    from repsim.measures import engine, knn, registry

    assert repsim.measures.MEASURES is registry.MEASURES
    assert repsim.measures.parse_measure is registry.parse_measure
    assert repsim.measures.similarity_matrices is engine.similarity_matrices
    assert repsim.measures.mutual_knn is knn.mutual_knn
    assert callable(repsim.measures.cka) and repsim.measures.cka.__module__ == "repsim.measures.cka"
