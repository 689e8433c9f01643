"""Never ends by itself: starts a worker, which starts a process of its own in a new
session (out of the kernel's process group), then all three sleep. The last one started
creates the file DUMMY_READY names, so a test knows when all three run."""

import subprocess
import sys
import time

LAST = "import os, time; open(os.environ['DUMMY_READY'], 'w').close(); time.sleep(600)"
WORKER = (
    "import subprocess, sys, time; "
    f"subprocess.Popen([sys.executable, '-c', {LAST!r}], start_new_session=True); time.sleep(600)"
)

subprocess.Popen([sys.executable, "-c", WORKER])
print("a worker started; sleeping", flush=True)
time.sleep(600)
