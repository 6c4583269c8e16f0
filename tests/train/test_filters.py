"""The cold-start filters: each drops what it should and keeps what it should; the chain reports why."""

from __future__ import annotations

import json
import random
from types import SimpleNamespace

import pytest

from qwen3.train.cold_start import (
    NOISE_KINDS,
    ColdStartConfig,
    noisy_candidates,
    response_filters,
    task_items,
)
from qwen3.train.filters import (
    Candidate,
    Consistency,
    CorrectAnswer,
    Guesswork,
    HeldOut,
    LanguageMixing,
    NotSolvedWithoutThinking,
    Repetition,
    ThinkTags,
    ValidationOverlap,
    Verifiable,
    apply_filters,
    no_think_pass_rates,
    repetition_rate,
    thought_conclusion,
)
from qwen3.world.items import Item

THOUGHT = "Start: 12. Step 1: 12 + 7 = 19. Step 2: 19 * 2 = 38. So the result is 38. Checking again gives 38."


def item(
    answer: str = "38", text: str = "Compute ((12 + 7) * 2).", family: str = "reasoning", **fields
) -> Item:
    return Item(family=family, id=text[:20], split="train", messages=[{"role": "user", "content": text}],
                reference={"answer": answer}, **fields)  # fmt: skip


def candidate(reasoning: str = THOUGHT, content: str = "(12 + 7) * 2 = 38.\nAnswer: 38", **kw) -> Candidate:
    return Candidate(kw.pop("query", item()), reasoning, content, **kw)


def test_correct_answer_drops_wrong_and_unanswered_keeps_right():
    flt = CorrectAnswer()
    assert flt.keep(candidate()) == (True, "kept")
    assert flt.keep(candidate(content="Answer: 39")) == (False, "wrong final answer")
    assert flt.keep(candidate(content=""))[0] is False


def test_think_tags_drop_a_second_think_block_even_with_a_right_answer():
    flt = ThinkTags()
    assert flt.keep(candidate()) == (True, "kept")
    # The stage-2 model's reply that fusion once kept: a stray thought and </think> before a right answer.
    stray = candidate(content="x = -20. The loop ran 2 times.\n</think>\nx = 38.\nAnswer: 38")
    assert CorrectAnswer().keep(stray) == (True, "kept")
    assert flt.keep(stray) == (False, "</think> inside the answer")
    assert flt.keep(candidate(reasoning="First.<think>Again.")) == (False, "<think> inside the thought")


def test_repetition_rate_and_filter():
    assert repetition_rate("a b c d e f g h") == 0.0
    looped = THOUGHT + " Step 1: 12 + 7 = 19." * 10
    assert repetition_rate(looped) > 0.5
    flt = Repetition(n=4, max_rate=0.3)
    assert flt.keep(candidate())[0]
    ok, reason = flt.keep(candidate(reasoning=looped))
    assert not ok and "repetition" in reason


def test_guesswork_needs_a_thought_that_reaches_the_answer():
    flt = Guesswork(min_words=12)
    assert flt.keep(candidate())[0]
    assert flt.keep(candidate(reasoning="Probably 38.")) == (False, "thought shorter than 12 words")
    unrelated = "Let me think about the numbers in this question for a while and then decide on something."
    assert flt.keep(candidate(reasoning=unrelated)) == (False, "the answer does not appear in the thought")


def test_consistency_drops_a_summary_that_contradicts_the_thought():
    flt = Consistency()
    assert thought_conclusion(THOUGHT) == "38"
    assert flt.keep(candidate())[0]
    assert not flt.keep(candidate(reasoning=THOUGHT + " On second thought the answer is 41."))[0]
    assert not flt.keep(candidate(reasoning="Work.\nAnswer: 40"))[0]  # an Answer: line inside the thought
    assert flt.keep(candidate(reasoning="12 + 7 = 19 and 19 * 2 = 38, done."))[0]  # no explicit conclusion
    names = Item(family="knowledge", id="k", split="train", messages=[{"role": "user", "content": "Who?"}],
                 reference={"answer": "Velmora"})  # fmt: skip
    assert not flt.keep(Candidate(names, "The answer is Dorun.", "Answer: Velmora"))[0]
    assert flt.keep(Candidate(names, "The answer is Velmora.", "Answer: Velmora"))[0]


def test_language_mixing():
    flt = LanguageMixing(max_share=0.05)
    assert flt.keep(candidate())[0]
    assert not flt.keep(candidate(reasoning=THOUGHT + " 所以答案是三十八所以答案是三十八"))[0]


