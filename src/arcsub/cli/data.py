"""``arcsub data stats|validate|show`` and ``arcsub encode``."""

from __future__ import annotations

import json
import statistics
import sys

from ..config import DROP_ORDERS
from ..console import say
from .common import SOURCE_HELP, one_task


def cmd_data_stats(args) -> int:
    from ..tasks import grid_shape, load_tasks

    taskset = load_tasks(args.source, solutions=args.solutions, skip_invalid=args.skip_invalid)
    tasks = taskset.tasks
    sides = [
        max(grid_shape(g)) for t in tasks for p in (*t.train, *t.test) for g in (p.input, p.output) if g is not None
    ]
    cells = [t.cells for t in tasks]
    stats = {
        "source": args.source,
        "tasks": len(tasks),
        "invalid": len(taskset.invalid),
        "train_pairs": sum(len(t.train) for t in tasks),
        "test_inputs": sum(len(t.test) for t in tasks),
        "with_solutions": sum(t.has_solutions for t in tasks),
        "largest_side": max(sides, default=0),
        "median_cells_per_task": statistics.median(cells) if cells else 0,
        "max_cells_per_task": max(cells, default=0),
    }
    print(json.dumps(stats, indent=1) if args.json else "\n".join(f"{k:>22}  {v}" for k, v in stats.items()))
    return 0


def cmd_data_validate(args) -> int:
    from ..tasks import load_tasks

    taskset = load_tasks(args.source, solutions=args.solutions, skip_invalid=args.skip_invalid)
    for problem in taskset.invalid:
        print(f"skipped: {problem}", file=sys.stderr)
    tests = sum(len(t.test) for t in taskset)
    print(f"{args.source}: {len(taskset)} valid task(s), {tests} test input(s), {len(taskset.invalid)} skipped")
    return 0


def cmd_data_show(args) -> int:
    from ..encoding import get_codec
    from ..tasks import load_tasks

    codec = get_codec(args.encoder)
    tasks = load_tasks(args.source, solutions=args.solutions).tasks
    for task in tasks[: args.limit]:
        print(f"== task {task.id}: {len(task.train)} train, {len(task.test)} test")
        for label, pairs in (("train", task.train), ("test", task.test)):
            for i, pair in enumerate(pairs):
                print(f"-- {label} {i} input\n{codec.encode(pair.input)}")
                if pair.output is not None:
                    print(f"-- {label} {i} output\n{codec.encode(pair.output)}")
    return 0


def cmd_encode(args) -> int:
    from ..augment import Augmentation
    from ..config import PromptConfig
    from ..prompts import PromptBuilder

    task = one_task(args.task, args.task_id)
    tokenizer = None
    if args.tokenizer != "none":
        from ..models import load_tokenizer, resolve_model

        tokenizer = load_tokenizer(resolve_model(args.tokenizer))
    config = PromptConfig(codec=args.encoder, max_seq_len=args.max_seq_len, drop_order=args.drop_order)
    builder = PromptBuilder(config, tokenizer)
    aug = Augmentation.parse(args.augmentation)
    if tokenizer is None:
        prompt = builder.build(task, args.test_index, aug)
    else:
        prompt = builder.fit(task, args.test_index, aug)
    print(prompt.text)
    tokens = "n/a (no tokenizer)" if prompt.num_tokens is None else prompt.num_tokens
    say(
        f"task {task.id} test {args.test_index} aug {prompt.augmentation}: {tokens} tokens, {len(prompt.text)} chars, "
        f"{prompt.num_train} train pairs shown, {prompt.dropped} dropped to fit {config.max_seq_len}"
    )
    return 0


def register(sub) -> None:
    from ..encoding import DEFAULT_CODEC

    def source_args(p):
        p.add_argument("source", help=SOURCE_HELP)
        p.add_argument("--solutions", help="solutions JSON matching the challenges")

    data = sub.add_parser("data", help="inspect and validate task sources")
    data = data.add_subparsers(dest="data_command", required=True)
    p = data.add_parser("stats", help="counts and sizes")
    source_args(p)
    p.add_argument("--skip-invalid", action="store_true", help="leave out invalid tasks instead of failing")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_data_stats)
    p = data.add_parser("validate", help="check every grid and task; report all problems")
    source_args(p)
    p.add_argument("--skip-invalid", action="store_true", help="leave out invalid tasks instead of failing")
    p.set_defaults(func=cmd_data_validate)
    p = data.add_parser("show", help="print tasks as text")
    source_args(p)
    p.add_argument("--encoder", default=DEFAULT_CODEC)
    p.add_argument("--limit", type=int, default=1, help="tasks to show (default 1)")
    p.set_defaults(func=cmd_data_show)

    p = sub.add_parser("encode", help="print a task's prompt and its token count")
    p.add_argument("task", help="a source holding one task, e.g. arc1/evaluation[00576224]")
    p.add_argument("--task", dest="task_id", help="task id, when the source holds several")
    p.add_argument("--encoder", default=DEFAULT_CODEC, help="codec spec, e.g. minimal or shape+rownum+fence")
    p.add_argument("--tokenizer", default="default", help="model path, 'default', or 'none' (no token count)")
    p.add_argument("--test-index", type=int, default=0)
    p.add_argument("--augmentation", default="id", help="augmentation key, e.g. rot90.c0318274659")
    p.add_argument("--max-seq-len", type=int, default=8192)
    p.add_argument("--drop-order", default="last", choices=DROP_ORDERS)
    p.set_defaults(func=cmd_encode)
