"""Tries to reach 1.1.1.1:80 and records the errno in network.json; writes a submission."""

import errno
import socket

from _dummy import challenges, fallback_submission, roots, write_json

input_root, working, _ = roots()
write_json(working / "submission.json", fallback_submission(challenges(input_root)))
result = {"connected": False, "errno": None}
try:
    socket.create_connection(("1.1.1.1", 80), timeout=3).close()
    result["connected"] = True
except OSError as exc:
    result["errno"] = errno.errorcode.get(exc.errno, str(exc.errno)) if exc.errno else type(exc).__name__
write_json(working / "network.json", result)
print(f"network: {result}")
