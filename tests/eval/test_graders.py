"""Every grader on hand-written replies: right, wrong, unclosed thought, empty thought, tool calls and schemas."""

from __future__ import annotations

import json

import pytest

from qwen3.eval import Grade, Reply, answers_equal, grade
from qwen3.eval.graders import extract_answer, grade_ifeval, ifeval_variants, measure_length
from qwen3.eval.schema import schema_error
from tests.eval.conftest import CALCULATOR, CONVERT, item


def think(thought: str, answer: str) -> Reply:
    return Reply.from_text(f"<think>\n{thought}\n</think>\n\n{answer}")


# -- Reply --------------------------------------------------------------------------------------------------------
def test_reply_modes_from_text():
    assert think("17*23 = 391", "Answer: 391").mode == "think"
    assert Reply.from_text("<think>\n\n</think>\n\nAnswer: 391").mode == "no_think"
    assert Reply.from_text("Answer: 391", enable_thinking=False).mode == "no_think"
    cut = Reply.from_text("<think>\nlet me see, 17*23 is")
    assert cut.mode == "unclosed" and cut.answer_text is None


def test_reply_from_message():
    reply = Reply.from_message({"role": "assistant", "reasoning_content": "x", "content": "Answer: 4"})
    assert reply.mode == "think" and reply.content == "Answer: 4"
    assert Reply.from_message({"content": "Answer: 4"}).mode == "no_think"
    assert Reply.from_message({"reasoning_content": "still going", "content": None}).mode == "unclosed"
    # A server without a reasoning parser leaves the think block in the content.
    raw = Reply.from_message({"content": "<think>\nhm\n</think>\n\nAnswer: 4"})
    assert raw.mode == "think" and raw.content == "Answer: 4"
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "calculator", "arguments": '{"expression": "1+1"}'},
    }
    assert (
        Reply.from_message({"content": None, "tool_calls": [call]}).tool_calls[0]["function"]["name"]
        == "calculator"
    )
    # After the hard switch a reply filed wholly as reasoning is the answer (a known server parser bug).
    misfiled = Reply.from_message({"reasoning_content": "Answer: 4", "content": None}, thinking_prompt=False)
    assert misfiled.content == "Answer: 4" and misfiled.mode == "no_think"
    # A server that dumps the thought and "</think>" into the content (no opening tag) is re-parsed.
    dumped = Reply.from_message({"content": "let me see\n</think>\n\nAnswer: 4"})
    assert dumped.reasoning == "let me see" and dumped.content == "Answer: 4"
    with pytest.raises(TypeError, match="dict"):
        Reply.from_message("Answer: 4")


# -- reasoning ----------------------------------------------------------------------------------------------------
REASONING = item("reasoning", "What is 17 * 23?", {"answer": "391"})


def test_reasoning_right_wrong_unclosed():
    assert grade(REASONING, think("17*23 = 391", "The product.\nAnswer: 391")).correct
    wrong = grade(REASONING, think("17*23 = 381", "Answer: 381"))
    assert not wrong.correct and "381" in wrong.reason
    # The right number inside an unclosed thought is no answer (lighteval#869).
    unclosed = grade(REASONING, Reply.from_text("<think>\n17*23 = 391\nAnswer: 391"))
    assert not unclosed.correct and "never closed" in unclosed.reason
    # An empty think block in a thinking-mode turn: graded on the answer, the mode is recorded.
    empty = grade(REASONING, Reply.from_text("<think>\n\n</think>\n\nAnswer: 391"))
    assert empty.correct and empty.details["mode"] == "no_think"
    # The answer in the thought but not in the content does not count.
    assert not grade(REASONING, think("Answer: 391", "I am not sure.")).correct


def test_reasoning_equivalent_forms():
    half = item("reasoning", "q", {"answer": "1/2"})
    assert grade(half, think("t", "Answer: 0.5")).correct
    assert grade(half, think("t", "Answer: \\boxed{\\frac{1}{2}}")).correct
    assert not grade(half, think("t", "Answer: 0.25")).correct
    assert answers_equal("2*(x+1)", "2x + 2") and not answers_equal("x+1", "x+2")
    assert answers_equal("1,234", "1234") and not answers_equal("__import__('os')", "0")


