"""The one way a deadline is shared across tasks: each task, when it starts, gets its
share of the time left, in proportion to its weight among the tasks not started yet.

The kernel (``kernel/supervisor.py``, several workers) and ``train_tasks`` (one
process, tasks one after the other) both weigh a task by its size (``Task.cells``):
every task has the same step ceiling and the same inference counts, and what a step
or a prompt costs grows with the task's size, so an even split would cut the large
tasks short while the small ones end early. Because a share is computed from the time
actually left when a task starts, time one task does not use goes to the tasks after
it, and a run that is slower than planned still ends by the deadline.
"""

from __future__ import annotations

from collections.abc import Sequence


def task_slice(
    weight: float, waiting_weight: float, now: float, deadline: float, busy_until: Sequence[float] = ()
) -> float:
    """Seconds for a task starting ``now``: its share of the worker time left.

    ``waiting_weight`` sums the weights of the tasks not started yet, this one
    included; ``busy_until`` holds, for every other live worker, when its current task
    should end (``now`` when idle; none for one process). Never past ``deadline``."""
    capacity = max(0.0, deadline - now) + sum(max(0.0, deadline - max(now, t)) for t in busy_until)
    share = capacity * weight / waiting_weight if waiting_weight > 0 else 0.0
    return max(0.0, min(share, deadline - now))
