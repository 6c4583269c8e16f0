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


def call_parameters(
    calls: list[dict], expected: dict, schemas: dict[str, dict]
) -> tuple[int | None, str | None]:
    """(index in ``calls`` of a call with the expected call's parameters, None) or (None, why there is none)."""
    name = expected["name"]
    problems = []
    for index, call in enumerate(calls):
        if call["function"]["name"] != name:
            continue
        arguments, problem = parse_arguments(call["function"]["arguments"])
        if problem is None:
            problem = schema_error(arguments, schemas.get(name, {}))
        if problem is None and not values_equal(arguments, expected.get("arguments") or {}):
            problem = f"arguments {arguments} differ from {expected.get('arguments')}"
        if problem is None:
            return index, None
        problems.append(problem)
    return None, f"{name}: {problems[0]}" if problems else f"{name} was not called"


def names(calls: list[dict]) -> list[str]:
    return sorted(call["function"]["name"] if "function" in call else call["name"] for call in calls)


def intent_and_format(
    rounds, replies: Sequence[Reply], schemas: dict, problems: list[str]
) -> tuple[float, float]:
    """Intent: the share of rounds (every expected round plus the answering round, or every round the model ran)
    whose reply called the expected tools (as a multiset; none in the answering round). Format: the share of
    the model's replies whose calls are well-formed. A reply with neither calls nor an answer (a thought that
    never closed, an empty reply) fails both."""
    count = max(len(rounds) + 1, len(replies))
    intent = well_formed = 0
    for index in range(count):
        expected = names(rounds[index]) if index < len(rounds) else []
        if index >= len(replies):
            problems.append(
                f"round {index + 1}: no turn (the model stopped), expected {expected or 'an answer'}"
            )
            continue
        reply = replies[index]
        if not reply.tool_calls and not (reply.answer_text or "").strip():
            problems.append(
                f"round {index + 1}: no calls and no answer (an unclosed thought or an empty reply)"
            )
            continue
        called = names(reply.tool_calls)
        if called == expected:
            intent += 1
        else:
            problems.append(
                f"round {index + 1}: called {called or 'nothing'}, expected {expected or 'nothing'}"
            )
        problem = round_format(reply, schemas)
        well_formed += problem is None
        if problem is not None:
            problems.append(f"round {index + 1}: {problem}")
    return intent / count, well_formed / len(replies)


def parameters(rounds, replies: Sequence[Reply], schemas: dict, problems: list[str]) -> float | None:
    """The share of expected calls matched by a call of their round (each call matches at most one)."""
    wanted = sum(len(calls) for calls in rounds)
    if not wanted:
        return None
    good = 0
    for index, expected_calls in enumerate(rounds):
        remaining = list(replies[index].tool_calls) if index < len(replies) else []
        for expected in expected_calls:
            match, problem = call_parameters(remaining, expected, schemas)
            if match is None:
                problems.append(f"round {index + 1}: {problem}")
                continue
            good += 1
            remaining.pop(match)
    return good / wanted


def grade_tooluse(item, replies: Sequence[Reply]) -> Grade:
    if not replies:
        return wrong("no replies")
    for reply in replies:
        if reply.error is not None:
            return wrong(f"no reply: {reply.error}", mode=reply.mode)
    reference, schemas = item.reference, tool_schemas(item)
    rounds = expected_rounds(reference)
    problems: list[str] = []
    intent, well_formed = intent_and_format(rounds, replies, schemas, problems)
    parts = {"intent": intent, "format": well_formed}
    if (share := parameters(rounds, replies, schemas, problems)) is not None:
        parts["parameters"] = share
    if reference.get("answer") is not None:
        last = replies[-1]
        parts["answer"] = float(_answer_right(last, str(reference["answer"]), bool(last.tool_calls)))
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
