"""``arcsub model ...``: the embedded default model and model preparation."""

from __future__ import annotations

import json

from ..checks import METHODS
from ..models import SCALINGS, TEMPLATES


def cmd_model_default(args) -> int:
    from ..models import CHAT_NAME, DEFAULT_NAME, resolve_model

    print(resolve_model(CHAT_NAME if args.chat else DEFAULT_NAME))
    return 0


def cmd_model_pack_default(args) -> int:
    from pathlib import Path

    from ..finetune import pack_adapter
    from ..models import ADAPTER_DIR, ADAPTER_WEIGHTS, MAX_ADAPTER_BYTES, SHIPPED_BASE_NAME

    recipe = Path(args.recipe).read_text()
    dest = pack_adapter(
        args.adapter, ADAPTER_DIR, recipe=recipe, base_name=SHIPPED_BASE_NAME, max_bytes=MAX_ADAPTER_BYTES
    )
    size = (dest / ADAPTER_WEIGHTS).stat().st_size
    print(f"{dest}: the shipped adapter of 'default' now ({size / 2**20:.1f} MiB); the next use merges it again")
    return 0


def cmd_model_inspect(args) -> int:
    from ..models import as_json, gather, markdown_table

    items = gather(args.targets, candidates=args.candidates)
    if args.json:
        print(json.dumps(as_json(items, args.max_model_len), indent=1))
    else:
        print(markdown_table(items, args.max_model_len))
    return 0


def cmd_model_extend_context(args) -> int:
    from ..models import extend_context, resolve_model

    result = extend_context(
        resolve_model(args.src),
        args.dst,
        max_len=args.max_len,
        rope_theta=args.rope_theta,
        scaling=args.rope_scaling,
        factor=args.factor,
    )
    print(
        f"{result.destination}: window {result.old_window} -> {result.new_window} tokens, RoPE {result.rope_parameters}"
    )
    weights = (
        [f"hard-linked {', '.join(result.linked)} (shared with SRC: never save over DST)"] if result.linked else []
    )
    weights += [f"copied {', '.join(result.copied)} (another file system)"] if result.copied else []
    print(f"weights: {'; '.join(weights) or 'none found'}; config.json and tokenizer model_max_length rewritten")
    for note in result.notes:
        print(f"note: {note}")
    return 0


def cmd_model_add_chat_template(args) -> int:
    from ..models import add_chat_template, resolve_model

    result = add_chat_template(resolve_model(args.src), args.dst, template=args.template, replace=args.replace)
    changes = result.changes
    print(f"{result.destination}: {args.template} template added")
    print(
        f"added tokens: {', '.join(changes.added) or 'none'}; made special: {', '.join(changes.registered) or 'none'}"
    )
    print(f"embeddings: {result.resized_from} -> {result.resized_to} rows (new rows = mean embedding)")
    print(f"eos: {changes.eos} (was {changes.old_eos}); pad: {changes.pad}")
    for line in result.check.lines():
        print(f"verified: {line}")
    return 0


def cmd_model_check_fp16(args) -> int:
    from ..checks import check_fp16
    from ..models import resolve_model

    report = check_fp16(
        resolve_model(args.model),
        source=args.data,
        max_tokens=args.max_tokens,
        prompts=args.prompts,
        method=args.method,
    )
    print("\n".join(report.lines()))
    return 1 if report.overflow else 0


def cmd_model_check_context(args) -> int:
    from ..checks import Settings, markdown_table, run_context_check, write_outputs
    from ..models import resolve_model

    settings = Settings(
        model=str(resolve_model(args.model)),
        lengths=tuple(args.lengths),
        samples=args.samples,
        seed=args.seed,
        finetune_steps=args.finetune_steps,
        compare_rope_theta=args.compare_rope_theta,
        learning_rate=args.learning_rate,
        lora_rank=args.lora_rank,
    )
    report = run_context_check(settings, args.out)
    written = write_outputs(report, args.out)
    print(markdown_table(report))
    for variant in report.variants:
        seconds = report.seconds.get(variant.label)
        took = f", {seconds:.0f}s" if seconds is not None else ""
        where = "a temporary extend-context copy, removed" if variant.temporary else str(variant.path)
        print(f"{variant.label}: {where} (window {variant.window}, RoPE {variant.rope}{took})")
    for note in report.train_notes:
        print(f"fine-tune: {note}")
    print(f"wrote {written['table']}, {written['plot']}, {args.out}/results.jsonl")
    return 0


def cmd_model_replica(args) -> int:
    from ..models import build_replica

    print(build_replica(args.name, args.dst, layers=args.layers))
    return 0


