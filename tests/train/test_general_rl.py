"""General RL: per-task reward mixing and metrics on the GRPO machinery, agent rollouts as GRPO rows."""

from __future__ import annotations

import json

import pytest

from qwen3.tokenizer.train import tokenizer_for_vocab
from qwen3.train.batch import IGNORE
from qwen3.train.general_rl import (
    AgentRollouts,
    GeneralRLConfig,
    _as_rollout,
    debug_items,
    reply_of,
    run_stage,
    task_items,
    task_metrics,
)
from qwen3.train.grpo import _row
from qwen3.train.settings import SettingsError
from qwen3.train.tool_rollout import tool_rollouts
from qwen3.world import Item

from .test_tool_rollout import CALC, Scripted, calculator, call, prompt_ids


def table(run_dir, steps=3, **general):
    return {
        "run_dir": str(run_dir), "stage": "general-rl", "steps": steps, "micro_batch_size": 16, "log_every": 1000,
        "model": {"name": "qwen3-debug-tiny"}, "data": {"kind": "sft", "synthetic": "chat", "seq_len": 256},
        "optim": {"lr": 1e-2, "weight_decay": 0.0}, "schedule": {"kind": "constant"}, "checkpoint": {"every": 0},
        "grpo": {"prompts_per_step": 4, "num_generations": 4, "max_new_tokens": 12, "train_prompts": 16,
                 "eval_prompts": 0, "engine_weights": "reference"},
        "general_rl": {"tasks": ["debug:thinkfollow", "debug:lengthctrl"], **general},
    }  # fmt: skip


def test_a_run_logs_each_task_s_reward_and_accuracy(tmp_path):
    result = run_stage(table(tmp_path), progress=False)
    assert result.step == 3
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    for family in ("thinkfollow", "lengthctrl"):
        assert 0.0 <= last[f"{family}/reward"] <= 1.0 and last[f"{family}/rollouts"] > 0
    assert last["thinkfollow/rollouts"] + last["lengthctrl/rollouts"] == 16


def test_task_items_mix_the_tasks_and_the_debug_tasks_are_graded():
    items = task_items(["debug:thinkfollow", "debug:lengthctrl"], [3.0, 1.0], 40, "train", 0)
    families = [item.family for item in items]
    assert families.count("thinkfollow") == 30 and families.count("lengthctrl") == 10
    assert debug_items("lengthctrl", 5, "train", 1) == debug_items("lengthctrl", 5, "train", 1)
    follow = debug_items("thinkfollow", 8, "train")
    assert all(item.messages[-1]["content"].endswith("/" + item.reference["mode"]) for item in follow)
    assert task_metrics([("a", 1.0, True), ("a", 0.0, False), ("b", 0.5, False)]) == {
        "a/reward": 0.5, "a/accuracy": 0.5, "a/rollouts": 2.0, "b/reward": 0.5, "b/accuracy": 0.0,
        "b/rollouts": 1.0}  # fmt: skip


def test_bad_settings_are_named():
    with pytest.raises(SettingsError, match="general_rl.tasks: 'debug:chess'"):
        GeneralRLConfig(tasks=["debug:chess"])
    with pytest.raises(SettingsError, match="task_weights"):
        GeneralRLConfig(tasks=["debug:lengthctrl"], task_weights=[1.0, 2.0])
    with pytest.raises(SettingsError, match="unknown reward 'nope'"):
        GeneralRLConfig(rewards={"lengthctrl": {"nope": 1.0}}).reward_mix()


