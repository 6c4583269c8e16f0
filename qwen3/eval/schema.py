"""The JSON Schema subset that OpenAI tool definitions use, as a validator that names the first violation.

Keywords: ``type`` (one or a list), ``enum``, ``const``, ``properties``, ``required``, ``additionalProperties``
(a bool or a schema), ``items``, ``minimum`` / ``maximum``, ``minLength`` / ``maxLength``, ``minItems`` /
``maxItems``. Other keywords are ignored (a lenient validator: it never rejects a value a full one would accept
for these schemas' purposes).
"""

from __future__ import annotations

from typing import Any

_TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: (
        isinstance(v, int) and not isinstance(v, bool) or isinstance(v, float) and v.is_integer()
    ),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "null": lambda v: v is None,
}


def schema_error(value: Any, schema: dict[str, Any], path: str = "$") -> str | None:
    """Why ``value`` violates ``schema`` (naming the path, e.g. ``$.unit``), or None when it conforms."""
    if not isinstance(schema, dict):
        return None
    kinds = schema.get("type")
    if kinds is not None:
        kinds = [kinds] if isinstance(kinds, str) else list(kinds)
        if not any(_TYPES.get(kind, lambda v: True)(value) for kind in kinds):
            return f"{path} must be {' or '.join(kinds)}, got {type(value).__name__} {value!r:.40}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{path} must be one of {schema['enum']}, got {value!r:.40}"
    if "const" in schema and value != schema["const"]:
        return f"{path} must be {schema['const']!r}, got {value!r:.40}"
    if isinstance(value, dict):
        return _object_error(value, schema, path)
    if isinstance(value, list):
        return _array_error(value, schema, path)
    if isinstance(value, str):
        return _bounds_error(len(value), schema, "minLength", "maxLength", path, "characters")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _bounds_error(value, schema, "minimum", "maximum", path, "")
    return None


def _object_error(value: dict, schema: dict, path: str) -> str | None:
    properties = schema.get("properties") or {}
    for name in schema.get("required") or []:
        if name not in value:
            return f"{path}.{name} is required"
    extra = schema.get("additionalProperties", True)
    for name, item in value.items():
        if name in properties:
            if (problem := schema_error(item, properties[name], f"{path}.{name}")) is not None:
                return problem
        elif extra is False:
            return f"{path}.{name} is not a parameter (allowed: {', '.join(properties) or 'none'})"
        elif isinstance(extra, dict) and (problem := schema_error(item, extra, f"{path}.{name}")) is not None:
            return problem
    return None


def _array_error(value: list, schema: dict, path: str) -> str | None:
    if (problem := _bounds_error(len(value), schema, "minItems", "maxItems", path, "items")) is not None:
        return problem
    items = schema.get("items")
    for index, item in enumerate(value):
        if isinstance(items, dict) and (problem := schema_error(item, items, f"{path}[{index}]")) is not None:
            return problem
    return None


def _bounds_error(measure: float, schema: dict, low: str, high: str, path: str, unit: str) -> str | None:
    suffix = f" {unit}" if unit else ""
    if low in schema and measure < schema[low]:
        return f"{path} must have at least {schema[low]}{suffix}, got {measure}"
    if high in schema and measure > schema[high]:
        return f"{path} must have at most {schema[high]}{suffix}, got {measure}"
    return None
