"""Stage 3 (Thinking Mode Fusion): flag rules, renderings equal to the chat template's, the mix report,
rejection sampling, and the chained end-to-end run with a thinking budget on the result."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from qwen3.chat import render, resolve_thinking
from qwen3.chat.modes import SOFT_SWITCH
from qwen3.train.cold_start import builtin_items, run_cold_start
from qwen3.train.filters import Candidate
from qwen3.train.fusion import (
    FusionConfig,
    Sample,
    build_fusion_data,
    compose_dialogues,
    direct_sample,
    rejection_sample,
    run_fusion,
    thinking_sample,
)
from qwen3.train.settings import SettingsError
from tests.train.test_cold_start import debug_table


def samples(count: int = 24) -> list[Sample]:
    items = builtin_items("arith", "train", count, seed=5)
    out = []
    for index, item in enumerate(items):
        if index % 2:
            out.append(direct_sample(item, "arith"))
        else:
            out.append(thinking_sample(Candidate(item, item.solution, item.direct), "thinking_solution"))
    return out


def expected_rendering(messages: list[dict]) -> str:
    """ChatML as report Table 9 shows it, written out by hand: a leading system message first, history replies
    without their thought, the final reply with its think block (empty in non-thinking mode)."""
    text, last = "", len(messages) - 1
    for index, message in enumerate(messages):
        role = message["role"]
        if role in ("system", "user"):
            text += f"<|im_start|>{role}\n{message['content']}<|im_end|>\n"
        elif index < last:
            text += f"<|im_start|>assistant\n{message['content']}<|im_end|>\n"
        else:
            thought = message["reasoning_content"]
            body = f"<think>\n{thought}\n</think>\n\n" if thought else "<think>\n\n</think>\n\n"
            text += f"<|im_start|>assistant\n{body}{message['content']}<|im_end|>\n"
    return text


@pytest.mark.parametrize("seed", range(6))
def test_every_reply_obeys_the_last_flag_and_renders_as_the_template(seed):
    config = FusionConfig(
        multi_turn=0.6, max_turns=3, no_flag=0.4, system_flag=0.3, extra_flags=0.3, seed=seed
    )
    dialogues = compose_dialogues(samples(), config)
    assert sum(len(d.modes) for d in dialogues) == 24
    for dialogue in dialogues:
        messages = dialogue.messages
        replies = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        assert len(replies) == len(dialogue.modes)
        for index, mode in zip(replies, dialogue.modes):
            assert resolve_thinking(messages[:index]) == (mode == "think")
            assert bool(messages[index]["reasoning_content"]) == (mode == "think")
        for mode, placement in zip(dialogue.modes, dialogue.placements):
            assert placement != "none" or mode == "think"  # only thinking turns go without a flag
        assert render(messages) == expected_rendering(messages)
        history = render(messages[: replies[-1]])
        assert "<think>" not in history  # earlier turns' thinking is dropped


def test_world_mix_with_tool_use_obeys_the_flags_and_drops_history_thinking():
    families = ("reasoning", "knowledge", "ifeval", "tooluse", "lengthctrl")
    config = FusionConfig(thinking_queries=8, non_thinking={f"world:{f}": 4 for f in families}, multi_turn=0.6,
                          seed=2)  # fmt: skip
    data = build_fusion_data(config, llm=None)
    assert set(data.report.kinds) == {"thinking_solution", *(f"non_thinking:world:{f}" for f in families)}
    tool_dialogues = [d for d in data.dialogues if d.tools]
    assert tool_dialogues and all(len(d.modes) == 1 for d in tool_dialogues)
    for dialogue in data.dialogues:
        messages = dialogue.messages
        queries = [i for i, m in enumerate(messages) if m["role"] == "user"]
        for query, mode in zip(queries, dialogue.modes):
            assert resolve_thinking(messages[: query + 1]) == (mode == "think")
        text = render(messages, tools=dialogue.tools)
        history = render(messages[: queries[-1] + 1], tools=dialogue.tools)
        assert "<think>" not in history and text.startswith(history)
        assert text.count("<think>\n\n</think>") >= (dialogue.modes[-1] == "no_think")


def test_flags_land_in_user_and_system_messages_and_some_turns_have_none():
    config = FusionConfig(multi_turn=0.5, no_flag=0.3, system_flag=0.3, extra_flags=0.3, seed=1)
    dialogues = compose_dialogues(samples(40), config)
    placements = {p for d in dialogues for p in d.placements}
    assert placements == {"user", "system", "none"}
    assert any(len(d.modes) > 1 for d in dialogues) and any(len(d.modes) == 1 for d in dialogues)
    overridden = [
        m for d in dialogues for m in d.messages if len(SOFT_SWITCH.findall(m.get("content", ""))) > 1
    ]
    assert len(overridden) == sum(d.overridden for d in dialogues) > 0


def test_existing_flags_of_a_query_are_replaced():
    item = builtin_items("arith", "train", 1, seed=2)[0]
    item.messages[0]["content"] += " /think"
    sample = direct_sample(item, "arith")
    assert "/think" not in sample.prompt[0]["content"]
    dialogue = compose_dialogues([sample], FusionConfig(multi_turn=0.0))[0]
    assert resolve_thinking(dialogue.messages[:-1]) is False


def fake_llm(replies_per_query):
    def chat(conversations, params, enable_thinking, progress):
        assert enable_thinking is True and len(conversations) == len(replies_per_query)
        return [SimpleNamespace(outputs=[SimpleNamespace(text=f"<think>\n{r}\n</think>\n\n{c}" if closed else r,
                                                         reasoning_content=r, content=c if closed else "",
                                                         finish_reason="stop" if closed else "length")
                                         for r, c, closed in group]) for group in replies_per_query]  # fmt: skip

    return SimpleNamespace(chat=chat)


def test_rejection_sampling_keeps_only_verified_thoughts():
    items = builtin_items("arith", "train", 3, seed=4)
    right = [f"Answer: {it.reference['answer']}" for it in items]
    llm = fake_llm([
        [("I worked it out.", "Answer: -999", True), ("Careful work.", right[0], True)],
        [("", right[1], True), ("cut off", right[1], False)],  # no thought / never closed: rejected
        [("Wrong.", "Answer: -998", True), ("Stray tag.", f"x\n</think>\n\n{right[2]}", True)],
    ])  # fmt: skip
    config = FusionConfig(samples_per_query=2, solution_fallback=False)
    kept, stats = rejection_sample(llm, items, config)
    assert [s.reply[0]["reasoning_content"] for s in kept] == ["Careful work."]
    assert (stats.queries, stats.samples, stats.verified, stats.queries_verified, stats.unsolved) == (
        3,
        6,
        1,
        1,
        2,
    )
    kept, stats = rejection_sample(llm, items, FusionConfig(samples_per_query=2))
    assert [s.kind for s in kept] == ["thinking_sampled", "thinking_solution", "thinking_solution"]
    assert stats.solution_fallbacks == 2


def test_mix_report_counts_the_mix():
    config = FusionConfig(thinking_tasks=["arith"], thinking_queries=6, non_thinking={"arith": 10},
                          multi_turn=0.5, train_every_turn=True, seed=3)  # fmt: skip
    data = build_fusion_data(config, llm=None)
    report = data.report
    assert report.kinds == {"thinking_solution": 6, "non_thinking:arith": 10}
    assert report.turn_modes == {"think": 6, "no_think": 10}
    assert sum(report.placements.values()) == 16
    assert sum(report.turns.values()) == report.dialogues == len(data.dialogues)
    assert sum(int(n) * c for n, c in report.turns.items()) == 16
    assert report.examples == len(data.examples) == 16  # one example per turn
    assert sum(report.final_modes.values()) == report.dialogues
    assert report.rejection["solution_fallbacks"] == 6
    assert report.metrics()["kind_thinking_solution"] == 6


def test_config_errors():
    with pytest.raises(SettingsError, match="fusion.max_turns"):
        FusionConfig(multi_turn=0.5, max_turns=1)
    with pytest.raises(SettingsError, match="fusion.non_thinking: 'x'"):
        FusionConfig(non_thinking={"x": 3})
    with pytest.raises(SettingsError, match="fusion.thinking_tasks: 'world:nope'"):
        FusionConfig(thinking_tasks=["world:nope"])


def test_stages_chain_and_the_thinking_budget_works_on_the_result(tmp_path):
    from qwen3 import LLM, SamplingParams
    from qwen3.train.metrics import read_metrics

    cold = tmp_path / "cold"
    run_cold_start(debug_table("cold-start-debug", cold, train_queries=6, validation_queries=2,
                               no_think_samples=0), progress=False)  # fmt: skip
    fused = tmp_path / "fused"
    table = debug_table("fusion-debug", fused, thinking_queries=4, samples_per_query=1, max_new_tokens=8,
                        non_thinking={"arith": 6})  # fmt: skip
    table["init_from"] = str(cold)
    result = run_fusion(table, progress=False)
    assert result.step == 2 and (fused / "data" / "mix.json").is_file()
    assert read_metrics(fused)[0]["data/rejection_queries"] == 4
    llm = LLM(str(fused), max_model_len=512)
    question = [{"role": "user", "content": "Compute ((3 + 4) * 2). /think"}]
    # A debug model trained for two steps does not open a thought by itself yet: the prompt opens it (the phase
    # the budget counts in), as a template that pre-fills "<think>\n" does.
    prompt = render(question, add_generation_prompt=True) + "<think>\n"
    params = SamplingParams(temperature=0, max_tokens=200, thinking_budget=4)
    out = llm.generate([prompt], params, progress=False)[0].outputs[0]
    # the budget cut the thought after 4 tokens and forced the stop-thinking text; generation went on after it
    assert out.num_forced_tokens > 0 and "Considering the limited time by the user" in out.text
    assert len(out.token_ids) > 4 + out.num_forced_tokens

    # the evaluation's budget curve (report Figure 2) runs on the fused checkpoint
    from qwen3.eval.backends import InProcessBackend
    from qwen3.eval.runner import EvalOptions, budget_curve

    items = builtin_items("arith", "test", 2, seed=0)
    options = EvalOptions(budgets=(0, 8), max_tokens=160, sampling="greedy", limit=2)
    curve = budget_curve(InProcessBackend(llm), items, options, say=lambda line: None)
    assert [point["budget"] for point in curve["think"]] == [0, 8]
    assert all(point["n"] == 2 and 0 <= point["score"] <= 1 for point in curve["think"])


def test_a_query_system_message_is_kept_without_its_flag():
    item = builtin_items("arith", "train", 1, seed=6)[0]
    item.messages.insert(0, {"role": "system", "content": "Be brief. /think"})
    sample = direct_sample(item, "arith")
    assert sample.prompt[0] == {"role": "system", "content": "Be brief."}
    dialogue = compose_dialogues([sample], FusionConfig(multi_turn=0.0, system_flag=1.0))[0]
    assert dialogue.placements == ["system"] and resolve_thinking(dialogue.messages[:-1]) is False
    assert render(dialogue.messages).startswith("<|im_start|>system\nBe brief.<|im_end|>\n")
