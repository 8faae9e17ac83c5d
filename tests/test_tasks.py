from repsim.errors import DatasetError
from repsim.tasks import Guarded, TaskFailure, failures


def test_guard_turns_errors_into_failures_and_skips_dependents():
    calls = {"n": 0}

    def flaky():
        calls["n"] += 1
        if calls["n"] == 1:
            raise OSError("transient")
        return 42

    assert Guarded(flaky, "flaky", retries=1)() == 42 and calls["n"] == 2

    def broken():
        raise DatasetError("cannot read shard 3")

    failure = Guarded(broken, "stimuli-x", retries=3)()
    assert isinstance(failure, TaskFailure) and "cannot read shard 3" in failure.error
    downstream = Guarded(lambda x: x, "similarity-x")(failure)
    assert downstream.skipped and "stimuli-x" in downstream.error
    assert failures([1, downstream, failure]) == [failure, downstream]
