"""``Sampler``: picks one token per row of logits, vectorised over the batch.

Order (transformers' ``generate``): repetition penalty, presence/frequency penalties, then greedy rows take the
argmax; sampled rows divide by their temperature, keep their ``top_k`` most likely tokens, then the smallest set
whose probability reaches ``top_p``, then drop tokens below ``min_p`` times the most likely one, and draw.

The draw is an inverse-CDF lookup with one uniform number per row taken from the sequence's own
``torch.Generator``, so a seeded request gets the same tokens whatever else is in the batch. On the CPU the filters
and the draw run in one C call (``cpu_kernels.sample``: selection instead of sorting, double sums; tested to draw
what these torch ops draw in float64); the torch ops are the path elsewhere. Logprobs (``logprobs_mode``) are
"raw": ``log_softmax`` of the logits as the model produced them (before penalties and temperature), like vLLM's
default, or "processed": ``processed_logprobs``, the distribution the draw used (penalties, temperature, top-k /
top-p / min-p, renormalised), what RL importance ratios need.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Sequence as Seq
from dataclasses import dataclass

import torch
from torch import Tensor

from qwen3.engine import cpu_kernels
from qwen3.engine.outputs import Logprob, TokenLogprobs
from qwen3.engine.sequence import Sequence


@dataclass
class SampleResult:
    tokens: list[int]
    logprobs: list[TokenLogprobs]  # per row; None where the request asked for none
    chosen_logprobs: list[float | None]


class Sampler:
    def __init__(self, decode_token: Callable[[int], str] | None = None):
        self.decode_token = decode_token

    def __call__(self, logits: Tensor, seqs: list[Sequence]) -> SampleResult:
        if all(seq.plain_greedy for seq in seqs):  # the argmax of the logits as they are, nothing else
            return SampleResult(argmax(logits).tolist(), [None] * len(seqs), [None] * len(seqs))
        params = [seq.params for seq in seqs]
        raw = logits  # as the model gave them (bf16 or fp32): argmax and the sampling kernel read either exactly
        if any(p.uses_penalties for p in params):
            logits = apply_penalties(logits.to(torch.float32, copy=True), seqs)
        greedy = [p.greedy for p in params]
        if not any(greedy):
            tokens = self._sample(logits, None, seqs, greedy)
        else:
            tokens = argmax(logits)
            if not all(greedy):
                tokens = self._sample(logits, tokens, seqs, greedy)
        token_list = tokens.tolist()
        logprobs, chosen = self._logprobs(raw, logits, seqs, tokens)
        return SampleResult(token_list, logprobs, chosen)

    def _sample(
        self, logits: Tensor, tokens: Tensor | None, seqs: list[Sequence], greedy: list[bool]
    ) -> Tensor:
        """Draws for the rows that sample, written into ``tokens`` (the greedy rows' picks; None when no row is
        greedy)."""
        rows = [i for i, g in enumerate(greedy) if not g]
        picked = draw(
            logits[rows] if len(rows) < len(seqs) else logits,
            [seqs[i].params for i in rows],
            [seqs[i].next_uniform() for i in rows],
        )
        if tokens is None:
            return picked
        tokens[rows] = picked
        return tokens

    def _logprobs(
        self, raw: Tensor, penalised: Tensor, seqs: list[Sequence], tokens: Tensor
    ) -> tuple[list[TokenLogprobs], list[float | None]]:
        """The sampled tokens' log-probabilities (``chosen``) for rows that record them, and the
        ``{token: Logprob}`` dicts (with decoded text) for rows that asked for ``logprobs``."""
        wanted = [i for i, seq in enumerate(seqs) if seq.params.wants_logprobs]
        out: list[TokenLogprobs] = [None] * len(seqs)
        chosen: list[float | None] = [None] * len(seqs)
        if not wanted:
            return out, chosen
        picked = tokens[wanted]
        with_dicts = [row for row, i in enumerate(wanted) if seqs[i].params.logprobs is not None]
        if not with_dicts:  # the picked tokens' values only (RL's flat token_logprobs)
            for i, value in zip(wanted, chosen_logprobs(raw, penalised, seqs, wanted, picked).tolist()):
                chosen[i] = value
            return out, chosen
        logprobs = self._distribution(raw, penalised, seqs, wanted)
        picked_lp = logprobs.gather(1, picked[:, None])[:, 0]
        picked_values = picked_lp.tolist()
        for row, i in enumerate(wanted):
            chosen[i] = picked_values[row]
        ranks = (logprobs > picked_lp[:, None]).sum(dim=-1) + 1
        k = max(seqs[wanted[row]].params.logprobs or 0 for row in with_dicts)
        top_lp, top_ids = logprobs.topk(k, dim=-1) if k else (None, None)
        for row in with_dicts:
            i = wanted[row]
            token = int(picked[row])
            entry = {token: Logprob(picked_values[row], int(ranks[row]), self._decode(token))}
            for rank in range(seqs[i].params.logprobs or 0):
                alt = int(top_ids[row, rank])
                entry.setdefault(alt, Logprob(float(top_lp[row, rank]), rank + 1, self._decode(alt)))
            out[i] = entry
        return out, chosen

    @staticmethod
    def _distribution(raw: Tensor, penalised: Tensor, seqs: list[Sequence], wanted: list[int]) -> Tensor:
        """fp32 [len(wanted), V] log-probabilities, each row in its request's ``logprobs_mode``."""
        processed = [row for row, i in enumerate(wanted) if seqs[i].params.logprobs_mode == "processed"]
        logprobs = torch.log_softmax(raw[wanted].float(), dim=-1)
        if processed:
            rows = [wanted[row] for row in processed]
            logprobs[processed] = processed_logprobs(penalised[rows], [seqs[i].params for i in rows])
        return logprobs

    def _decode(self, token: int) -> str | None:
        return self.decode_token(token) if self.decode_token else None


