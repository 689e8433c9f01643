"""Writes a valid submission (the answers from $DUMMY_ANSWERS for the first task when
set: a known score), a report, and what it saw: environment, run request, input tree, cwd."""

import json
import os
import sys
from pathlib import Path

from _dummy import challenges, fallback_submission, roots, write_json

input_root, working, temp = roots()
tasks = challenges(input_root)
submission = fallback_submission(tasks)
answers = os.environ.get("DUMMY_ANSWERS")
if answers:
    first = min(tasks)
    solutions = json.loads(Path(answers).read_text())[first]
    submission[first] = [{"attempt_1": [[0]], "attempt_2": grid} for grid in solutions]
print(f"dummy kernel: {len(tasks)} tasks")
print("a line on stderr", file=sys.stderr)
write_json(working / "submission.json", submission)
seen = {
    "env": {k: v for k, v in os.environ.items() if k.startswith(("ARCSUB_", "KAGGLE_", "PYTHONUNBUFFERED"))},
    "run_request": json.loads(request.read_text()) if (request := input_root / "arcsub-run.json").is_file() else None,
    "proxies": sorted(k for k in os.environ if k.lower().endswith("_proxy")),
    "inputs": sorted(str(p.relative_to(input_root)) for p in input_root.rglob("*")),
    "cwd": os.getcwd(),
    "argv": sys.argv[1:],
    "kaggle_exists": Path("/kaggle/input").is_dir(),
    "answers_readable": bool(answers) and Path(answers).is_file(),
}
probe = os.environ.get("DUMMY_PROBE")  # a host folder: what does the kernel see in it?
if probe:
    seen["probe"] = sorted(p.name for p in Path(probe).iterdir()) if Path(probe).is_dir() else None
write_json(working / "seen.json", seen)
(working / "logs").mkdir(exist_ok=True)
(working / "logs" / "kernel.txt").write_text("done\n")
write_json(working / "report.json", {"summary": "dummy: all tasks answered", "budget_used": 0.01, "elapsed_s": 0.2})