def test_an_agent_episode_is_a_grpo_row_whose_tool_turns_are_not_trained():
    tokenizer = tokenizer_for_vocab(512)
    messages = [{"role": "user", "content": "What is 2+3? Use the calculator."}]
    script = {
        0: [
            (f"<think>\nsum\n</think>\n\n{call('2+3')}", "stop"),
            ("<think>\nok\n</think>\n\nAnswer: 5", "stop"),
        ]
    }
    policy = Scripted(tokenizer, [prompt_ids(tokenizer, messages, [CALC])], script)
    (episode,) = tool_rollouts([messages], tokenizer, policy, [[CALC]], execute=calculator)
    rollout = _as_rollout(0, 0, episode, messages, [CALC], None, tokenizer)
    assert rollout.prompt_ids + rollout.token_ids == episode.token_ids
    assert rollout.prompt_ids == prompt_ids(tokenizer, messages, [CALC])
    row = _row(rollout, 1.0, False)
    trained = [label != IGNORE for label in row["labels"]]
    assert trained[len(rollout.prompt_ids) - 1 :] == episode.generated[len(rollout.prompt_ids) :]
    # The reward sees every turn: the tool call of the first and the answer of the last.
    item = Item("tooluse", "t", "train", messages, {"calls": [[{"name": "calculator", "arguments": {
        "expression": "2+3"}}], []], "answer": "5"}, tools=[CALC])  # fmt: skip
    reply = reply_of(item, rollout, None)
    assert reply.content == "Answer: 5" and len(reply.turns) == 2
    mix = GeneralRLConfig(tasks=["world:tooluse"]).reward_mix()
    scored = mix(item, reply)
    assert scored.parts["tool_calls"].score == 1.0 and "1 valid" in scored.parts["tool_calls"].reason
    assert scored.parts["format"].score == 1.0 and scored.parts["answer"].score > 0.5


def test_agent_rollouts_route_tool_conversations_through_the_engine():
    from qwen3.engine.sampling_params import SamplingParams
    from qwen3.model.checkpoint import init_model
    from qwen3.model.presets import get_preset
    from qwen3.train.rollout import RolloutEngine

    tokenizer = tokenizer_for_vocab(512)
    engine = RolloutEngine(init_model(get_preset("qwen3-debug-tiny")), tokenizer, weights="reference",
                           max_num_seqs=8, max_model_len=512)  # fmt: skip
    agent = AgentRollouts(engine, max_rounds=2, execute=calculator)
    conversations = [[{"role": "user", "content": "hi"}], [{"role": "user", "content": "2+3? use the tool"}]]
    params = SamplingParams(n=2, temperature=1.0, max_tokens=8, logprobs=0)
    groups = agent.generate(conversations, params, [11, 12], [None, None], [None, [CALC]])
    assert [len(g) for g in groups] == [2, 2]
    for rollout in groups[1]:
        assert rollout.prompt_ids == prompt_ids(tokenizer, conversations[1], [CALC])
        assert len(rollout.forced) == len(rollout.token_ids) == len(rollout.logprobs)
        assert rollout.turns


def test_world_tasks_with_real_tools(tmp_path):
    tasks = ["world:ifeval", "world:tooluse", "world:counterfact", "world:thinkfollow"]
    config = table(tmp_path, steps=2, tasks=tasks)
    config["grpo"]["max_prompt_tokens"] = 2500  # the tool schemas make long prompts for the debug tokenizer
    run_stage(config, progress=False)
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert (
        sum(
            last[f"{task.split(':')[1]}/rollouts"]
            for task in tasks
            if f"{task.split(':')[1]}/rollouts" in last
        )
        == 16
    )


def test_world_preference_pairs_feed_the_reward_model():
    from qwen3.train.reward_model import RewardModelConfig, load_pairs

    train, held_out = load_pairs(RewardModelConfig(source="world", pairs=8, eval_pairs=4), seed=0)
    assert len(train) == 8 and len(held_out) == 4
    assert all(p.chosen != p.rejected and p.messages for p in train + held_out)


def test_a_judge_over_an_openai_url_joins_the_mix_and_its_agreement_is_logged(tmp_path):
    import threading
    from http.server import ThreadingHTTPServer

    from .test_judge import _ChatServer

    # The scripted judge passes replies containing "Answer: 5" and answers anything else with garbage: a random
    # policy never writes that, so every verdict is unparsable (a logged zero) and the judge fails every reply.
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        config = table(tmp_path, steps=1, tasks=["world:knowledge"], judge=f"http://127.0.0.1:{server.server_port}/v1",
                       rewards={"knowledge": {"format": 0.2, "judge": 0.8}})  # fmt: skip
        run_stage(config, progress=False)
    finally:
        server.shutdown()
    last = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["judge/judged"] == 16 and last["judge/unparsable"] == 16
    # The judge failed every reply, so it agrees with the rule verifier exactly where that one failed it too.
    assert last["judge/agreement"] == pytest.approx(1.0 - last["accuracy"])
    assert last["judge/fail_rule_pass"] == pytest.approx(16 * last["accuracy"])
    with pytest.raises(SettingsError, match="general_rl.judge is not set"):
        GeneralRLConfig(rewards={"knowledge": {"judge": 1.0}})
