"""A generated fictional world: people, cities and organisations with dates and relations, all from one seed.

The world is what the knowledge, counterfact, tooluse (``world_lookup``) and longctx families ask about and what
the pretraining corpus (``qwen3.world.corpus``) writes out as prose, so a model can only know it from that corpus:
no real-world fact answers a question about it. Names are built from syllables, so they are new words, and every
fact is a ``Fact(subject, relation, value)`` triple with one sentence template to state it and one question to ask
it. ``build_world(seed)`` is cached: every family and the corpus see the same world for the same seed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from functools import lru_cache

_ONSETS = ("b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z", "th", "br", "kr", "st", "dr")
_VOWELS = ("a", "e", "i", "o", "u", "ae", "io", "ou")
_CODAS = ("", "", "n", "r", "l", "s", "th", "m", "x")
_CITY_ENDINGS = ("mora", "vale", "holm", "burg", "wick", "ford", "stead", "mere")
_RIVER_ENDINGS = ("anne", "ell", "ora", "ine", "ash")
_ORG_KINDS = ("Foundry", "Observatory", "Guild", "Academy", "Press", "Shipyard", "Archive", "Conservatory")
PROFESSIONS = (
    "astronomer", "cartographer", "glassblower", "botanist", "engineer", "composer", "archivist", "weaver",
    "physician", "shipwright", "mathematician", "painter",
)  # fmt: skip

# relation -> (statement template, question template); {s} is the subject's name, {v} the value, {a} its article.
RELATIONS: dict[str, tuple[str, str]] = {
    "born_in": ("{s} was born in {v}.", "In which city was {s} born?"),
    "birth_year": ("{s} was born in the year {v}.", "In which year was {s} born?"),
    "profession": ("{s} works as {a} {v}.", "What is the profession of {s}?"),
    "mentor": ("{s} was trained by {v}.", "Who trained {s}?"),
    "works_at": ("{s} works at the {v}.", "Where does {s} work?"),
    "river": ("The river {v} flows through {s}.", "Which river flows through {s}?"),
    "founded": ("{s} was founded in the year {v}.", "In which year was {s} founded?"),
    "elevation_m": ("{s} lies {v} metres above sea level.", "How many metres above sea level does {s} lie?"),
    "population": ("{s} has {v} inhabitants.", "How many inhabitants does {s} have?"),
    "headquarters": ("The {s} has its seat in {v}.", "In which city does the {s} have its seat?"),
    "founder": ("The {s} was founded by {v}.", "Who founded the {s}?"),
    "established": ("The {s} was established in the year {v}.", "In which year was the {s} established?"),
}

# relation -> the noun a sentence uses for it ("the birthplace of X")
NOUNS = {
    "born_in": "birthplace", "birth_year": "birth year", "profession": "profession", "mentor": "mentor",
    "works_at": "employer", "river": "river", "founded": "founding year", "elevation_m": "elevation in metres",
    "population": "population", "headquarters": "seat", "founder": "founder", "established": "founding year",
}  # fmt: skip


@dataclass(frozen=True)
class Fact:
    subject: str
    relation: str
    value: str

    def sentence(self) -> str:
        article = "an" if self.value[:1].lower() in "aeiou" else "a"
        return RELATIONS[self.relation][0].format(s=self.subject, v=self.value, a=article)

    def question(self) -> str:
        return RELATIONS[self.relation][1].format(s=self.subject, v=self.value)


@dataclass
class World:
    """Entities by kind (``people``, ``cities``, ``orgs``: lists of names) and their attributes."""

    seed: int
    people: list[str]
    cities: list[str]
    orgs: list[str]
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)  # entity -> relation -> value
    _facts: list[Fact] | None = field(default=None, repr=False, compare=False)

    def kind_of(self, entity: str) -> str:
        for kind in ("people", "cities", "orgs"):
            if entity in getattr(self, kind):
                return kind
        raise KeyError(entity)

    def get(self, entity: str, relation: str) -> str:
        return self.attributes[entity][relation]

    def facts(self) -> list[Fact]:
        """Every fact of the world (computed once: the world does not change after ``build_world``)."""
        if self._facts is None:
            self._facts = [Fact(e, r, v) for e, rels in self.attributes.items() for r, v in rels.items()]
        return self._facts

    def facts_of(self, entity: str) -> list[Fact]:
        return [Fact(entity, r, v) for r, v in self.attributes[entity].items()]

    def values_of(self, relation: str) -> list[str]:
        """Every distinct value the relation takes, in a stable order (the pool for false premises)."""
        return sorted({rels[relation] for rels in self.attributes.values() if relation in rels})


def _word(rng: random.Random, syllables: int) -> str:
    parts = [rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables)]
    return "".join(parts)


def _unique_names(rng: random.Random, count: int, make, taken: set[str]) -> list[str]:
    names: list[str] = []
    while len(names) < count:
        name = make()
        if name not in taken:
            taken.add(name)
            names.append(name)
    return names


@lru_cache(maxsize=8)
def build_world(seed: int = 0, people: int = 240, cities: int = 48, orgs: int = 32) -> World:
    """The world for ``seed``: ``people`` people, ``cities`` cities and ``orgs`` organisations."""
    if min(people, cities, orgs) < 2:
        raise ValueError(f"build_world: need at least 2 of each kind, got {people}, {cities}, {orgs}")
    rng = random.Random(f"world/{seed}")
    taken: set[str] = set()
    city_names = _unique_names(
        rng, cities, lambda: (_word(rng, 1) + rng.choice(_CITY_ENDINGS)).title(), taken
    )
    river_names = _unique_names(
        rng, cities, lambda: (_word(rng, 1) + rng.choice(_RIVER_ENDINGS)).title(), taken
    )
    person_names = _unique_names(
        rng, people, lambda: f"{_word(rng, 2).title()} {_word(rng, rng.randint(1, 2)).title()}", taken
    )
    org_names = _unique_names(rng, orgs, lambda: f"{_word(rng, 2).title()} {rng.choice(_ORG_KINDS)}", taken)
    world = World(seed, person_names, city_names, org_names)
    for city, river in zip(city_names, river_names):
        world.attributes[city] = {
            "river": river,
            "founded": str(rng.randint(900, 1800)),
            "elevation_m": str(rng.randint(5, 2400)),
            "population": str(rng.randint(2, 900) * 1000 + rng.randint(0, 999)),
        }
    # People are generated oldest first, so a mentor (an earlier person) is always older than the mentee.
    years = sorted(rng.randint(1900, 2000) for _ in person_names)
    for index, (person, year) in enumerate(zip(person_names, years)):
        attributes = {
            "born_in": rng.choice(city_names),
            "birth_year": str(year),
            "profession": rng.choice(PROFESSIONS),
            "works_at": rng.choice(org_names),
        }
        if index >= 4:
            attributes["mentor"] = rng.choice(person_names[: index - 1])
        world.attributes[person] = attributes
    for org in org_names:
        world.attributes[org] = {
            "headquarters": rng.choice(city_names),
            "founder": rng.choice(person_names),
            "established": str(rng.randint(1850, 2010)),
        }
    return world


def describe_entity(world: World, entity: str) -> str:
    """A short prose paragraph stating every fact about ``entity`` (the corpus and longctx filler use it)."""
    return " ".join(fact.sentence() for fact in world.facts_of(entity))
