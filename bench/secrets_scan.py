"""The secret scan's speed on large binary files (a benchmark, not a test).

Every upload file is content-scanned whatever its size, so the model dataset's weights
(0.5 GB for the default model) are read through every token pattern before a build or
a push. This times ``find_secrets`` on a generated 512 MiB file of random bytes with one
planted token at its end (which must be found) and on each FILE given (e.g. the default
model's model.safetensors), and reports the peak memory of the process (the scan streams
in chunks: it should stay flat).

    .venv/bin/python bench/secrets_scan.py [FILE ...] [--write docs/benchmarks.md]
    # as recorded: FILE = ~/.cache/arcsub/models/SmolLM2-135M-Instruct-arc/model.safetensors
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from report import machine_line, replace_section

from arcsub.bundle.secrets import CHUNK_BYTES, find_secrets

GENERATED_BYTES = 512 << 20
PLANTED = b"AK" + b"IA" + b"IOSFODNN7EXAMPLE"  # an AWS key id shape, assembled so this file holds none


def generate(path: Path) -> Path:
    """GENERATED_BYTES of random bytes, written in chunks, then the planted token."""
    with open(path, "wb") as handle:
        handle.writelines(os.urandom(CHUNK_BYTES) for _ in range(GENERATED_BYTES // CHUNK_BYTES))
        handle.write(b" " + PLANTED + b" ")
    return path


def measure(path: Path) -> tuple[float, float, list[str]]:
    """Wall time (reading included: it depends on the disk and the page cache), CPU time, findings."""
    started, cpu = time.perf_counter(), time.process_time()
    findings = find_secrets(path)
    return time.perf_counter() - started, time.process_time() - cpu, findings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path)
    parser.add_argument("--write", help="markdown file whose secrets-scan section to replace")
    args = parser.parse_args()

    rows = ["| file | size | wall time | CPU time | throughput (wall) | findings |", "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory(prefix="arcsub-bench-") as scratch:
        generated = generate(Path(scratch) / "random.bin")
        for path in [generated, *args.files]:
            seconds, cpu, findings = measure(path)
            size = path.stat().st_size
            label = "random bytes + 1 planted token" if path == generated else path.name
            rows.append(
                f"| {label} | {size / 2**20:.0f} MiB | {seconds:.2f} s | {cpu:.2f} s | "
                f"{size / 2**20 / seconds:.0f} MiB/s | {len(findings)} |"
            )
            if path == generated and len(findings) != 1:
                print(f"the planted token was not found exactly once: {findings}", file=sys.stderr)
                return 1
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    table = "\n".join(rows)
    print(table)
    print(f"peak RSS of the process: {peak:.0f} MiB")
    if args.write:
        section = (
            "## The secret scan over large files (issue 19)\n\n"
            f"`.venv/bin/python bench/secrets_scan.py [FILE ...] --write docs/benchmarks.md`, run {machine_line()}, "
            "no GPU. Every upload file is scanned whole, in "
            f"{CHUNK_BYTES >> 20} MiB chunks; peak RSS of the process {peak:.0f} MiB. Wall time includes reading "
            "the file (disk, page cache) and any other load on the machine; CPU time is the scan's own cost.\n\n"
            f"{table}"
        )
        replace_section(args.write, "secrets-scan", section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
