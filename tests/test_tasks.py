import errno
import os

import pytest

from repsim.errors import DatasetError
from repsim.runfolder import describe_os_error
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


#: what no retry can fix (named here, not taken from repsim.tasks, so that a code dropped there
#: is caught)
PERMANENT = (
    "ENOSPC",
    "EDQUOT",
    "EACCES",
    "EPERM",
    "EROFS",
    "ENOTDIR",
    "EISDIR",
    "EEXIST",
    "ENAMETOOLONG",
)


@pytest.mark.parametrize("name", PERMANENT)
def test_a_permanent_filesystem_error_is_tried_once_and_described(name):
    """A retry cannot fix a full disk, a permission, a read-only filesystem, a file where a
    folder belongs or a name too long: each fails at once, in describe_os_error's words."""
    code = getattr(errno, name)
    calls = []
    exc = OSError(code, os.strerror(code), "/run/features.zarr/x")

    def failing():
        calls.append(1)
        raise exc

    failed = Guarded(failing, "features-faces-m", retries=3)()
    assert len(calls) == 1
    assert failed.message == describe_os_error(exc, action="access")


def test_a_transient_filesystem_error_is_retried_then_described():
    """An I/O error may pass (a network filesystem): tried again, and after the last attempt
    described like a permanent one, not left as the bare OSError text."""
    calls = []
    exc = OSError(errno.EIO, "Input/output error", "/run/features.zarr/x")

    def failing():
        calls.append(1)
        raise exc

    failed = Guarded(failing, "features-faces-m", retries=2)()
    assert len(calls) == 3 and failed.exc_type == "OSError"
    assert failed.message == describe_os_error(exc, action="access") != str(exc)


def test_a_full_disk_worded_as_an_oserror_without_errno_is_not_retried():
    """h5py also raises a full disk as an OSError whose errno is None: its text decides."""
    from test_runfolder import HDF5_FULL_DISK

    calls = []

    def full_disk():
        calls.append(1)
        raise OSError(HDF5_FULL_DISK)

    failed = Guarded(full_disk, "similarity-faces", dataset="faces", retries=2)()
    assert len(calls) == 1 and failed.message.startswith("no space left on the device")


def test_a_tasks_stage_is_its_names_first_word_unless_given():
    """run.json's failed_tasks give each task's stage, for a reader that filters by it."""

    def broken(*args):
        raise DatasetError("x")

    assert Guarded(broken, "similarity-faces-pair")().stage == "similarity"
    assert Guarded(broken, "features-faces-m", stage="extract")().stage == "extract"
    assert Guarded(broken, "probe-faces-m")(Guarded(broken, "decode-faces")()).stage == "probe"


def test_the_root_failure_is_found_from_the_last_task_of_a_chain():
    """A chain extract -> features -> similarity where only the last task is among the results:
    its root is the extraction itself, not the skipped task between them."""

    def broken():
        raise DatasetError("cannot read shard 3")

    extract = Guarded(broken, "extract-faces")()
    features = Guarded(lambda x: x, "features-faces-m")(extract)
    similarity = Guarded(lambda x: x, "similarity-faces")(features)
    assert similarity.root is extract
    assert failures([similarity]) == [extract, similarity]


def test_a_task_with_two_failed_inputs_names_the_first():
    """The inputs come in the graph's order (a dataset's stimuli before its features): the
    cause named is the first failed input's, skipped ones resolved to their root."""

    def broken(name):
        def fail():
            raise DatasetError(name)

        return Guarded(fail, name)()

    stimuli, features = broken("stimuli-faces"), broken("features-faces-m")
    skipped = Guarded(lambda *a: 1, "similarity-faces")(1, stimuli, features)
    assert skipped.cause == "stimuli-faces" and skipped.root is stimuli
    via = Guarded(lambda *a: 1, "features-faces-k")(stimuli)
    later = Guarded(lambda *a: 1, "consistency")(via, features)
    assert later.cause == "stimuli-faces" and later.root is stimuli


@pytest.mark.parametrize("n_skipped", [6, 7])
def test_the_report_lists_failures_once_and_counts_long_lists_of_skipped_tasks(n_skipped):
    """One line per failed task, then one per root failure naming what it skipped: the first
    six, and how many in all when there are more."""
    from repsim.tasks import failure_report

    def broken():
        raise DatasetError("cannot read shard 3")

    root = Guarded(broken, "extract-faces", dataset="faces")()
    skipped = [Guarded(lambda x: x, f"features-faces-m{i}")(root) for i in range(n_skipped)]
    names = ", ".join(f"features-faces-m{i}" for i in range(6))
    more = f", ... ({n_skipped} in all)" if n_skipped > 6 else ""
    assert failure_report(failures(skipped)).split("\n  ") == [
        "extract-faces (dataset faces): DatasetError: cannot read shard 3",
        f"skipped because extract-faces failed: {names}{more}",
    ]
