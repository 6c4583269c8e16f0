"""``SamplingParams.answer_prefix``: forced once, right after the thought closes (by the model, by the thinking
budget, or already in the prompt), and parsed with the rest of the output; plus ``ChatOptions.tool_calls``."""

from __future__ import annotations

import pytest

from qwen3.chat import render
from qwen3.engine import SamplingParams
from qwen3.engine.detokenizer import ChatOptions
from qwen3.engine.sampling_params import STOP_THINKING_TEXT

from .conftest import make_llm
from .scripted import ScriptedSampler

PREFIX = '<tool_call>\n{"name": "get_weather", "arguments": '
ARGUMENTS = '{"city": "Paris"}}\n</tool_call>'
LONG_THOUGHT = "<think>\n" + "word " * 30


def chat_prompt(key: str, enable_thinking: bool | None = None) -> str:
    return render(
        [{"role": "user", "content": key}], add_generation_prompt=True, enable_thinking=enable_thinking
    )


def run(llm, prompt: str, chat: ChatOptions | None = None, **params):
    params.setdefault("max_tokens", 60)
    engine = llm.engine
    engine.add_request("r", prompt, SamplingParams(temperature=0, **params), chat=chat)
    final = None
    while engine.has_unfinished():
        for delta in engine.step():
            final = delta.output or final
    return final


@pytest.fixture(scope="module")
def llm():
    llm = make_llm()
    ScriptedSampler(
        llm.engine,
        {
            "THINKS": "<think>\nplan\n</think>" + ARGUMENTS,
            "ANSWERS": ARGUMENTS,
            "LONG": LONG_THOUGHT + "</think>\n\n" + ARGUMENTS,
            "TWICE": "<think>\na\n</think><think>\nb\n</think>",
            "CALLS": '<tool_call>\n{"name": "f", "arguments": {}}\n</tool_call>',
        },
    ).install(llm.engine)
    return llm


def test_after_the_models_own_end_of_thought(llm):
    out = run(llm, chat_prompt("THINKS"), answer_prefix=PREFIX)
    assert out.text == "<think>\nplan\n</think>\n\n" + PREFIX + ARGUMENTS
    assert out.num_forced_tokens == len(llm.tokenizer.encode("\n\n" + PREFIX))


def test_before_the_first_step_when_the_prompt_closed_the_thought(llm):
    out = run(llm, chat_prompt("ANSWERS", enable_thinking=False), answer_prefix=PREFIX)
    assert out.text == PREFIX + ARGUMENTS
    assert out.token_ids[: out.num_forced_tokens] == llm.tokenizer.encode(PREFIX)
    assert out.num_reasoning_tokens == 0


def test_after_the_budgets_stop_text(llm):
    out = run(llm, chat_prompt("LONG"), answer_prefix=PREFIX, thinking_budget=3, max_tokens=200)
    thought = llm.tokenizer.decode(llm.tokenizer.encode(LONG_THOUGHT)[:4])  # <think> and 3 thought tokens
    assert out.text.startswith(thought + STOP_THINKING_TEXT + PREFIX)
    assert out.text.count(PREFIX) == 1


def test_forced_once(llm):
    out = run(llm, chat_prompt("TWICE"), answer_prefix="X")
    assert out.text.count("X") == 1 and out.text.startswith("<think>\na\n</think>\n\nX<think>")


def test_the_chat_parser_sees_the_prefix(llm):
    out = run(llm, chat_prompt("THINKS"), ChatOptions(enable_thinking=True), answer_prefix=PREFIX)
    assert out.reasoning_content == "plan" and out.content is None
    assert [(c.function.name, c.function.arguments) for c in out.tool_calls] == [
        ("get_weather", '{"city": "Paris"}')
    ]


def test_counts_toward_max_tokens(llm):
    out = run(llm, chat_prompt("ANSWERS", enable_thinking=False), answer_prefix=PREFIX, max_tokens=3)
    assert out.token_ids == llm.tokenizer.encode(PREFIX)[:3] and out.finish_reason == "length"


def test_chat_without_tool_parsing_keeps_the_call_as_content(llm):
    prompt = chat_prompt("CALLS", enable_thinking=False)
    parsed = run(llm, prompt, ChatOptions(enable_thinking=False))
    assert parsed.tool_calls and parsed.content is None
    kept = run(llm, prompt, ChatOptions(enable_thinking=False, tool_calls=False))
    assert kept.tool_calls == [] and kept.content == kept.text


@pytest.mark.parametrize("bad", ["", 5])
def test_validation(bad):
    with pytest.raises(ValueError, match="answer_prefix"):
        SamplingParams(answer_prefix=bad)
