"""The run's progress bar: weighed by the tasks' expected cost, with no remaining time guessed from
the first tasks alone (it said 5 hours at the start of a 3-minute run). A fake clock stands in for
tqdm's, so every time the bar shows is exact."""

from __future__ import annotations

from pathlib import Path

import pytest

from repsim.progress import ETA_AFTER, TaskProgress, task_cost


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock(monkeypatch) -> Clock:
    c = Clock()
    monkeypatch.setattr("tqdm.std.time", c)
    return c


def _start(bar: TaskProgress, keys: list[str]) -> None:
    bar._start_state({}, {"ready": keys[:1], "waiting": keys[1:], "running": [], "finished": []})


def _done(bar: TaskProgress, key: str) -> None:
    bar._posttask(key, None, {}, {}, 0)


def test_no_remaining_time_is_shown_from_the_first_slow_task_of_many(clock):
    """One task of 100 done in 37 s (models loading): tqdm alone extrapolated that to an hour;
    the bar says "?" until a tenth of the work is done, then the average rate since the start."""
    keys = [f"t{i}" for i in range(100)]
    bar = TaskProgress("run")
    _start(bar, keys)
    clock.t = 37.0
    _done(bar, keys[0])
    assert "00:37<?" in str(bar.bar)
    for k in keys[1:10]:
        _done(bar, k)
    clock.t = 100.0
    bar.bar.refresh()
    assert "10/100 tasks" in str(bar.bar)
    assert "01:40<15:00" in str(bar.bar)  # 90 tasks to go at 10 tasks per 100 s
    bar._finish({}, {}, False)


def test_the_bar_advances_by_each_tasks_cost_not_by_the_task_count(clock):
    """An extraction of 9 model-image passes of 10 counts nine tenths of the run; the bookkeeping
    tasks around it count nothing, however many they are."""
    keys = ["decode-a", "extract-a", *[f"features-a-m{i}" for i in range(40)], "similarity-a"]
    bar = TaskProgress("run", {"extract-a": 9.0, "similarity-a": 1.0})
    _start(bar, keys)
    assert bar.bar.total == 10.0
    clock.t = 1.0
    _done(bar, "decode-a")
    assert bar.bar.n == 0 and "<?" in str(bar.bar)
    clock.t = 90.0
    _done(bar, "extract-a")
    for k in keys[2:-1]:
        _done(bar, k)
    bar.bar.refresh()
    assert bar.bar.n == 9.0
    assert " 90%|" in str(bar.bar)
    assert "01:30<00:10" in str(bar.bar)  # the last tenth at the average rate since the start
    bar._finish({}, {}, False)


def test_a_graph_with_none_of_the_costed_tasks_counts_its_tasks(clock):
    """All work cached: the costed tasks are not in the graph, and each task counts one."""
    bar = TaskProgress("run", {"extract-a": 9.0})
    _start(bar, ["similarity-a", "decode-status-a"])
    assert bar.bar.total == 2
    bar._finish({}, {}, False)


def test_the_remaining_time_waits_for_the_share_of_the_cost_its_constant_says(clock):
    keys = ["a", "b"]
    bar = TaskProgress("run", {"a": ETA_AFTER * 0.99, "b": 1 - ETA_AFTER * 0.99})
    _start(bar, keys)
    clock.t = 5.0
    _done(bar, "a")
    assert "<?" in str(bar.bar)
    bar._finish({}, {}, False)


@pytest.mark.slow
def test_the_runs_bar_weighs_extraction_by_models_and_images(
    tiny_config: Path, tmp_path: Path, monkeypatch
):
    """The pipeline gives the bar the cost of its extraction, similarity and probe tasks."""
    import repsim.pipeline as P
    from repsim.plan import load_plan
    from repsim.runfolder import RunFolder

    seen: dict[str, float] = {}

    class Spy(TaskProgress):
        def __init__(self, desc, costs=None):
            super().__init__(desc, costs)
            seen.update(costs or {})

    monkeypatch.setattr(P, "TaskProgress", Spy)
    monkeypatch.setattr(P, "_probe_pool_possible", lambda *args: False)
    P.run(tiny_config, tmp_path / "run", device="cpu")
    plan = load_plan(tiny_config)
    stimuli = RunFolder(tmp_path / "run").read_info()["stimuli"]
    for ds in plan.datasets:
        n_total, n_sim = stimuli[ds.id]["n_total"], stimuli[ds.id]["n_similarity"]
        assert seen[f"extract-{ds.id}"] == task_cost(len(plan.models), n_total)
        assert seen[f"similarity-{ds.id}"] == task_cost(len(plan.models), n_sim)
        for m in plan.models:
            assert seen[f"probe-{ds.id}-{m.id}"] == task_cost(1, n_total)


def test_a_task_found_in_the_cache_takes_its_cost_off_the_total(clock):
    """A resumed run: nine datasets' similarity found in the cache in a second, one extraction
    still to run. Counted as done, the bar stood at 83% with the whole extraction ahead; taken
    off the total, it stays at 0% until work is done, and the last costed task fills it."""
    sims = [f"similarity-d{i}" for i in range(9)]
    costs = {"extract-new": 45.0, "similarity-new": 45.0, **dict.fromkeys(sims, 45.0)}
    bar = TaskProgress("run", costs)
    _start(bar, [*sims, "extract-new", "similarity-new"])
    assert bar.bar.total == 11 * 45.0
    clock.t = 1.0
    for key in sims:
        bar._posttask(key, {"cached": True, "seconds": 0.0}, {}, {}, 0)
    assert bar.bar.n == 0 and bar.bar.total == 2 * 45.0 and "  0%|" in str(bar.bar)
    clock.t = 61.0
    bar._posttask("extract-new", {"cached": False}, {}, {}, 0)
    assert " 50%|" in str(bar.bar) and "01:01<01:01" in str(bar.bar)
    bar._posttask("similarity-new", {"cached": True}, {}, {}, 0)  # the last: it fills the bar
    assert bar.bar.n == bar.bar.total == 2 * 45.0
    bar._finish({}, {}, False)
