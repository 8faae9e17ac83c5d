"""The measure registry: every measure family declared once, with its names, parameters and facts.

A *family* (:class:`MeasureFamily`) is one entry of :data:`FAMILIES`: the pattern of its names, how a
name becomes parameters and facts (a :class:`MeasureSpec`), the single-pair function
``f(X, Y, **params) -> float``, and optionally a batched kernel that computes all model pairs at
once. Everything else reads the registry: :func:`parse_measure` resolves a name from a config or a
result file, the engine (:func:`repsim.measures.similarity_matrices`) runs a family's batched kernel
or, without one, calls the single-pair function for every pair; the benchmark times the same
single-pair functions; the tests check every kernel against its function and every declared
invariance. Adding a measure is one :func:`register_measure` call (see CONTRIBUTING.md).

Grammar of names
----------------
``cka_linear[_biased]``                    linear CKA, unbiased (U-statistic HSIC) unless ``_biased``
``cka_rbf_<sigma>[_biased]``               RBF CKA with an absolute bandwidth ``sigma`` (the study)
``cka_rbf_median_<sigma>[_biased]``        RBF CKA, bandwidth ``sigma`` x median pairwise distance
``rsa_spearman`` / ``rsa_pearson``         correlation-distance RDMs compared by Spearman / Pearson
``mutual_knn_<k>``                         mutual k-nearest-neighbour alignment
``procrustes`` / ``procrustes_angular``    orthogonal Procrustes similarity / its angular form
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from repsim.errors import InputError
from repsim.measures import batched
from repsim.measures.cka import cka
from repsim.measures.knn import mutual_knn
from repsim.measures.procrustes import procrustes
from repsim.measures.rsa import rsa

# Invariance vocabulary (tests apply the matching transform to both inputs or to one):
#   orthogonal          X -> X Q for an orthogonal Q (applied to one input only)
#   feature_permutation X -> X P for a permutation P of the feature columns
#   isotropic_scaling   X -> c X, c > 0
#   translation         X -> X + 1 b' (the same vector added to every stimulus)
#   stimulus_permutation  the same permutation of rows applied to X and Y
INVARIANCES = (
    "orthogonal",
    "feature_permutation",
    "isotropic_scaling",
    "translation",
    "stimulus_permutation",
)


@dataclass(frozen=True)
class MeasureSpec:
    """One parsed measure: what to call, with which options, and what is known about it.

    Attributes
    ----------
    name : canonical name, e.g. ``"cka_rbf_0.4"``.
    family : name of its :class:`MeasureFamily` in :data:`FAMILIES` (``"cka"``, ``"rsa"``, ...).
    params : keyword arguments of the single-pair function of the family.
    larger_is_more_similar : direction of the score.
    invariances : subset of :data:`INVARIANCES` the measure is exactly invariant to.
    min_n : smallest number of stimuli for which the measure is defined and can differ between
        inputs (procrustes at n = 2 and mutual_knn_k at n = k + 1 are 1 whatever the features).
    bounds : range of the score (unbiased CKA can dip slightly below 0).
    """

    name: str
    family: str
    params: Mapping[str, Any] = field(default_factory=dict)
    larger_is_more_similar: bool = True
    invariances: frozenset[str] = frozenset()
    min_n: int = 2
    bounds: tuple[float, float] = (-1.0, 1.0)
    description: str = ""

    @property
    def function(self) -> Callable[..., float]:
        """The single-pair function ``f(X, Y, **params) -> float`` of this measure's family."""
        return get_family(self.family).function

    def __call__(self, X: Any, Y: Any) -> float:
        """Compute the measure for one pair of representations."""
        return self.function(X, Y, **self.params)


#: A batched all-pairs kernel: ``(ids, arrays, ok, specs, device, budget_bytes, progress)`` ->
#: ``{measure name: (M, M) float64 array}`` for every spec of its family (see ``batched.py``).
BatchedKernel = Callable[..., dict[str, np.ndarray]]


