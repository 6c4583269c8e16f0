import contextlib
import io
import re

import pytest

from qwen3.chat import resolve_thinking
from qwen3.world import FAMILIES, SPLITS, check_disjoint, generate, split_of
from qwen3.world.base import answer_line
from qwen3.world.constraints import count_bullets, count_words
from qwen3.world.fiction import build_world

FAMILY_NAMES = sorted(FAMILIES)


def test_the_issue_families_are_all_registered():
    expected = {"reasoning", "knowledge", "counterfact", "ifeval", "lengthctrl", "tooluse", "thinkfollow"}
    assert expected | {"preference", "longctx"} == set(FAMILIES)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_deterministic_for_a_seed_and_different_across_seeds(family):
    first = [item.to_dict() for item in generate(family, "train", 12, seed=3)]
    again = [item.to_dict() for item in generate(family, "train", 12, seed=3)]
    other = [item.to_dict() for item in generate(family, "train", 12, seed=4)]
    assert first == again
    assert first != other


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_items_are_in_their_split_and_splits_are_disjoint(family):
    splits = {split: generate(family, split, 200 if split == "train" else 50) for split in SPLITS}
    check_disjoint(splits)
    for split, items in splits.items():
        assert all(item.split == split == split_of(item.messages, item.tools) for item in items)
        assert len({item.id for item in items}) == len(items)


@pytest.mark.parametrize("family", FAMILY_NAMES)
def test_a_smaller_count_is_a_prefix_of_a_larger_one(family):
    small = [item.id for item in generate(family, "test", 5)]
    large = [item.id for item in generate(family, "test", 15)]
    assert large[:5] == small


def test_bad_family_split_count_and_knobs_are_named():
    with pytest.raises(ValueError, match="unknown family 'maths'"):
        generate("maths", "train", 1)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        generate("reasoning", "dev", 1)
    with pytest.raises(ValueError, match="count must be"):
        generate("reasoning", "train", -1)
    with pytest.raises(ValueError, match=r"unknown knob 'dificulty' \(known knobs: difficulty, kinds\)"):
        generate("reasoning", "train", 1, dificulty=3)
    with pytest.raises(ValueError, match=r"'difficulty' must be an integer in \[1, 8\], got 0"):
        generate("reasoning", "train", 1, difficulty=0)
    with pytest.raises(ValueError, match="unknown value 'calculus'"):
        generate("reasoning", "train", 1, kinds=["calculus"])
    with pytest.raises(ValueError, match="'min_target' \\(50\\) exceeds 'max_target' \\(10\\)"):
        generate("lengthctrl", "train", 1, min_target=50, max_target=10)


def test_a_knob_space_too_small_for_the_count_fails_with_a_message():
    with pytest.raises(ValueError, match=r"only \d+ distinct test items \(asked 120"):
        generate("tooluse", "test", 120, shapes=["none"])  # 4 templates x 240 names


# ------------------------------------------------------------------------------------------------- reasoning
def test_reasoning_direct_ends_with_the_answer_and_difficulty_is_recorded():
    for item in generate("reasoning", "validation", 40, difficulty=3):
        assert item.direct.endswith("\n" + answer_line(item.reference["answer"]))
        assert item.meta["difficulty"] == 3 and item.solution.count("\n") >= 3
        assert "check" in item.solution.lower()


def _run_python(code: str) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "<item>", "exec"), {})  # the generator's own program, not model output
    return out.getvalue().strip()


def _side(expression: str, x: int) -> int:
    """One side of a generated linear equation ("7x - 6") at x."""
    return eval(re.sub(r"(\d)x", r"\1*x", expression), {"x": x})


def test_reasoning_answers_are_right():
    for item in generate("reasoning", "train", 60, difficulty=4):
        kind, prompt, answer = item.meta["kind"], item.messages[0]["content"], item.reference["answer"]
        if kind == "program":
            assert _run_python(prompt.split("```python\n")[1].split("```")[0]) == answer
        elif kind == "multiplication":
            a, b = map(int, re.findall(r"\d+", prompt)[:2])
            assert str(a * b) == answer
        elif kind == "equation":
            left, right = prompt.split(":", 1)[1].split(".")[0].split("=")
            assert _side(left, int(answer)) == _side(right, int(answer))
        elif kind == "arithmetic":
            assert item.solution.splitlines()[-2] == f"So the result is {answer}."


def test_difficulty_grows_the_problem():
    easy = generate("reasoning", "train", 20, kinds=["multiplication"], difficulty=1)
    hard = generate("reasoning", "train", 20, kinds=["multiplication"], difficulty=4)
    assert max(len(i.reference["answer"]) for i in easy) < min(len(i.reference["answer"]) for i in hard)


