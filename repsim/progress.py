"""One progress bar for a whole run, over the tasks of the dask graph (in-process schedulers).

Per-model bars appear only for work that takes more than a couple of seconds (real models);
this bar shows the run as a whole: the share of its expected work done, the tasks done and to go,
and the name of the last finished task.

The tasks of a run are not alike: one extraction task runs every pending model over a dataset,
while dozens of bookkeeping tasks finish in microseconds. Counted as equal tasks, with tqdm's rate
of the latest ones, the bar said 5 hours at the start of the embedded run, which takes 3 minutes.
So the bar advances by each task's expected cost (given by the pipeline, which knows how many
models and images a task has), the remaining time is the average rate since the start applied to
the cost still to go, and it is shown only once :data:`ETA_AFTER` of the cost is done.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dask.callbacks import Callback
from tqdm import tqdm

#: the remaining time is shown once this share of the expected cost is done; before that the
#: rate is that of the first tasks (models loading, the first dataset), and the bar says "?"
ETA_AFTER = 0.1

_BAR = "{desc}: {percentage:3.0f}%|{bar}| {elapsed}<REMAINING{postfix}"
_WITH_ETA, _WITHOUT_ETA = _BAR.replace("REMAINING", "{remaining}"), _BAR.replace("REMAINING", "?")


def task_cost(models: int, images: int) -> float:
    """The expected cost of a task that runs ``models`` models over ``images`` images, in
    model-image passes: the unit :class:`TaskProgress` weighs the tasks of a run by."""
    return float(models * images)


class TaskProgress(Callback):
    """A tqdm bar advanced by every finished task of a ``dask.compute`` call, by its cost.

    ``costs``: expected cost of tasks by key (:func:`task_cost`); a task not listed costs
    nothing, and one whose result says it was found in the cache (``{"cached": True, ...}``)
    takes its cost off the total instead of advancing the bar. Without ``costs``, or when the listed tasks are not in the graph (all cached), every
    task counts one.
    """

    def __init__(self, desc: str, costs: Mapping[str, float] | None = None):
        super().__init__()
        self.desc = desc
        self.costs = dict(costs or {})
        self.bar: tqdm | None = None
        self.tasks, self.done = 0, 0

    def _start_state(self, dsk: Any, state: dict[str, Any]) -> None:
        keys = [k for s in ("ready", "waiting", "running", "finished") for k in state[s]]
        self.tasks = len(keys)
        if not sum(self.costs.get(str(k), 0.0) for k in keys):
            self.costs = {str(k): 1.0 for k in keys}
        total = sum(self.costs.get(str(k), 0.0) for k in keys)
        # smoothing 0: the remaining time from the average rate since the start, not the last
        # tasks' (an extraction, then a burst of instant ones)
        self.bar = tqdm(
            total=total,
            desc=self.desc,
            bar_format=_WITHOUT_ETA,
            smoothing=0,
            dynamic_ncols=True,
        )

    def _posttask(
        self, key: Any, result: Any, dsk: Any, state: dict[str, Any], worker_id: Any
    ) -> None:
        if self.bar is None:
            return
        self.done += 1
        cost = self.costs.get(str(key), 0.0)
        if isinstance(result, dict) and result.get("cached") is True and cost:
            # found in the cache: its cost was never work to do (a resumed run's cached datasets
            # filled the bar while a whole extraction was still ahead); the last costed task
            # still fills the bar
            if self.bar.total - cost > self.bar.n:
                self.bar.total -= cost
                cost = 0.0
        if self.bar.n + cost >= ETA_AFTER * self.bar.total:
            self.bar.bar_format = _WITH_ETA
        self.bar.set_postfix_str(f"{self.done}/{self.tasks} tasks, {str(key)[:40]}", refresh=False)
        self.bar.update(cost)

    def _finish(self, dsk: Any, state: dict[str, Any], errored: bool) -> None:
        if self.bar is not None:
            self.bar.close()
