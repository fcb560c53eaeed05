"""Hyperparameter helpers shared by every layer: `hp` declares a field with its help text, and
`coerce_value` turns YAML / `--set` values into the field's type (one-line errors)."""

from __future__ import annotations

from dataclasses import field
from typing import Any

from bench.core.errors import ConfigError
from bench.core.io import load_yaml


def hp(default: Any, help: str, check: Any = None):  # noqa: A002 - mirrors argparse's name
    """A hyperparameter: a default, a one-line help string and, for config fields, its value check
    (`bench.core.validate.Check`: what the type cannot say — ranges, elements, choices, syntax), run by
    `bench.core.validate.validate` when a config is built."""
    if isinstance(default, (list, dict, set)):
        raise TypeError("use tuples for sequence defaults (frozen dataclasses)")
    return field(default=default, metadata={"help": help, **({"check": check} if check is not None else {})})


def _scalar(text: str) -> Any:
    """One list element of a `--set` value: a YAML scalar (0.5, true, vqa), or the text itself when it
    is not valid YAML (a regex such as `[ab]x` or `(`) or not a YAML 1.2 number (`0x10`, `010`), so it
    fails later as what it is, in one line."""
    try:
        return load_yaml(text, "value")
    except ConfigError:
        return text


def coerce_value(value: Any, default: Any, where: str) -> Any:
    """Convert a YAML or --set value to the type of the field's default."""
    if isinstance(default, bool):
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        if isinstance(value, bool):
            return value
    elif isinstance(default, (int, float)):
        kind = type(default)  # an int field takes ints only; a float field ints and floats
        if isinstance(value, (int,) if kind is int else (int, float)) and not isinstance(value, bool):
            return kind(value)
        if isinstance(value, str):
            try:
                return kind(value)
            except ValueError:
                pass
    elif isinstance(default, tuple):
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("[") and text.endswith("]"):  # YAML's flow list, as a config file writes it
                text = text[1:-1]
            value = [v.strip() for v in text.split(",") if v.strip()]
            value = [_scalar(v) for v in value]
        if isinstance(value, (list, tuple)):
            return tuple(value)
        return (value,)
    elif isinstance(default, str):
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(f"{where}: expected {type(default).__name__}, found {value!r}")
