"""``RequestBuilder``: turns a request (prompt text or ids, SamplingParams, chat options) into its sequences, after
checking everything that needs the model or tokenizer. Every bad input raises here, before any work starts."""

from __future__ import annotations

import random

import torch

from qwen3.engine.detokenizer import ChatOptions, OutputText
from qwen3.engine.sampling_params import EMPTY_THOUGHT_TEXT, SamplingParams
from qwen3.engine.sequence import Sequence
from qwen3.engine.thinking_budget import ANSWER_SEPARATOR, AnswerPrefix, ThinkingState, ThinkTokens


class RequestBuilder:
    def __init__(self, tokenizer, model_vocab: int, max_model_len: int, seed: int):
        self.tokenizer = tokenizer
        self.model_vocab = model_vocab
        self.max_model_len = max_model_len
        self._seeds = random.Random(seed)  # generators of requests without a seed of their own
        self._think_tokens: dict[str, ThinkTokens] = {}

    def build(
        self,
        request_id: str,
        prompt: str | list[int],
        params: SamplingParams,
        chat: ChatOptions | None,
        stream: bool = True,
        eos_token_ids: frozenset[int] = frozenset(),
    ) -> tuple[list[int], list[Sequence]]:
        """The prompt ids and the ``params.n`` sequences; completions 1..n-1 will copy completion 0's prompt.
        ``stream=False``: the caller wants only the final output (see ``LLMEngine.add_request``)."""
        if not isinstance(params, SamplingParams):
            raise TypeError(f"sampling_params must be a SamplingParams, got {type(params).__name__}")
        prompt_ids = self.prompt_ids(prompt)
        self.check(prompt_ids, params)
        think_tokens = self.thinking_tokens(params.thinking_stop_text)
        answer_prefix = self.answer_prefix(params.answer_prefix)
        seqs = [
            self.sequence(
                request_id, i, prompt_ids, params, chat, think_tokens, answer_prefix, stream, eos_token_ids
            )
            for i in range(params.n)
        ]
        seqs[0].children = seqs[1:]
        for sibling in seqs[1:]:
            sibling.parent = seqs[0]
        return prompt_ids, seqs

    def prompt_ids(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            if not prompt:
                raise ValueError("the prompt is empty")
            return self.tokenizer.encode(prompt)
        ids = [int(t) for t in prompt] if isinstance(prompt, torch.Tensor) else list(prompt)
        if not ids:
            raise ValueError("the prompt has no token ids")
        vocab = self.model_vocab
        for i, token in enumerate(ids):
            if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < vocab:
                raise ValueError(f"prompt token {i} is {token!r}, not a token id in [0, {vocab})")
        return ids

    def check(self, prompt_ids: list[int], params: SamplingParams) -> None:
        if len(prompt_ids) >= self.max_model_len:
            raise ValueError(
                f"the prompt has {len(prompt_ids)} tokens but the context holds max_model_len="
                f"{self.max_model_len} (prompt plus at least one generated token)"
            )
        known = len(self.tokenizer)
        for i, token in enumerate(params.stop_token_ids):
            if token >= known:
                raise ValueError(
                    f"SamplingParams.stop_token_ids[{i}] is {token}, not a token id of the vocabulary ({known} tokens)"
                )

    def thinking_tokens(self, stop_text: str) -> ThinkTokens:
        tokens = self._think_tokens.get(stop_text)
        if tokens is None:
            tok = self.tokenizer
            stop_ids = tuple(tok.encode(stop_text))
            if tok.think_end_id not in stop_ids:
                raise ValueError(f"thinking_stop_text {stop_text!r} does not encode to a </think> token")
            tokens = ThinkTokens(
                tok.think_start_id,
                tok.think_end_id,
                tok.im_start_id,
                tok.tool_call_start_id,
                stop_ids,
                tuple(tok.encode(EMPTY_THOUGHT_TEXT)),
            )
            self._think_tokens[stop_text] = tokens
        return tokens

    def answer_prefix(self, text: str | None) -> AnswerPrefix | None:
        if text is None:
            return None
        encode = self.tokenizer.encode
        return AnswerPrefix(tuple(encode(text)), tuple(encode(ANSWER_SEPARATOR + text)))

    def sequence(
        self,
        request_id: str,
        index: int,
        prompt_ids: list[int],
        params: SamplingParams,
        chat: ChatOptions | None,
        think_tokens: ThinkTokens,
        answer_prefix: AnswerPrefix | None = None,
        stream: bool = True,
        eos_token_ids: frozenset[int] = frozenset(),
    ) -> Sequence:
        seed = params.seed + index if params.seed is not None else self._seeds.getrandbits(63)
        generator = torch.Generator().manual_seed(seed)
        text = OutputText(
            self.tokenizer,
            params.stop,
            params.include_stop_str_in_output,
            params.skip_special_tokens,
            chat,
            stream,
        )
        implicit_thought = chat is not None and chat.enable_thinking
        thinking = ThinkingState(
            prompt_ids, think_tokens, params.thinking_budget, answer_prefix, implicit_thought
        )
        seq = Sequence(request_id, index, prompt_ids, params, generator, text, thinking, stream)
        forced = thinking.initial_forced()
        if forced:
            seq.force(forced, self.max_model_len)
            if seq.text.push(seq.output_token_ids) is not None:
                seq.finish("stop", seq.text.matched_stop)
            elif seq.remaining_tokens(self.max_model_len) <= 0:
                seq.finish("length")
        elif (
            not stream
            and not params.stop
            and not params.wants_logprobs
            and not params.uses_penalties
            and thinking.passive
        ):
            end_ids = frozenset(params.stop_token_ids)
            seq.defer_bookkeeping(
                end_ids if params.ignore_eos else end_ids | eos_token_ids, self.max_model_len
            )
        return seq
