"""An independent reference encoder: ``tiktoken`` with the Qwen ranks and pre-tokenizer regex.

It shares no BPE code with ``Qwen3Tokenizer`` (which runs the merges recovered by ``ranks_to_merges`` in
Hugging Face ``tokenizers``): tiktoken merges by rank directly. The tests and ``bench/bench_tokenizer.py`` use it
to check that both give the same ids. Needs ``tiktoken`` (in the ``test`` extra).

The added tokens are handled as the official tokenizer.json does: matched atomically on the raw text (leftmost,
longest first), and the NFC normaliser applies only to the text between them.
"""

from __future__ import annotations

import re
import unicodedata
from functools import cache
from pathlib import Path
from typing import Any

from qwen3.tokenizer.pipeline import PRETOKENIZE_PATTERN
from qwen3.tokenizer.ranks import find_rank_file, read_ranks
from qwen3.tokenizer.special import ADDED_TOKENS, QWEN3_FIRST_ADDED_ID


@cache
def tiktoken_encoding(rank_file: Path | None = None) -> Any:
    """A ``tiktoken.Encoding`` with the Qwen ranks, the Qwen regex and the 26 added tokens."""
    import tiktoken

    ranks = read_ranks(rank_file if rank_file is not None else find_rank_file())
    added = {spec.content: QWEN3_FIRST_ADDED_ID + spec.offset for spec in ADDED_TOKENS}
    return tiktoken.Encoding(
        "qwen3-reference", pat_str=PRETOKENIZE_PATTERN, mergeable_ranks=ranks, special_tokens=added
    )


@cache
def _added_token_pattern(allow_special: bool | str) -> re.Pattern[str]:
    # "none": no added token is matched; (?!) is a pattern that never matches.
    matched = [] if allow_special == "none" else [s for s in ADDED_TOKENS if allow_special or not s.special]
    contents = [spec.content for spec in matched]
    # Longest first, so that at one position the longest added token wins (as in tokenizers' leftmost-longest).
    return re.compile("|".join(re.escape(c) for c in sorted(contents, key=len, reverse=True)) or "(?!)")


def reference_encode(text: str, *, allow_special: bool | str = True) -> list[int]:
    """The ids the official Qwen3 tokenizer gives ``text`` (``allow_special`` as in ``Qwen3Tokenizer.encode``),
    computed with tiktoken."""
    encoding = tiktoken_encoding()
    ids: list[int] = []
    position = 0
    for match in _added_token_pattern(allow_special).finditer(text):
        ids += encoding.encode_ordinary(unicodedata.normalize("NFC", text[position : match.start()]))
        ids.append(encoding.encode_single_token(match.group()))
        position = match.end()
    ids += encoding.encode_ordinary(unicodedata.normalize("NFC", text[position:]))
    return ids