@dataclass(frozen=True)
class MeasureFamily:
    """One family of measures, declared once: names, parameters, facts and how to compute it.

    Attributes
    ----------
    name : the family's name, the ``family`` of its specs (``"cka"``).
    pattern : regular expression a whole measure name must match; its named groups are the
        parameters ``spec`` reads.
    spec : ``match -> MeasureSpec``: the canonical name, the parameters of ``function`` and the facts
        (invariances, ``min_n``, bounds, direction); raises :class:`InputError` for bad values.
    function : the single-pair function ``f(X, Y, **params) -> float``, the definition of the
        measure and the public function (``repsim.cka``, ...); symmetric in X and Y, raising
        :class:`~repsim.errors.UndefinedMeasureError` where the measure is undefined.
    batched : optional all-pairs kernel (:data:`BatchedKernel`); without one the engine calls
        ``function`` for every pair (correct, slower).
    grammar : how names are written, for error messages and docs.
    examples : valid names, several per family: the generic tests run on them.
    too_few_stimuli : the fix an error suggests when n < ``min_n``.
    """

    name: str
    pattern: str
    spec: Callable[[re.Match[str]], MeasureSpec]
    function: Callable[..., float]
    grammar: str
    examples: tuple[str, ...]
    batched: BatchedKernel | None = None
    too_few_stimuli: str = "use more stimuli"

    def match(self, name: str) -> re.Match[str] | None:
        """The match of ``name`` against this family's pattern (whole name), or None."""
        return re.fullmatch(self.pattern, name)


_FAMILIES: dict[str, MeasureFamily] = {}
#: Registered families by name, in registration order (read-only; add with :func:`register_measure`).
FAMILIES: Mapping[str, MeasureFamily] = MappingProxyType(_FAMILIES)


def register_measure(family: MeasureFamily) -> MeasureFamily:
    """Add a measure family to the registry; every name it matches becomes a valid measure.

    Raises :class:`InputError` if the family's name is taken, or if one of its ``examples`` is not
    one of its names, or an example of one family is a name of the other (names must resolve to
    one family).
    """
    if family.name in _FAMILIES:
        raise InputError(
            f"a measure family {family.name!r} is already registered; choose another family name"
        )
    if not family.examples:
        raise InputError(f"measure family {family.name!r}: give at least one example name")
    for example in family.examples:
        if family.match(example) is None:
            raise InputError(
                f"measure family {family.name!r}: example {example!r} does not match its pattern "
                f"{family.pattern!r}; fix the pattern or the example"
            )
    for other in _FAMILIES.values():
        for a, b in ((family, other), (other, family)):
            clash = next((e for e in a.examples if b.match(e) is not None), None)
            if clash is not None:
                raise InputError(
                    f"measure family {family.name!r}: {clash!r} is a name of both {a.name!r} and "
                    f"{b.name!r}; make the patterns disjoint (e.g. a distinct prefix)"
                )
    _FAMILIES[family.name] = family
    return family


def get_family(name: str) -> MeasureFamily:
    """The registered family called ``name``; :class:`InputError` listing the families if none."""
    try:
        return _FAMILIES[name]
    except KeyError:
        raise InputError(
            f"no measure family {name!r}; registered families: {', '.join(_FAMILIES)}"
        ) from None


def grammar() -> str:
    """How valid measure names are written, one clause per registered family."""
    return ", ".join(f.grammar for f in _FAMILIES.values())


def parse_measure(name: str) -> MeasureSpec:
    """Parse a measure name into a :class:`MeasureSpec`; raise :class:`InputError` if unknown."""
    if not isinstance(name, str):
        raise InputError(f"a measure name must be a string, got {name!r}; valid names: {grammar()}")
    for family in _FAMILIES.values():
        m = family.match(name)
        if m is not None:
            return family.spec(m)
    raise InputError(f"unknown measure {name!r}; valid names: {grammar()}")


