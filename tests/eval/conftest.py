"""Hand-written items of every family (the world's formats, INTERFACES.md) for the eval tests."""

from __future__ import annotations

import json

from qwen3.world.items import Item

CALCULATOR = {
    "type": "function",
    "function": {
        "name": "calculator",
        "description": "Evaluate an arithmetic expression.",
        "parameters": {
            "type": "object",
            "properties": {"expression": {"type": "string"}},
            "required": ["expression"],
            "additionalProperties": False,
        },
    },
}
CONVERT = {
    "type": "function",
    "function": {
        "name": "convert",
        "description": "Convert a value between units.",
        "parameters": {
            "type": "object",
            "properties": {
                "value": {"type": "number"},
                "unit": {"type": "string", "enum": ["km", "mi"]},
            },
            "required": ["value", "unit"],
        },
    },
}


def item(family: str, content: str, reference: dict, **fields) -> Item:
    return Item(
        family=family,
        id=fields.pop("id", f"{family}-0"),
        split="test",
        messages=fields.pop("messages", [{"role": "user", "content": content}]),
        reference=reference,
        **fields,
    )


def fake_execute(name: str, arguments) -> str:
    """A stand-in for qwen3.world.tools.execute in tests: a real calculator over + - * /."""
    args = json.loads(arguments) if isinstance(arguments, str) else arguments
    if name == "calculator":
        expression = args.get("expression", "")
        if not set(expression) <= set("0123456789+-*/(). "):
            return json.dumps({"error": "bad expression"})
        return json.dumps({"result": eval(expression)})  # the characters are digits and operators only
    return json.dumps({"error": f"unknown tool {name}"})
