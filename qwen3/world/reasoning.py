"""Reasoning (the AIME / LiveCodeBench analogue): problems a small model gets right by writing the steps.

Kinds: ``arithmetic`` (a chain of operations), ``multiplication`` (long multiplication), ``equation`` (a linear
equation), ``ordering`` (who is tallest, from pairwise comparisons) and ``program`` (trace a short loop).
``difficulty`` sets the number of steps / digits / people / iterations. ``solution`` is the chain of thought a
long-CoT teacher writes (every step, then a check by another route); ``direct`` is the short answer, ending with
the ``Answer: X`` line; ``reference`` is ``{"answer": "X"}``.
"""

from __future__ import annotations

import random
from typing import Any

from qwen3.world.base import Family, answer_line, choices_knob, int_knob, user

KINDS = ("arithmetic", "multiplication", "equation", "ordering", "program")
ANSWER_FORMAT = "End your reply with a line of the form 'Answer: <your answer>'."


def _item(
    kind: str, difficulty: int, prompt: str, answer: Any, steps: list[str], direct: str
) -> dict[str, Any]:
    return {
        "messages": user(f"{prompt}\n\n{ANSWER_FORMAT}"),
        "reference": {"answer": str(answer)},
        "solution": "\n".join(steps),
        "direct": f"{direct}\n{answer_line(answer)}",
        "meta": {"kind": kind, "difficulty": difficulty},
    }


# ------------------------------------------------------------------------------------------------- arithmetic
_OPS = {"add": ("+", "add {k}"), "subtract": ("-", "subtract {k}"), "multiply": ("*", "multiply by {k}")}
_NAME_OF = {symbol: name for name, (symbol, _) in _OPS.items()}
_INVERSE = {"+": "-", "-": "+", "*": "/"}


def _apply(value: int, symbol: str, k: int) -> int:
    return value + k if symbol == "+" else value - k if symbol == "-" else value * k


def arithmetic(rng: random.Random, difficulty: int) -> dict[str, Any]:
    value = start = rng.randint(2, 30)
    ops: list[tuple[str, int]] = []
    for _ in range(difficulty + 2):
        name = rng.choice(("add", "subtract", "multiply") if abs(value) < 500 else ("add", "subtract"))
        k = rng.randint(2, 9) if name == "multiply" else rng.randint(2, 60)
        ops.append((_OPS[name][0], k))
        value = _apply(value, _OPS[name][0], k)
    phrases = ", then ".join(_OPS[_NAME_OF[symbol]][1].format(k=k) for symbol, k in ops)
    prompt = f"Start with {start}. {phrases[0].upper()}{phrases[1:]}. What number results?"
    steps = ["I'll apply the operations in order and keep a running total.", f"Start: {start}."]
    chain, current = [], start
    for number, (symbol, k) in enumerate(ops, start=1):
        new = _apply(current, symbol, k)
        steps.append(f"Step {number}: {_p(current)} {symbol} {k} = {new}.")
        chain.append(f"{_p(current)} {symbol} {k} = {new}")
        current = new
    back = value
    undo = []
    for symbol, k in reversed(ops):
        previous = back - k if symbol == "+" else back + k if symbol == "-" else back // k
        undo.append(f"{back} {_INVERSE[symbol]} {k} = {previous}")
        back = previous
    steps.append(f"So the result is {value}.")
    steps.append(
        f"Let me check by undoing the steps from the end: {'; '.join(undo)}. "
        f"That gives back {back}, the starting number, so {value} is right."
    )
    return _item("arithmetic", difficulty, prompt, value, steps, ", ".join(chain) + ".")


# --------------------------------------------------------------------------------------------- multiplication
def _digit_sum_mod9(n: int) -> int:
    return sum(int(d) for d in str(n)) % 9


