"""Writes its fallback submission, then runs past any deadline."""

import time

from _dummy import challenges, fallback_submission, roots, write_json

input_root, working, _ = roots()
write_json(working / "submission.json", fallback_submission(challenges(input_root)))
print("fallback written; sleeping", flush=True)
time.sleep(120)
print("woke up")
