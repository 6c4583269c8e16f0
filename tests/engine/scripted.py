"""``ScriptedSampler``: a test double for ``LLMEngine.sampler`` that makes a random model "say" given outputs.

Everything else is the real engine (scheduler, model steps, forced tokens, detokenizer, chat parser), so outputs a
random model would never produce (a tool call, a thought without ``</think>``) can be driven through the same code
path as real generations, down to the server's responses.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping


class ScriptedSampler:
    """Each sequence whose prompt text contains a script's key emits that script's tokens (a string is encoded; a
    list is token ids), then ``<|im_end|>``; other sequences are sampled by the real sampler."""

    def __init__(self, engine, scripts: Mapping[str, str | list[int]]):
        self.fallback = engine.sampler
        self.tokenizer = engine.tokenizer
        self.scripts = {
            key: list(script) if not isinstance(script, str) else engine.tokenizer.encode(script)
            for key, script in scripts.items()
        }
        self._state: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # seq -> (script, position)

    def install(self, engine) -> ScriptedSampler:
        engine.sampler = self
        return self

    def __call__(self, logits, seqs):
        result = self.fallback(logits, seqs)
        for row, seq in enumerate(seqs):
            script, position = self._state.get(seq) or (self._find(seq), 0)
            if script is None:
                continue
            token = script[position] if position < len(script) else self.tokenizer.im_end_id
            self._state[seq] = (script, position + 1)
            result.tokens[row] = token
            result.logprobs[row] = None  # a scripted token has no model probability
            result.chosen_logprobs[row] = None
        return result

    def _find(self, seq) -> list[int] | None:
        prompt = self.tokenizer.decode(seq.token_ids[: seq.num_prompt_tokens])
        return next((script for key, script in self.scripts.items() if key in prompt), None)
