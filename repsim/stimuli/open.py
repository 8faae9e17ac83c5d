"""``open_dataset``: dispatch a spec to its registered loader and check the result."""

from __future__ import annotations

import logging

from repsim.errors import DatasetError
from repsim.stimuli.loaders import get_loader
from repsim.stimuli.spec import DatasetSpec
from repsim.stimuli.stimset import StimulusSet

log = logging.getLogger(__name__)


def open_dataset(spec: DatasetSpec) -> StimulusSet:
    """Open a dataset: ids, labels, splits and lazy images, with unreadable items in ``skipped``.

    Raises DatasetError when the data are absent or unusable (the message says how to get them).
    With ``options: {verify: full}`` every image is decoded once here, so unreadable files are
    skipped now rather than failing later in ``load_images``.
    """
    stimset = get_loader(spec.loader)(spec)
    if len(stimset) == 0:
        raise DatasetError(
            f"dataset '{spec.id}': no usable images at {spec.location}; check the path and layout"
        )
    if spec.options.get("verify", "header") == "full":
        stimset = stimset.verify()
    if spec.n_classes is not None and spec.n_classes != stimset.n_classes:
        log.warning(
            "dataset '%s': config says %d classes, data have %d",
            spec.id,
            spec.n_classes,
            stimset.n_classes,
        )
    empty = [c for c, n in zip(stimset.class_names, stimset.counts()) if n == 0]
    if empty:
        log.warning("dataset '%s': %d classes have no images: %s", spec.id, len(empty), empty[:10])
    if stimset.skipped:
        log.warning(
            "dataset '%s': skipped %d unreadable items (listed in StimulusSet.skipped)",
            spec.id,
            len(stimset.skipped),
        )
    return stimset
