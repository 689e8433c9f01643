"""The ``arcsub`` command: parse arguments, call the library, print. Nothing else.

Each module here registers one group of subcommands; handlers import the library
lazily so ``arcsub score`` never pays for torch. User errors (``ArcsubError``) print
as ``arcsub: error: ...`` and exit 2; SIGTERM and SIGINT end a command with its
cleanup, one line (``arcsub: stopped by SIGTERM; ...``) and exit 143 or 130.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import ArcsubError
from ..signals import stop_exit_code, stop_line, stop_on_signals
from . import bundle, compare, data, evaluate, finetune, infer, model, profile, push, simulate, submission
from .common import user_message

COMMAND_GROUPS = (data, submission, model, finetune, infer, simulate, profile, bundle, push, evaluate, compare)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="arcsub", description="ARC Prize submission kit.")
    parser.add_argument("--version", action="version", version=f"arcsub {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    with stop_on_signals():  # SIGTERM runs the same cleanup as Ctrl-C: what a command started ends with it
        try:
            return args.func(args)
        except ArcsubError as exc:
            print(f"arcsub: error: {user_message(exc, args.command)}", file=sys.stderr)
            return 2
        except KeyboardInterrupt as exc:
            print(f"arcsub: {stop_line(exc)}", file=sys.stderr)
            return stop_exit_code(exc)


if __name__ == "__main__":
    sys.exit(main())
