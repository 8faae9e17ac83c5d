"""The measure registry: names, parameters and facts about each measure as data.

A measure name in a config or a result file (``cka_linear``, ``cka_rbf_0.4``, ``rsa_spearman``,
``mutual_knn_10``) parses into a :class:`MeasureSpec`. The spec carries the parameters of the
single-pair function and the facts tests and plots need (direction, invariances, minimum number
of stimuli), so nothing downstream hard-codes them.

Grammar of names
----------------
``cka_linear[_biased]``                    linear CKA, unbiased (U-statistic HSIC) unless ``_biased``
``cka_rbf_<sigma>[_biased]``               RBF CKA with an absolute bandwidth ``sigma`` (the study)
``cka_rbf_median_<sigma>[_biased]``        RBF CKA, bandwidth ``sigma`` x median pairwise distance
``rsa_spearman`` / ``rsa_pearson``         correlation-distance RDMs compared by Spearman / Pearson
``mutual_knn_<k>``                         mutual k-nearest-neighbour alignment
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from repsim.errors import InputError

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
    family : ``"cka"``, ``"rsa"`` or ``"mutual_knn"``.
    params : keyword arguments of the single-pair function of the family.
    larger_is_more_similar : direction of the score.
    invariances : subset of :data:`INVARIANCES` the measure is exactly invariant to.
    min_n : smallest number of stimuli for which the measure is defined.
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
        """The single-pair function ``f(X, Y, **params) -> float`` of this measure."""
        from repsim.measures import cka, mutual_knn, rsa

        return {"cka": cka, "rsa": rsa, "mutual_knn": mutual_knn}[self.family]

    def __call__(self, X: Any, Y: Any) -> float:
        """Compute the measure for one pair of representations."""
        return self.function(X, Y, **self.params)


_CKA = re.compile(
    r"^cka_(?P<kernel>linear|rbf)(?:_(?P<median>median))?(?:_(?P<sigma>[0-9]*\.?[0-9]+(?:e-?[0-9]+)?))?(?P<biased>_biased)?$"
)
_RSA = re.compile(r"^rsa_(?P<compare>spearman|pearson)$")
_KNN = re.compile(r"^mutual_knn_(?P<k>[0-9]+)$")

GRAMMAR = (
    "cka_linear, cka_linear_biased, cka_rbf_<sigma> (absolute bandwidth, e.g. cka_rbf_0.4), "
    "cka_rbf_median_<sigma> (sigma x median distance), any CKA name + '_biased', "
    "rsa_spearman, rsa_pearson, mutual_knn_<k> (e.g. mutual_knn_10)"
)


def _fmt(x: float) -> str:
    return format(x, "g")


def parse_measure(name: str) -> MeasureSpec:
    """Parse a measure name into a :class:`MeasureSpec`; raise :class:`InputError` if unknown."""
    if not isinstance(name, str):
        raise InputError(f"a measure name must be a string, got {name!r}; valid names: {GRAMMAR}")
    m = _CKA.match(name)
    if m:
        return _cka_spec(m)
    m = _RSA.match(name)
    if m:
        compare = m["compare"]
        return MeasureSpec(
            name=name,
            family="rsa",
            params={"rdm": "correlation", "compare": compare},
            invariances=frozenset(
                {"isotropic_scaling", "feature_permutation", "stimulus_permutation"}
            ),
            min_n=3,
            bounds=(-1.0, 1.0),
            description=f"RSA: 1 - Pearson correlation RDMs, upper triangles compared by {compare}",
        )
    m = _KNN.match(name)
    if m:
        k = int(m["k"])
        if k < 1:
            raise InputError(f"measure {name!r}: k must be >= 1, e.g. mutual_knn_10")
        return MeasureSpec(
            name=name,
            family="mutual_knn",
            params={"k": k},
            invariances=frozenset(
                {"orthogonal", "feature_permutation", "isotropic_scaling", "stimulus_permutation"}
            ),
            min_n=k + 1,
            bounds=(0.0, 1.0),
            description=f"mutual {k}-NN alignment (cosine neighbourhoods)",
        )
    raise InputError(f"unknown measure {name!r}; valid names: {GRAMMAR}")


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
            raise InputError(f"measure {m.string!r}: give the RBF bandwidth, e.g. cka_rbf_0.4")
        sigma = float(m["sigma"])
        if not sigma > 0:
            raise InputError(f"measure {m.string!r}: sigma must be > 0")
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


class _Registry(Mapping[str, MeasureSpec]):
    """Mapping of measure names to specs: lists the study's measures, resolves any valid name."""

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
        return f"MEASURES({', '.join(self._names)}; any name of the grammar: {GRAMMAR})"


#: The study's measures (iteration order); ``MEASURES[name]`` also resolves any other valid name.
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
