"""Stop signals in-process: SIGTERM becomes a KeyboardInterrupt that carries what the
cleanup ended (the end-to-end checks run real commands: test_simulate.py, test_push.py)."""

from __future__ import annotations

import os
import signal
import time

import pytest

from arcsub.signals import Stopped, note_ended, stop_exit_code, stop_line, stop_on_signals


def test_sigterm_raises_a_keyboard_interrupt_once_and_the_handlers_come_back():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt) as caught, stop_on_signals():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(10)  # the handler raises here; the sleep only guards against a hang
        except Stopped as exc:
            os.kill(os.getpid(), signal.SIGTERM)  # a repeat while cleaning up is ignored
            time.sleep(0.2)
            note_ended(exc, "the kernel's 3 processes were ended")
            raise
    assert isinstance(caught.value, Stopped) and caught.value.signum == signal.SIGTERM
    assert stop_line(caught.value) == "stopped by SIGTERM; the kernel's 3 processes were ended"
    assert stop_exit_code(caught.value) == 143
    assert signal.getsignal(signal.SIGTERM) is before


def test_a_plain_keyboard_interrupt_reads_as_sigint():
    interrupt = KeyboardInterrupt()
    note_ended(interrupt, "the kaggle CLI (`kaggle kernels push`) was ended")
    note_ended(ValueError(), "not a stop: nothing recorded")
    assert stop_line(interrupt) == "stopped by SIGINT; the kaggle CLI (`kaggle kernels push`) was ended"
    assert stop_exit_code(interrupt) == 130
