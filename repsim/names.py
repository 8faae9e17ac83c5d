"""The names every module agrees on: model metadata fields, dataset domains, category-pair labels.

Configs, result files (coords of ``similarity.nc``, ``probes.nc``, ``consistency.nc``), analyses
and the book all spell these the same way because they all import them from here. This module
imports nothing from the package, so any module may import it.
"""

from __future__ import annotations

import math

#: Fewest model pairs a consistency value needs in the tables, tests and comparisons of the book: a
#: Pearson r over 2 points is always +-1 (consistency.nc itself keeps category pairs with 2).
MIN_PAIRS = 3

#: Keys of a model spec's ``metadata:`` block in the configs (the result fields plus the
#: training data, the image tower's parameters where ``params_m`` counts more than the network
#: that is run (CLIP's text tower), the mini-zoo's seed and free-text notes); tests check the
#: shipped configs.
SPEC_METADATA_KEYS = (
    "objective",
    "method",
    "architecture_class",
    "architecture",
    "training_data",
    "data_class",
    "size_class",
    "params_m",
    "image_params_m",
    "embed_dim",
    "seed",
    "notes",
)

#: Model metadata carried as coords on the model dims of the result files (``<field>_a`` and
#: ``<field>_b`` on ``model_a``/``model_b`` in similarity.nc, ``<field>`` on ``model`` in
#: probes.nc), in this order.
MODEL_FIELDS = (
    "objective",
    "method",
    "architecture_class",
    "architecture",
    "data_class",
    "size_class",
    "params_m",
    "embed_dim",
)

#: Numeric model fields (NaN where unknown); the others are strings ('' where unknown).
NUMERIC_MODEL_FIELDS = ("params_m", "embed_dim")

#: Model fields that define category pairs: the groupings of consistency.nc, in this order.
CATEGORY_FIELDS = ("objective", "architecture_class", "data_class", "size_class")

#: Domain categories of the study's datasets, in the order the book shows them.
DOMAINS = ("Natural (multi-domain)", "Natural (single-domain)", "Specialized", "Structured")

#: Objectives that are controls (untrained, random-init models), not levels of the objective
#: factor: the controlled tests leave them out, and a description that spans them says so.
CONTROLS = ("Random",)

#: Separator of the two categories in a category-pair label, ``"A | B"``.
PAIR_SEP = " | "
#: The label (and ``group_by``) of the baseline over all model pairs in consistency.nc.
ALL = "all"
#: What the book shows for a model whose metadata field is missing.
UNKNOWN = "unknown"


def pair_label(a: str, b: str) -> str:
    """Order-free label of a category pair (``"A | B"``, sorted), as the book shows it."""
    return PAIR_SEP.join(sorted((str(a), str(b))))


def split_pair(label: str) -> list[str]:
    """The categories of a category-pair label (``"A | B"`` -> ``["A", "B"]``)."""
    return str(label).split(PAIR_SEP)


def is_same_pair(label: str) -> bool:
    """True for a category pair of one category, ``"A | A"``."""
    parts = split_pair(label)
    return len(parts) == 2 and parts[0] == parts[1]


def group_pair_label(group_by: str, a: str, b: str) -> str:
    """The ``group_pair`` coordinate of consistency.nc: ``"all"`` or ``"<field>: A | B"``."""
    return ALL if group_by == ALL else f"{group_by}: {a}{PAIR_SEP}{b}"


def anchor_partner_label(anchor: str, partner: str) -> str:
    """The ``anchor_partner`` coordinate of an anchor-partner consistency: ``"<anchor> | <c>"``."""
    return f"{anchor}{PAIR_SEP}{partner}"


def is_known(value: object) -> bool:
    """False for the empty, NaN or placeholder values that runs write for missing metadata."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return False
    return str(value).strip() not in ("", "nan", "None", "?", UNKNOWN)
