"""Real tools for the ToolUse family, executed by the harness: a calculator, a lookup into the fictional world,
a unit converter and two date tools.

``execute(name, arguments)`` runs one call and returns the tool's answer as a JSON string: ``{"result": ...}``
on success, ``{"error": "..."}`` for an unknown tool, arguments that are not JSON or break the tool's schema, or
a failure inside the tool (division by zero, an unknown entity). It never raises, because a model's bad call is
an answer the model must read, not a crash of the harness. The calculator parses with ``ast`` and evaluates only
numbers, arithmetic operators and a few math functions: it never evaluates arbitrary code.
"""

from __future__ import annotations

import ast
import datetime as dt
import json
import math
import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from qwen3.world.fiction import build_world


class ToolError(ValueError):
    """A call the tool cannot answer; its message becomes the ``error`` of the result."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]  # JSON schema of the arguments object
    fn: Callable[..., Any]  # (world_seed=..., **arguments) -> the JSON-serialisable result

    @property
    def schema(self) -> dict[str, Any]:
        """The OpenAI tool definition."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }


def _object(properties: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": list(properties),
        "additionalProperties": False,
    }


# ------------------------------------------------------------------------------------------------- calculator
_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.USub: operator.neg, ast.UAdd: operator.pos}
_FUNCTIONS = {
    "sqrt": math.sqrt,
    "abs": abs,
    "round": round,
    "min": min,
    "max": max,
    "log": math.log,
    "exp": math.exp,
}
_MAX_EXPRESSION, _MAX_EXPONENT, _MAX_MAGNITUDE = 300, 64, 1e100


def _evaluate(node: ast.AST) -> float | int:
    if isinstance(node, ast.Expression):
        return _evaluate(node.body)
    if (
        isinstance(node, ast.Constant)
        and isinstance(node.value, (int, float))
        and not isinstance(node.value, bool)
    ):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > _MAX_EXPONENT:
            raise ToolError(f"exponent {right} is too large (at most {_MAX_EXPONENT})")
        value = _BINARY[type(node.op)](left, right)
    elif isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        value = _UNARY[type(node.op)](_evaluate(node.operand))
    elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
        if node.keywords:
            raise ToolError(f"{node.func.id}() takes no keyword arguments")
        value = _FUNCTIONS[node.func.id](*(_evaluate(arg) for arg in node.args))
    else:
        raise ToolError(
            f"unsupported syntax: {ast.unparse(node)[:40]!r} (numbers, + - * / // % **, sqrt, ...)"
        )
    if isinstance(value, complex) or abs(value) > _MAX_MAGNITUDE:
        raise ToolError("the result is out of range")
    return value


