"""Encode throughput of the Qwen3 tokenizer on a few MB of mixed text: ours vs ``tokenizers`` vs ``tiktoken``.

All three use the same ranks: ours is ``Qwen3Tokenizer`` (HF ``tokenizers`` underneath, plus our input checks),
"tokenizers" is the bare ``tokenizers.Tokenizer`` from the same tokenizer.json, and tiktoken is
``qwen3.tokenizer.reference.tiktoken_encoding`` (Qwen ranks and regex). One timed run each after one untimed warm-up; the
machine is shared, so read the numbers as rough. The script also checks that ours gives the reference's ids on
every document.

The text: Python standard-library sources (real code, comments and English docstrings), the package's synthetic
corpus (prose, arithmetic, chat turns), and generated multilingual lines (Cyrillic, Greek, CJK, Arabic, emoji).

    python bench/bench_tokenizer.py [--megabytes 4]
"""

from __future__ import annotations

import argparse
import os
import random
import sysconfig
import time
import unicodedata
from collections.abc import Callable
from pathlib import Path

from qwen3.tokenizer import load_tokenizer
from qwen3.tokenizer.reference import reference_encode, tiktoken_encoding
from qwen3.tokenizer.train import synthetic_corpus


def stdlib_sources(limit_chars: int) -> list[str]:
    texts, total = [], 0
    for path in sorted(Path(sysconfig.get_paths()["stdlib"]).glob("*.py")):
        text = path.read_text(encoding="utf-8", errors="replace")
        texts.append(text)
        total += len(text)
        if total >= limit_chars:
            break
    return texts


def multilingual_lines(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    ranges = [(0x430, 0x44F), (0x3B1, 0x3C9), (0x4E00, 0x62FF), (0x627, 0x64A), (0x1F600, 0x1F64F)]
    lines = []
    for _ in range(count):
        lo, hi = rng.choice(ranges)
        words = [
            "".join(chr(rng.randint(lo, hi)) for _ in range(rng.randint(1, 8)))
            for _ in range(rng.randint(4, 16))
        ]
        lines.append(" ".join(words) + rng.choice([".", "。", "!", "?"]))
    return lines


def mixed_documents(megabytes: float) -> list[str]:
    budget = int(megabytes * 1_000_000)
    docs = stdlib_sources(budget // 2)
    docs += list(synthetic_corpus(max(1, budget * 3 // 10 // 300)))
    docs += ["\n".join(chunk) for chunk in _chunks(multilingual_lines(budget // 5 // 60), 20)]
    return docs


def _chunks(items: list[str], size: int) -> list[list[str]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def timed(label: str, megabytes: float, run: Callable[[], list[list[int]]]) -> list[list[int]]:
    run()  # untimed warm-up: fills BPE caches and starts thread pools, so no variant is timed cold
    start = time.perf_counter()
    ids = run()
    seconds = time.perf_counter() - start
    tokens = sum(map(len, ids))
    print(
        f"{label:<44} {seconds:7.3f} s {megabytes / seconds:8.2f} MB/s {tokens / seconds / 1e6:7.2f} M tok/s"
    )
    return ids


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=float, default=4.0, help="approximate size of the text")
    args = parser.parse_args()

    tok = load_tokenizer("qwen3")
    backend = tok.backend
    tik = tiktoken_encoding()
    docs = mixed_documents(args.megabytes)
    megabytes = sum(len(doc.encode()) for doc in docs) / 1e6
    print(f"{len(docs)} documents, {megabytes:.2f} MB UTF-8, {os.cpu_count()} CPUs; one run each")

    ours = timed("ours: encode, one document at a time", megabytes, lambda: [tok.encode(d) for d in docs])
    timed("ours: encode_batch", megabytes, lambda: tok.encode_batch(docs))
    timed(
        "tokenizers: Tokenizer.encode, one at a time",
        megabytes,
        lambda: [backend.encode(d).ids for d in docs],
    )
    timed(
        "tokenizers: encode_batch_fast", megabytes, lambda: [e.ids for e in backend.encode_batch_fast(docs)]
    )
    timed(
        "tiktoken: encode_ordinary, one at a time", megabytes, lambda: [tik.encode_ordinary(d) for d in docs]
    )
    timed("tiktoken: NFC + encode_ordinary", megabytes, lambda: [tik.encode_ordinary(_nfc(d)) for d in docs])
    timed("tiktoken: encode_ordinary_batch", megabytes, lambda: tik.encode_ordinary_batch(docs))

    mismatches = sum(ours_ids != reference_encode(doc) for ours_ids, doc in zip(ours, docs))
    print(f"documents whose ids differ from the tiktoken reference: {mismatches} of {len(docs)}")


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


if __name__ == "__main__":
    main()
