"""Model checks that drive the engines: fp16 safety (``fp16.py``) and the long-context
experiment (``context_window.py``, its prompts in ``context_prompts.py``). Nothing
below this package imports it.

The public entry
  ``check_fp16(model, ...)``  the same ARC prompts in fp32 and fp16: an ``Fp16Report``
  ``run_context_check(Settings(...), out_dir)``  key recall against prompt length (a
        ``ContextReport``); ``write_outputs`` adds ``table.md`` and ``accuracy.png``
"""

from .context_window import ContextReport, Settings, markdown_table, run_context_check, write_outputs
from .fp16 import METHODS, Fp16Report, check_fp16

__all__ = [
    "METHODS",
    "ContextReport",
    "Fp16Report",
    "Settings",
    "check_fp16",
    "markdown_table",
    "run_context_check",
    "write_outputs",
]
