"""Incremental detokenisation for streaming output.

A token can end in the middle of a multi-byte UTF-8 character (Chinese characters and emoji often span two
tokens), so decoding each token on its own would print broken characters. ``IncrementalDetokenizer`` feeds the
tokens' raw bytes into an incremental UTF-8 decoder, which holds back an incomplete trailing character until its
last byte arrives. Each token costs O(its bytes): nothing is re-decoded.

Invalid byte sequences become U+FFFD exactly where a one-shot ``decode`` puts them, so the concatenation of all
``push`` outputs and the final ``flush`` equals ``tokenizer.decode(all_ids)`` however the ids are split.
"""

from __future__ import annotations

import codecs
import numbers
from collections.abc import Iterable

from qwen3.tokenizer.tokenizer import Qwen3Tokenizer


class IncrementalDetokenizer:
    def __init__(self, tokenizer: Qwen3Tokenizer, skip_special_tokens: bool = False):
        self._tokenizer = tokenizer
        self._skipped = tokenizer.special_ids if skip_special_tokens else frozenset()
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, ids: int | Iterable[int]) -> str:
        """Add one token id or several (a list, tensor or array); return the text of every character they complete
        (possibly '')."""
        if isinstance(ids, numbers.Integral) or getattr(ids, "ndim", None) == 0:
            ids = (ids,)
        # Plain ints, as decode takes them: a tensor element would never match the skipped ids (it hashes by identity).
        ids = self._tokenizer._checked_ids(ids)
        token_bytes = self._tokenizer.token_bytes
        data = b"".join(token_bytes(token_id) for token_id in ids if token_id not in self._skipped)
        return self._decoder.decode(data, final=False)

    def flush(self) -> str:
        """Return what is held back (an incomplete trailing character becomes U+FFFD) and start afresh."""
        text = self._decoder.decode(b"", final=True)
        self._decoder.reset()
        return text
