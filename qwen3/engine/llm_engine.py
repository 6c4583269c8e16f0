"""``LLMEngine``: requests in, per-step deltas out.

``add_request`` and ``abort`` may be called from any thread (a server's event loop); they validate the request
at once (every bad input raises before any work starts) and queue it. ``step`` runs one scheduler step on the
thread that owns the engine and returns a ``CompletionDelta`` for every completion that produced something (new
tokens, a finish, an abort). A server drives ``step`` from one background thread and fans the deltas out to
per-request queues.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from qwen3.engine.config import EngineConfig
from qwen3.engine.detokenizer import ChatOptions, OutputText
from qwen3.engine.model_runner import ModelRunner
from qwen3.engine.outputs import CompletionDelta
from qwen3.engine.sampler import Sampler
from qwen3.engine.sampling_params import EMPTY_THOUGHT_TEXT, SamplingParams
from qwen3.engine.scheduler import Scheduler
from qwen3.engine.sequence import Sequence
from qwen3.engine.thinking_budget import ANSWER_SEPARATOR, AnswerPrefix, ThinkingState, ThinkTokens
from qwen3.model.model import Qwen3ForCausalLM
from qwen3.model.rope import RotaryEmbedding


@dataclass
class EngineStats:
    """Cumulative counters for timings shown to people (tokens/s)."""

    prefill_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_tokens: int = 0
    decode_seconds: float = 0.0
    steps: int = 0


class LLMEngine:
    def __init__(self, model: Qwen3ForCausalLM, tokenizer, config: EngineConfig | None = None):
        self.config = config or EngineConfig()
        if self.config.rope_scaling is not None:
            apply_rope_scaling(model, self.config.rope_scaling)
        self.model = model.eval()
        self.tokenizer = tokenizer
        weight = model.lm_head.weight
        self.resolved = self.config.resolve(model.config, weight.dtype, weight.device)
        self.max_model_len = self.resolved.max_model_len
        self.runner = ModelRunner(
            model, self.resolved, vocab_limit=min(len(tokenizer), model.config.vocab_size)
        )
        self.scheduler = Scheduler(
            self.resolved.num_slots, self.config.max_num_batched_tokens, self.runner.cache.move
        )
        self.sampler = Sampler(decode_token=lambda t: tokenizer.decode([t]))
        self.eos_token_ids = frozenset(eos_token_ids(model.generation_config, tokenizer))
        self.default_params = SamplingParams.from_generation_config(model.generation_config)
        self.stats = EngineStats()
        self._think_tokens: dict[str, ThinkTokens] = {}
        self._seeds = random.Random(self.config.seed)
        self._lock = threading.Lock()
        self._incoming: list[Sequence] = []
        self._aborted: list[str] = []
        self._requests: dict[str, list[Sequence]] = {}

    @classmethod
    def from_pretrained(
        cls,
        path_or_preset: str | Path,
        dtype: torch.dtype | str | None = None,
        device: torch.device | str = "cpu",
        tokenizer=None,
        seed: int = 0,
        **config,
    ) -> LLMEngine:
        from qwen3.engine.llm import load_model_and_tokenizer

        model, tokenizer = load_model_and_tokenizer(path_or_preset, dtype, device, tokenizer, seed)
        return cls(model, tokenizer, EngineConfig(**config))

    # -- requests --------------------------------------------------------------------------------------------
    def add_request(
        self,
        request_id: str,
        prompt: str | list[int],
        sampling_params: SamplingParams | None = None,
        *,
        chat: ChatOptions | None = None,
    ) -> list[int]:
        """Queue a request; returns its prompt token ids. Raises ValueError for a bad request (nothing is queued)."""
        params = sampling_params or self.default_params
        if not isinstance(params, SamplingParams):
            raise TypeError(f"sampling_params must be a SamplingParams, got {type(params).__name__}")
        prompt_ids = self._prompt_ids(prompt)
        self._check_request(prompt_ids, params)
        think_tokens = self._thinking_tokens(params.thinking_stop_text)
        answer_prefix = self._answer_prefix(params.answer_prefix)
        seqs = [
            self._sequence(request_id, i, prompt_ids, params, chat, think_tokens, answer_prefix)
            for i in range(params.n)
        ]
        seqs[0].children = seqs[1:]
        for sibling in seqs[1:]:
            sibling.parent = seqs[0]
        with self._lock:
            if request_id in self._requests:
                raise ValueError(f"request id {request_id!r} is already in use")
            self._requests[request_id] = seqs
            self._incoming.extend(seqs)
        return prompt_ids

    def abort(self, request_id: str) -> None:
        """Stop a request; its slots are freed at the next step, which reports it with finish_reason "abort"."""
        with self._lock:
            if request_id in self._requests:
                self._aborted.append(request_id)

    def has_unfinished(self) -> bool:
        with self._lock:
            return bool(self._requests)

    # -- stepping --------------------------------------------------------------------------------------------
    def step(self) -> list[CompletionDelta]:
        with self._lock:
            incoming, self._incoming = self._incoming, []
            aborted, self._aborted = self._aborted, []
        deltas: list[CompletionDelta] = []
        for seq in incoming:
            if seq.is_finished:  # max_tokens used up by forced tokens before any step
                deltas.append(self._delta(seq))
            else:
                self.scheduler.add(seq)
        for request_id in aborted:
            for seq in self._requests.get(request_id, []):
                if not seq.is_finished:
                    seq.finish("abort")
                    self.scheduler.free(seq)
                    deltas.append(self._delta(seq))
        batch = self.scheduler.schedule()
        if batch is not None:
            deltas += self._run(batch)
        with self._lock:
            for delta in deltas:
                seqs = self._requests.get(delta.request_id)
                if seqs is not None and all(seq.is_finished for seq in seqs):
                    del self._requests[delta.request_id]
        return deltas

    def _run(self, batch) -> list[CompletionDelta]:
        start = time.perf_counter()
        logits = self.runner.run(batch)
        sampled = [seq for i, seq in enumerate(batch.seqs) if batch.completes(i)]
        for seq, count in zip(batch.seqs, batch.num_tokens):
            seq.num_computed_tokens += count
        logits, sampled = self._fork(logits, sampled) if batch.is_prefill else (logits, sampled)
        deltas = []
        if sampled:
            assert logits is not None
            result = self.sampler(logits, sampled)
            for i, seq in enumerate(sampled):
                self._append_sampled(seq, result.tokens[i], result.logprobs[i], result.chosen_logprobs[i])
                deltas.append(self._delta(seq))
                if seq.is_finished:
                    self.scheduler.free(seq)
        elapsed = time.perf_counter() - start
        self.stats.steps += 1
        if batch.is_prefill:
            self.stats.prefill_tokens += sum(batch.num_tokens)
            self.stats.prefill_seconds += elapsed
        else:
            self.stats.decode_tokens += len(batch.seqs)
            self.stats.decode_seconds += elapsed
        return deltas

    def _fork(self, logits, sampled: list[Sequence]):
        """Siblings waiting for a prompt that is now in copy its cache rows and sample from its logits row."""
        rows, seqs = list(range(len(sampled))), list(sampled)
        for row, parent in enumerate(sampled):
            for child in self.scheduler.forks(parent):
                self.runner.cache.move(parent.slot, child.slot, parent.num_computed_tokens)
                child.num_computed_tokens = parent.num_computed_tokens
                rows.append(row)
                seqs.append(child)
        if len(seqs) == len(sampled):
            return logits, sampled
        return logits[rows], seqs

    def _append_sampled(self, seq: Sequence, token: int, logprobs, chosen: float | None) -> None:
        # The hot path of every decode step, once per sequence: kept to plain attribute access.
        seq.token_ids.append(token)
        if seq.token_counts is not None:
            seq.token_counts[token] += 1
        if seq.logprobs is not None:
            seq.logprobs.append(logprobs)
            seq.cumulative_logprob += chosen or 0.0
        params = seq.params
        if token in self.eos_token_ids and not params.ignore_eos or token in params.stop_token_ids:
            seq.thinking.observe(token)
            # The stop token is in token_ids but not in the text (special or not), as in vLLM.
            seq.finish("stop", token if token in params.stop_token_ids else None)
            return
        forced = seq.thinking.on_sampled(token)
        if forced:
            self._force(seq, forced)
            stop = seq.text.push([token, *forced])
        else:
            stop = seq.text.push([token])
        if stop is not None:
            seq.finish("stop", stop)
        elif seq.remaining_tokens(self.max_model_len) <= 0:
            seq.finish("length")

    def _force(self, seq: Sequence, forced: list[int]) -> None:
        """Append stop-thinking tokens (as many as max_tokens and the context allow) as output."""
        forced = forced[: max(0, seq.remaining_tokens(self.max_model_len))]
        if not forced:
            return
        seq.append(forced)
        seq.num_forced_tokens += len(forced)
        if seq.logprobs is not None:
            seq.logprobs.extend([None] * len(forced))
        for token in forced:
            seq.thinking.observe(token)

    def _delta(self, seq: Sequence) -> CompletionDelta:
        token_ids, logprobs = seq.take_new_tokens()
        text, messages = seq.text.release(final=seq.is_finished)
        return CompletionDelta(
            request_id=seq.request_id,
            index=seq.index,
            token_ids=token_ids,
            text=text,
            messages=messages,
            logprobs=logprobs,
            finished=seq.is_finished,
            finish_reason=seq.finish_reason,
            stop_reason=seq.stop_reason,
            usage=seq.usage(),
            output=seq.to_output() if seq.is_finished else None,
        )

    # -- building requests -----------------------------------------------------------------------------------
    def _prompt_ids(self, prompt: str | list[int]) -> list[int]:
        if isinstance(prompt, str):
            if not prompt:
                raise ValueError("the prompt is empty")
            return self.tokenizer.encode(prompt)
        ids = [int(t) for t in prompt] if isinstance(prompt, torch.Tensor) else list(prompt)
        if not ids:
            raise ValueError("the prompt has no token ids")
        vocab = self.model.config.vocab_size
        for i, token in enumerate(ids):
            if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < vocab:
                raise ValueError(f"prompt token {i} is {token!r}, not a token id in [0, {vocab})")
        return ids

    def _check_request(self, prompt_ids: list[int], params: SamplingParams) -> None:
        if len(prompt_ids) >= self.max_model_len:
            raise ValueError(
                f"the prompt has {len(prompt_ids)} tokens but the context holds max_model_len="
                f"{self.max_model_len} (prompt plus at least one generated token)"
            )
        known = len(self.tokenizer)
        for token in params.stop_token_ids:
            if token >= known:
                raise ValueError(f"stop token id {token} is not in the vocabulary ({known} tokens)")

    def _thinking_tokens(self, stop_text: str) -> ThinkTokens:
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
                stop_ids,
                tuple(tok.encode(EMPTY_THOUGHT_TEXT)),
            )
            self._think_tokens[stop_text] = tokens
        return tokens

    def _answer_prefix(self, text: str | None) -> AnswerPrefix | None:
        if text is None:
            return None
        encode = self.tokenizer.encode
        return AnswerPrefix(tuple(encode(text)), tuple(encode(ANSWER_SEPARATOR + text)))

    def _sequence(
        self,
        request_id: str,
        index: int,
        prompt_ids: list[int],
        params: SamplingParams,
        chat: ChatOptions | None,
        think_tokens: ThinkTokens,
        answer_prefix: AnswerPrefix | None = None,
    ) -> Sequence:
        seed = params.seed + index if params.seed is not None else self._seeds.getrandbits(63)
        generator = torch.Generator().manual_seed(seed)
        text = OutputText(
            self.tokenizer, params.stop, params.include_stop_str_in_output, params.skip_special_tokens, chat
        )
        thinking = ThinkingState(prompt_ids, think_tokens, params.thinking_budget, answer_prefix)
        seq = Sequence(request_id, index, prompt_ids, params, generator, text, thinking)
        forced = thinking.initial_forced()
        if forced:
            self._force(seq, forced)
            if seq.text.push(seq.output_token_ids) is not None:
                seq.finish("stop", seq.text.matched_stop)
            elif seq.remaining_tokens(self.max_model_len) <= 0:
                seq.finish("length")
        return seq


def eos_token_ids(generation_config: dict | None, tokenizer) -> list[int]:
    """generation_config.json's eos_token_id (an id or a list) when present, else the tokenizer's."""
    value = (generation_config or {}).get("eos_token_id")
    if value is None:
        return list(tokenizer.eos_token_ids)
    return [value] if isinstance(value, int) else list(value)


def apply_rope_scaling(model: Qwen3ForCausalLM, rope_scaling: dict) -> None:
    """Replace the checkpoint's rope_scaling (e.g. turn on YaRN), recomputing the rotary tables."""
    model.config = model.config.replace(rope_scaling=dict(rope_scaling))
    device = model.lm_head.weight.device
    model.model.rotary_emb = RotaryEmbedding(model.config).to(device)
