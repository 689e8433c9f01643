"""``arcsub profile measure|fit|plan|compare``: what the Kaggle budget buys per task."""

from __future__ import annotations

from pathlib import Path

from ..console import say, show_arcsub_lines
from ..errors import ArcsubError
from .common import add_verbose_option, command_output


def _ints(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ArcsubError(f"{option} {text!r}: expected comma-separated whole numbers, e.g. 1400,5600") from None
    if not values or min(values) < 1:
        raise ArcsubError(f"{option} {text!r}: expected positive whole numbers")
    return values


def _inference_config(path: str | None):
    from ..config import load_config

    return load_config(path)


def _model(name: str) -> tuple[str | Path, str | None]:
    """A model argument at the command's edge: ``default`` and ``default-chat`` resolved
    to their folders, once, and labelled by the name; a folder or candidate name as given."""
    from ..models import CHAT_NAME, DEFAULT_NAME, resolve_model

    if name in (DEFAULT_NAME, CHAT_NAME):
        return resolve_model(name), name
    return name, None


def _measure(model: str | Path, label: str | None, args, out: str | None):
    from dataclasses import replace

    from ..profile import MeasureGrid, measure_profile

    grid = MeasureGrid.quick() if args.quick else MeasureGrid()
    if getattr(args, "lengths", None):
        grid = replace(grid, train_lengths=_ints(args.lengths, "--lengths"))
    return measure_profile(
        model,
        out,
        backend=args.backend,
        device=args.device,
        precision=args.precision,
        quick=args.quick,
        max_seq_len=args.max_seq_len,
        grid=grid,
        config=_inference_config(args.config),
        progress=not args.no_progress,
        label=label,
    )


def _summary(profile: dict) -> str:
    from ..profile import cost_model_from_dict, markdown

    cost = cost_model_from_dict(profile["cost_model"], "profile")
    m = profile["measured"]
    lines = [
        (
            f"{profile['model']['label']} on {profile['machine']['device_name']} ({profile['settings']['backend']}, "
            f"{profile['settings']['precision']}): load {m['load_s']:.2f} s, engine start {m['engine_start_s']:.2f} s"
        ),
    ]
    rows = [("TTFT tokens", "s/step (median)", "peak GPU memory")]
    for r in m["train"]:
        memory = f"{r['peak_memory_bytes'] / 1e9:.2f} GB" if "peak_memory_bytes" in r else "-"
        rows.append((str(r["tokens"]), f"{r['median_s']:.3f}" if "median_s" in r else r.get("error", "?"), memory))
    lines += [markdown(rows), ""]
    rows = [("batch", "prompt tokens", "new tokens", "prefill s", "total s", "new tokens/s")]
    for r in m["generate"]:
        rate = r["batch"] * r["out_tokens"] / r["total_s"]
        rows.append(
            (
                str(r["batch"]),
                str(r["prompt_tokens"]),
                str(r["out_tokens"]),
                f"{r['prefill_s']:.3f}",
                f"{r['total_s']:.3f}",
                f"{rate:.1f}",
            )
        )
    lines += [markdown(rows), ""]
    rows = [("batch", "prompt + answer tokens", "score s", "scored tokens/s")]
    for r in m["score"]:
        tokens = r["batch"] * (r["prompt_tokens"] + r["answer_tokens"])
        rows.append(
            (
                str(r["batch"]),
                f"{r['prompt_tokens']}+{r['answer_tokens']}",
                f"{r['seconds']:.3f}",
                f"{tokens / r['seconds']:.0f}",
            )
        )
    lines += [markdown(rows), "", "fitted:"]
    units = {"train_memory_bytes": "bytes"}
    lines += [
        f"  {name} = {fit.formula(units.get(name, 's'))}"
        + (
            f"  (rms relative error {fit.rms_rel_error:.1%} over {fit.points} points)"
            if fit.rms_rel_error is not None
            else ""
        )
        for name, fit in cost.fits.items()
    ]
    return "\n".join(lines)


def cmd_measure(args) -> int:
    out = Path(args.out)
    model, label = _model(args.model)
    with command_output(out.parent, args.verbose):
        profile = _measure(model, label, args, str(out))
    print(_summary(profile))
    say(f"wrote {out}")
    return 0


def _tokens_per_step(args, config) -> int:
    value = args.tokens_per_step if args.tokens_per_step is not None else (config.finetune.tokens_per_step or 8192)
    if value < 0:
        raise ArcsubError(f"--tokens-per-step {value}: use 0 (one sequence per step only) or a positive number")
    return value


def cmd_fit(args) -> int:
    from ..profile import fit_measured, record_fit, write_fits

    show_arcsub_lines()
    fit = fit_measured(args.files, peak_flops=args.peak_tflops * 1e12 if args.peak_tflops else None)
    print(f"fixed cost of a TTFT step on {fit.device}:")
    print(f"  step seconds = {fit.formula()}")
    print(f"  rms relative error {fit.rms_rel_error:.1%} over {fit.points} steps")
    for name, layers in sorted(fit.models.items()):
        print(f"  {name}: {layers} layers, overhead {fit.overhead_s(layers) * 1e3:.0f} ms per step")
    for note in fit.notes:
        print(f"  note: {note}")
    if args.out:
        say(f"wrote {write_fits([fit], args.out)}")
    if args.record:
        say(f"recorded the fit for {fit.device} in {record_fit(fit)} (the analytic estimate's overhead)")
    return 0


def _plans(models: list[str], args, cost_models=None):
    from ..competitions import load_competition
    from ..profile import cost_model_for, plan_run, recorded_fits

    names = args.profile if isinstance(args.profile, list) else [args.profile]
    profiles = [load_competition(name) for name in dict.fromkeys(names)]
    config = _inference_config(args.config)
    prompt_tokens = _ints(args.prompt_tokens, "--prompt-tokens")
    tokens_per_step = _tokens_per_step(args, config)
    fits = recorded_fits(args.fits) if getattr(args, "fits", None) else None
    resolved = [(m, None) for m in models] if cost_models else [_model(m) for m in models]
    plans = []
    for profile in profiles:
        for index, (model, label) in enumerate(resolved):
            cost = (
                cost_models[index]
                if cost_models
                else cost_model_for(
                    model,
                    profile,
                    label=label,
                    lora_rank=config.finetune.lora_rank,
                    plan_tokens=max(prompt_tokens) + args.answer_tokens,
                    step_fits=fits,
                )
            )
            plans.append(
                plan_run(
                    profile,
                    cost,
                    tasks=args.tasks,
                    prompt_tokens=prompt_tokens,
                    answer_tokens=args.answer_tokens,
                    train_share=args.train_share,
                    inference=config.inference,
                    steps=args.steps,
                    predictions=args.predictions,
                    tokens_per_step=tokens_per_step,
                )
            )
    return plans


def _finish(plans, args) -> None:
    from ..io import write_json_atomic
    from ..profile import plan_dict

    if args.png:
        from ..profile import plot_plans

        profiles = list(dict.fromkeys(p.profile.name for p in plans))
        for name in profiles:  # one picture per competition profile: each has its own budget line
            png = Path(args.png)
            if len(profiles) > 1:
                png = png.with_name(f"{png.stem}-{name}{png.suffix}")
            say(f"wrote {plot_plans([p for p in plans if p.profile.name == name], png)}")
    if args.json:
        write_json_atomic(args.json, [plan_dict(p) for p in plans], indent=1)
        say(f"wrote {args.json}")


def cmd_plan(args) -> int:
    from ..profile import plan_text

    show_arcsub_lines()
    source = args.from_ or args.model
    plans = _plans([source], args)
    print(plan_text(plans[0]))
    _finish(plans, args)
    return 0


def cmd_compare(args) -> int:
    from ..profile import compare_text, load_cost_model

    models = args.models
    args.profile = args.profile or [args.profile_default]
    show_arcsub_lines()
    costs = None
    if args.measure:
        from ..profile import check_measurable

        resolved = [_model(m) for m in models]
        for model, _label in resolved:
            check_measurable(model)
        costs = []
        out_dir = Path(args.out_dir)
        with command_output(out_dir, args.verbose):
            for name, (model, label) in zip(models, resolved, strict=True):
                out = out_dir / f"{Path(str(name)).name}.profile.json"
                _measure(model, label, args, str(out))
                say(f"wrote {out}")
                costs.append(load_cost_model(out))
    plans = _plans(models, args, costs)
    print(compare_text(plans))
    _finish(plans, args)
    return 0


def _plan_options(p, *, model: bool) -> None:
    from ..competitions import DEFAULT_COMPETITION

    if model:
        p.add_argument(
            "--profile",
            default=DEFAULT_COMPETITION,
            help=f"competition profile name or TOML file (default {DEFAULT_COMPETITION})",
        )
    else:
        p.add_argument(
            "--profile",
            action="append",
            help=f"competition profile name or TOML file; repeat for several (default {DEFAULT_COMPETITION})",
        )
        p.set_defaults(profile_default=DEFAULT_COMPETITION)
    if model:
        p.add_argument(
            "--from", dest="from_", metavar="PROFILE_JSON", help="a profile.json from `arcsub profile measure`"
        )
        p.add_argument(
            "--model",
            default="default",
            help="without --from: the model for the analytic estimate (folder, 'default' or candidate name)",
        )
    p.add_argument("--tasks", type=int, help="hidden tasks (default: the profile's)")
    p.add_argument(
        "--prompt-tokens",
        default="1400,5600",
        help="prompt lengths to project (default: arc1/evaluation median and 95th percentile)",
    )
    p.add_argument("--answer-tokens", type=int, default=145, help="answer tokens (default 145: arc1/evaluation median)")
    p.add_argument("--train-share", type=float, default=0.68, help="share of each task's time for TTFT (default 0.68)")
    p.add_argument("--steps", type=int, help="fixed plan: TTFT steps per task (then the time is projected)")
    p.add_argument("--predictions", type=int, help="fixed plan: sampled predictions per task")
    p.add_argument("--config", help="TOML config ([finetune] LoRA rank, [inference] scoring settings)")
    p.add_argument(
        "--tokens-per-step",
        type=int,
        help="also project packed TTFT steps of up to this many tokens (default: the config's "
        "finetune.tokens_per_step, else 8192; 0: one sequence per step only)",
    )
    p.add_argument(
        "--fits", metavar="FITS_JSON", help="step-overhead fits for the analytic estimate (default: the recorded ones)"
    )
    p.add_argument("--png", help="draw the plan to this PNG")
    p.add_argument("--json", help="write the plan as JSON")


def _measure_options(p) -> None:
    p.add_argument("--backend", default="transformers", choices=("transformers", "vllm"))
    p.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda when present")
    p.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "fp16", "bf16"),
        help="training precision (fp16 = autocast + gradient scaler, as on a T4); serving dtype follows",
    )
    p.add_argument("--quick", action="store_true", help="a couple of short lengths and small batches")
    p.add_argument("--max-seq-len", type=int, help="longest training sequence to measure")
    p.add_argument("--no-progress", action="store_true")
    add_verbose_option(p)


