"""Generated training data for tests, benchmarks and the debug presets: the same seed gives the same data.

- ``pattern_documents``: token-id documents (no tokenizer) mixing learnable patterns, so a small model's loss
  falls quickly and reproducibly: arithmetic progressions, repeated motifs, copied segments, and Zipf-distributed
  noise. Token 0 is left free for EOS (``PATTERN_EOS``).
- ``chat_examples``: arithmetic conversations in the OpenAI message format, half in thinking mode (with
  ``reasoning_content``), half with ``/no_think``, some with a system prompt.
- ``text_documents``: the tokenizer's synthetic corpus (prose, arithmetic, code, chat turns).
"""

from __future__ import annotations

import random
from typing import Any

PATTERN_EOS = 0


def pattern_documents(
    count: int, vocab_size: int, seed: int = 0, min_len: int = 16, max_len: int = 160
) -> list[list[int]]:
    if vocab_size < 16:
        raise ValueError(f"vocab_size {vocab_size} is too small for pattern documents (needs >= 16)")
    rng = random.Random(seed)
    makers = [_progression, _motif, _copy, _noise]
    return [
        rng.choices(makers, weights=[3, 3, 2, 2])[0](rng, vocab_size, rng.randint(min_len, max_len))
        for _ in range(count)
    ]


def _token(value: int, vocab_size: int) -> int:
    return 1 + value % (vocab_size - 1)  # never PATTERN_EOS


def _progression(rng: random.Random, vocab: int, length: int) -> list[int]:
    start, step = rng.randrange(vocab), rng.randint(1, 3)
    return [_token(start + step * i, vocab) for i in range(length)]


def _motif(rng: random.Random, vocab: int, length: int) -> list[int]:
    motif = [_token(rng.randrange(vocab), vocab) for _ in range(rng.randint(2, 6))]
    return [motif[i % len(motif)] for i in range(length)]


def _copy(rng: random.Random, vocab: int, length: int) -> list[int]:
    segment = [_token(rng.randrange(vocab), vocab) for _ in range(rng.randint(4, 12))]
    out: list[int] = []
    while len(out) < length:
        out.extend(segment)
    return out[:length]


def _noise(rng: random.Random, vocab: int, length: int) -> list[int]:
    # Zipf over a small alphabet: learnable unigram statistics, nothing more.
    alphabet = min(vocab - 1, 64)
    weights = [1 / (k + 1) for k in range(alphabet)]
    return [1 + k for k in rng.choices(range(alphabet), weights=weights, k=length)]


def chat_examples(count: int, seed: int = 0) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [_arithmetic_chat(rng) for _ in range(count)]


def _arithmetic_chat(rng: random.Random) -> dict[str, Any]:
    a, b = rng.randint(0, 99), rng.randint(0, 99)
    op, result = rng.choice([("+", a + b), ("-", a - b), ("*", a * b)])
    thinking = rng.random() < 0.5
    question = f"What is {a} {op} {b}?" + ("" if thinking else " /no_think")
    messages: list[dict[str, Any]] = []
    if rng.random() < 0.3:
        messages.append({"role": "system", "content": "You are a careful calculator."})
    messages.append({"role": "user", "content": question})
    answer = {"role": "assistant", "content": f"{a} {op} {b} = {result}."}
    answer["reasoning_content"] = f"I need {a} {op} {b}. That is {result}." if thinking else ""
    messages.append(answer)
    return {"messages": messages}


def text_documents(count: int, seed: int = 0) -> list[str]:
    from qwen3.tokenizer.train import synthetic_corpus

    return list(synthetic_corpus(count, seed=seed))
