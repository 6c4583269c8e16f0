"""``LLMEngine``: requests in, per-step deltas out.

``add_request`` and ``abort`` may be called from any thread (a server's event loop); they validate the request
at once (every bad input raises before any work starts) and queue it. ``step`` runs one scheduler step on the
thread that owns the engine and returns a ``CompletionDelta`` for every completion that produced something (new
tokens, a finish, an abort). A server drives ``step`` from one background thread and fans the deltas out to
per-request queues.

Policy and engine (RL): ``LLMEngine(model, tokenizer, config, shared=True)`` samples from a module a trainer is
optimising in the same process. The engine then never calls ``.eval()`` on it (that would turn off gradient
checkpointing and dropout for the trainer) and never re-points its parameters' storage (the optimizer, DDP and
FSDP hold those tensors): ``weights="reference"`` reads the parameters in place and sees every update at once;
"fused", "packed" and "int8" hold copies, so call ``sync_weights()`` after each optimizer step. Where the policy's
parameters are sharded or replicated by DDP / FSDP2, build a separate engine on an inference copy and call
``load_weights(model.state_dict().items())`` after each update (DTensors are gathered to full tensors).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from qwen3.engine.config import EngineConfig
from qwen3.engine.detokenizer import ChatOptions
from qwen3.engine.model_runner import ModelRunner
from qwen3.engine.outputs import CompletionDelta, CompletionOutput
from qwen3.engine.requests import RequestBuilder
from qwen3.engine.sampler import Sampler
from qwen3.engine.sampling_params import SamplingParams
from qwen3.engine.scheduler import ScheduledBatch, Scheduler
from qwen3.engine.sequence import Sequence, SequenceStatus
from qwen3.engine.threads import ThreadGovernor
from qwen3.model.model import Qwen3ForCausalLM
from qwen3.model.rope import RotaryEmbedding

logger = logging.getLogger("qwen3.engine")


@dataclass
class EngineStats:
    """Cumulative counters for timings shown to people (tokens/s)."""

    prefill_tokens: int = 0
    prefill_seconds: float = 0.0
    decode_tokens: int = 0
    decode_seconds: float = 0.0
    steps: int = 0
    output_tokens: int = 0  # sampled tokens


class LLMEngine:
    def __init__(
        self, model: Qwen3ForCausalLM, tokenizer, config: EngineConfig | None = None, *, shared: bool = False
    ):
        self.config = config or EngineConfig()
        self.shared = shared
        if shared:
            check_shareable(model, self.config)
        if self.config.rope_scaling is not None:
            apply_rope_scaling(model, self.config.rope_scaling)
        self.model = model if shared else model.eval()
        self.tokenizer = tokenizer
        weight = model.lm_head.weight
        self.resolved = self.config.resolve(model.config, weight.dtype, weight.device)
        self.max_model_len = self.resolved.max_model_len
        self.runner = ModelRunner(
            model, self.resolved, vocab_limit=min(len(tokenizer), model.config.vocab_size), shared=shared
        )
        self.scheduler = Scheduler(
            self.resolved.num_slots, self.config.max_num_batched_tokens, self.runner.cache.move
        )
        self.sampler = Sampler(decode_token=lambda t: tokenizer.decode([t]))
        self.eos_token_ids = frozenset(eos_token_ids(model.generation_config, tokenizer))
        self.default_params = SamplingParams.from_generation_config(model.generation_config)
        self.stats = EngineStats()
        self.requests = RequestBuilder(
            tokenizer, model.config.vocab_size, self.max_model_len, self.config.seed
        )
        on_cpu = weight.device.type == "cpu" and self.config.adapt_threads
        self.governor = ThreadGovernor() if on_cpu and torch.get_num_threads() > 1 else None
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
        from qwen3.engine.loading import load_model_and_tokenizer

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
        stream: bool = True,
    ) -> list[int]:
        """Queue a request; returns its prompt token ids. Raises ValueError for a bad request (nothing is queued).

        ``stream=False`` (``LLM.generate``/``chat``): each completion is reported once, by its finishing delta,
        and its text is decoded when it finishes (unless stop strings need it earlier); the outputs are the same."""
        params = sampling_params or self.default_params
        prompt_ids, seqs = self.requests.build(request_id, prompt, params, chat, stream, self.eos_token_ids)
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

    def sync_weights(self) -> None:
        """Call after changing the model's weights (RL: after an optimizer step) and before the next step. The
        "reference" layout reads the model's own storage, and so does "fused" unless ``shared``; "packed", "int8"
        and a shared "fused" hold copies that this rebuilds (about a second for 0.6B packed)."""
        self.runner.sync_weights()

    def load_weights(self, named_tensors) -> int:
        """Copy ``(name, tensor)`` pairs (``model.state_dict().items()`` of the trained policy; DTensors of FSDP2
        are gathered with ``full_tensor()``) into this engine's model in place, converting dtype and device, then
        ``sync_weights``. Returns how many tensors were loaded. An unknown name or a shape mismatch raises
        ValueError before anything is copied. Not for a ``shared`` engine (its module is the policy itself)."""
        if self.shared:
            raise ValueError("load_weights: this engine shares the trained module; call sync_weights instead")
        targets = dict(self.model.named_parameters(remove_duplicate=False))  # tied lm_head too
        targets.update(self.model.named_buffers())
        pairs = []
        for name, tensor in named_tensors:
            if hasattr(
                tensor, "full_tensor"
            ):  # a DTensor (FSDP2 / tensor parallel): every rank must call this
                tensor = tensor.full_tensor()
            if name not in targets:
                raise ValueError(f"load_weights: {name!r} is not a parameter or buffer of the engine's model")
            if tuple(tensor.shape) != tuple(targets[name].shape):
                raise ValueError(f"load_weights: {name!r} has shape {tuple(tensor.shape)}, the engine's model "
                                 f"{tuple(targets[name].shape)}")  # fmt: skip
            pairs.append((targets[name], tensor))
        with torch.no_grad():
            for target, tensor in pairs:
                target.copy_(tensor.detach())
        self.sync_weights()
        return len(pairs)

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
                    deltas.append(self._delta(seq))
                # A finished one too: a step cut short (Ctrl-C) may have finished it without freeing it.
                self.scheduler.free(seq)
        batch = self.scheduler.schedule()
        if batch is not None and (batch.is_prefill or self.governor is None):
            deltas += self._run(batch)
        elif batch is not None:
            with self.governor.step(len(batch.seqs)) as threads:
                start = time.perf_counter()
                deltas += self._run(batch)
                self.governor.observe(threads, time.perf_counter() - start)
        with self._lock:
            for request_id in {delta.request_id for delta in deltas}.union(aborted):
                seqs = self._requests.get(request_id)
                if seqs is not None and all(seq.is_finished for seq in seqs):
                    del self._requests[request_id]
        return deltas

    def _run(self, batch: ScheduledBatch) -> list[CompletionDelta]:
        start = time.perf_counter()
        try:
            logits = self.runner.run(batch)
        except Exception as err:
            if not batch.is_prefill or len(batch.seqs) == 1:
                raise  # a decode step runs every slot at once: nothing to single out (see _isolate_prefill)
            return self._isolate_prefill(batch, err)
        if batch.is_prefill:
            sampled = [seq for i, seq in enumerate(batch.seqs) if batch.completes(i)]
            for seq, count in zip(batch.seqs, batch.num_tokens):
                seq.num_computed_tokens += count
            logits, sampled = self._fork(logits, sampled)
        else:  # every sequence adds its one pending token and samples
            sampled = batch.seqs
            for seq in sampled:
                seq.num_computed_tokens += 1
        deltas = []
        if sampled:
            assert logits is not None
            for seq, token, logprobs, chosen in self._sample(logits, sampled, deltas):
                delta = self._advance(seq, token, logprobs, chosen)
                if delta is not None:
                    deltas.append(delta)
        elapsed = time.perf_counter() - start
        self.stats.steps += 1
        self.stats.output_tokens += len(sampled)
        if batch.is_prefill:
            self.stats.prefill_tokens += sum(batch.num_tokens)
            self.stats.prefill_seconds += elapsed
        else:
            self.stats.decode_tokens += len(batch.seqs)
            self.stats.decode_seconds += elapsed
        return deltas

    # -- fault isolation: a failure inside a step fails only the sequence(s) that caused it --------------------
    def _sample(self, logits, seqs: list[Sequence], deltas: list[CompletionDelta]) -> list[tuple]:
        """(seq, token, logprobs, chosen) for every sequence the sampler could serve. When the batched call fails,
        each row is sampled alone (the draws are batch-invariant and each row's random stream is rewound first, so
        the others get the tokens they would have got); a row that fails again is failed with its own error, its
        final delta added to ``deltas``."""
        marks = [seq.uniform_mark() for seq in seqs]
        try:
            result = self.sampler(logits, seqs)
        except Exception:
            for seq, mark in zip(seqs, marks):
                seq.rewind_uniforms(mark)
            return self._sample_rows(logits, seqs, deltas)
        return list(zip(seqs, result.tokens, result.logprobs, result.chosen_logprobs))

    def _sample_rows(self, logits, seqs: list[Sequence], deltas: list[CompletionDelta]) -> list[tuple]:
        picks = []
        for row, seq in enumerate(seqs):
            try:
                result = self.sampler(logits[row : row + 1], [seq])
            except Exception as err:
                deltas.append(self._fail(seq, err))
                continue
            picks.append((seq, result.tokens[0], result.logprobs[0], result.chosen_logprobs[0]))
        return picks

    def _advance(self, seq: Sequence, token: int, logprobs, chosen: float | None) -> CompletionDelta | None:
        """Append the sampled token; the delta to report (None: nothing to report yet)."""
        try:
            self._append_sampled(seq, token, logprobs, chosen)
            if seq.is_finished:
                self.scheduler.free(seq)
                return self._delta(seq)
            return self._delta(seq) if seq.stream else None
        except Exception as err:
            return self._fail(seq, err)

    def _isolate_prefill(self, batch: ScheduledBatch, err: Exception) -> list[CompletionDelta]:
        """The batched prefill failed before any state changed (the cache rows it wrote are written again): run
        each sequence's chunk alone, so only those that fail on their own are failed."""
        deltas: list[CompletionDelta] = []
        for seq, count in zip(batch.seqs, batch.num_tokens):
            if not seq.is_finished:
                deltas += self._run_alone(ScheduledBatch(True, [seq], [count]))
        return deltas

    def _run_alone(self, batch: ScheduledBatch) -> list[CompletionDelta]:
        try:
            return self._run(batch)
        except Exception as err:
            return [self._fail(batch.seqs[0], err)]

    def _fail(self, seq: Sequence, err: Exception) -> CompletionDelta:
        """End one sequence with finish_reason "error" and the error's text; frees its slot."""
        try:  # params changed after they were built are the likeliest cause: name the field if so
            seq.params.validate()
        except ValueError as bad:
            err = bad
        logger.warning("request %s failed in an engine step: %s: %s", seq.request_id, type(err).__name__, err)
        seq.error = str(err) if isinstance(err, ValueError) else f"{type(err).__name__}: {err}"
        seq.status = SequenceStatus.FINISHED  # not finish(): its bookkeeping may be what failed
        seq.finish_reason, seq.stop_reason = "error", None
        self.scheduler.free(seq)
        try:
            return self._delta(seq)
        except Exception:  # the text layer is what failed: report the error without the text
            output = CompletionOutput(
                seq.index, "", seq.output_token_ids, finish_reason="error", error=seq.error
            )
            return CompletionDelta(
                seq.request_id,
                seq.index,
                [],
                "",
                [],
                None,
                True,
                "error",
                None,
                seq.usage(),
                output,
                seq.error,
            )

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
        if seq.deferred:  # see Sequence.defer_bookkeeping
            if token in seq.end_ids:
                seq.finish("stop", token if token in seq.params.stop_token_ids else None)
            elif len(seq.token_ids) >= seq.max_length:
                seq.finish("length")
            return
        if seq.token_counts is not None:
            seq.token_counts[token] += 1
        if seq.token_logprobs is not None:
            seq.token_logprobs.append(chosen)
            seq.cumulative_logprob += chosen
        if seq.logprobs is not None:
            seq.logprobs.append(logprobs)
        params = seq.params
        if token in self.eos_token_ids and not params.ignore_eos or token in params.stop_token_ids:
            seq.thinking.observe(token)
            # The stop token is in token_ids but not in the text (special or not), as in vLLM.
            seq.finish("stop", token if token in params.stop_token_ids else None)
            return
        forced = seq.thinking.on_sampled(token)
        if forced:
            forced = seq.force(forced, self.max_model_len)
            stop = seq.text.push([token, *forced])
        else:
            stop = seq.text.push([token])
        if stop is not None:
            seq.finish("stop", stop)
        elif seq.remaining_tokens(self.max_model_len) <= 0:
            seq.finish("length")

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
            error=seq.error,
        )


