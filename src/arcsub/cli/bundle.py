"""``arcsub build`` and ``arcsub bundle lock|check``: the offline bundle for Kaggle."""

from __future__ import annotations

from pathlib import Path

from ..bundle import DEFAULT_SOURCE, IMAGES
from ..console import say, show_arcsub_lines

TARGETS = ("kaggle", "cpu")


def cmd_build(args) -> int:
    from ..bundle import BuildOptions, build_bundle
    from ..models import resolve_model

    show_arcsub_lines()
    options = BuildOptions(
        target=args.target,
        out=Path(args.out),
        model=resolve_model(args.model),
        config=Path(args.config) if args.config else None,
        competition=args.profile,
        owner=args.owner,
        download=not args.no_download,
    )
    if args.kernel_slug:
        options.kernel_slug = args.kernel_slug
    if args.wheels_slug:
        options.wheels_slug = args.wheels_slug
    if args.model_slug:
        options.model_slug = args.model_slug
    manifest = build_bundle(options, echo=say)
    say(f"next: arcsub bundle check --build {args.out}" + ("; then arcsub push" if args.target == "kaggle" else ""))
    return 0 if manifest else 1


def cmd_lock(args) -> int:
    from ..bundle import get_target, lock, repository_root

    show_arcsub_lines()
    path = lock(get_target(args.target), repository_root(), echo=say)
    say(f"pinned set written: {path}")
    return 0


def cmd_check(args) -> int:
    from ..bundle import check_bundle
    from ..simulate import smoke_run

    show_arcsub_lines()
    out = Path(args.out) if args.out else None
    if args.over_image:
        from ..bundle import check_over_image

        result = check_over_image(
            Path(args.build), args.over_image, smoke=smoke_run, out=out, budget_s=args.budget, echo=say
        )
        say(f"bundle check over the {args.over_image} image passed ({result['target']} target)")
        return 0
    result = check_bundle(Path(args.build), smoke=smoke_run, out=out, budget_s=args.budget, echo=say)
    say(f"bundle check passed ({result['target']} target)")
    return 0


def cmd_image_list(args) -> int:
    from ..bundle import refresh, repository_root

    show_arcsub_lines()
    path, _image = refresh(args.image, args.source, repository_root(), echo=say)
    say(f"image list written: {path}; commit it")
    return 0


def add_build_options(p) -> None:
    from ..bundle import DEFAULT_BUILD

    p.add_argument("--target", choices=TARGETS, default="kaggle", help="wheel set: Kaggle's GPU image or this machine")
    p.add_argument("--out", default=str(DEFAULT_BUILD), help=f"bundle folder (default {DEFAULT_BUILD})")
    p.add_argument("--model", default="default", help="prepared model folder, or 'default' (the embedded model)")
    p.add_argument("--config", help="arcsub TOML config the kernel runs with (copied to model/arcsub.toml)")
    p.add_argument("--profile", help="competition profile: machine shape and slug (default arc-prize-2024)")
    p.add_argument("--owner", help="Kaggle username for the ids (default: from your Kaggle credentials)")
    p.add_argument("--kernel-slug", help="kernel slug (default arcsub-<competition>)")
    p.add_argument("--wheels-slug", help="wheels dataset slug (default arcsub-wheels)")
    p.add_argument("--model-slug", help="model dataset slug (default arcsub-model)")
    p.add_argument(
        "--no-download", action="store_true", help="skip the wheel set (arcsub's wheel only): for metadata work"
    )


def register(sub) -> None:
    p = sub.add_parser(
        "build",
        help="build the offline bundle: wheels dataset, model dataset, kernel folder (build/kaggle)",
        description="Builds arcsub's wheel, downloads the target's pinned wheel set (wheels/requirements-<target>.txt), "
        "copies the prepared model, writes the three upload folders with their metadata, and refuses to write "
        "any that breaks a kaggle CLI rule or holds credentials.",
    )
    add_build_options(p)
    p.set_defaults(func=cmd_build)

    bundle = sub.add_parser("bundle", help="lock a wheel set; check a built bundle")
    bsub = bundle.add_subparsers(dest="bundle_command", required=True)
    lock = bsub.add_parser(
        "lock",
        help="resolve a target's wheel set with pip and pin it with hashes",
        description="Writes wheels/requirements-<target>.txt (needs the package index).",
    )
    lock.add_argument("--target", choices=TARGETS, required=True)
    lock.set_defaults(func=cmd_lock)
    check = bsub.add_parser(
        "check",
        help="prove a built bundle works offline",
        description="Both targets: metadata rules, no credentials, the wheel set closed for its Python and platform, "
        "its size. cpu: a fresh environment installs the set with --no-index, imports arcsub, and the kernel's smoke "
        "run passes in the simulator. kaggle: the proof reads wheel metadata, never installing the CUDA builds.",
    )
    check.add_argument("--build", default="build/kaggle", help="bundle folder (default build/kaggle)")
    check.add_argument("--out", help="simulation output folder for the cpu smoke run (default: a temporary folder)")
    check.add_argument("--budget", type=float, default=300.0, help="the smoke run's wall-clock limit in seconds (300)")
    check.add_argument(
        "--over-image",
        choices=IMAGES,
        help="install the bundle over a replica of this image's Python environment (images/<image>.txt) and check "
        "the stack there: imports, pip check, a LoRA, vLLM's loading; cpu: the smoke run too",
    )
    check.set_defaults(func=cmd_check)
    image = bsub.add_parser(
        "image-list",
        help="refresh images/<image>.txt from the image's published package list",
        description="Reads Kaggle's published package list (a file, a URL, or a clone of Kaggle/docker-python), "
        "keeps what can touch the kernel (in a wheel set, an engine, requires one, imported by one when present, "
        "and what those need) and writes images/<image>.txt with its source and commit (needs the package index).",
    )
    image.add_argument("--image", choices=IMAGES, default="kaggle")
    image.add_argument(
        "--from", dest="source", default=DEFAULT_SOURCE, help=f"file, URL or git directory (default {DEFAULT_SOURCE})"
    )
    image.set_defaults(func=cmd_image_list)
