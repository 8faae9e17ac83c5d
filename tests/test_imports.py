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


def _declared_distributions() -> set[str]:
    """Normalised names of every distribution pyproject.toml declares (dependencies and extras)."""
    import re
    import tomllib
    from pathlib import Path

    project = tomllib.loads((Path(repsim.__file__).parents[1] / "pyproject.toml").read_text())[
        "project"
    ]
    specs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        specs += extra
    return {re.split(r"[<>=!~;\[ ]", s, maxsplit=1)[0].lower().replace("_", "-") for s in specs}


def test_every_third_party_import_of_the_package_is_declared() -> None:
    """A module imported by repsim that arrives only through another package's dependencies
    breaks the day that package drops it: each must be named in pyproject.toml."""
    import ast
    import importlib.metadata
    from pathlib import Path

    root = Path(repsim.__file__).parent
    imported: dict[str, str] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                imported.setdefault(name.split(".")[0], str(path.relative_to(root.parent)))
    dists = importlib.metadata.packages_distributions()
    declared = _declared_distributions()
    missing = {
        top: (where, dists[top])
        for top, where in imported.items()
        if top in dists
        and top not in sys.stdlib_module_names
        and top != "repsim"
        and not {d.lower().replace("_", "-") for d in dists[top]} & declared
    }
    assert imported.keys() & dists.keys() >= {"numpy", "torch", "IPython"}  # the scan sees them
    assert missing == {}, f"imported but not declared in pyproject.toml: {missing}"


def test_every_error_class_is_defined_and_listed_in_repsim_errors() -> None:
    """One place to look for what repsim raises (and to catch it): no module defines its own."""
    import importlib
    import inspect
    import pkgutil

    import repsim.errors

    found = {}
    for info in pkgutil.walk_packages(repsim.__path__, "repsim."):
        if info.name.endswith("__main__"):
            continue  # running it would start the command line
        module = importlib.import_module(info.name)
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, repsim.errors.RepsimError):
                found[name] = obj.__module__
    assert {"RunFolderError", "RunFailedError", "BookError", "NoSpaceError"} <= set(found)
    assert {name: m for name, m in found.items() if m != "repsim.errors"} == {}
    assert set(found) <= set(repsim.errors.__all__)
