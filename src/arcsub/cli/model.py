"""``arcsub model ...``: the embedded default model and model preparation."""

from __future__ import annotations

from .common import stderr


def cmd_model_default(args) -> int:
    from ..models.default import default_model_dir

    print(default_model_dir(progress=stderr))
    return 0


def register(sub) -> None:
    model = sub.add_parser("model", help="the default model and model preparation")
    model = model.add_subparsers(dest="model_command", required=True)
    p = model.add_parser("default", help="convert (once) and print the embedded default model's path")
    p.set_defaults(func=cmd_model_default)