def chosen_logprobs(
    raw: Tensor, penalised: Tensor, seqs: list[Sequence], wanted: list[int], picked: Tensor
) -> Tensor:
    """fp32 log-probabilities of the ``picked`` tokens of rows ``wanted``, each in its request's
    ``logprobs_mode``, equal (to float rounding) to ``Sampler._distribution(...).gather(picked)``: one logsumexp
    per row instead of the whole [rows, V] distribution, except for rows whose processed distribution truncates
    (top-k / top-p / min-p), which go through ``processed_logprobs``."""
    vocab = raw.shape[-1]
    params = [seqs[i].params for i in wanted]
    out = torch.empty(len(wanted), dtype=torch.float32, device=raw.device)
    plain, scaled, truncated = [], [], []
    for row, p in enumerate(params):
        if p.logprobs_mode != "processed":
            plain.append(row)
        elif p.greedy or not (0 < p.top_k < vocab or p.top_p < 1.0 or p.min_p > 0.0):
            scaled.append(row)
        else:
            truncated.append(row)
    for rows, source, processed in ((plain, raw, False), (scaled, penalised, True)):
        if not rows:
            continue
        scores = source[[wanted[r] for r in rows]].float()
        if processed:  # the processed distribution: temperature applied (greedy rows: 1)
            temperature = [1.0 if params[r].greedy else params[r].temperature for r in rows]
            if any(t != 1.0 for t in temperature):
                scores = scores / torch.tensor(temperature, device=scores.device)[:, None]
        picks = picked[rows]
        out[rows] = scores.gather(1, picks[:, None])[:, 0] - torch.logsumexp(scores, dim=-1)
    if truncated:
        logprobs = processed_logprobs(
            penalised[[wanted[r] for r in truncated]], [params[r] for r in truncated]
        )
        out[truncated] = logprobs.gather(1, picked[truncated][:, None])[:, 0]
    return out


def kernels_take(logits: Tensor) -> bool:
    """Whether the C kernels can read these logits (CPU, fp32 or bf16, library built)."""
    return (
        logits.device.type == "cpu"
        and logits.dtype in cpu_kernels.FUSED_DTYPES
        and cpu_kernels.library() is not None
    )


def argmax(logits: Tensor) -> Tensor:
    """Row-wise argmax; the C kernel on the CPU (torch's CPU argmax is slower on these shapes: docs/benchmarks.md)."""
    return cpu_kernels.argmax(logits) if kernels_take(logits) else logits.argmax(dim=-1)


def draw(logits: Tensor, params: Seq, uniforms: list[float]) -> Tensor:
    """``sample_rows`` in one C call on the CPU (``cpu_kernels.sample``: the same draws, by selection instead of
    sorting), the torch ops elsewhere (and as the tests' reference)."""
    if kernels_take(logits):
        return cpu_kernels.sample(logits, params, uniforms)
    return sample_rows(logits.float(), params, uniforms)


def apply_penalties(logits: Tensor, seqs: list[Sequence]) -> Tensor:
    """Repetition (prompt + output tokens, CTRL/transformers form), presence and frequency (output tokens,
    OpenAI form), on rows whose request uses them."""
    for row, seq in enumerate(seqs):
        p = seq.params
        if not p.uses_penalties:
            continue
        counts, prompt_mask = penalty_state(seq, logits.shape[-1], logits.device)
        line = logits[row]
        if p.repetition_penalty != 1.0:
            seen = prompt_mask | (counts > 0)
            penalised = torch.where(line > 0, line / p.repetition_penalty, line * p.repetition_penalty)
            line = torch.where(seen, penalised, line)
        line = line - p.frequency_penalty * counts - p.presence_penalty * (counts > 0).float()
        logits[row] = line
    return logits


