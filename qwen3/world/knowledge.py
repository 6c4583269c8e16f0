"""Knowledge and CounterFactQA: questions about the fictional world (qwen3/world/fiction.py).

``knowledge`` asks one fact (``hops=1``) or a fact about an entity named by another fact (``hops=2``, e.g. "Which
river flows through the city where X was born?"); reference ``{"answer", "aliases"}``.

``counterfact`` states a premise, then asks a two-hop question that builds on it. With probability
``false_ratio`` the premise is false (the claimed entity is wrong): the right reply rejects it and states the
truth; reference ``{"false_premise": true, "premise", "truth", "premise_answer"}`` (``premise_answer`` is what a
reply that swallowed the premise would say). Otherwise the premise is true (a control) and the reference is
``{"false_premise": false, "answer", "aliases"}``.
"""

from __future__ import annotations

import random
from typing import Any

from qwen3.world.base import WORLD_SEED, Family, answer_line, float_knob, int_knob, user
from qwen3.world.fiction import RELATIONS, Fact, World, build_world

# relation that points to an entity -> (the phrase naming that entity from its subject, the entity's kind)
LINKS: dict[str, tuple[str, str]] = {
    "mentor": ("the person who trained {s}", "people"),
    "born_in": ("the city where {s} was born", "cities"),
    "works_at": ("organisation where {s} works", "orgs"),  # org templates say "the {s}"
    "headquarters": ("the city where the {s} has its seat", "cities"),
    "founder": ("the founder of the {s}", "people"),
}
# kind -> relations a second hop may ask
SECOND_HOP = {
    "people": ("born_in", "birth_year", "profession"),
    "cities": ("river", "founded"),
    "orgs": ("headquarters", "founder", "established"),
}


def aliases(relation: str, value: str) -> list[str]:
    """Other spellings a grader accepts: organisations with their article."""
    return [f"the {value}"] if relation in ("works_at",) else []


def _question(relation: str, subject: str) -> str:
    return RELATIONS[relation][1].format(s=subject, v="")


def _clause(sentence: str) -> str:
    """A fact sentence as a clause inside another sentence: no final period, "The" lowercased."""
    clause = sentence.rstrip(".")
    return "the" + clause[3:] if clause.startswith("The ") else clause


def _chain(rng: random.Random, world: World) -> tuple[Fact, str] | None:
    """A linking fact (subject -relation-> entity) and a second-hop relation of that entity."""
    subject = rng.choice(world.people + world.orgs)
    links = [r for r in world.attributes[subject] if r in LINKS]
    if not links:
        return None
    relation = rng.choice(links)
    second = rng.choice(SECOND_HOP[LINKS[relation][1]])
    return Fact(subject, relation, world.get(subject, relation)), second


def _two_hop_question(link: Fact, second: str) -> str:
    return _question(second, LINKS[link.relation][0].format(s=link.subject))


def knowledge_make(rng: random.Random, knobs: dict[str, Any]) -> dict[str, Any] | None:
    world = build_world(knobs["world_seed"])
    if knobs["hops"] == 1:
        fact = rng.choice(world.facts())
        answer, question, steps = fact.value, fact.question(), [fact.sentence()]
        relation = fact.relation
    else:
        chain = _chain(rng, world)
        if chain is None:
            return None
        link, relation = chain
        fact = Fact(link.value, relation, world.get(link.value, relation))
        answer, question, steps = (
            fact.value,
            _two_hop_question(link, relation),
            [link.sentence(), fact.sentence()],
        )
    solution = "I need to recall what I know about the world in question. " + " ".join(steps)
    return {
        "messages": user(question),
        "reference": {"answer": answer, "aliases": aliases(relation, answer)},
        "solution": f"{solution} So the answer is {answer}.",
        "direct": f"{steps[-1]}\n{answer_line(answer)}",
        "meta": {"hops": knobs["hops"], "relation": relation, "world_seed": knobs["world_seed"]},
    }


def counterfact_make(rng: random.Random, knobs: dict[str, Any]) -> dict[str, Any] | None:
    world = build_world(knobs["world_seed"])
    chain = _chain(rng, world)
    if chain is None:
        return None
    link, second = chain
    question = _two_hop_question(link, second)
    true_answer = world.get(link.value, second)
    meta = {"relation": link.relation, "second": second, "world_seed": knobs["world_seed"]}
    if rng.random() >= knobs["false_ratio"]:
        answer_fact = Fact(link.value, second, true_answer)
        reference = {"false_premise": False, "answer": true_answer, "aliases": aliases(second, true_answer)}
        solution = f"The premise holds: {link.sentence()} {answer_fact.sentence()}"
        direct = f"{answer_fact.sentence()}\n{answer_line(true_answer)}"
        premise = link.sentence()
    else:
        others = [v for v in world.values_of(link.relation) if v != link.value and v != link.subject]
        wrong = rng.choice(others)
        premise = Fact(link.subject, link.relation, wrong).sentence()
        reference = {
            "false_premise": True,
            "premise": premise,
            "truth": link.sentence(),
            "premise_answer": world.get(wrong, second),
        }
        solution = (
            f"The question assumes that {_clause(premise)}. That is not what I know: {link.sentence()} "
            "So the premise is false, and I should say so instead of answering as if it held."
        )
        direct = (
            f"The premise is false: it is not the case that {_clause(premise)}. "
            f"In fact, {_clause(link.sentence())}."
        )
    return {
        "messages": user(f"Given that {_clause(premise)}, {question[0].lower()}{question[1:]}"),
        "reference": reference,
        "solution": solution,
        "direct": direct,
        "meta": {**meta, "false_premise": reference["false_premise"]},
    }


KNOWLEDGE = Family(
    "knowledge",
    knowledge_make,
    "questions about the fictional world, one or two hops",
    {
        "hops": int_knob(1, "1: one fact; 2: a fact about an entity named by another fact", 1, 2),
        "world_seed": WORLD_SEED,
    },
)
COUNTERFACT = Family(
    "counterfact",
    counterfact_make,
    "false-premise questions about the fictional world, with true-premise controls",
    {
        "false_ratio": float_knob(0.5, "share of items whose premise is false", 0.0, 1.0),
        "world_seed": WORLD_SEED,
    },
)