def _lengths(text: str) -> list[int]:
    import argparse

    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give token counts separated by commas, e.g. 1024,2048") from None
    if not values or min(values) < 16:
        raise argparse.ArgumentTypeError(f"{text!r}: give token counts of at least 16, separated by commas")
    return values


def register(sub) -> None:
    model = sub.add_parser("model", help="the default model and model preparation")
    model = model.add_subparsers(dest="model_command", required=True)
    p = model.add_parser(
        "default", help="prepare (once) and print the embedded default's folder: pre-trained on ARC, or --chat"
    )
    p.add_argument("--chat", action="store_true", help="the chat model without ARC pre-training (default-chat)")
    p.set_defaults(func=cmd_model_default)

    p = model.add_parser(
        "pack-default",
        help="(maintainers) make an arcsub finetune adapter of default-chat the shipped pre-trained default",
    )
    p.add_argument("adapter", help="the adapter/ folder of the run")
    p.add_argument("--recipe", default="scripts/pretrain-default.sh", help="the command that made it (RECIPE.md)")
    p.set_defaults(func=cmd_model_pack_default)

    p = model.add_parser("inspect", help="candidate table: shapes, RoPE, tokens, TP=2, fp16 range, T4 memory")
    p.add_argument("targets", nargs="*", help="model folders, 'default', or candidate names")
    p.add_argument("--candidates", action="store_true", help="add every registered candidate (published configs)")
    p.add_argument("--max-model-len", type=int, default=8192, help="tokens per sequence for the KV cache estimate")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_model_inspect)

    p = model.add_parser("extend-context", help="copy a model with a longer context window (weights linked)")
    p.add_argument("src", help="model folder or 'default'")
    p.add_argument("dst", help="new folder")
    p.add_argument("--max-len", type=int, required=True, help="the new window in tokens")
    rope = p.add_mutually_exclusive_group()
    rope.add_argument("--rope-theta", type=float, help="new RoPE base (e.g. 4e5)")
    rope.add_argument("--rope-scaling", choices=SCALINGS, help="RoPE scaling instead")
    p.add_argument("--factor", type=float, help="scaling factor (default: max-len / window)")
    p.set_defaults(func=cmd_model_extend_context)

    p = model.add_parser("add-chat-template", help="add a chat template, register its markers, verify, write")
    p.add_argument("src", help="model folder or 'default'")
    p.add_argument("dst", help="new folder")
    p.add_argument("--template", default="chatml", choices=sorted(TEMPLATES))
    p.add_argument("--replace", action="store_true", help="replace a template the tokenizer already has")
    p.set_defaults(func=cmd_model_add_chat_template)

    p = model.add_parser("check-fp16", help="fp32 vs fp16 on ARC prompts: NaN/inf, logit difference, overflow")
    p.add_argument("model", help="model folder or 'default'")
    p.add_argument("--data", default="arc1/evaluation[:10]", help="tasks whose prompts to run")
    p.add_argument("--prompts", type=int, default=3, help="how many prompts (the first that fit)")
    p.add_argument("--max-tokens", type=int, default=1024, help="longest prompt (tasks that do not fit are skipped)")
    p.add_argument("--method", default="auto", choices=METHODS)
    p.set_defaults(func=cmd_model_check_fp16)

    p = model.add_parser("check-context", help="synthetic long-context recall vs prompt length (table + PNG)")
    p.add_argument("model", help="model folder or 'default'")
    p.add_argument(
        "--lengths", type=_lengths, default=[1024, 2048, 4096, 8192, 16384], help="prompt tokens, e.g. 1024,2048"
    )
    p.add_argument("--samples", type=int, default=4, help="samples per length (K)")
    p.add_argument("--finetune-steps", type=int, default=0, help="LoRA steps at the longest length, then measure again")
    p.add_argument("--compare-rope-theta", type=float, help="also measure a copy with this RoPE base (e.g. 4e5)")
    p.add_argument("--learning-rate", type=float, default=1e-4, help="for --finetune-steps")
    p.add_argument("--lora-rank", type=int, default=16, help="for --finetune-steps")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/check-context", help="folder for results.jsonl, table.md, accuracy.png")
    p.set_defaults(func=cmd_model_check_context)

    p = model.add_parser("replica", help="a random-weight replica of a candidate, for tests and dry runs")
    p.add_argument("name", help="candidate name (see inspect --candidates)")
    p.add_argument("dst", help="new folder")
    p.add_argument("--layers", type=int, default=2)
    p.set_defaults(func=cmd_model_replica)
