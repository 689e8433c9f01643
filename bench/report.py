"""Writing a benchmark's section into docs/benchmarks.md.

Each benchmark owns one section between ``<!-- bench:NAME -->`` and
``<!-- /bench:NAME -->``; a rerun replaces just that section (atomically), so the
other benchmarks' figures stay as they were measured.
"""

from __future__ import annotations

import datetime
import platform
from pathlib import Path

from arcsub.io import write_text_atomic


def machine_line() -> str:
    import os

    cores = os.cpu_count()
    memory = ""
    try:
        import psutil

        memory = f", {psutil.virtual_memory().total / 2**30:.0f} GiB RAM"
    except ImportError:
        pass
    return f"{datetime.date.today()}, {platform.machine()}, {cores} cores{memory}, Python {platform.python_version()}"


def replace_section(path: str | Path, name: str, body: str) -> None:
    begin, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    path = Path(path)
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    section = f"{begin}\n{body.strip()}\n{end}"
    if begin in text:
        before, rest = text.split(begin, 1)
        text = before + section + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    write_text_atomic(path, text)
