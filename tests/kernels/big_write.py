"""Tries to write 8 MiB into the working folder (first, while it is empty), records
how that went in big_write.json, then writes a small submission."""

import errno

from _dummy import challenges, fallback_submission, roots, write_json

input_root, working, _ = roots()
big = working / "big.bin"
result = {"written": False, "errno": None}
try:
    with open(big, "wb") as handle:
        for _ in range(8):
            handle.write(b"x" * (1 << 20))
            handle.flush()
    result["written"] = True
except OSError as exc:
    result["errno"] = errno.errorcode.get(exc.errno, str(exc.errno))
big.unlink(missing_ok=True)
print(f"big write: {result}", flush=True)
write_json(working / "big_write.json", result)
write_json(working / "submission.json", fallback_submission(challenges(input_root)))