def multiplication(rng: random.Random, difficulty: int) -> dict[str, Any]:
    digits = difficulty + 1
    a = rng.randint(10 ** (digits - 1), 10**digits - 1)
    b = rng.randint(10 ** (digits - 1), 10**digits - 1)
    product = a * b
    steps = [
        f"I need {a} * {b}. I'll multiply {a} by each digit of {b}, from the right, shifted by its place."
    ]
    partials = []
    for place, digit in enumerate(reversed(str(b))):
        partial = a * int(digit) * 10**place
        partials.append(partial)
        steps.append(f"{a} * {digit} * {10**place} = {partial}.")
    total = 0
    for partial in partials:
        steps.append(f"Running sum: {total} + {partial} = {total + partial}.")
        total += partial
    ra, rb, rp = _digit_sum_mod9(a), _digit_sum_mod9(b), _digit_sum_mod9(product)
    steps.append(f"So {a} * {b} = {product}.")
    steps.append(
        f"Check by casting out nines: {a} leaves {ra} and {b} leaves {rb}; {ra} * {rb} = {ra * rb}, which leaves "
        f"{ra * rb % 9}; {product} leaves {rp}. They agree, so the product is right."
    )
    return _item(
        "multiplication", difficulty, f"Compute {a} * {b}.", product, steps, f"{a} * {b} = {product}."
    )


# --------------------------------------------------------------------------------------------------- equation
def _linear(coefficient: int, constant: int) -> str:
    head = {1: "x", -1: "-x"}.get(coefficient, f"{coefficient}x")
    if constant == 0:
        return head
    return f"{head} {'+' if constant > 0 else '-'} {abs(constant)}"


def _p(n: int) -> str:
    """A number as an operand: negatives in parentheses, so ``3 - (-6)`` never reads ``3 - -6``."""
    return f"({n})" if n < 0 else str(n)


def equation(rng: random.Random, difficulty: int) -> dict[str, Any]:
    bound = 4 + 3 * difficulty
    x = rng.randint(-bound, bound)
    a = rng.choice([n for n in range(-bound, bound + 1) if n != 0])
    c = rng.choice([n for n in range(-bound, bound + 1) if n not in (0, a)])
    b = rng.randint(-5 * bound, 5 * bound)
    d = a * x + b - c * x
    left, right = _linear(a, b), _linear(c, d)
    steps = [
        f"I need x with {left} = {right}.",
        f"Collect the x terms on the left: ({a} - {_p(c)})x = {d} - {_p(b)}.",
        f"That is {a - c}x = {d - b}.",
        f"Divide by {a - c}: x = {d - b} / {_p(a - c)} = {x}.",
        f"Check by substituting x = {x}: the left side is {a} * {_p(x)} + {_p(b)} = {a * x + b}, the right side is "
        f"{c} * {_p(x)} + {_p(d)} = {c * x + d}. Both are {a * x + b}, so x = {x} is right.",
    ]
    return _item("equation", difficulty, f"Solve for x: {left} = {right}.", x, steps, f"x = {x}.")


# --------------------------------------------------------------------------------------------------- ordering
_NAMES = ("Ana", "Ben", "Cleo", "Dev", "Eli", "Fay", "Gus", "Hana", "Ivo", "Jun", "Kai", "Lena")
_TRAITS = (
    ("taller", "tallest", "shortest"),
    ("older", "oldest", "youngest"),
    ("faster", "fastest", "slowest"),
)


def ordering(rng: random.Random, difficulty: int) -> dict[str, Any]:
    people = rng.sample(_NAMES, min(difficulty + 2, len(_NAMES)))  # people[0] has the most of the trait
    more, most, least = rng.choice(_TRAITS)
    pairs = [(people[i], people[i + 1]) for i in range(len(people) - 1)]
    rng.shuffle(pairs)
    statements = [f"{x} is {more} than {y}." for x, y in pairs]
    ask_most = rng.random() < 0.5
    answer = people[0] if ask_most else people[-1]
    question = f"Who is the {most if ask_most else least}?"
    prompt = f"{' '.join(statements)} {question}"
    steps = ["Each statement links two people; I'll chain them into one order."]
    steps += [f"From '{s}': {x} comes before {y}." for s, (x, y) in zip(statements, pairs)]
    steps.append(f"Linking the pairs gives the order, from {most} to {least}: {', '.join(people)}.")
    steps.append(f"So the {most if ask_most else least} is {answer}.")
    steps.append(
        "Check: every statement agrees with that order ("
        + "; ".join(f"{x} is before {y}" for x, y in pairs)
        + f"), and nobody is placed {'above' if ask_most else 'below'} {answer}."
    )
    return _item("ordering", difficulty, prompt, answer, steps, f"The order is {', '.join(people)}.")


