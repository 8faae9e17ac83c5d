"""Ctrl-C that Python could not deliver. A KeyboardInterrupt raised while a finaliser runs (a
progress bar's ``__del__`` during garbage collection) is printed as "Exception ignored" and lost:
the run went on and recorded itself as finished, exit 0. The ``repsim`` command's SIGINT handler
(:func:`handler`) notes the signal here as well as raising it, and the pipeline asks
(:func:`check`) between its stages and before it records a finished run, so a swallowed interrupt
still stops the run and run.json says it was interrupted.
"""

from __future__ import annotations

_received = False


def handler(signum: int, frame: object) -> None:
    """SIGINT under the repsim command: noted, then raised where the program is (Python's own)."""
    global _received
    _received = True
    raise KeyboardInterrupt


def reset() -> None:
    """Forget an earlier interrupt (a new command starts)."""
    global _received
    _received = False


def received() -> bool:
    return _received


def check() -> None:
    """KeyboardInterrupt when an interrupt arrived that nothing has acted on."""
    if _received:
        raise KeyboardInterrupt
