"""Build the offline Kaggle bundle: ``python build_kernel.py [--target kaggle|cpu] [...]``.

A thin entry to ``arcsub build`` (the logic lives in ``arcsub.bundle``). Run from a clean
clone it first sets up ``.venv`` (scripts/setup.sh) and runs itself there.
"""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def main() -> int:
    try:
        from arcsub.cli import main as arcsub_main
    except ImportError:
        venv_python = ROOT / ".venv" / "bin" / "python"
        if os.environ.get("ARCSUB_BUILD_REEXEC"):
            sys.exit(f"build_kernel.py: arcsub is not importable in {sys.executable}; run ./scripts/setup.sh")
        subprocess.run([str(ROOT / "scripts" / "setup.sh")], check=True)
        os.environ["ARCSUB_BUILD_REEXEC"] = "1"
        os.execv(str(venv_python), [str(venv_python), __file__, *sys.argv[1:]])
    return arcsub_main(["build", *sys.argv[1:]])


if __name__ == "__main__":
    sys.exit(main())