# ---------------------------------------------------------------------------------------------------- program
def _operand(rng: random.Random, allowed: tuple[str, ...]) -> str:
    return rng.choice(allowed) if rng.random() < 0.7 else str(rng.randint(1, 9))


def _value(token: str, env: dict[str, int]) -> int:
    return env[token] if token in env else int(token)


def _statement(rng: random.Random) -> tuple[str, str, str, str, str | None]:
    """(target, left, op, right, guard variable or None): ``target = left op right``, maybe under ``if g % 2 == 0``."""
    target = rng.choice(("a", "b"))
    op = rng.choice(("+", "-", "*")) if rng.random() < 0.25 else rng.choice(("+", "-"))
    left = target
    right = "2" if op == "*" else _operand(rng, ("a", "b", "i"))
    guard = rng.choice(("a", "b", "i")) if rng.random() < 0.3 else None
    return target, left, op, right, guard


def program(rng: random.Random, difficulty: int) -> dict[str, Any]:
    env = {"a": rng.randint(0, 9), "b": rng.randint(0, 9)}
    iterations = difficulty + 1
    body = [_statement(rng) for _ in range(2)]
    shown = rng.choice(("a", "b", "a + b"))
    lines = [f"a = {env['a']}", f"b = {env['b']}", f"for i in range({iterations}):"]
    for target, left, op, right, guard in body:
        if guard is None:
            lines.append(f"    {target} = {left} {op} {right}")
        else:
            lines += [f"    if {guard} % 2 == 0:", f"        {target} = {left} {op} {right}"]
    lines.append(f"print({shown})")
    code = "\n".join(lines)
    steps = [f"I'll trace the program line by line. Initially a = {env['a']} and b = {env['b']}."]
    for i in range(iterations):
        env["i"] = i
        notes = []
        for target, left, op, right, guard in body:
            if guard is not None and env[guard] % 2 != 0:
                notes.append(f"{guard} = {env[guard]} is odd, so the update of {target} is skipped")
                continue
            x, y = _value(left, env), _value(right, env)
            new = x + y if op == "+" else x - y if op == "-" else x * y
            notes.append(f"{target} = {x} {op} {_p(y)} = {new}")
            env[target] = new
        steps.append(f"i = {i}: " + "; ".join(notes) + f". Now a = {env['a']}, b = {env['b']}.")
    answer = env["a"] + env["b"] if shown == "a + b" else env[shown]
    steps.append(
        f"The loop ran {iterations} times (i = 0 to {iterations - 1}), then print({shown}) shows {answer}."
    )
    steps.append(
        f"Check: the last values are a = {env['a']} and b = {env['b']}; "
        f"{shown} = {answer}. The count of iterations matches range({iterations}), so the output is {answer}."
    )
    prompt = f"What does this Python program print?\n\n```python\n{code}\n```"
    return _item(
        "program", difficulty, prompt, answer, steps, f"After {iterations} iterations it prints {answer}."
    )


MAKERS = {
    "arithmetic": arithmetic,
    "multiplication": multiplication,
    "equation": equation,
    "ordering": ordering,
    "program": program,
}


def make(rng: random.Random, knobs: dict[str, Any]) -> dict[str, Any]:
    kind = rng.choice(knobs["kinds"])
    return MAKERS[kind](rng, knobs["difficulty"])


FAMILY = Family(
    "reasoning",
    make,
    __doc__.split("\n\n")[0],
    {
        "difficulty": int_knob(
            2, "steps (arithmetic: d+2 operations; multiplication: d+1 digits; ...)", 1, 8
        ),
        "kinds": choices_knob(KINDS, "which kinds of problem to draw from", KINDS),
    },
)