def parse_measures(names: Iterable[str]) -> dict[str, MeasureSpec]:
    """Parse several measure names, each as written (a name repeated counts once).

    Two spellings of one measure (``cka_rbf_0.4`` and ``cka_rbf_0.40``, ``mutual_knn_010`` and
    ``mutual_knn_10``) are an :class:`InputError` naming both: both would be computed, under two
    labels, and every analysis would count the one measure twice.
    """
    specs: dict[str, MeasureSpec] = {}
    seen: dict[tuple[Any, ...], str] = {}
    for name in dict.fromkeys(names):
        spec = parse_measure(name)
        key = (spec.family, tuple(sorted(spec.params.items())))
        if key in seen:
            raise InputError(
                f"{seen[key]!r} and {name!r} are two spellings of one measure ({spec.name}); "
                "list it once"
            )
        seen[key] = name
        specs[name] = spec
    return specs


def _fmt(x: float) -> str:
    return format(x, "g")


# ------------------------------------------------------------------------ the built-in families


def _cka_spec(m: re.Match[str]) -> MeasureSpec:
    kernel, biased = m["kernel"], bool(m["biased"])
    suffix = "_biased" if biased else ""
    inv = {"orthogonal", "feature_permutation", "translation", "stimulus_permutation"}
    params: dict[str, Any] = {"kernel": kernel, "unbiased": not biased}
    if kernel == "linear":
        if m["median"] or m["sigma"]:
            raise InputError(
                f"measure {m.string!r}: the linear kernel takes no bandwidth; use cka_linear"
            )
        name = "cka_linear" + suffix
        inv.add("isotropic_scaling")
        desc = "linear CKA"
    else:
        if m["sigma"] is None:
            example = "cka_rbf_median_1 (1 x the median distance)" if m["median"] else "cka_rbf_0.4"
            raise InputError(f"measure {m.string!r}: give the RBF bandwidth, e.g. {example}")
        sigma = float(m["sigma"])
        width = 2.0 * sigma * sigma  # the kernel divides squared distances by it
        if not (sigma > 0 and math.isfinite(width) and width >= sys.float_info.min):
            raise InputError(
                f"measure {m.string!r}: sigma must be > 0 and its square a finite, non-zero "
                f"float (about 1e-150 to 1e150), got {m['sigma']}"
            )
        mode = "median" if m["median"] else "absolute"
        params.update(sigma=sigma, sigma_mode=mode)
        if mode == "median":
            inv.add("isotropic_scaling")
            name = f"cka_rbf_median_{_fmt(sigma)}{suffix}"
            desc = f"RBF CKA, bandwidth {_fmt(sigma)} x median distance"
        else:
            name = f"cka_rbf_{_fmt(sigma)}{suffix}"
            desc = f"RBF CKA, absolute bandwidth {_fmt(sigma)}"
    return MeasureSpec(
        name=name,
        family="cka",
        params=params,
        invariances=frozenset(inv),
        min_n=3 if biased else 4,
        bounds=(0.0, 1.0) if biased else (-1.0, 1.0),
        description=("biased " if biased else "unbiased ") + desc,
    )


def _rsa_spec(m: re.Match[str]) -> MeasureSpec:
    compare = m["compare"]
    return MeasureSpec(
        name=m.string,
        family="rsa",
        params={"rdm": "correlation", "compare": compare},
        invariances=frozenset({"isotropic_scaling", "feature_permutation", "stimulus_permutation"}),
        min_n=3,
        bounds=(-1.0, 1.0),
        description=f"RSA: 1 - Pearson correlation RDMs, upper triangles compared by {compare}",
    )


def _knn_spec(m: re.Match[str]) -> MeasureSpec:
    k = int(m["k"])
    if k < 1:
        raise InputError(f"measure {m.string!r}: k must be >= 1, e.g. mutual_knn_10")
    return MeasureSpec(
        name=m.string,
        family="mutual_knn",
        params={"k": k},
        invariances=frozenset(
            {"orthogonal", "feature_permutation", "isotropic_scaling", "stimulus_permutation"}
        ),
        min_n=k + 2,  # at n = k + 1 every stimulus's k neighbours are all the others: always 1
        bounds=(0.0, 1.0),
        description=f"mutual {k}-NN alignment (cosine neighbourhoods)",
    )


