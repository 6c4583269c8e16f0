"""Multi-turn tool rollouts: real tool execution, tool-response tokens masked, checked token by token."""

from __future__ import annotations

import ast
import json
import operator
import re

import pytest

from qwen3.chat import render, tokenize_conversation
from qwen3.tokenizer.train import tokenizer_for_vocab
from qwen3.train.tool_rollout import Generated, engine_generator, tool_rollouts

CALC = {"type": "function", "function": {"name": "calculator", "description": "evaluate arithmetic", "parameters": {
    "type": "object", "properties": {"expression": {"type": "string"}}, "required": ["expression"]}}}  # fmt: skip
_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def calculator(name, arguments):
    """A real tool: evaluates + - * expressions; a bad call answers with an error, as tools do."""
    arguments = json.loads(arguments) if isinstance(arguments, str) else arguments

    def value(node):
        if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
            return _OPS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        raise ValueError("unsupported expression")

    try:
        return json.dumps({"result": value(ast.parse(arguments["expression"], mode="eval").body)})
    except (ValueError, KeyError, SyntaxError) as err:
        return json.dumps({"error": str(err)})


def call(expression):
    return (
        f'<tool_call>\n{{"name": "calculator", "arguments": {{"expression": "{expression}"}}}}\n</tool_call>'
    )


class Scripted:
    """A policy that replies from a script per conversation (found by its prompt), in canonical form."""

    def __init__(self, tokenizer, prompts, scripts):
        self.tokenizer, self.prompts, self.scripts, self.calls = tokenizer, prompts, scripts, []

    def __call__(self, prompts, keys, round_index):
        self.calls.append(len(prompts))
        out = []
        for ids in prompts:
            which = next(i for i, p in enumerate(self.prompts) if ids[: len(p)] == p)
            text, finish = self.scripts[which][round_index]
            end = [self.tokenizer.im_end_id] if finish == "stop" else []
            out.append(Generated(self.tokenizer.encode(text) + end, finish))
        return out


def prompt_ids(tokenizer, messages, tools):
    return tokenizer.encode(render(messages, tools, add_generation_prompt=True, prefix_preserving=True))


def test_tools_run_and_their_responses_are_masked_token_by_token():
    tokenizer = tokenizer_for_vocab(512)
    agent = [{"role": "user", "content": "What is (2+3)*4? Use the calculator."}]
    chat = [{"role": "user", "content": "Say hi."}]
    scripts = {
        0: [(f"<think>\nFirst the sum.\n</think>\n\n{call('2+3')}", "stop"),
            (f"<think>\nNow times four, and check.\n</think>\n\n{call('5*4')}\n{call('20-0')}", "stop"),
            ("<think>\nBoth say 20.\n</think>\n\nAnswer: 20", "stop")],
        1: [("<think>\nA greeting.\n</think>\n\nhi", "stop")],
    }  # fmt: skip
    policy = Scripted(
        tokenizer, [prompt_ids(tokenizer, agent, [CALC]), prompt_ids(tokenizer, chat, None)], scripts
    )
    first, second = tool_rollouts([agent, chat], tokenizer, policy, tools=[[CALC], None], execute=calculator)
    assert policy.calls == [2, 1, 1]  # both in one batch, then the agent alone
    assert (first.rounds, first.tool_calls, first.finish_reason) == (3, 3, "stop")
    results = [json.loads(m["content"]) for m in first.messages if m["role"] == "tool"]
    assert results == [{"result": 5}, {"result": 20}, {"result": 20}]  # really executed
    assert first.replies[-1].content == "Answer: 20"
    for rollout in (first, second):
        for prefix_preserving in (True, False):  # every thought is non-empty: both renderings agree
            text = render(rollout.messages, rollout.tools, prefix_preserving=prefix_preserving).removesuffix(
                "\n"
            )
            assert rollout.token_ids == tokenizer.encode(text)
        view = tokenize_conversation(rollout.messages, tokenizer, tools=rollout.tools, train_on="final")
        assert rollout.generated == view.assistant_mask[: len(rollout.token_ids)]
    # The tool responses are in the sequence, and none of their tokens is a target.
    text = render(first.messages, first.tools).removesuffix("\n")
    ids, offsets = tokenizer.encode_with_offsets(text)
    spans = [
        (m.start(), m.end()) for m in re.finditer(r"<tool_response>.*?</tool_response>", text, re.DOTALL)
    ]
    inside = [any(a <= start < b for a, b in spans) for start, _ in offsets]
    assert len(spans) == 3 and sum(inside) > 10
    assert ids == first.token_ids and not any(g and i for g, i in zip(first.generated, inside))
    row = first.to_row()
    assert row.num_targets == sum(first.generated[1:])


def test_rounds_are_bounded_and_cut_off_replies_stop():
    tokenizer = tokenizer_for_vocab(512)
    loop = [{"role": "user", "content": "Keep calling."}]
    cut = [{"role": "user", "content": "Think long."}]
    scripts = {0: [(f"<think>\nagain\n</think>\n\n{call('1+1')}", "stop")] * 2,
               1: [("<think>\nand on and on", "length")]}  # fmt: skip
    prompts = [prompt_ids(tokenizer, loop, [CALC]), prompt_ids(tokenizer, cut, [CALC])]
    looped, long = tool_rollouts([loop, cut], tokenizer, Scripted(tokenizer, prompts, scripts), tools=[[CALC]] * 2,
                                 max_rounds=2, execute=calculator)  # fmt: skip
    assert (looped.rounds, looped.tool_calls, looped.finish_reason) == (2, 1, "max_rounds")
    assert (long.rounds, long.finish_reason) == (1, "length")
    with pytest.raises(ValueError, match="max_rounds"):
        tool_rollouts([loop], tokenizer, Scripted(tokenizer, prompts, scripts), max_rounds=0)


def test_a_real_engine_batches_rollouts_of_different_lengths():
    from qwen3.engine.llm import LLM
    from qwen3.engine.sampling_params import SamplingParams

    llm = LLM("qwen3-debug-tiny", max_model_len=512, max_num_seqs=4)
    conversations = [[{"role": "user", "content": "x" * n}] for n in (3, 40, 90)]
    generate = engine_generator(llm, SamplingParams(temperature=1.0, max_tokens=12, seed=3))
    rollouts = tool_rollouts(conversations, llm.tokenizer, generate, tools=[[CALC]] * 3, max_rounds=3,
                             execute=calculator)  # fmt: skip
    for conversation, rollout in zip(conversations, rollouts):
        prompt = prompt_ids(llm.tokenizer, conversation, [CALC])
        assert rollout.token_ids[: len(prompt)] == prompt and not any(rollout.generated[: len(prompt)])
        assert 1 <= rollout.rounds <= 3 and sum(rollout.generated) > 0
        assert len(rollout.replies) == rollout.rounds and len(rollout.logprobs) == len(rollout.token_ids)
        sampled = [lp for lp, g in zip(rollout.logprobs, rollout.generated) if g]
        assert all(lp <= 0.0 for lp in sampled) and any(lp < 0.0 for lp in sampled)