def eos_token_ids(generation_config: dict | None, tokenizer) -> list[int]:
    """generation_config.json's eos_token_id (an id or a list) when present, else the tokenizer's."""
    value = (generation_config or {}).get("eos_token_id")
    if value is None:
        return list(tokenizer.eos_token_ids)
    return [value] if isinstance(value, int) else list(value)


def check_shareable(model: Qwen3ForCausalLM, config: EngineConfig) -> None:
    """A shared module runs in the trainer's mode: nothing in the engine may depend on eval mode or change it."""
    if config.rope_scaling is not None:
        raise ValueError("EngineConfig.rope_scaling would change the shared (trained) module's RoPE; build the engine "
                         "on a copy or drop rope_scaling")  # fmt: skip
    if model.training and model.config.attention_dropout > 0:
        raise ValueError(f"the shared module is in training mode with attention_dropout "
                         f"{model.config.attention_dropout}: rollouts would be dropped out; use a copy")  # fmt: skip


def apply_rope_scaling(model: Qwen3ForCausalLM, rope_scaling: dict) -> None:
    """Replace the checkpoint's rope_scaling (e.g. turn on YaRN), recomputing the rotary tables."""
    model.config = model.config.replace(rope_scaling=dict(rope_scaling))
    device = model.lm_head.weight.device
    model.model.rotary_emb = RotaryEmbedding(model.config).to(device)
