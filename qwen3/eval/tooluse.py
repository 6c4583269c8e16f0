"""ToolUse grading (the report's in-house ToolUse, §4.7: "accuracy in intent recognition, format accuracy, and
parameter accuracy" over single-turn, multi-turn and multi-step calling), plus the final answer.

The reference (INTERFACES.md, world): ``calls`` holds one list of expected calls per round (``[]``: no tool
should be called in that round) and ``answer`` the final answer after the tool results (or None). Trailing empty
rounds are the answering round. The replies are those of every round the harness ran, in order.

Four parts, each in [0, 1], and the score is their mean (the answer part only when there is a reference answer):

- intent: per round, the set of tools called equals the expected set (an empty set when no call is expected);
- format: per round, every ``<tool_call>`` block is a well-formed Hermes call (a JSON object with a string
  ``name`` and object ``arguments``) naming an offered tool;
- parameters: per expected call, a call of that tool in its round whose arguments satisfy the tool's JSON schema
  and equal the expected arguments (numbers compared as numbers, strings case- and space-insensitively);
- answer: the content of the last reply, once no more calls come, matches the reference answer.

The item is correct when every part is 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from qwen3.eval.graders import Grade, extract_answer, parse_arguments, text_matches, wrong
from qwen3.eval.reply import Reply
from qwen3.eval.schema import schema_error
from qwen3.eval.verify import answers_equal
from qwen3.tokenizer.special import TOOL_CALL_START


def expected_rounds(reference: dict[str, Any]) -> list[list[dict[str, Any]]]:
    """The calling rounds: ``calls`` without its trailing empty rounds (the answering round)."""
    rounds = [list(calls) for calls in reference.get("calls") or []]
    while rounds and not rounds[-1]:
        rounds.pop()
    return rounds


def tool_schemas(item) -> dict[str, dict[str, Any]]:
    """Tool name -> its ``parameters`` schema, from the item's OpenAI tool definitions."""
    schemas = {}
    for tool in item.tools or []:
        function = tool.get("function", tool)
        schemas[function["name"]] = function.get("parameters") or {}
    return schemas


def values_equal(got: Any, expected: Any) -> bool:
    """Argument values: numbers numerically (1e-6 relative), strings normalised, containers element-wise."""
    if isinstance(expected, bool) or isinstance(got, bool):
        return got == expected
    if isinstance(expected, (int, float)):
        if isinstance(got, str):
            try:
                got = float(got)
            except ValueError:
                return False
        return isinstance(got, (int, float)) and math.isclose(got, expected, rel_tol=1e-6, abs_tol=1e-9)
    if isinstance(expected, str):
        return isinstance(got, str) and " ".join(got.casefold().split()) == " ".join(
            expected.casefold().split()
        )
    if isinstance(expected, dict):
        return (
            isinstance(got, dict)
            and got.keys() == expected.keys()
            and all(values_equal(got[k], v) for k, v in expected.items())
        )
    if isinstance(expected, list):
        return isinstance(got, list) and len(got) == len(expected) and all(map(values_equal, got, expected))
    return got == expected


def round_format(reply: Reply, schemas: dict[str, dict]) -> str | None:
    """Why the round's calls are malformed, or None. A block the chat parser could not read stays in the content."""
    if TOOL_CALL_START in reply.content:
        return "a <tool_call> block is not a JSON object with a name and object arguments"
    for call in reply.tool_calls:
        name = call["function"]["name"]
        if name not in schemas:
            return f"called {name!r}, which is not an offered tool"
        _, problem = parse_arguments(call["function"]["arguments"])
        if problem is not None:
            return f"{name}: {problem}"
    return None


def call_parameters(calls: list[dict], expected: dict, schemas: dict[str, dict]) -> str | None:
    """Why no call in ``calls`` has the expected call's parameters, or None when one does."""
    name = expected["name"]
    candidates = [call for call in calls if call["function"]["name"] == name]
    if not candidates:
        return f"{name} was not called"
    problems = []
    for call in candidates:
        arguments, problem = parse_arguments(call["function"]["arguments"])
        if problem is None:
            problem = schema_error(arguments, schemas.get(name, {}))
        if problem is None and not values_equal(arguments, expected.get("arguments") or {}):
            problem = f"arguments {arguments} differ from {expected.get('arguments')}"
        if problem is None:
            return None
        problems.append(problem)
    return f"{name}: {problems[0]}"


def grade_tooluse(item, replies: Sequence[Reply]) -> Grade:
    if not replies:
        return wrong("no replies")
    for reply in replies:
        if reply.error is not None:
            return wrong(f"no reply: {reply.error}", mode=reply.mode)
    reference, schemas = item.reference, tool_schemas(item)
    rounds = expected_rounds(reference)
    problems: list[str] = []
    # Every expected calling round plus the answering round (or every round the model kept calling in).
    count = max(len(rounds) + 1, len(replies))
    intent = format_ok = 0
    for index in range(count):
        expected = rounds[index] if index < len(rounds) else []
        reply = replies[index] if index < len(replies) else None
        called = sorted(call["function"]["name"] for call in reply.tool_calls) if reply is not None else []
        if reply is not None and sorted({c["name"] for c in expected}) == sorted(set(called)):
            intent += 1
        else:
            problems.append(
                f"round {index + 1}: called {called or 'nothing'}, expected "
                f"{sorted(c['name'] for c in expected) or 'nothing'}"
            )
        problem = round_format(reply, schemas) if reply is not None else None
        format_ok += problem is None
        if problem is not None:
            problems.append(f"round {index + 1}: {problem}")
    parts = {"intent": intent / count, "format": format_ok / count}
    wanted = [(index, call) for index, calls in enumerate(rounds) for call in calls]
    if wanted:
        good = 0
        for index, call in wanted:
            calls = replies[index].tool_calls if index < len(replies) else []
            problem = call_parameters(calls, call, schemas)
            good += problem is None
            if problem is not None:
                problems.append(f"round {index + 1}: {problem}")
        parts["parameters"] = good / len(wanted)
    if reference.get("answer") is not None:
        parts["answer"] = float(
            _answer_right(replies[-1], str(reference["answer"]), bool(replies[-1].tool_calls))
        )
        if not parts["answer"]:
            problems.append("the final answer is missing or wrong")
    score = sum(parts.values()) / len(parts)
    details = {**parts, "rounds": len(replies), "mode": replies[-1].mode}
    correct = all(value == 1.0 for value in parts.values())
    return Grade(score, correct, "all parts right" if correct else "; ".join(problems)[:300], details)


def _answer_right(reply: Reply, expected: str, still_calling: bool) -> bool:
    text = reply.answer_text
    if text is None or still_calling or not text.strip():
        return False
    answer = extract_answer(text)
    return answers_equal(answer, expected) or text_matches(answer, expected)
