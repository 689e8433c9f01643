"""Stop signals: SIGTERM (what ``timeout``, CI runners and schedulers send) ends a command
the way Ctrl-C (SIGINT) does, through the cleanup its code already has for Ctrl-C.

Python's default SIGTERM action ends the interpreter at once: no ``finally``, no
``except BaseException``, so what a command started in a session of its own (the
simulated kernel, the kaggle CLI) would run on with no parent. Inside
:func:`stop_on_signals` (the CLI's entry holds it) both signals raise :class:`Stopped`, a
``KeyboardInterrupt``; each cleanup that ends processes on the way out says what it
ended with :func:`note_ended`, and :func:`stop_line` and :func:`stop_exit_code` give the
CLI its one line and its exit status (128 + the signal's number: 143, 130).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Stopped(KeyboardInterrupt):
    """A stop signal arrived."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """Inside: the first SIGTERM or SIGINT raises :class:`Stopped` in the main thread; a
    repeat is ignored, so that the cleanup it started can finish. The previous handlers
    come back on the way out. Off the main thread (where Python allows no handlers) this
    does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping = False

    def stop(signum: int, _frame) -> None:
        nonlocal stopping
        if not stopping:
            stopping = True
            raise Stopped(signum)

    previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def note_ended(exc: BaseException, what: str) -> None:
    """On a stop (any ``KeyboardInterrupt``) passing through a cleanup, record what that
    cleanup ended, as a clause: "the kernel's 3 processes were ended". Other exceptions
    carry nothing."""
    if isinstance(exc, KeyboardInterrupt):
        exc.__dict__.setdefault("arcsub_ended", []).append(what)


def _signum(exc: KeyboardInterrupt) -> int:
    return getattr(exc, "signum", signal.SIGINT)  # a plain KeyboardInterrupt is Python's own SIGINT


def stop_line(exc: KeyboardInterrupt) -> str:
    """'stopped by SIGTERM; the kernel's 3 processes were ended'."""
    return "; ".join([f"stopped by {signal.Signals(_signum(exc)).name}", *getattr(exc, "arcsub_ended", [])])


def stop_exit_code(exc: KeyboardInterrupt) -> int:
    """128 + the signal's number, as a shell reports a process the signal ended."""
    return 128 + _signum(exc)