def penalty_state(seq: Sequence, vocab: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """The sequence's output-token counts and prompt-token mask, built on first use and kept up to date by
    ``Sequence.append``."""
    if seq.token_counts is None:
        seq.token_counts = torch.zeros(vocab, dtype=torch.float32, device=device)
        output = torch.tensor(seq.output_token_ids, dtype=torch.long, device=device)
        seq.token_counts.index_add_(0, output, torch.ones(len(output), device=device))
        seq.prompt_mask = torch.zeros(vocab, dtype=torch.bool, device=device)
        prompt = torch.tensor(seq.token_ids[: seq.num_prompt_tokens], dtype=torch.long, device=device)
        seq.prompt_mask[prompt] = True
    assert seq.prompt_mask is not None
    return seq.token_counts, seq.prompt_mask


def filtered_logits(logits: Tensor, params: Seq) -> tuple[Tensor, Tensor | None]:
    """Temperature, top-k, top-p and min-p applied to rows of ``logits``.

    Returns (values, indices): filtered logits (removed tokens at -inf) sorted in descending order, and the vocabulary
    ids they belong to; indices is None when no filter was needed (values are then in vocabulary order).
    """
    device = logits.device
    vocab = logits.shape[-1]
    temperature = torch.tensor([p.temperature for p in params], device=device, dtype=logits.dtype)
    logits = logits / temperature[:, None]
    top_k = [p.top_k if 0 < p.top_k < vocab else vocab for p in params]
    top_p = [p.top_p for p in params]
    min_p = [p.min_p for p in params]
    if max(top_k) == vocab and min(top_p) >= 1.0 and max(min_p) <= 0.0:
        return logits, None
    k = max(top_k)
    values, indices = logits.topk(k, dim=-1) if k < vocab else logits.sort(dim=-1, descending=True)
    ranks = torch.arange(k, device=device)
    if min(top_k) < k:
        values = values.masked_fill(ranks >= torch.tensor(top_k, device=device)[:, None], float("-inf"))
    if min(top_p) < 1.0:
        probs = values.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # probability of the more likely tokens
        # Rows without top_p never drop anything (rounding could push `before` to 1.0 at the tail).
        limit = torch.tensor(
            [q if q < 1.0 else float("inf") for q in top_p], device=device, dtype=probs.dtype
        )
        drop = before >= limit[:, None]
        drop[:, 0] = False
        values = values.masked_fill(drop, float("-inf"))
    if max(min_p) > 0.0:
        probs = values.softmax(dim=-1)
        threshold = torch.tensor(min_p, device=device, dtype=probs.dtype)[:, None] * probs[:, :1]
        drop = probs < threshold
        drop[:, 0] = False
        values = values.masked_fill(drop, float("-inf"))
    return values, indices


def processed_logprobs(logits: Tensor, params: Seq) -> Tensor:
    """fp32 log-probabilities of the distribution ``sample_rows`` draws from, for rows of (penalised) ``logits``:
    temperature, then top-k / top-p / min-p with the kept tokens renormalised and the others at -inf. With a
    truncation the filters run in float64 (as the C sampling kernel's sums do), so the kept set is the one the
    draw used. Greedy rows: ``log_softmax`` of the logits (temperature 1, no truncation)."""
    out = torch.empty(logits.shape, dtype=torch.float32, device=logits.device)
    greedy = [row for row, p in enumerate(params) if p.greedy]
    sampled = [row for row, p in enumerate(params) if not p.greedy]
    if greedy:
        out[greedy] = torch.log_softmax(logits[greedy].float(), dim=-1)
    if sampled:
        chosen = [params[row] for row in sampled]
        truncates = any(0 < p.top_k < logits.shape[-1] or p.top_p < 1.0 or p.min_p > 0.0 for p in chosen)
        values, indices = filtered_logits(
            logits[sampled].to(torch.float64 if truncates else torch.float32), chosen
        )
        values = torch.log_softmax(values, dim=-1)
        if indices is not None:
            values = torch.full(indices.shape[:1] + logits.shape[-1:], float("-inf"), dtype=values.dtype,
                                device=values.device).scatter_(1, indices, values)  # fmt: skip
        out[sampled] = values.float()
    return out


def sample_rows(logits: Tensor, params: Seq, uniforms: list[float]) -> Tensor:
    """One token per row: the inverse CDF of the filtered distribution at the row's uniform number.

    The CDF runs over the kept tokens in ascending id order, whatever filters the other rows of the batch needed
    (which decide whether candidates come sorted by probability), so a seeded row draws the same token in any
    batch."""
    values, indices = filtered_logits(logits, params)
    probs = values.softmax(dim=-1)
    if indices is not None:
        indices, order = indices.sort(dim=-1)
        probs = probs.gather(1, order)
    cdf = probs.cumsum(dim=-1)
    target = torch.tensor(uniforms, device=logits.device, dtype=cdf.dtype)[:, None] * cdf[:, -1:]
    picked = torch.searchsorted(cdf, target, right=True).clamp(max=cdf.shape[-1] - 1)
    return (picked if indices is None else indices.gather(1, picked))[:, 0]