def _procrustes_spec(m: re.Match[str]) -> MeasureSpec:
    angular = bool(m["angular"])
    return MeasureSpec(
        name=m.string,
        family="procrustes",
        params={"angular": angular},
        invariances=frozenset(INVARIANCES),
        min_n=3,  # two centred points differ only by a rotation and a scale: always 1
        bounds=(0.0, 1.0),
        description=(
            "angular Procrustes similarity 1 - 2 arccos(|X'Y|_*) / pi (Williams et al. 2021)"
            if angular
            else "orthogonal Procrustes similarity |X'Y|_* = 1 - d^2 / 2 (Ding et al. 2021)"
        ),
    )


register_measure(
    MeasureFamily(
        name="cka",
        pattern=r"cka_(?P<kernel>linear|rbf)(?:_(?P<median>median))?"
        r"(?:_(?P<sigma>[0-9]*\.?[0-9]+(?:e-?[0-9]+)?))?(?P<biased>_biased)?",
        spec=_cka_spec,
        function=cka,
        batched=batched.cka_all,
        grammar="cka_linear, cka_linear_biased, cka_rbf_<sigma> (absolute bandwidth, e.g. "
        "cka_rbf_0.4), cka_rbf_median_<sigma> (sigma x median distance), any CKA name + '_biased'",
        examples=(
            "cka_linear",
            "cka_linear_biased",
            "cka_rbf_0.4",
            "cka_rbf_0.8_biased",
            "cka_rbf_median_0.7",
            "cka_rbf_median_0.5_biased",
        ),
    )
)
register_measure(
    MeasureFamily(
        name="rsa",
        pattern=r"rsa_(?P<compare>spearman|pearson)",
        spec=_rsa_spec,
        function=rsa,
        batched=batched.rsa_all,
        grammar="rsa_spearman, rsa_pearson",
        examples=("rsa_spearman", "rsa_pearson"),
    )
)
register_measure(
    MeasureFamily(
        name="mutual_knn",
        pattern=r"mutual_knn_(?P<k>[0-9]+)",
        spec=_knn_spec,
        function=mutual_knn,
        batched=batched.knn_all,
        grammar="mutual_knn_<k> (e.g. mutual_knn_10)",
        examples=("mutual_knn_1", "mutual_knn_3", "mutual_knn_10"),
        too_few_stimuli="lower k",
    )
)
register_measure(
    MeasureFamily(
        name="procrustes",
        pattern=r"procrustes(?P<angular>_angular)?",
        spec=_procrustes_spec,
        function=procrustes,
        grammar="procrustes, procrustes_angular",
        examples=("procrustes", "procrustes_angular"),
    )
)


#: How the names of the built-in families are written (see :func:`grammar` for all registered ones).
GRAMMAR = grammar()


class _Registry(Mapping[str, MeasureSpec]):
    """Mapping of measure names to specs: lists the run's default measures (the study's and this
    package's additions), resolves any valid name."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self._names = names

    def __getitem__(self, name: str) -> MeasureSpec:
        try:
            return parse_measure(name)
        except InputError as err:
            raise KeyError(str(err)) from None

    def __contains__(self, name: object) -> bool:
        try:
            parse_measure(name)  # type: ignore[arg-type]
        except InputError:
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"MEASURES({', '.join(self._names)}; any name of the grammar: {grammar()})"


#: The default measures (iteration order): the study's (unbiased linear CKA, unbiased RBF CKA with
#: sigma 0.2 to 0.8, RSA with Spearman and Pearson) and this package's additions (biased linear CKA,
#: RBF CKA with a median-relative bandwidth, mutual kNN); ``MEASURES[name]`` also resolves any
#: other valid name.
MEASURES: Mapping[str, MeasureSpec] = _Registry(
    (
        "cka_linear",
        "cka_linear_biased",
        "cka_rbf_0.2",
        "cka_rbf_0.4",
        "cka_rbf_0.6",
        "cka_rbf_0.8",
        "cka_rbf_median_0.4",
        "rsa_spearman",
        "rsa_pearson",
        "mutual_knn_10",
    )
)