def test_extract_answer_takes_the_last_answer_line():
    assert extract_answer("Answer: 3\nwait, no.\nAnswer: 4") == "4"
    assert extract_answer("  just 4  ") == "just 4"


def test_reasoning_program_runs_in_the_sandbox():
    code = item("reasoning", "Write add(a, b).", {"tests": "assert add(2, 3) == 5"})
    good = "```python\ndef add(a, b):\n    return a + b\n```"
    bad = "```python\ndef add(a, b):\n    return a - b\n```"
    loop = "```python\ndef add(a, b):\n    while True: pass\n```\n"
    assert grade(code, think("t", good)).correct
    assert "AssertionError" in grade(code, think("t", bad)).reason
    looping = item("reasoning", "q", {"tests": "add(1, 2)"})
    from qwen3.eval.graders import grade_program

    assert "timed out" in grade_program(loop, "add(1, 2)", mode="think", timeout_s=1.0).reason
    assert not grade(looping, think("t", "no code here")).correct


# -- knowledge and counterfact ------------------------------------------------------------------------------------
KNOWLEDGE = item(
    "knowledge", "What is the capital of Drask?", {"answer": "Velmora", "aliases": ["Velmora City"]}
)


def test_knowledge_aliases_and_normalisation():
    assert grade(KNOWLEDGE, think("t", "Answer: velmora.")).correct
    assert grade(KNOWLEDGE, think("t", "Answer: The Velmora City")).correct
    assert grade(KNOWLEDGE, think("t", "The capital of Drask is Velmora.")).correct
    assert not grade(KNOWLEDGE, think("t", "Answer: Ostrin")).correct


FALSE_PREMISE = item(
    "counterfact",
    "Why did Ada Velm found Ostrin in 1820?",
    {"false_premise": True, "premise": "Ada Velm founded Ostrin", "truth": "Ostrin was founded by Bren Tal"},
)


def test_counterfact_refusing_scores_inventing_does_not():
    assert grade(FALSE_PREMISE, think("t", "Ada Velm did not found Ostrin; it was Bren Tal.")).correct
    assert grade(FALSE_PREMISE, think("t", "Ostrin was founded by Bren Tal.")).correct
    assert grade(FALSE_PREMISE, think("t", "It was Bren Tal who founded Ostrin.")).correct  # the correction
    invented = grade(FALSE_PREMISE, think("t", "She founded it to trade salt along the river."))
    assert not invented.correct and "false premise" in invented.reason
    control = item("counterfact", "q", {"false_premise": False, "answer": "Bren Tal", "aliases": []})
    assert grade(control, think("t", "Answer: Bren Tal")).correct
    assert "true premise" in grade(control, think("t", "That is not true, there is no such person.")).reason


# -- ifeval -------------------------------------------------------------------------------------------------------
def toy_checker(spec: dict, text: str) -> bool:
    """A hand-written stand-in for qwen3.world.constraints.check_constraint."""
    if spec["kind"] == "min_words":
        return len(text.split()) >= spec["n"]
    if spec["kind"] == "lowercase":
        return text == text.lower()
    if spec["kind"] == "starts_with":
        return text.startswith(spec["text"])
    raise ValueError(spec["kind"])


