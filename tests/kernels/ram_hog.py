"""Writes its fallback submission, then allocates memory (touched) without end."""

import time

from _dummy import challenges, fallback_submission, roots, write_json

input_root, working, _ = roots()
write_json(working / "submission.json", fallback_submission(challenges(input_root)))
print("fallback written; allocating", flush=True)
hoard = []
for _ in range(200):  # up to 10 GiB, 50 MiB at a time
    hoard.append(bytearray(50 << 20))  # zero-filled: every page touched
    time.sleep(0.02)
print("allocated everything")
