"""``arcsub push``: upload the built bundle (two datasets, then the kernel) with the kaggle CLI."""

from __future__ import annotations

DEFAULT_BUILD = "build/kaggle"


def cmd_push(args) -> int:
    from ..bundle import push
    from ..console import say

    options = {"message": args.message} if args.message else {}
    result = push(args.build, dry_run=args.dry_run, echo=say, **options)
    if not result.dry_run:
        say(f"kernel {result.kernel_ref}: {result.kernel_url}")
    return 0


def register(sub) -> None:
    p = sub.add_parser(
        "push",
        help="upload the wheels and model datasets, then push the kernel (kaggle CLI)",
        description=(
            "Creates or versions the datasets in BUILD/wheels and BUILD/model, then pushes BUILD/kernel. "
            "Needs Kaggle credentials (~/.kaggle/kaggle.json or KAGGLE_USERNAME/KAGGLE_KEY). Fails on any "
            "error the server reports, even where the kaggle CLI itself exits 0."
        ),
    )
    p.add_argument("--build", default=DEFAULT_BUILD, help=f"the upload folders (default {DEFAULT_BUILD})")
    p.add_argument(
        "--dry-run",
        action="store_true",
        help="print the commands and the metadata; run nothing (exit 2 when a real push would refuse the bundle)",
    )
    p.add_argument("-m", "--message", help='version notes for the dataset versions (default "arcsub push")')
    p.set_defaults(func=cmd_push)