# ----------------------------------------------------------------------------------- knowledge, counterfact
def test_knowledge_answers_are_world_facts():
    world = build_world(0)
    for item in generate("knowledge", "train", 30):
        assert item.reference["answer"] in item.direct
        assert item.reference["answer"] in {v for rels in world.attributes.values() for v in rels.values()}
    for item in generate("knowledge", "train", 10, hops=2):
        assert item.solution.count(".") >= 3  # two facts recalled, then the answer


def test_counterfact_premises_are_false_and_controls_true():
    world = build_world(0)
    facts = {fact.sentence() for fact in world.facts()}
    items = generate("counterfact", "train", 40)
    false = [i for i in items if i.reference["false_premise"]]
    true = [i for i in items if not i.reference["false_premise"]]
    assert false and true
    for item in false:
        assert item.reference["premise"] not in facts and item.reference["truth"] in facts
        assert "premise is false" in item.direct
    for item in true:
        assert item.direct.endswith(answer_line(item.reference["answer"]))
    only_false = generate("counterfact", "train", 10, false_ratio=1.0)
    assert all(i.reference["false_premise"] for i in only_false)


def test_a_different_world_seed_is_a_different_world():
    assert build_world(0).people != build_world(1).people
    assert generate("knowledge", "train", 3, world_seed=1)[0].meta["world_seed"] == 1


# --------------------------------------------------------------------------------------------- lengthctrl
def test_lengthctrl_direct_has_the_target_length():
    for item in generate("lengthctrl", "train", 40, min_target=10, max_target=300):
        target, unit = item.reference["target"], item.reference["unit"]
        assert (count_words(item.direct) if unit == "words" else count_bullets(item.direct)) == target
        assert str(target) in item.messages[0]["content"]


# -------------------------------------------------------------------------------------------- thinkfollow
def _last_flag_mode(item) -> str:
    """The rule, from the flags the generator recorded: the last flag wins, no flag means think."""
    if item.enable_thinking is False:
        return "no_think"
    placed = [flag for flag in item.meta["flags"] if flag is not None]
    return placed[-1] if placed else "think"


def test_thinkfollow_reference_follows_the_last_flag():
    items = generate("thinkfollow", "train", 120)
    for item in items:
        assert item.reference["mode"] == _last_flag_mode(item)
        expected = resolve_thinking(item.messages, item.enable_thinking)
        assert item.reference["mode"] == ("think" if expected else "no_think")
        assert item.messages[-1]["role"] == "user"
        assert [m["role"] for m in item.messages if m["role"] != "system"][::2] == ["user"] * item.meta[
            "turns"
        ]
    assert {"think", "no_think"} == {item.reference["mode"] for item in items}
    assert any(item.enable_thinking is False for item in items)
    assert any(all(flag is None for flag in item.meta["flags"]) for item in items)  # unflagged: think
    assert any(item.meta["turns"] > 1 for item in items)


def test_thinkfollow_knobs_turn_flags_and_the_hard_switch_off():
    items = generate("thinkfollow", "train", 20, flag_rate=0.0, hard_switch=0.0)
    assert all(item.reference["mode"] == "think" for item in items)
    items = generate("thinkfollow", "train", 20, hard_switch=1.0)
    assert all(item.reference["mode"] == "no_think" and item.enable_thinking is False for item in items)


# ------------------------------------------------------------------------------------ preference, longctx
def test_preference_pairs_differ_and_cover_every_reason():
    items = generate("preference", "train", 60)
    assert {item.reference["reason"] for item in items} == set(
        FAMILIES["preference"].knobs["reasons"].default
    )
    for item in items:
        assert (
            item.reference["chosen"] != item.reference["rejected"] and item.direct == item.reference["chosen"]
        )
        if item.reference["reason"] == "correct_vs_wrong":
            assert not item.reference["rejected"].endswith(item.reference["chosen"].splitlines()[-1])


def test_longctx_lengths_follow_the_multiples():
    items = generate("longctx", "train", 30, train_length=400)
    by_multiple = {}
    for item in items:
        tokens, multiple = item.reference["context_tokens"], item.reference["multiple"]
        assert abs(tokens - multiple * 400) <= 0.1 * multiple * 400 + 60
        prompt = item.messages[0]["content"]
        assert prompt.count(item.reference["answer"]) == 1 and prompt.rstrip().endswith("?")
        by_multiple.setdefault(multiple, []).append(tokens)
    assert sorted(by_multiple) == [1, 2, 4]
