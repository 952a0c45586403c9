"""The command dies with its recorder: no run is left working with nobody recording it."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

__all__ = ["die_with_recorder"]

_PR_SET_PDEATHSIG = 1


def die_with_recorder() -> Callable[[], None] | None:
    """A function the command's process runs before exec so that it dies with its recorder.

    On Linux the kernel sends the command SIGTERM when ``conveyor run`` dies,
    even by SIGKILL (PR_SET_PDEATHSIG), so no command is left running unrecorded.
    Elsewhere there is no such call and None is returned.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    recorder = os.getpid()

    def die_with_parent() -> None:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0)
        if os.getppid() != recorder:  # the recorder died before the call took effect
            os.kill(os.getpid(), signal.SIGTERM)

    return die_with_parent
