"""Stimulus datasets: specs, loaders, stratified similarity subsets and the dataset check.

``open_dataset(spec)`` gives a :class:`StimulusSet` (aligned ids, labels, splits, lazy images);
``stimulus_table`` fixes which train images enter the similarity analysis, by stable id, so every
model sees the same rows; ``check_datasets(config)`` reports what is present before a run.
"""

from __future__ import annotations

from repsim.stimuli.check import check_datasets
from repsim.stimuli.open import open_dataset
from repsim.stimuli.spec import DOMAINS, DatasetSpec, parse_dataset, parse_datasets
from repsim.stimuli.stimset import StimulusSet
from repsim.stimuli.subset import similarity_subset, stimulus_table

__all__ = [
    "DOMAINS",
    "DatasetSpec",
    "StimulusSet",
    "check_datasets",
    "similarity_subset",
    "stimulus_table",
    "open_dataset",
    "parse_dataset",
    "parse_datasets",
]
