"""repsim: representational similarity of vision models across stimulus datasets.

The public API is re-exported here lazily, so ``import repsim`` stays cheap and a notebook can
``import repsim`` without paying for torch until a measure is used.
"""

from __future__ import annotations

from repsim._lazy import lazy_exports
from repsim.errors import (
    ConfigError,
    DatasetError,
    InputError,
    MissingWeightsError,
    ModelError,
    RepsimError,
    RunFailedError,
    RunFolderError,
    StoreError,
    UndefinedMeasureError,
)

__version__ = "0.1.0"

# Imported eagerly: the module shares its name with its main function, and a lazy export would be
# shadowed by the submodule as soon as anything imports ``repsim.consistency``.
from repsim.consistency import anchor_consistency, consistency, grouped_consistency  # noqa: E402

# public name -> module that defines it
_LAZY = {
    "cka": "repsim.measures",
    "rsa": "repsim.measures",
    "mutual_knn": "repsim.measures",
    "procrustes": "repsim.measures",
    "similarity_matrix": "repsim.measures",
    "MEASURES": "repsim.measures",
    "similarity_matrices": "repsim.measures",
    "consistency_dataset": "repsim.consistency",
    "to_tidy": "repsim.consistency",
    "linear_probe": "repsim.probe",
    "ProbeResult": "repsim.probe",
    "pair_table": "repsim.behavior",
    "behavior_correlation": "repsim.behavior",
    "behavior_link_test": "repsim.behavior",
    "correlation_by_domain": "repsim.behavior",
    "open_dataset": "repsim.stimuli",
    "stimulus_table": "repsim.stimuli",
    "extract_features": "repsim.extract",
    "FeatureStore": "repsim.store",
    "load_model": "repsim.zoo",
    "load_config": "repsim.config",
    "run": "repsim.pipeline",
    "load_run": "repsim.chapter",
    "lesson_run": "repsim.chapter",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals())


__all__ = [
    "RepsimError",
    "ConfigError",
    "InputError",
    "UndefinedMeasureError",
    "DatasetError",
    "ModelError",
    "MissingWeightsError",
    "StoreError",
    "RunFolderError",
    "RunFailedError",
    "consistency",
    "grouped_consistency",
    "anchor_consistency",
    *_LAZY,
]
