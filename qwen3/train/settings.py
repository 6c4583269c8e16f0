"""Nested dataclasses from TOML/JSON tables and ``a.b.c=value`` overrides, with errors that name the key.

A dataclass is filled from a dict by field name; nested dataclass fields take sub-tables. Values are checked against
the field's annotation (``int``, ``float``, ``str``, ``bool``, ``X | None``, ``list[X]``, ``tuple[X, ...]``,
``dict``); an int is accepted where a float is expected. Override values are parsed as TOML values (``3e-4``,
``true``, ``[1, 2]``, ``"text"``), and a bare word that is not valid TOML is taken as a string, so
``model.name=qwen3-debug-tiny`` needs no quotes; ``none``/``null`` unset an optional field (TOML has no null).
"""

from __future__ import annotations

import dataclasses
import math
import sys
import types
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

T = TypeVar("T")
NONE_WORDS = ("none", "null")  # TOML has no null: these unset an optional field (``init_from=none``)


class SettingsError(ValueError):
    """A config file, key or value is wrong; the message names it."""


def read_table(path: str | Path) -> dict[str, Any]:
    """A .toml or .json file as a dict."""
    import json

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise SettingsError(f"{path}: cannot read config file ({err.strerror})") from None
    try:
        return json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as err:
        raise SettingsError(
            f"{path}: not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {err}"
        ) from None


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"optim.lr=3e-4"`` -> (["optim", "lr"], 0.0003)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise SettingsError(f"override {text!r}: expected KEY=VALUE, e.g. optim.lr=3e-4")
    try:
        value = tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        value = raw.strip()
    return [part.strip() for part in key.split(".")], value


def apply_overrides(table: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """A copy of ``table`` with each ``a.b=value`` set (sub-tables are created as needed)."""
    import copy

    table = copy.deepcopy(table)
    for text in overrides:
        path, value = parse_override(text)
        node = table
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise SettingsError(f"override {text!r}: {part!r} is a value, not a table")
            node = child
        node[path[-1]] = value
    return table


def from_table(cls: type[T], table: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from ``table``; unknown keys and ill-typed values raise ``SettingsError``."""
    if not isinstance(table, dict):
        raise SettingsError(f"{where or 'config'}: expected a table, got {type(table).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(table) - set(fields))
    if unknown:
        raise SettingsError(
            f"unknown key {_join(where, unknown[0])!r}; known keys{' in ' + where if where else ''}: "
            + ", ".join(fields)
        )
    values = {name: _convert(hints[name], value, _join(where, name)) for name, value in table.items()}
    try:
        return cls(**values)
    except SettingsError:
        raise
    except (TypeError, ValueError) as err:
        raise SettingsError(f"{where + ': ' if where else ''}{err}") from None


def to_table(obj: Any) -> Any:
    """A dataclass (recursively) as plain dicts/lists, the inverse of ``from_table``."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_table(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_table(item) for item in obj]
    if isinstance(obj, dict):
        return {key: to_table(value) for key, value in obj.items()}
    return obj


def _join(where: str, name: str) -> str:
    return f"{where}.{name}" if where else name


def convert_value(annotation: Any, value: Any, where: str) -> Any:
    """``value`` checked against (and converted to) a type annotation; ``where`` names it in errors."""
    return _convert(annotation, value, where)


def _convert(annotation: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if type(None) in options and (
            value is None or (isinstance(value, str) and value.lower() in NONE_WORDS)
        ):
            return None
        errors = []
        for option in (o for o in options if o is not type(None)):
            try:
                return _convert(option, value, where)
            except SettingsError as err:
                errors.append(str(err))
        raise SettingsError(
            errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {annotation}"
        )
    if dataclasses.is_dataclass(annotation):
        return value if isinstance(value, annotation) else from_table(annotation, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise SettingsError(f"{where}: expected a list, got {value!r}")
        (item_type, *_) = typing.get_args(annotation) or (Any,)
        items = [_convert(item_type, item, f"{where}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise SettingsError(f"{where}: expected a table, got {value!r}")
        return dict(value)
    return _scalar(annotation, value, where)


def _scalar(annotation: Any, value: Any, where: str) -> Any:
    if annotation is Any:
        return value
    if annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):  # a NaN or infinite lr, eps or clip trains nothing and says nothing
                raise SettingsError(f"{where}: expected a finite number, got {value!r}")
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    else:
        raise SettingsError(f"{where}: unsupported field type {annotation}")
    raise SettingsError(f"{where}: expected {annotation.__name__}, got {value!r}")
