"""JSON Schema validation of tool arguments and JSON replies, through the ``jsonschema`` library.

``schema_error`` names the first violation with a path (``$.unit``), the form graders, rewards and the tools
themselves put in their reasons. It lives in the world layer because the world's tools and constraints check
their inputs with it, and the evaluation and the rewards above them reuse it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any


def schema_error(value: Any, schema: dict[str, Any], path: str = "$") -> str | None:
    """Why ``value`` violates ``schema`` (naming the path, e.g. ``$.unit``), or None when it conforms.

    A schema that is not a JSON object constrains nothing (tool definitions sometimes omit ``parameters``); a
    schema that is malformed is reported as the problem rather than raised."""
    if not isinstance(schema, dict):
        return None
    import jsonschema

    try:
        validator = _validator(json.dumps(schema, sort_keys=True))
    except jsonschema.SchemaError as exc:
        return f"{path}: the schema itself is invalid ({exc.message})"
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return None
    where = path + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in error.absolute_path)
    if (
        error.validator == "required"
    ):  # jsonschema reports it at the parent; name the missing field's own path
        missing = next(name for name in error.validator_value if name not in error.instance)
        return f"{where}.{missing} is required"
    if error.validator == "additionalProperties" and error.validator_value is False:
        allowed = ", ".join(error.schema.get("properties") or {}) or "none"
        extra = sorted(set(error.instance) - set(error.schema.get("properties") or {}))
        return f"{where}.{extra[0]} is not a parameter (allowed: {allowed})"
    return f"{where}: {error.message}"


@lru_cache(maxsize=256)
def _validator(schema_json: str) -> Any:
    """A compiled validator per distinct schema (keyed by its canonical JSON text): rewards check thousands of
    calls against the same few tool schemas."""
    import jsonschema

    schema = json.loads(schema_json)
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    cls.check_schema(schema)
    return cls(schema)
