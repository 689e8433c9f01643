"""Placeholder: the thin entry to ``arcsub.bundle`` (vendored wheels + model + kernel
script, then ``kaggle kernels push``). It lands with the bundle/push issue."""

import sys

if __name__ == "__main__":
    sys.exit("build_kernel.py: the bundle builder is not written yet (see kernel/README.md)")
