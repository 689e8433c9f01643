"""Spawns a fake worker (``arcsub.kernel.worker`` in its command line), waits for it,
records how it ended in worker.json, writes a submission and exits 0."""

import subprocess
import sys

from _dummy import challenges, fallback_submission, roots, write_json

input_root, working, _ = roots()
worker = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", "arcsub.kernel.worker"])
print(f"worker {worker.pid} started", flush=True)
try:
    code = worker.wait(timeout=20)
except subprocess.TimeoutExpired:
    worker.kill()
    code = "timeout"
write_json(working / "worker.json", {"returncode": code})
write_json(working / "submission.json", fallback_submission(challenges(input_root)))
print(f"worker ended: {code}")