def tidy_number(value: float | int) -> float | int:
    """Integers stay integers, integral floats become integers, others keep 10 significant digits."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return float(f"{value:.10g}") if isinstance(value, float) else value


def calculator(expression: str, **_: Any) -> float | int:
    if len(expression) > _MAX_EXPRESSION:
        raise ToolError(f"expression is longer than {_MAX_EXPRESSION} characters")
    try:
        tree = ast.parse(expression.replace("^", "**"), mode="eval")
    except SyntaxError:
        raise ToolError(f"not an arithmetic expression: {expression[:60]!r}") from None
    try:
        return tidy_number(_evaluate(tree))
    except ToolError:
        raise
    except (ZeroDivisionError, OverflowError, TypeError) as err:
        raise ToolError(f"cannot evaluate {expression[:60]!r}: {err}") from None
    except ValueError as err:  # math domain errors (sqrt(-1), log(0))
        raise ToolError(f"cannot evaluate {expression[:60]!r}: {err}") from None


# ------------------------------------------------------------------------------------------------ world lookup
def world_lookup(entity: str, attribute: str, world_seed: int = 0) -> str:
    world = build_world(world_seed)
    names = {name.lower(): name for name in world.attributes}
    name = names.get(entity.strip().lower().removeprefix("the "))
    if name is None:
        raise ToolError(f"unknown entity {entity!r}")
    attributes = world.attributes[name]
    if attribute not in attributes:
        raise ToolError(f"{name} has no attribute {attribute!r} (it has: {', '.join(attributes)})")
    return attributes[attribute]


LOOKUP_ATTRIBUTES = (
    "born_in", "birth_year", "profession", "mentor", "works_at", "river", "founded", "elevation_m", "population",
    "headquarters", "founder", "established",
)  # fmt: skip


# ---------------------------------------------------------------------------------------------- unit converter
# unit -> (dimension, factor to the dimension's base unit); temperatures are converted by formula.
_UNITS: dict[str, tuple[str, float]] = {
    "mm": ("length", 0.001), "cm": ("length", 0.01), "m": ("length", 1.0), "km": ("length", 1000.0),
    "in": ("length", 0.0254), "ft": ("length", 0.3048), "yd": ("length", 0.9144), "mi": ("length", 1609.344),
    "g": ("mass", 0.001), "kg": ("mass", 1.0), "lb": ("mass", 0.45359237), "oz": ("mass", 0.028349523125),
    "s": ("time", 1.0), "min": ("time", 60.0), "h": ("time", 3600.0), "day": ("time", 86400.0),
    "l": ("volume", 1.0), "ml": ("volume", 0.001), "gal": ("volume", 3.785411784),
}  # fmt: skip
_TEMPERATURES = ("C", "F", "K")


def _to_celsius(value: float, unit: str) -> float:
    return value if unit == "C" else (value - 32) * 5 / 9 if unit == "F" else value - 273.15


def _from_celsius(value: float, unit: str) -> float:
    return value if unit == "C" else value * 9 / 5 + 32 if unit == "F" else value + 273.15


def unit_convert(value: float, from_unit: str, to_unit: str, **_: Any) -> float | int:
    if from_unit in _TEMPERATURES and to_unit in _TEMPERATURES:
        return tidy_number(round(_from_celsius(_to_celsius(value, from_unit), to_unit), 6))
    known = ", ".join([*_UNITS, *_TEMPERATURES])
    for unit in (from_unit, to_unit):
        if unit not in _UNITS and unit not in _TEMPERATURES:
            raise ToolError(f"unknown unit {unit!r} (known: {known})")
    if from_unit in _TEMPERATURES or to_unit in _TEMPERATURES or _UNITS[from_unit][0] != _UNITS[to_unit][0]:
        raise ToolError(f"cannot convert {from_unit} to {to_unit}: different quantities")
    return tidy_number(round(value * _UNITS[from_unit][1] / _UNITS[to_unit][1], 6))


# ------------------------------------------------------------------------------------------------------ dates
def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError:
        raise ToolError(f"not a YYYY-MM-DD date: {text!r}") from None


def days_between(start: str, end: str, **_: Any) -> int:
    return (_date(end) - _date(start)).days


def add_days(date: str, days: int, **_: Any) -> str:
    try:
        return (_date(date) + dt.timedelta(days=days)).isoformat()
    except OverflowError:
        raise ToolError(f"{date} + {days} days is outside the calendar") from None


_STRING, _NUMBER, _INTEGER = {"type": "string"}, {"type": "number"}, {"type": "integer"}
TOOLS: dict[str, Tool] = {
    tool.name: tool
    for tool in (
        Tool(
            "calculator",
            "Evaluate an arithmetic expression (numbers, + - * / // % **, sqrt, abs, round, min, max, log, exp).",
            _object({"expression": {**_STRING, "description": "e.g. '(12 + 7) * 3'"}}),
            calculator,
        ),
        Tool(
            "world_lookup",
            "Look up one attribute of a person, city or organisation of the world.",
            _object(
                {
                    "entity": {**_STRING, "description": "the exact name"},
                    "attribute": {"type": "string", "enum": list(LOOKUP_ATTRIBUTES)},
                }
            ),
            world_lookup,
        ),
        Tool(
            "unit_convert",
            "Convert a value between units of length, mass, time, volume or temperature (C, F, K).",
            _object({"value": _NUMBER, "from_unit": _STRING, "to_unit": _STRING}),
            unit_convert,
        ),
        Tool(
            "days_between",
            "Number of days from start to end (dates as YYYY-MM-DD; negative if end is earlier).",
            _object({"start": _STRING, "end": _STRING}),
            days_between,
        ),
        Tool(
            "add_days",
            "The date a number of days after a date.",
            _object({"date": _STRING, "days": _INTEGER}),
            add_days,
        ),
    )
}


def schemas(names: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The OpenAI definitions of the named tools (all when ``names`` is None); an unknown name raises ValueError."""
    names = list(TOOLS) if names is None else list(names)
    unknown = [name for name in names if name not in TOOLS]
    if unknown:
        raise ValueError(f"unknown tool {unknown[0]!r} (known: {', '.join(TOOLS)})")
    return [TOOLS[name].schema for name in names]


def _run(name: str, arguments: dict[str, Any] | str, world_seed: int) -> Any:
    from qwen3.eval.schema import schema_error

    tool = TOOLS.get(name)
    if tool is None:
        raise ToolError(f"unknown tool {name!r} (known: {', '.join(TOOLS)})")
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except json.JSONDecodeError as err:
            raise ToolError(f"arguments are not JSON: {err.msg} at position {err.pos}") from None
    problem = schema_error(arguments, tool.parameters, "arguments")
    if problem is not None:
        raise ToolError(problem)
    return tool.fn(world_seed=world_seed, **arguments)


def execute(name: str, arguments: dict[str, Any] | str, world_seed: int = 0) -> str:
    """Run one tool call; the JSON result, or ``{"error": ...}`` for any bad call (never raises)."""
    try:
        return json.dumps({"result": _run(name, arguments, world_seed)}, ensure_ascii=False)
    except ToolError as err:
        return json.dumps({"error": str(err)}, ensure_ascii=False)
