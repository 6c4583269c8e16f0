"""The thinking budget: forced stop-thinking text when the budget is hit, nothing otherwise, per request in a
batch; budget 0 gives the empty think block of non-thinking mode; reasoning-token accounting."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from qwen3.chat import render
from qwen3.chat.parse import split_reasoning_text
from qwen3.engine import SamplingParams
from qwen3.engine.sampling_params import EMPTY_THOUGHT_TEXT, STOP_THINKING_TEXT
from qwen3.engine.thinking_budget import Phase, ThinkingState, ThinkTokens, prompt_phase

from .conftest import make_llm, make_model

USER = [{"role": "user", "content": "What is 2+2?"}]


def greedy(budget, max_tokens=100, **kw) -> SamplingParams:
    return SamplingParams(temperature=0, max_tokens=max_tokens, ignore_eos=True, thinking_budget=budget, **kw)


def open_thought_prompt(tokenizer) -> list[int]:
    """A chat prompt that ends inside a thought (as templates that pre-fill "<think>\\n" do)."""
    return tokenizer.encode(render(USER, add_generation_prompt=True) + "<think>\n")


class BiasedHead(nn.Module):
    """lm_head plus a fixed bias: makes the random model open a thought by itself."""

    def __init__(self, head: nn.Module, token: int, bias: float = 1e4):
        super().__init__()
        self.head, self.token, self.bias = head, token, bias

    @property
    def weight(self):
        return self.head.weight

    def forward(self, hidden):
        logits = self.head(hidden)
        logits[..., self.token] += self.bias
        return logits


def thinking_llm(tokenizer):
    """A model that always emits <think> (so the thought is opened by generated tokens)."""
    model = make_model(tie_word_embeddings=False)
    model.lm_head = BiasedHead(model.lm_head, tokenizer.think_start_id)
    return make_llm(model=model)


def test_prompt_phases(tokenizer):
    tokens = ThinkTokens(
        tokenizer.think_start_id,
        tokenizer.think_end_id,
        tokenizer.im_start_id,
        tokenizer.tool_call_start_id,
        (),
        (),
    )
    thinking = render(USER, add_generation_prompt=True)
    assert prompt_phase(tokenizer.encode(thinking), tokens) is Phase.BEFORE
    assert prompt_phase(tokenizer.encode(thinking + "<think>\nhmm"), tokens) is Phase.OPEN
    hard_off = render(USER, add_generation_prompt=True, enable_thinking=False)
    assert prompt_phase(tokenizer.encode(hard_off), tokens) is Phase.CLOSED
    # An earlier turn's closed thought does not make the new turn closed.
    history = USER + [{"role": "assistant", "content": "<think>\nx\n</think>\n\n4"}, *USER]
    assert prompt_phase(tokenizer.encode(render(history, add_generation_prompt=True)), tokens) is Phase.BEFORE
    assert prompt_phase(tokenizer.encode("plain text"), tokens) is Phase.BEFORE


def test_budget_hit_forces_the_stop_text(llm, tokenizer):
    prompt = open_thought_prompt(tokenizer)
    stop_ids = tokenizer.encode(STOP_THINKING_TEXT)
    out = llm.generate([prompt], greedy(5))[0].outputs[0]
    assert tokenizer.think_end_id not in out.token_ids[:5]
    assert out.token_ids[5 : 5 + len(stop_ids)] == stop_ids
    assert out.num_forced_tokens == len(stop_ids)
    assert len(out.token_ids) == 100  # the model goes on to answer after the forced text
    assert STOP_THINKING_TEXT in out.text
    assert out.num_reasoning_tokens == 5 + stop_ids.index(tokenizer.think_end_id) + 1


def test_budget_not_hit_changes_nothing(llm, tokenizer):
    prompt = open_thought_prompt(tokenizer)
    unlimited = llm.generate([prompt], greedy(None))[0].outputs[0]
    roomy = llm.generate([prompt], greedy(100))[0].outputs[0]
    assert roomy.token_ids == unlimited.token_ids and roomy.num_forced_tokens == 0
    assert unlimited.num_reasoning_tokens == 100  # the thought never closed


def test_each_request_in_a_batch_has_its_own_budget(llm, tokenizer):
    prompt = open_thought_prompt(tokenizer)
    stop_ids = tokenizer.encode(STOP_THINKING_TEXT)
    budgets = [None, 2, 7, 0]
    outs = llm.generate([prompt] * 4, [greedy(b) for b in budgets])
    alone = [llm.generate([prompt], greedy(b))[0].outputs[0].token_ids for b in budgets]
    for budget, out, single in zip(budgets, outs, alone):
        ids = out.outputs[0].token_ids
        assert ids == single
        if budget is None:
            assert out.outputs[0].num_forced_tokens == 0
        else:
            assert ids[budget : budget + len(stop_ids)] == stop_ids


def test_forced_tokens_count_toward_max_tokens(llm, tokenizer):
    out = llm.generate([open_thought_prompt(tokenizer)], greedy(3, max_tokens=8))[0].outputs[0]
    assert len(out.token_ids) == 8 and out.finish_reason == "length"
    assert out.token_ids[3:] == tokenizer.encode(STOP_THINKING_TEXT)[:5]


def test_thought_opened_by_the_model(tokenizer):
    llm = thinking_llm(tokenizer)
    stop_ids = tokenizer.encode(STOP_THINKING_TEXT)
    prompt = tokenizer.encode(render(USER, add_generation_prompt=True))
    out = llm.generate([prompt], greedy(3, max_tokens=100))[0].outputs[0]
    start = tokenizer.think_start_id
    assert out.token_ids[:4] == [start] * 4  # <think> then 3 thought tokens (all <think> here)
    assert out.token_ids[4 : 4 + len(stop_ids)] == stop_ids
    # Nothing is forced again once the thought is closed.
    assert out.num_forced_tokens == len(stop_ids)


def test_budget_zero_gives_the_non_thinking_empty_block(tokenizer):
    llm = thinking_llm(tokenizer)
    prompt = tokenizer.encode(render(USER, add_generation_prompt=True))
    out = llm.generate([prompt], greedy(0, max_tokens=12))[0].outputs[0]
    no_think = tokenizer.encode(render(USER, add_generation_prompt=True, enable_thinking=False))
    empty_block = no_think[len(prompt) :]  # what enable_thinking=False appends: <think>\n\n</think>\n\n
    assert out.token_ids[: len(empty_block)] == empty_block
    assert out.num_reasoning_tokens == empty_block.index(tokenizer.think_end_id) + 1


def test_budget_zero_with_the_prompt_inside_a_thought(llm, tokenizer):
    prompt = tokenizer.encode(render(USER, add_generation_prompt=True) + "<think>")
    out = llm.generate([prompt], greedy(0, max_tokens=10))[0].outputs[0]
    empty = tokenizer.encode(EMPTY_THOUGHT_TEXT)
    assert out.token_ids[: len(empty)] == empty and out.num_forced_tokens == len(empty)


def test_closed_prompt_is_never_forced(llm, tokenizer):
    prompt = tokenizer.encode(render(USER, add_generation_prompt=True, enable_thinking=False))
    out = llm.generate([prompt], greedy(1))[0].outputs[0]
    assert out.num_forced_tokens == 0 and out.num_reasoning_tokens == 0


def test_chat_output_splits_at_the_forced_end_of_thought(tokenizer):
    llm = thinking_llm(tokenizer)
    out = llm.chat(USER, greedy(2, max_tokens=100))[0].outputs[0]
    assert out.reasoning_content is not None and out.reasoning_content.endswith(
        "I have to give the solution based on the thinking directly now."
    )
    assert out.content is not None  # the answer after </think>


def test_custom_stop_text(llm, tokenizer):
    params = greedy(2, thinking_stop_text="\nOK.\n</think>\n\n")
    out = llm.generate([open_thought_prompt(tokenizer)], params)[0].outputs[0]
    assert out.token_ids[2 : 2 + out.num_forced_tokens] == tokenizer.encode("\nOK.\n</think>\n\n")


@pytest.mark.parametrize("bad", ["no end tag", ""])
def test_stop_text_must_close_the_thought(bad):
    with pytest.raises(ValueError, match="thinking_stop_text"):
        SamplingParams(thinking_budget=1, thinking_stop_text=bad)


def test_reasoning_tokens_with_a_natural_end(tokenizer):
    """Output tokens up to and including the first </think> are reasoning tokens."""
    model = make_model(tie_word_embeddings=False)
    head = BiasedHead(model.lm_head, tokenizer.think_end_id)
    model.lm_head = head
    llm = make_llm(model=model)
    out = llm.generate([open_thought_prompt(tokenizer)], greedy(None, max_tokens=5))[0].outputs[0]
    assert out.token_ids[0] == tokenizer.think_end_id and out.num_reasoning_tokens == 1
    assert out.num_forced_tokens == 0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    picks=st.lists(st.sampled_from(["<think>", "</think>", "<tool_call>", "</tool_call>", "a", " b", "\n"]))
)
def test_reasoning_tokens_are_what_the_chat_parser_files_as_reasoning(tokenizer, picks):
    """For a chat reply in thinking mode the count covers exactly the text ``qwen3.chat.parse`` calls reasoning."""
    tokens = ThinkTokens(
        tokenizer.think_start_id,
        tokenizer.think_end_id,
        tokenizer.im_start_id,
        tokenizer.tool_call_start_id,
        (),
        (),
    )
    prompt = tokenizer.encode(render(USER, add_generation_prompt=True))
    ids = [tokenizer.encode(piece)[0] for piece in picks]
    state = ThinkingState(prompt, tokens, budget=None, implicit_thought=True)
    for token in ids:
        state.observe(token)
    text = tokenizer.decode(ids)
    reasoning, _ = split_reasoning_text(text, enable_thinking=True)
    counted = tokenizer.decode(ids[: state.reasoning_tokens]).removeprefix("<think>").removesuffix("</think>")
    if "</think>" not in text and "<tool_call>" not in text:
        assert state.reasoning_tokens == len(ids)  # a thought cut off: everything is reasoning
    assert counted == reasoning


def test_raw_completions_count_reasoning_only_after_a_generated_think(tokenizer):
    tokens = ThinkTokens(
        tokenizer.think_start_id,
        tokenizer.think_end_id,
        tokenizer.im_start_id,
        tokenizer.tool_call_start_id,
        (),
        (),
    )
    state = ThinkingState(tokenizer.encode("The capital of France is"), tokens, budget=None)
    for token in tokenizer.encode(" Paris</think> more"):
        state.observe(token)
    assert state.reasoning_tokens == 0
