"""One progress bar for a whole run, over the tasks of the dask graph (in-process schedulers).

Per-model bars appear only for work that takes more than a couple of seconds (real models);
this bar shows the run as a whole: tasks done, tasks to go, and the name of the last finished task.
"""

from __future__ import annotations

from typing import Any

from dask.callbacks import Callback
from tqdm import tqdm


class TaskProgress(Callback):
    """A tqdm bar advanced by every finished task of a ``dask.compute`` call."""

    def __init__(self, desc: str):
        super().__init__()
        self.desc = desc
        self.bar: tqdm | None = None

    def _start_state(self, dsk: Any, state: dict[str, Any]) -> None:
        total = sum(len(state[k]) for k in ("ready", "waiting", "running", "finished"))
        self.bar = tqdm(total=total, desc=self.desc, unit="task", dynamic_ncols=True)

    def _posttask(
        self, key: Any, result: Any, dsk: Any, state: dict[str, Any], worker_id: Any
    ) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(str(key)[:40], refresh=False)
            self.bar.update(1)

    def _finish(self, dsk: Any, state: dict[str, Any], errored: bool) -> None:
        if self.bar is not None:
            self.bar.close()