def test_ifeval_strict_and_loose():
    specs = [{"kind": "starts_with", "text": "Dear"}, {"kind": "min_words", "n": 3}]
    ifeval = item("ifeval", "Write a note.", {"constraints": specs})
    strict_ok = grade_ifeval(ifeval, think("t", "Dear Bo, see you soon."), checker=toy_checker)
    assert strict_ok.correct and strict_ok.details["prompt_loose"]
    # A preamble line breaks strict but not loose (IFEval drops the first line).
    preamble = grade_ifeval(
        ifeval, think("t", "Sure, here it is:\nDear Bo, see you soon."), checker=toy_checker
    )
    assert not preamble.correct and preamble.details["strict"] == [False, True]
    assert preamble.details["loose"] == [True, True] and preamble.details["prompt_loose"]
    # Markdown asterisks are stripped in the loose variants.
    stars = grade_ifeval(ifeval, think("t", "**Dear** Bo, see you."), checker=toy_checker)
    assert stars.details["loose"][0] and not stars.details["strict"][0]
    assert "Dear Bo" in ifeval_variants("Intro\nDear Bo\nBye")[3]
    unclosed = grade_ifeval(ifeval, Reply.from_text("<think>\nDear Bo, hi there"), checker=toy_checker)
    assert not unclosed.correct and "never closed" in unclosed.reason


# -- lengthctrl ---------------------------------------------------------------------------------------------------
def test_lengthctrl_score_from_relative_error():
    length = item("lengthctrl", "Write 10 words.", {"target": 10, "unit": "words"})
    exact = grade(length, think("t", "one two three four five six seven eight nine ten"))
    assert exact.correct and exact.score == 1.0
    half = grade(length, think("t", "one two three four five"))
    assert not half.correct and half.score == pytest.approx(0.5)
    assert grade(length, think("t", " ".join(["w"] * 40))).score == 0.0
    assert measure_length("- a\n- b\n3. c\nnot an item", "items") == 3
    items = item("lengthctrl", "List 3 fruits.", {"target": 3, "unit": "items"})
    assert grade(items, think("t", "- apple\n- pear\n- fig")).correct


# -- thinkfollow --------------------------------------------------------------------------------------------------
def test_thinkfollow_compares_modes():
    dialogue = [
        {"role": "user", "content": "Hi /no_think"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "What is 2+2? /think"},
    ]
    follow = item("thinkfollow", "", {"mode": "think"}, messages=dialogue)
    assert grade(follow, think("2+2=4", "4")).correct
    empty = grade(follow, Reply.from_text("<think>\n\n</think>\n\n4"))
    assert not empty.correct and "no_think" in empty.reason
    assert not grade(follow, Reply.from_text("<think>\n2+2")).correct
    no_think = item("thinkfollow", "", {"mode": "no_think"}, messages=dialogue)
    assert grade(no_think, Reply.from_text("<think>\n\n</think>\n\n4")).correct
    assert "empty reply" in grade(no_think, Reply.from_text("", enable_thinking=False)).reason
    # Under the hard switch a model that still writes a thought did not follow it.
    ignored = Reply.from_text("<think>\nlet me think\n</think>\n\n4", enable_thinking=False)
    assert ignored.mode == "think" and not grade(no_think, ignored).correct


# -- tooluse ------------------------------------------------------------------------------------------------------
def call(name: str, **arguments) -> str:
    return f"<tool_call>\n{json.dumps({'name': name, 'arguments': arguments})}\n</tool_call>"


TOOLUSE = item(
    "tooluse",
    "What is 12*7?",
    {"calls": [[{"name": "calculator", "arguments": {"expression": "12*7"}}]], "answer": "84"},
    tools=[CALCULATOR, CONVERT],
)


def test_tooluse_right_call_and_answer():
    replies = [think("use the tool", call("calculator", expression="12*7")), think("done", "Answer: 84")]
    result = grade(TOOLUSE, replies)
    assert result.correct and result.score == 1.0
    assert result.details["intent"] == result.details["format"] == result.details["parameters"] == 1.0


def test_tooluse_wrong_parameter():
    replies = [think("t", call("calculator", expression="12*8")), think("t", "Answer: 96")]
    result = grade(TOOLUSE, replies)
    assert not result.correct and result.details["intent"] == 1.0 and result.details["parameters"] == 0.0
    assert "differ" in result.reason and result.details["answer"] == 0.0


