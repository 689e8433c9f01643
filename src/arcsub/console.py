"""What a user sees: arcsub's own lines and one progress bar per stage on the terminal;
everything the engines print (vLLM and its spawned engine process, transformers,
peft, Triton, Python warnings, C libraries) in a log file.

* ``show_arcsub_lines()`` puts a :class:`ConsoleHandler` on the ``arcsub`` logger (the
  CLI does this); its stream is "the terminal" for everything below.
* ``progress_bar(...)`` draws a tqdm bar on that terminal, and only on a real one;
  ``vllm_bar(...)`` hands vLLM a bar factory (or ``False``) for its ``use_tqdm``.
* ``engine_output_to(path)``: inside it, file descriptors 1 and 2 point to the log
  file. Descriptors are what child processes inherit, so vLLM's spawned engine writes
  there too; arcsub's lines and bars keep a duplicate of the old stderr. Nothing
  engine-side needs to be configured, and nothing is lost: the file gets arcsub's lines
  (debug level included) interleaved with the engines' output.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

LOGGER = "arcsub"
LOG_FORMAT = "%(asctime)s %(name)s %(levelname)s: %(message)s"


class ConsoleHandler(logging.StreamHandler):
    """arcsub's own log lines, as bare messages, on the terminal.

    Writes to ``target`` when one is set, else to whatever ``sys.stderr`` is at emit
    time: a handler bound to the stream of its first call would write into a closed
    file once pytest's capture or a notebook cell replaces that stream."""

    def __init__(self, target: TextIO | None = None):
        super().__init__()
        self.target = target
        self.setFormatter(logging.Formatter("%(message)s"))

    @property
    def stream(self):
        return self.target if self.target is not None else sys.stderr

    @stream.setter
    def stream(self, _value):
        pass

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _write_line(self.format(record), self.stream)
        except Exception:
            self.handleError(record)


def _write_line(text: str, stream: TextIO) -> None:
    """Print a line above any progress bar drawn on ``stream`` (then redraw the bar)."""
    from tqdm import tqdm

    tqdm.write(text, file=stream)
    stream.flush()


def _console_handlers() -> list[ConsoleHandler]:
    return [h for h in logging.getLogger(LOGGER).handlers if isinstance(h, ConsoleHandler)]


def show_arcsub_lines(*, debug: bool = False) -> None:
    """Show arcsub's INFO lines (DEBUG too with ``debug``) on the terminal, once."""
    logger = logging.getLogger(LOGGER)
    handlers = _console_handlers()
    if not handlers:
        handlers = [ConsoleHandler()]
        logger.addHandler(handlers[0])
    level = logging.DEBUG if debug else logging.INFO
    handlers[0].setLevel(level)
    logger.setLevel(min(level, logger.level or logging.INFO))


def terminal() -> TextIO:
    """Where arcsub's lines and bars go: the console handler's stream, else stderr."""
    handlers = _console_handlers()
    return handlers[0].stream if handlers else sys.stderr


def say(message: str) -> None:
    """One line of arcsub's own output on the terminal."""
    _write_line(message, terminal())


def _bars_visible(stream: TextIO, enabled: bool) -> bool:
    try:
        return enabled and stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _screen(stream: TextIO) -> dict[str, int]:
    """tqdm's ``ncols`` and ``nrows`` for ``stream``. A pseudo-terminal without a screen
    reports 0 x 0, where tqdm draws nothing (it asks on its own for sys.stderr): 100 x 24
    then, and for streams that are no terminal."""
    try:
        size = os.get_terminal_size(stream.fileno())
    except (AttributeError, OSError, ValueError):
        size = None
    return {"ncols": (size and size.columns) or 100, "nrows": (size and size.lines) or 24}


def progress_bar(*, total: int, desc: str, unit: str, enabled: bool = True, leave: bool = True, initial: int = 0):
    """A tqdm bar on the terminal; drawn only when ``enabled`` and the terminal is a TTY."""
    from tqdm import tqdm

    stream = terminal()
    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        leave=leave,
        file=stream,
        disable=not _bars_visible(stream, enabled),
        **_screen(stream),
    )


def vllm_bar(desc: str, enabled: bool) -> Callable | bool:
    """A value for vLLM's ``use_tqdm``: a factory of bars on the terminal labelled
    ``desc``, or ``False``. vLLM calls it twice per ``generate``: over an iterable for
    its quick pass that renders the prompts (passed through, not drawn: not a stage),
    and without one for the engine run, whose elapsed time it reads (a drawn bar)."""
    stream = terminal()
    if not _bars_visible(stream, enabled):
        return False
    from tqdm import tqdm

    def make(iterable=None, **kwargs):
        if iterable is not None:
            return tqdm(iterable, disable=True)
        return tqdm(**{**kwargs, "desc": desc, "file": stream, "dynamic_ncols": False, **_screen(stream)})

    return make


@contextmanager
def engine_output_to(log_path: str | os.PathLike) -> Iterator[Path]:
    """Send file descriptors 1 and 2 (and so every child process) to ``log_path``
    (appended) while arcsub's lines and bars stay on the terminal; arcsub's log lines,
    debug included, go to the file too. Everything is put back on exit."""
    path = Path(log_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    file_lines = logging.FileHandler(path, encoding="utf-8")  # first: a bad path fails before anything changes
    file_lines.setFormatter(logging.Formatter(LOG_FORMAT))
    logger = logging.getLogger(LOGGER)
    consoles = _console_handlers()
    added = None
    if not consoles:  # arcsub's lines would otherwise follow stderr into the file
        added = ConsoleHandler()
        added.setLevel(logging.INFO)
        logger.addHandler(added)
        consoles = [added]
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    screen = os.fdopen(os.dup(saved[2]), "w", buffering=1, encoding="utf-8", errors="replace")
    previous = [(h, h.target) for h in consoles]
    old_level = logger.level
    try:
        with open(path, "ab") as log_file:
            for fd in (1, 2):
                os.dup2(log_file.fileno(), fd)
        for handler in consoles:
            handler.target = screen
        logger.addHandler(file_lines)
        logger.setLevel(logging.DEBUG)
        yield path
    finally:
        logger.removeHandler(file_lines)
        file_lines.close()
        logger.setLevel(old_level)
        for handler, target in previous:
            handler.target = target
        if added is not None:
            logger.removeHandler(added)
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except ValueError:
                pass
        for fd, copy in saved.items():
            os.dup2(copy, fd)
            os.close(copy)
        screen.close()
