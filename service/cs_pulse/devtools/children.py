"""Child processes that never outlive the command that started them.

The development commands (``cs-pulse kafka``, ``cs-pulse demo``, the benches, the tests'
fixtures) start brokers, workers, Prometheus and Alertmanager. Stopped by a signal the way a
terminal, a service manager or a CI timeout stops them (SIGINT, SIGTERM, SIGHUP, even
SIGKILL), they must not leave a broker holding a port and 500 MB. Two layers:

* ``spawn`` starts a child that the kernel signals (SIGTERM) when its parent dies, however it
  dies (Linux ``PR_SET_PDEATHSIG``; elsewhere only the second layer applies);
* ``stopped_on_signals`` turns SIGTERM and SIGHUP into ``KeyboardInterrupt`` (as SIGINT already
  is) while a command runs, so its ``finally`` blocks stop the children in order and remove
  their data.

A child spawned from a thread is signalled when that *thread* ends: spawn from the main
thread, or from a thread that lives as long as the child should.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from typing import Any

PR_SET_PDEATHSIG = 1   # <sys/prctl.h>
# Looked up here, in the parent: the child, forked from a process with threads, must not
# load a library before exec (the loader's lock may be held by a thread that is not there).
_PRCTL = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").prctl \
    if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """In the child, before exec: SIGTERM when the parent dies (Linux; else nothing)."""
    if _PRCTL is not None:
        _PRCTL(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def spawn(argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    """``subprocess.Popen(argv, **kwargs)`` for a child that dies with this process."""
    return subprocess.Popen(argv, preexec_fn=die_with_parent, **kwargs)


def interrupt(signum: int, _frame: object) -> None:
    """A signal handler: stop as ^C does."""
    raise KeyboardInterrupt(f"stopped by signal {signal.Signals(signum).name}")


@contextlib.contextmanager
def stopped_on_signals() -> Iterator[None]:
    """SIGTERM and SIGHUP raise ``KeyboardInterrupt`` in the main thread while inside (the
    previous handlers come back after); outside the main thread, nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGHUP)}
    for sig in previous:
        signal.signal(sig, interrupt)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