def test_tooluse_schema_violation_and_malformed_json():
    extra = grade(TOOLUSE, [think("t", call("calculator", expression="12*7", precision=2)), think("t", "84")])
    assert extra.details["parameters"] == 0.0 and "not a parameter" in extra.reason
    typed = item(
        "tooluse",
        "10 km in miles?",
        {"calls": [[{"name": "convert", "arguments": {"value": 10, "unit": "km"}}]], "answer": None},
        tools=[CONVERT],
    )
    wrong_type = grade(typed, [think("t", call("convert", value="ten", unit="km")), think("t", "6.2 mi")])
    assert wrong_type.details["parameters"] == 0.0 and "$.value must be number" in wrong_type.reason
    bad_enum = grade(typed, [think("t", call("convert", value=10, unit="yards")), think("t", "x")])
    assert "must be one of" in bad_enum.reason
    broken = Reply.from_text(
        '<think>\nt\n</think>\n\n<tool_call>\n{"name": "convert", "arguments": {value: 10}}\n</tool_call>'
    )
    malformed = grade(typed, [broken])
    assert malformed.details["format"] < 1.0 and malformed.details["intent"] < 1.0 and not malformed.correct


def test_tooluse_rightly_no_call_and_wrongly_calling():
    chat = item("tooluse", "Say hi.", {"calls": [[]], "answer": None}, tools=[CALCULATOR])
    assert grade(chat, think("t", "Hi!")).correct
    needless = grade(chat, [think("t", call("calculator", expression="1+1")), think("t", "Hi!")])
    assert not needless.correct and needless.details["intent"] < 1.0
    # Calling nothing is no credit when nothing was said either: an unclosed thought or an empty reply.
    for silent in (Reply.from_text("<think>\nhm"), Reply.from_text("<think>\n\n</think>\n\n")):
        result = grade(chat, [silent])
        assert result.score == 0.0 and "no calls and no answer" in result.reason


def test_schema_error_names_the_path():
    schema = CONVERT["function"]["parameters"]
    assert schema_error({"value": 1.5, "unit": "mi"}, schema) is None
    assert schema_error({"unit": "mi"}, schema) == "$.value is required"


# -- dispatch -----------------------------------------------------------------------------------------------------
def test_grade_rejects_unknown_family_and_failed_reply():
    with pytest.raises(ValueError, match="no grader for family 'poetry'"):
        grade(item("poetry", "q", {}), think("t", "a"))
    failed = grade(REASONING, Reply.failed("HTTP 500"))
    assert isinstance(failed, Grade) and not failed.correct and "HTTP 500" in failed.reason
    with pytest.raises(ValueError, match="score"):
        Grade(1.5, True, "x")


def test_tooluse_multi_call_and_multi_step():
    two = [
        {"name": "calculator", "arguments": {"expression": "1+2"}},
        {"name": "calculator", "arguments": {"expression": "3+4"}},
    ]
    parallel = item("tooluse", "1+2 and 3+4?", {"calls": [two], "answer": None}, tools=[CALCULATOR])
    both = think("t", call("calculator", expression="3+4") + "\n" + call("calculator", expression="1+2"))
    assert grade(parallel, [both, think("t", "3 and 7")]).correct  # any order
    once = grade(parallel, [think("t", call("calculator", expression="1+2")), think("t", "3")])
    # One call cannot stand for two: intent (a multiset) and half the parameters are wrong.
    assert once.details["parameters"] == 0.5 and once.details["intent"] == 0.5
    chained = item(
        "tooluse",
        "(2+3)*4?",
        {
            "calls": [
                [{"name": "calculator", "arguments": {"expression": "2+3"}}],
                [{"name": "calculator", "arguments": {"expression": "5*4"}}],
                [],
            ],
            "answer": "20",
        },
        tools=[CALCULATOR],
    )
    steps = [
        think("t", call("calculator", expression="2+3")),
        think("t", call("calculator", expression="5*4")),
    ]
    assert grade(chained, [*steps, think("t", "Answer: 20")]).correct
    early = grade(chained, [steps[0], think("t", "Answer: 20")])
    assert not early.correct and early.details["intent"] == pytest.approx(1 / 3)
