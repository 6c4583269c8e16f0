import json

import pytest

from qwen3.chat import render, resolve_thinking
from qwen3.chat.template import EMPTY_THINK_BLOCK
from qwen3.train.corpus import FileCorpus
from qwen3.world import generate
from qwen3.world.corpus import build_documents, write_corpus
from qwen3.world.fiction import build_world
from qwen3.world.sft import chat_example


def test_corpus_is_read_by_the_trainer_and_holds_no_test_query(tmp_path):
    path = tmp_path / "world.jsonl"
    stats = write_corpus(path, 400, seed=0)
    assert stats["documents"] == 400 and stats["by_kind"] == {"prose": 200, "reasoning": 120, "code": 80}
    corpus = FileCorpus([path])
    assert len(corpus) == 400
    records = [corpus[i].record for i in range(len(corpus))]
    assert all(isinstance(r["text"], str) and r["text"] for r in records)
    hashes = {r["query_hash"] for r in records if r["query_hash"]}
    assert len(hashes) == 200
    text = "\n".join(r["text"] for r in records)
    for split in ("test", "validation"):
        held_out = generate("reasoning", split, 200) + generate("tooluse", split, 100)
        assert hashes.isdisjoint(item.query_hash for item in held_out)
        programs = [i for i in held_out if i.meta.get("kind") == "program"]
        assert all(
            i.messages[0]["content"].split("```python\n")[1].split("```")[0] not in text for i in programs
        )
    assert not list(tmp_path.glob(".*"))  # the atomic write left no temporary behind


def test_corpus_prose_states_every_fact_the_knowledge_questions_ask():
    docs = build_documents(700, mix={"prose": 1.0})
    text = "\n".join(d["text"] for d in docs)
    world = build_world(0)
    for item in generate("knowledge", "test", 40):
        assert item.reference["answer"] in text
    assert all(fact.sentence() in text for fact in world.facts())


def test_corpus_is_deterministic_and_validates_its_input(tmp_path):
    assert build_documents(50, seed=1) == build_documents(50, seed=1)
    with pytest.raises(ValueError, match="unknown kind 'poetry'"):
        build_documents(10, mix={"poetry": 1.0})
    with pytest.raises(ValueError, match="must end in .jsonl"):
        write_corpus(tmp_path / "x.txt", 10)
    with pytest.raises(ValueError, match="positive integer"):
        build_documents(0)


def _last_assistant(example):
    return example["messages"][-1]


@pytest.mark.parametrize(
    "family", ["reasoning", "knowledge", "ifeval", "longctx", "counterfact", "lengthctrl"]
)
def test_chat_examples_in_both_modes(family):
    item = generate(family, "train", 1)[0]
    think, plain = chat_example(item, "think"), chat_example(item, "no_think")
    assert _last_assistant(think) == {
        "role": "assistant",
        "content": item.direct,
        "reasoning_content": item.solution,
    }
    assert _last_assistant(plain)["reasoning_content"] == ""
    assert resolve_thinking(think["messages"][:-1]) and not resolve_thinking(plain["messages"][:-1])
    assert plain["messages"][-2]["content"].endswith(" /no_think")
    rendered = render(plain["messages"], plain["tools"])
    assert rendered.endswith(f"<|im_start|>assistant\n{EMPTY_THINK_BLOCK}{item.direct}<|im_end|>\n")
    assert f"<think>\n{item.solution}\n</think>" in render(think["messages"])
    assert item.messages == generate(family, "train", 1)[0].messages  # the item itself is not modified


def test_thinkfollow_examples_keep_the_dialogue_flags_in_the_reference_mode():
    for item in generate("thinkfollow", "train", 40):
        mode = item.reference["mode"]
        example = chat_example(item, mode)
        if item.enable_thinking is False:
            assert example["messages"][-2]["content"].endswith(" /no_think")
            with pytest.raises(ValueError, match="enable_thinking=False"):
                chat_example(item, "think")
        else:
            assert example["messages"][:-1] == item.messages
        assert resolve_thinking(example["messages"][:-1]) == (mode == "think")


def test_tooluse_example_is_the_whole_trajectory():
    item = next(i for i in generate("tooluse", "train", 40) if i.meta["shape"] == "multistep")
    example = chat_example(item, "think")
    roles = [m["role"] for m in example["messages"]]
    rounds = len(item.reference["calls"])
    assert roles == ["user"] + ["assistant", "tool"] * rounds + ["assistant"]
    for message, calls in zip(example["messages"][1::2], item.reference["calls"]):
        assert [json.loads(c["function"]["arguments"]) for c in message["tool_calls"]] == [
            c["arguments"] for c in calls
        ]
    assert [m["content"] for m in example["messages"] if m["role"] == "tool"] == sum(
        item.reference["results"], []
    )
    rendered = render(example["messages"], example["tools"])
    assert (
        rendered.count('<tool_call>\n{"name": "') == rounds
    )  # the system prompt's example has no quoted name
    assert example["tools"] == item.tools


def test_chat_example_rejects_bad_modes_and_items_without_a_thought():
    item = generate("preference", "train", 1)[0]
    with pytest.raises(ValueError, match="mode must be one of think, no_think"):
        chat_example(item, "fast")
    with pytest.raises(ValueError, match="no solution"):
        chat_example(item, "think")
    assert chat_example(item, "no_think")["messages"][-1]["content"] == item.reference["chosen"]


def test_sft_examples_train_on_the_reply_through_the_sft_data_path():
    from qwen3.tokenizer.train import debug_tokenizer
    from qwen3.train.batch import IGNORE
    from qwen3.train.corpus import Document
    from qwen3.train.sft_data import conversation_example

    tokenizer = debug_tokenizer(512)
    item = next(i for i in generate("tooluse", "train", 40) if i.meta["shape"] == "multistep")
    example = conversation_example(Document(chat_example(item, "think"), "item 0"), tokenizer)
    trained = tokenizer.decode([t for t in example.labels if t != IGNORE])
    assert item.direct in trained and item.meta["thoughts"][0] in trained
    assert all(call["name"] in trained for round_calls in item.reference["calls"] for call in round_calls)
    assert item.messages[0]["content"] not in trained  # the prompt is context, never a target
