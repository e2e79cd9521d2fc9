"""Child processes that die with their parent, however the parent ends (SIGKILL included).

A parent killed hard runs no cleanup code, so nothing it does at exit can stop its children.
Two mechanisms survive that, and each child uses the one that fits it:

- the kernel's parent-death signal (Linux ``prctl(PR_SET_PDEATHSIG)``), armed in the child
  between fork and exec and kept across exec: it needs nothing from the child, so it suits
  a binary we do not write (the Tansu broker) as well as Python children, and it is
  immediate (SIGKILL) where a child's own shutdown could hang on a dead broker;
- the end of a pipe: a child reading its stdin sees end-of-file when the parent dies
  (``shared.worker`` stops that way too, gracefully, when its parent closes the pipe).

The parent-death signal has one trap: it fires when the *thread* that forked the child
ends, not the process. Fork from a thread that lives as long as the child should (the main
thread, or the event loop's thread that also owns the child).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
from collections.abc import Callable

__all__ = ["die_with_parent"]

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _libc_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    with contextlib.suppress(OSError, AttributeError):
        prctl: Callable[..., int] = ctypes.CDLL(None, use_errno=True).prctl
        return prctl
    return None


# Resolved once in the parent: the child, between fork and exec, only makes the call.
_PRCTL = _libc_prctl()


def die_with_parent(sig: signal.Signals = signal.SIGKILL) -> Callable[[], None] | None:
    """A ``preexec_fn`` for :class:`subprocess.Popen` that has the child killed by *sig* when
    the calling thread's process ends; ``None`` where the kernel offers no such signal.

    The child also checks that its parent is still the caller: if the parent died between
    fork and arming the signal, the child is already an orphan and exits at once.
    """
    prctl = _PRCTL
    if prctl is None:
        return None
    parent = os.getpid()
    signal_number = int(sig)

    def arm() -> None:
        prctl(_PR_SET_PDEATHSIG, signal_number, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return arm
