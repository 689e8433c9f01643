"""One typed config for every step, read from TOML and saved beside every output.

Sections are plain dataclasses of plain values; later steps add their own section
here. Unknown keys and wrong types are errors that name the key, so a typo in a
config file never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .io import write_text_atomic

DROP_ORDERS = ("last", "first", "largest")


@dataclass
class PromptConfig:
    codec: str = "minimal"  # see arcsub.encoding
    system_prompt: str = (
        "Find the rule that turns each input grid into its output grid, then apply it to the test input."
    )
    input_label: str = "input"
    output_label: str = "output"
    max_seq_len: int = 8192  # prompt + answer tokens
    drop_order: str = "last"  # which train pairs to drop first when too long: last | first | largest
    min_train_pairs: int = 1

    def __post_init__(self):
        if self.drop_order not in DROP_ORDERS:
            raise ConfigError(f"prompt.drop_order = {self.drop_order!r}; use one of {', '.join(DROP_ORDERS)}")
        if self.max_seq_len < 16:
            raise ConfigError(f"prompt.max_seq_len = {self.max_seq_len}; it must be at least 16 tokens")
        if self.min_train_pairs < 1:
            raise ConfigError("prompt.min_train_pairs must be at least 1")


@dataclass
class AugmentConfig:
    seed: int = 0
    keep_background: bool = True  # colour 0 is never permuted
    permute_colors: bool = True
    shuffle_order: bool = True


@dataclass
class Config:
    prompt: PromptConfig = field(default_factory=PromptConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)


def _build(cls: type, values: dict[str, Any], where: str):
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected a table, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(names))}")
    kwargs = {}
    for name, value in values.items():
        hint = hints[name]
        key = f"{where}.{name}" if where else name
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, value, key)
        else:
            kwargs[name] = _check_type(value, hint, key)
    return cls(**kwargs)


def _check_type(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(hint):
            if option is type(None) and value is None:
                return None
            try:
                return _check_type(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key} = {value!r}: expected {hint}")
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} = {value!r}: expected a list")
        (item,) = typing.get_args(hint)[:1] or (Any,)
        return [_check_type(v, item, key) for v in value]
    if hint is Any:
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if (hint in (int, float) and isinstance(value, bool)) or not isinstance(value, hint):
        raise ConfigError(f"{key} = {value!r}: expected {getattr(hint, '__name__', hint)}")
    return value


def config_from_dict(values: dict[str, Any]) -> Config:
    return _build(Config, values, "")


def load_config(path: str | Path | None) -> Config:
    """Read a TOML config; ``None`` gives the defaults."""
    if path is None:
        return Config()
    path = Path(path)
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    try:
        return config_from_dict(values)
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_to_toml(config: Config) -> str:
    lines: list[str] = []
    for section, values in dataclasses.asdict(config).items():
        lines.append(f"[{section}]")
        for key, value in values.items():
            if value is not None:  # TOML has no null: absent means default
                lines.append(f"{key} = {_toml_value(value)}")
        lines.append("")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {value!r} to TOML")


def save_config(config: Config, path: str | Path) -> Path:
    return write_text_atomic(path, config_to_toml(config))
