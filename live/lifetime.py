"""Tying child processes to the life of `live serve`, so none outlives it."""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1


def die_with_parent(sig: int = signal.SIGTERM) -> None:
    """Ask the kernel to send `sig` to this process when its parent dies, however it
    dies (even SIGKILL, when no handler of the parent's can run)."""
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, sig)


def bind_worker_to_supervisor(supervisor_pid: int | None) -> None:
    """In a worker of `live serve --workers N` (the supervisor's pid given): stop when
    the supervisor is gone."""
    if supervisor_pid is None:
        return
    die_with_parent()
    if os.getppid() != supervisor_pid:  # it died before we asked
        os.kill(os.getpid(), signal.SIGTERM)