def test_validation_overlap_by_hash_and_ngrams():
    held = item(text="Compute ((5 + 6) * 3).", solution="Start: 5. Step 1: 5 + 6 = 11. Step 2: 11 * 3 = 33. "
                "So the result is 33 and that is final.")  # fmt: skip
    flt = ValidationOverlap([held], n=8, max_overlap=0.5)
    assert flt.keep(candidate())[0]
    assert flt.keep(Candidate(held, THOUGHT, "Answer: 38")) == (False, "query of a validation item")
    copied = Candidate(item(text="Compute it."), held.solution, "Answer: 33")
    ok, reason = flt.keep(copied)
    assert not ok and "8-grams" in reason


def test_query_filters():
    verifiable = Verifiable()
    assert verifiable.keep(item())[0]
    assert verifiable.keep(item(answer=""))[0] is False
    assert verifiable.keep(item(family="ifeval"))[0] is False
    assert verifiable.keep(item(text="What is 2 + 2? And what is 3 + 3?")) == (False, "several sub-questions")
    held = item(text="held")
    assert HeldOut(frozenset({held.query_hash})).keep(held) == (False, "validation query")
    assert HeldOut(frozenset({held.query_hash})).keep(item())[0]
    rates = {item().query_hash: 0.75, held.query_hash: 0.25}
    solved = NotSolvedWithoutThinking(rates, threshold=0.5)
    assert not solved.keep(item())[0] and solved.keep(held)[0]
    with pytest.raises(KeyError, match="no pass rate"):
        solved.keep(item(text="other"))


def test_no_think_pass_rates_samples_k_per_query_in_one_call():
    items = [item(), item(answer="5", text="Compute 2 + 3.")]
    calls = []

    def chat(conversations, params, enable_thinking, progress):
        calls.append((conversations, params, enable_thinking))
        texts = [["<think>\n\n</think>\n\nAnswer: 38"] * 3 + ["Answer: 1"], ["Answer: 5", "Answer: 4"] * 2]
        return [SimpleNamespace(outputs=[SimpleNamespace(text=t) for t in group]) for group in texts]

    rates = no_think_pass_rates(SimpleNamespace(chat=chat), items, k=4, max_tokens=8)
    assert len(calls) == 1 and calls[0][2] is False and [p.n for p in calls[0][1]] == [4, 4]
    assert rates == {items[0].query_hash: 0.75, items[1].query_hash: 0.5}


def test_chain_stops_at_first_drop_counts_reasons_and_writes_examples(tmp_path):
    candidates = [candidate(), candidate(content="Answer: 1"), candidate(reasoning="Guess."),
                  candidate(content="Answer: 2")]  # fmt: skip
    kept, report = apply_filters([CorrectAnswer(), Guesswork()], candidates, "responses", max_examples=1)
    assert kept == [candidates[0]]
    assert (report.seen, report.kept) == (4, 1)
    assert report.dropped == {"wrong_answer": 2, "guesswork": 1}  # the short thought with a right answer
    assert report.reasons["wrong_answer"] == {"wrong final answer": 2}
    assert [e["filter"] for e in report.examples] == ["wrong_answer", "guesswork"]  # one example per filter
    assert report.metrics()["responses_dropped_wrong_answer"] == 2
    path = report.write_examples(tmp_path / "dropped.jsonl")
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert lines[0]["reason"] == "wrong final answer" and lines[0]["content"] == "Answer: 1"
    with pytest.raises(ValueError, match="unique"):
        apply_filters([CorrectAnswer(), CorrectAnswer()], candidates, "x")


@pytest.mark.parametrize("tasks", [["arith"], ["world:reasoning", "world:knowledge"]])
def test_response_chain_drops_every_injected_noise_and_keeps_every_clean_solution(tasks):
    items = task_items(tasks, "train", 30, seed=3)
    validation = task_items(tasks, "validation", 5, seed=3)
    noise = {kind: 0.2 for kind in NOISE_KINDS}
    candidates = [c for it in items for c in noisy_candidates(it, 4, noise, random.Random(it.id))]
    assert {c.meta["noise"] for c in candidates} == {"clean", *NOISE_KINDS}
    kept, report = apply_filters(
        response_filters(ColdStartConfig(tasks=["arith"]), validation), candidates, "r"
    )
    assert all(c.meta["noise"] == "clean" for c in kept)
    assert len(kept) == sum(c.meta["noise"] == "clean" for c in candidates)
    # each noise is caught by the filter made for it
    by_filter = {e["filter"]: e["meta"]["noise"] for e in report.examples}
    assert by_filter["wrong_answer"] == "wrong_answer" and by_filter["repetition"] == "repetition"
    assert by_filter["guesswork"] == "guesswork" and by_filter["inconsistent"] == "contradiction"
