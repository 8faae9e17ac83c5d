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


def test_failures_carry_model_dataset_type_and_root_cause():
    import errno

    from repsim.tasks import failure_report

    calls = {"n": 0}

    def full_disk():
        calls["n"] += 1
        raise OSError(errno.ENOSPC, "No space left on device", "/run/features.zarr/x")

    failed = Guarded(
        full_disk, "features-faces-cnn", stage="features", model="cnn", dataset="faces"
    )()
    assert calls["n"] == 1  # a full disk is not retried
    assert (failed.model, failed.dataset, failed.exc_type) == ("cnn", "faces", "OSError")
    assert "no space left" in failed.message and "/run/features.zarr/x" in failed.message
    sim = Guarded(lambda *a: 1, "similarity-faces")(failed)
    consistency = Guarded(lambda *a: 1, "consistency")(sim)
    assert sim.cause == consistency.cause == "features-faces-cnn"  # skips point at the root failure
    report = failure_report(failures([sim, consistency, failed]))
    assert report.splitlines()[0].startswith(
        "features-faces-cnn (model cnn, dataset faces): OSError:"
    )
    assert "skipped because features-faces-cnn failed: similarity-faces, consistency" in report


def test_a_failure_seen_only_through_the_tasks_it_skipped_is_reported():
    """A dataset's extraction feeds only the per-model feature tasks, so its own failure was never
    among the results: the run said '0 task(s) failed and 2 were skipped' and its cause was only
    in a log line."""

    def broken():
        raise DatasetError("cannot write the stage record (Is a directory)")

    extract = Guarded(broken, "extract-faces", dataset="faces")()
    features = Guarded(lambda x: x, "features-faces-m")(extract)
    similarity = Guarded(lambda x: x, "similarity-faces")(features)
    found = failures([features, similarity])
    assert [f.task for f in found] == ["extract-faces", "features-faces-m", "similarity-faces"]
    assert not found[0].skipped and "Is a directory" in found[0].message
    assert similarity.cause == "extract-faces"
    assert "root" not in features.to_dict()  # run.json lists the root once, as its own entry
    assert failures([features, similarity, extract]).count(extract) == 1


def test_a_full_disk_worded_as_a_runtime_error_is_not_retried():
    """h5py raises a full disk as a RuntimeError whose text alone holds errno 28."""
    from test_runfolder import HDF5_FULL_DISK

    calls = []

    def full_disk():
        calls.append(1)
        raise RuntimeError(HDF5_FULL_DISK)

    failed = Guarded(full_disk, "similarity-faces", dataset="faces")()
    assert len(calls) == 1
    assert failed.exc_type == "RuntimeError"
    assert (
        failed.message.startswith("no space left on the device") and "free space" in failed.message
    )


def test_a_name_too_long_is_not_retried():
    """A feature group or part named after a long model id: a retry would fail the same way."""
    import errno

    calls = []

    def too_long():
        calls.append(1)
        raise OSError(errno.ENAMETOOLONG, "File name too long", "/run/.stages/" + "m" * 300)

    failed = Guarded(too_long, "probe-faces-m", model="m", dataset="faces")()
    assert len(calls) == 1 and "over the" in failed.message and "shorten it" in failed.message
