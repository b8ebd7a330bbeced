"""Options defined once: a config dataclass field carries its default and its help, and the command line's flags
(and so the docs' command-line reference, generated from the parsers) are derived from the field.

    @dataclass(frozen=True)
    class EmbedConfig:
        io_threads: int = option(2, "threads per task reading and decoding images")

    add_options(parser, EmbedConfig, ["io_threads"])          # --io-threads, type int, default 2, that help
    EmbedConfig(..., **option_values(args, EmbedConfig, ["io_threads"]))
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

_OPTION = "lookalike.option"


@dataclasses.dataclass(frozen=True)
class OptionSpec:
    help: str
    parse: Callable[[str], Any] | None = None  # from the command line's text; default: the default's type
    metavar: str | None = None
    choices: Sequence[str] | None = None
    shown: str | None = None                   # the default as help shows it (e.g. "4GiB" for 4 << 30)
    flag: str | None = None                    # the flag, when not --field-name (--no-NAME for a True default)
    repeatable: bool = False                   # a tuple field: one value per use of the flag


def option(default: Any, help: str, **spec: Any) -> Any:
    """A config field that is also a command-line option: its default, its help and how its flag is read."""
    return dataclasses.field(default=default, metadata={_OPTION: OptionSpec(help, **spec)})


def option_spec(config: type, name: str) -> OptionSpec:
    field = _fields(config)[name]
    try:
        return field.metadata[_OPTION]
    except KeyError:
        raise TypeError(f"{config.__name__}.{name} is not declared with option()") from None


def help_of(field: dataclasses.Field) -> str | None:
    """A field's help when it is declared with option(), else None."""
    spec = field.metadata.get(_OPTION)
    return spec.help if spec else None


def flag_of(config: type, name: str) -> str:
    return option_spec(config, name).flag or "--" + name.replace("_", "-")


def add_options(p: argparse.ArgumentParser | argparse._ArgumentGroup, config: type, names: Sequence[str]) -> None:
    """One flag per field: its default, its help (with the default appended), its type."""
    fields = _fields(config)
    for name in names:
        spec, default, flag = option_spec(config, name), fields[name].default, flag_of(config, name)
        metavar = spec.metavar or flag.removeprefix("--").upper().replace("-", "_")
        kwargs: dict[str, Any] = {"dest": name, "default": default, "help": _help(spec, default)}
        if isinstance(default, bool):
            # A True default is turned off by its --no-NAME flag, whose help says what that does.
            kwargs |= {"action": "store_true" if default is False else "store_false", "help": spec.help}
        elif spec.repeatable:
            kwargs |= {"action": "append", "default": [], "type": spec.parse or str, "metavar": metavar}
        else:
            parse = spec.parse or (type(default) if default is not None else str)
            kwargs |= {"type": parse, "metavar": None if spec.choices else metavar, "choices": spec.choices}
        p.add_argument(flag, **kwargs)


def option_values(args: argparse.Namespace, config: type, names: Sequence[str]) -> dict[str, Any]:
    """The parsed flags of these fields, as keyword arguments of the config."""
    return {name: tuple(getattr(args, name)) if option_spec(config, name).repeatable else getattr(args, name)
            for name in names}


def _help(spec: OptionSpec, default: Any) -> str:
    if default is None or default is False or "(default" in spec.help or "default:" in spec.help:
        return spec.help
    shown = spec.shown if spec.shown is not None else f"{default:g}" if isinstance(default, float) else default
    return f"{spec.help} (default {shown})"


def _fields(config: type) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in dataclasses.fields(config)}


def parse_bytes(text: str) -> int:
    """A size as people write it: 512MiB, 4GiB, 1000000."""
    units = {"": 1, "b": 1, "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "kb": 10**3, "mb": 10**6, "gb": 10**9}
    number = text.strip().rstrip("BbIiKkMmGg")
    unit = text.strip()[len(number):].lower()
    try:
        value = float(number) * units[unit]
    except (KeyError, ValueError):
        value = math.nan
    if not math.isfinite(value) or value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a size such as 512MiB, 4GiB or 1000000")
    return int(value)
