"""``knob_defaults``: a block's generate() calls draw from the knobs it names (the recipe's [world] table)."""

from __future__ import annotations

import pytest

from qwen3.world import generate
from qwen3.world.corpus import build_documents, worked_kinds
from qwen3.world.registry import check_knobs, default_knobs, knob_defaults


def kinds_of(items):
    return {item.meta["kind"] for item in items}


def test_knob_defaults_change_what_generate_draws_and_are_restored():
    before = [item.to_dict() for item in generate("reasoning", "test", 20, seed=0)]
    assert len(kinds_of(generate("reasoning", "test", 40, seed=0))) > 2
    with knob_defaults({"reasoning": {"kinds": ["equation", "program"], "difficulty": 1}}):
        items = generate("reasoning", "test", 40, seed=0)
        assert kinds_of(items) == {"equation", "program"}
        assert {item.meta["difficulty"] for item in items} == {1}
        # a knob passed to generate still wins over the block's
        assert kinds_of(generate("reasoning", "train", 10, seed=0, kinds=("ordering",))) == {"ordering"}
        assert default_knobs("reasoning")["difficulty"] == 1
        # the same query space on both sides: train and test still never share a query
        train = generate("reasoning", "train", 200, seed=0)
        assert not {i.query_hash for i in train} & {i.query_hash for i in items}
    assert [item.to_dict() for item in generate("reasoning", "test", 20, seed=0)] == before
    assert default_knobs("reasoning")["difficulty"] == 2


def test_knob_defaults_nest_and_leave_other_families_alone():
    with knob_defaults({"reasoning": {"difficulty": 1}}):
        with knob_defaults({"reasoning": {"kinds": ["equation"]}}):
            assert default_knobs("reasoning") == {"difficulty": 1, "kinds": ("equation",)}
        assert default_knobs("reasoning")["kinds"] == ("arithmetic", "multiplication", "equation", "ordering",
                                                        "program")  # fmt: skip
        assert default_knobs("thinkfollow") == default_knobs("thinkfollow")  # untouched family: its defaults
    assert default_knobs("reasoning")["difficulty"] == 2


@pytest.mark.parametrize(
    "knobs, message",
    [
        ({"nosuch": {}}, "unknown family 'nosuch'"),
        ({"reasoning": {"depth": 3}}, "unknown knob 'depth'"),
        ({"reasoning": {"difficulty": 0}}, "'difficulty' must be an integer in [1, 8]"),
        ({"reasoning": {"kinds": ["poetry"]}}, "unknown value 'poetry'"),
        ({"reasoning": 3}, "must be a table"),
    ],
)
def test_bad_knobs_are_refused_naming_them(knobs, message):
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_knobs(knobs)
    with pytest.raises(ValueError), knob_defaults(knobs):
        pass


def test_corpus_reasoning_documents_follow_the_kinds_in_force():
    assert worked_kinds() == ("arithmetic", "multiplication", "equation", "ordering")
    with knob_defaults({"reasoning": {"kinds": ["equation", "program"], "difficulty": 1}}):
        assert worked_kinds() == ("equation",)
        docs = build_documents(60, seed=0, mix={"reasoning": 0.5, "code": 0.5})
        reasoning = [d["text"] for d in docs if d["kind"] == "reasoning"]
        assert reasoning and all("Solve for x" in text for text in reasoning)
        programs = [d["text"] for d in docs if d["kind"] == "code" and "for i in range(" in d["text"]]
        # difficulty 1: two iterations
        assert programs and all("for i in range(2)" in text for text in programs)
    with knob_defaults({"reasoning": {"kinds": ["program"]}}):
        assert worked_kinds() == ("program",)
