import json

import pytest

from qwen3.world import generate
from qwen3.world.constraints import CONSTRAINTS, KINDS, check_constraint, count_sentences, describe_constraint


def test_every_ifeval_direct_follows_its_constraints():
    items = generate("ifeval", "train", 150)
    seen = set()
    for item in items:
        specs = item.reference["constraints"]
        assert 1 <= len(specs) <= 4
        assert all(check_constraint(spec, item.direct) for spec in specs), item.id
        assert all(describe_constraint(spec) in item.messages[0]["content"] for spec in specs)
        seen |= {spec["kind"] for spec in specs}
    assert seen == set(KINDS)  # every kind is exercised by the generator
    assert any(len(item.reference["constraints"]) >= 3 for item in items)


def test_the_plain_text_usually_breaks_some_constraint():
    items = generate("ifeval", "train", 60)
    broken = sum(
        not all(check_constraint(spec, item.meta["plain"]) for spec in item.reference["constraints"])
        for item in items
    )
    assert broken >= len(items) // 2


VIOLATIONS = [
    ({"kind": "min_words", "n": 5}, "one two three four five", "one two three"),
    ({"kind": "max_words", "n": 3}, "one two - three", "one two three four"),
    ({"kind": "min_sentences", "n": 2}, "One. Two!", "Only one here."),
    ({"kind": "max_sentences", "n": 1}, "Just one.", "One. Two."),
    ({"kind": "include_keywords", "words": ["river", "bell"]}, "The River and the bell.", "The river alone."),
    ({"kind": "exclude_keywords", "words": ["jazz"]}, "Jazzy tunes.", "I like jazz."),
    ({"kind": "keyword_frequency", "word": "tower", "n": 2}, "tower, Tower", "one tower"),
    ({"kind": "lowercase"}, "all lower here.", "Not lower."),
    ({"kind": "uppercase"}, "ALL UPPER 42.", "ALL UPPEr."),
    ({"kind": "no_commas"}, "No commas here.", "Yes, a comma."),
    (
        {"kind": "start_with", "phrase": "Let me describe it."},
        "let me describe it. Text.",
        "Text. Let me describe it.",
    ),
    ({"kind": "end_with", "phrase": "That is all."}, "Text. That is all.", "That is all. More text."),
    ({"kind": "bullet_count", "n": 2}, "- a\n* b\nc", "- a\n- b\n- c"),
    (
        {
            "kind": "json_schema",
            "schema": {"type": "object", "required": ["n"], "properties": {"n": {"type": "integer"}}},
        },
        '```json\n{"n": 3}\n```',
        '{"n": "three"}',
    ),
]


@pytest.mark.parametrize(("spec", "good", "bad"), VIOLATIONS, ids=[v[0]["kind"] for v in VIOLATIONS])
def test_each_kind_accepts_a_following_text_and_rejects_a_violating_one(spec, good, bad):
    assert check_constraint(spec, good)
    assert not check_constraint(spec, bad)
    assert CONSTRAINTS[spec["kind"]](spec, good) and not CONSTRAINTS[spec["kind"]](spec, bad)
    assert describe_constraint(spec)


def test_every_kind_has_a_violation_case():
    assert {spec["kind"] for spec, _, _ in VIOLATIONS} == set(KINDS)


def test_not_json_is_a_violation_not_an_error():
    spec = {"kind": "json_schema", "schema": {"type": "object"}}
    assert not check_constraint(spec, "{not json")
    assert check_constraint(spec, json.dumps({"a": 1}))


def test_bad_specs_are_named():
    with pytest.raises(ValueError, match="unknown constraint kind 'shout'"):
        check_constraint({"kind": "shout"}, "x")
    with pytest.raises(ValueError, match="needs the parameter 'n'"):
        check_constraint({"kind": "min_words"}, "x")
    with pytest.raises(ValueError, match="must be a dict with a 'kind'"):
        describe_constraint(["min_words"])


def test_sentences_are_counted_by_terminal_punctuation():
    assert count_sentences("One. Two? Three! ") == 3
    assert count_sentences("Version 3.5 is out. Yes") == 2