def register(sub) -> None:
    group = sub.add_parser("profile", help="what the Kaggle budget buys per task: measure, plan, compare")
    commands = group.add_subparsers(dest="profile_command", required=True)

    p = commands.add_parser("measure", help="measure one model on this machine and write profile.json")
    p.add_argument("--model", default="default", help="model folder, 'default', or a candidate name (random weights)")
    p.add_argument("--lengths", help="TTFT sequence lengths, e.g. 2048,4096,8192")
    p.add_argument("--config", help="TOML config ([finetune] LoRA settings)")
    p.add_argument("-o", "--out", default="profile.json")
    _measure_options(p)
    p.set_defaults(func=cmd_measure)

    p = commands.add_parser(
        "fit",
        help="fit a TTFT step's fixed costs (per step, per layer) from measurements of several models on one device",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="profile.json files, or bench/ttft_throughput.py JSON")
    p.add_argument("-o", "--out", help="write the fit to this JSON file (for --fits)")
    p.add_argument(
        "--record",
        action="store_true",
        help="record it with arcsub (replacing that device's) for the analytic estimate",
    )
    p.add_argument("--peak-tflops", type=float, help="the device's peak (default: its datasheet's, or the bench's)")
    p.set_defaults(func=cmd_fit)

    p = commands.add_parser("plan", help="project a full hidden-set run from a profile.json or the analytic estimate")
    _plan_options(p, model=True)
    p.set_defaults(func=cmd_plan)

    p = commands.add_parser("compare", help="what the budget buys per task, model by model")
    p.add_argument(
        "models", nargs="+", metavar="MODEL", help="candidate names, folders, 'default', or profile.json files"
    )
    _plan_options(p, model=False)
    _measure_options(p)
    p.add_argument("--measure", action="store_true", help=argparse_measure_help())
    p.add_argument("--out-dir", default="runs/profile", help="where --measure writes profile.json files")
    p.set_defaults(func=cmd_compare)


def argparse_measure_help() -> str:
    return (
        "measure each model on this machine (candidates as random weights of their full shape) instead of the "
        "analytic estimate"
    )
