"""``arcsub simulate``: run any kernel script the way Kaggle would, under real limits.

The simulator builds a Kaggle-like tree under ``OUT/kaggle`` (the chosen tasks'
challenges, the model, the wheels; solutions stay outside it), runs the kernel with
the competition profile's budget, memory and disk limits, passes its output through,
and judges the ``submission.json`` it left: validity, score, and whether Kaggle would
have accepted the run. Two modes:

* ``namespace`` (where ``unshare`` is permitted): new network, mount and PID
  namespaces; no network but loopback; ``OUT/kaggle`` bound onto ``/kaggle``;
  ``/kaggle/working`` a tmpfs of the disk limit, copied back to ``OUT/kaggle/working``
  when the kernel is done; the kernel runs as ``python KERNEL`` in ``/kaggle/working``.
* ``fallback`` (no namespaces, or ``ARCSUB_SIMULATE_NO_NAMESPACE=1``): a plain child
  process, ``python KERNEL --input-root ... --working-root ... --temp-root ...``; the
  network and the ``/kaggle`` paths are not enforced (said loudly), the disk limit is a
  watcher plus a per-file size limit.

No torch or vLLM here: the kernel subprocess does the heavy work.
"""

from .runner import NO_NAMESPACE_ENV, Launch, Limits, launch_kernel, namespace_support
from .simulation import KERNEL_VARS, PROXY_VARS, SimulationOptions, default_kernel, simulate
from .smoke import smoke_run
from .tree import Layout, SimulationError, build_tree

__all__ = [
    "KERNEL_VARS",
    "NO_NAMESPACE_ENV",
    "PROXY_VARS",
    "Launch",
    "Layout",
    "Limits",
    "SimulationError",
    "SimulationOptions",
    "build_tree",
    "default_kernel",
    "launch_kernel",
    "namespace_support",
    "simulate",
    "smoke_run",
]
