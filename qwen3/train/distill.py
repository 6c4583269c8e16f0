"""Strong-to-weak distillation (report section 4.5): a small student learns from a larger teacher of the same
tokenizer, off-policy from the teacher's outputs, then on-policy from its own samples scored by the teacher.

- Off-policy (phase 1): the teacher answers prompts in both modes (``/think`` and ``/no_think``, report: "combine
  the outputs of teacher models generated with both /think and /no_think modes"), and the student learns either
  the sequences (``off_policy_sft``: next-token cross-entropy on the teacher's replies) or the teacher's
  next-token distribution at every reply position (``off_policy_logits``: the teacher's top-k log-probabilities
  from a ``qwen3.train.topk_store`` file, forward KL over the k tokens plus the tail, ``topk_forward_kl``).
- On-policy (phase 2): the student samples replies (either mode) with our engine, the teacher scores the same
  tokens in inference mode, batched, and the loss is the per-token divergence between the two next-token
  distributions over the whole vocabulary: forward KL(teacher || student) by default (the report "minimize[s] the
  KL divergence" without a direction, and aligning the student's logits with the teacher's is the forward
  direction), reverse KL(student || teacher) or the generalised Jensen-Shannon divergence of GKD (Agarwal et al.
  2024, arXiv 2306.13649): JSD(beta) = beta KL(T || M) + (1 - beta) KL(S || M) with M = beta T + (1 - beta) S.
  Both distributions are softened by the same ``temperature`` (Hinton et al. 2015); no T^2 rescaling.

A teacher must share the student's tokenizer and chat template (``check_compatible``), else the per-token
distributions do not describe the same tokens.
"""

from __future__ import annotations

import copy
import hashlib
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.profiler import record_function

from qwen3.train.batch import IGNORE, Batch, Row
from qwen3.train.distributed import gather, shard
from qwen3.train.flops import ComputeCounter
from qwen3.train.loss import LossFn, LossOutput, add_head_grads, register_loss
from qwen3.train.settings import SettingsError
from qwen3.train.stages import register_stage
from qwen3.train.topk_store import unpack_topk

DIVERGENCES = ("forward", "reverse", "jsd")
MODES = ("on_policy", "off_policy_sft", "off_policy_logits")
THINK_MODES = ("think", "no_think")
TEACHER_DTYPES = ("float32", "bfloat16")
STORE_BATCH = 8  # rows the teacher scores per forward when it builds a top-k store
SYNTHETIC_TASK = "synthetic"  # distill.task: qwen3.train.synthetic's arithmetic chats; else "world:<family>"


# ---------------------------------------------------------------------------------------------- divergences
def token_divergence(
    student_logits: Tensor,
    teacher_logits: Tensor,
    kind: str = "forward",
    beta: float = 0.5,
    temperature: float = 1.0,
) -> Tensor:
    """[N, V] student and teacher logits -> [N] divergence per token, in fp32 (module docstring)."""
    if kind not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {', '.join(DIVERGENCES)}, got {kind!r}")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student logits {tuple(student_logits.shape)} and teacher logits {tuple(teacher_logits.shape)} differ"
        )
    s = F.log_softmax(student_logits.float() / temperature, dim=-1)
    t = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    if kind == "forward":
        return (t.exp() * (t - s)).sum(-1)
    if kind == "reverse":
        return (s.exp() * (s - t)).sum(-1)
    if not 0.0 < beta < 1.0:
        raise ValueError(f"jsd beta must be in (0, 1), got {beta}")
    m = torch.logsumexp(torch.stack([t + math.log(beta), s + math.log1p(-beta)]), dim=0)
    return beta * (t.exp() * (t - m)).sum(-1) + (1 - beta) * (s.exp() * (s - m)).sum(-1)


def divergence_and_grad(s: Tensor, t: Tensor, kind: str, beta: float) -> tuple[Tensor, Tensor]:
    """[N] divergence and its [N, V] gradient with respect to the student's (temperature-scaled) logits, from the
    fp32 log-probabilities ``s`` (student) and ``t`` (teacher); the same values as ``token_divergence``. With
    p = softmax, the gradient of any D(p) is p * (g - <p, g>) for g = dD/dp: forward KL g = -t/p (so p - t),
    reverse KL g = log(p/t) + 1, JSD(beta) g = (1 - beta) log(p/m) (the terms through m cancel); constants in g
    cancel."""
    p = s.exp()
    if kind == "forward":
        q = t.exp()
        return (q * (t - s)).sum(-1), p.sub_(q)
    if kind == "reverse":
        g = s - t
        inner = (p * g).sum(-1)  # KL(S || T)
        value = inner
    else:
        m = torch.logaddexp(t + math.log(beta), s + math.log1p(-beta))
        g = (s - m).mul_(1 - beta)
        inner = (p * g).sum(-1)  # (1 - beta) KL(S || M)
        value = beta * (t.exp() * (t - m)).sum(-1) + inner
    return value, g.sub_(inner[:, None]).mul_(p)


def linear_divergence(
    hidden: Tensor, weight: Tensor, teacher_hidden: Tensor, teacher_weight: Tensor, kind: str = "forward",
    beta: float = 0.5, temperature: float = 1.0, chunk_size: int = 512,
) -> Tensor:  # fmt: skip
    """sum_i token_divergence(hidden[i] @ weight.T, teacher_hidden[i] @ teacher_weight.T)[i] without ever holding
    the [N, V] logits of either model: chunk by chunk the forward computes both heads, the divergence and its
    gradients (``divergence_and_grad``); backward only scales them. The teacher gets no gradient. Matmuls run in
    the autocast dtype (the teacher's in its own dtype), softmax and divergence in fp32."""
    if kind not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {', '.join(DIVERGENCES)}, got {kind!r}")
    if hidden.shape[0] != teacher_hidden.shape[0] or weight.shape[0] != teacher_weight.shape[0]:
        raise ValueError(
            f"student hidden {tuple(hidden.shape)} / head {tuple(weight.shape)} and teacher hidden "
            f"{tuple(teacher_hidden.shape)} / head {tuple(teacher_weight.shape)}: rows and vocabularies must match"
        )
    return _LinearDivergence.apply(hidden, weight, teacher_hidden.detach(), teacher_weight.detach(), kind,
                                   float(beta), float(temperature), int(chunk_size))  # fmt: skip


class _LinearDivergence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, teacher_hidden, teacher_weight, kind, beta, temperature, chunk_size):  # type: ignore[override]
        device = hidden.device.type
        compute = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else hidden.dtype
        grad_hidden = torch.zeros_like(hidden)
        grad_weight = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
        total = torch.zeros((), dtype=torch.float32, device=hidden.device)
        with torch.autocast(device, enabled=False), torch.no_grad(), record_function("distill.divergence"):
            w, tw = weight.to(compute), teacher_weight
            size = chunk_size or max(hidden.shape[0], 1)  # 0: one chunk of every row
            for start in range(0, hidden.shape[0], size):
                h = hidden[start : start + size].to(compute)
                th = teacher_hidden[start : start + size].to(tw.dtype)
                s = torch.log_softmax((h @ w.T).float().div_(temperature), dim=-1)
                t = torch.log_softmax((th @ tw.T).float().div_(temperature), dim=-1)
                value, grad = divergence_and_grad(s, t, kind, beta)
                total += value.sum()
                add_head_grads(grad.div_(temperature).to(compute), h, w, grad_hidden,
                               slice(start, start + size), grad_weight)  # fmt: skip
        ctx.save_for_backward(grad_hidden, grad_weight.to(weight.dtype))
        return total

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_output, grad_weight * grad_output, None, None, None, None, None, None


def topk_forward_kl(
    student_logits: Tensor, topk_ids: Tensor, topk_logprobs: Tensor, temperature: float
) -> Tensor:
    """Forward KL between the teacher and the student coarse-grained to k + 1 outcomes: the teacher's k stored
    tokens and "any other token" (the tail, 1 - their mass). It never exceeds the full KL, equals it when k is the
    vocabulary, and, unlike renormalising the k values, does not push the student's whole mass onto the k tokens
    when the teacher is not that sure. [N, V], [N, k], [N, k] -> [N]."""
    s = F.log_softmax(student_logits.float() / temperature, dim=-1).gather(-1, topk_ids)
    t = topk_logprobs.float()
    head = (t.exp() * (t - s)).sum(-1)
    teacher_tail = (1.0 - t.exp().sum(-1)).clamp(min=0.0)
    student_tail = (1.0 - s.exp().sum(-1)).clamp(min=1e-12)
    return head + torch.xlogy(teacher_tail, teacher_tail) - torch.xlogy(teacher_tail, student_tail)


def _target_rows(batch: Batch) -> Tensor:
    return (batch.labels.flatten() != IGNORE).nonzero().squeeze(1)


@register_loss("distill_topk")
def distill_topk(temperature: float = 1.0, chunk_size: int = 512) -> LossFn:
    """Off-policy logit distillation on rows carrying the teacher's top-k (``TopKSequence.to_row``)."""
    _check_temperature(temperature)

    def loss(model: torch.nn.Module, batch: Batch) -> LossOutput:
        out = model.hidden_states(batch.input_ids, document_ids=batch.document_ids, output_router_logits=True)
        hidden = out.hidden_states.flatten(0, 1)
        ids, logprobs = unpack_topk(batch.extras)
        ids, logprobs = ids.flatten(0, 1), logprobs.flatten(0, 1)
        total = hidden.new_zeros((), dtype=torch.float32)
        for chunk in _target_rows(batch).split(chunk_size or hidden.shape[0] or 1):
            logits = model.lm_head(hidden[chunk])
            total = total + topk_forward_kl(logits, ids[chunk], logprobs[chunk], temperature).sum()
        return LossOutput(total, out.router_logits, {"kl": total.detach()})

    return loss


@register_loss("distill_on_policy")
def distill_on_policy(
    teacher: torch.nn.Module | None = None,
    divergence: str = "forward",
    beta: float = 0.5,
    temperature: float = 1.0,
    chunk_size: int = 512,
) -> LossFn:
    """Per-token divergence to ``teacher`` (scored in inference mode on the same tokens) over every target.
    ``chunk_size`` rows per chunk of the fused heads + divergence (``linear_divergence``); 0: the plain torch
    reference path."""
    if teacher is None:
        raise ValueError("distill_on_policy needs a teacher model")
    if divergence not in DIVERGENCES:
        raise ValueError(f"divergence must be one of {', '.join(DIVERGENCES)}, got {divergence!r}")
    _check_temperature(temperature)
    teacher.eval()

    def loss(model: torch.nn.Module, batch: Batch) -> LossOutput:
        rows = _target_rows(batch)
        with torch.inference_mode(), record_function("distill.teacher_forward"):
            teacher_hidden = teacher.hidden_states(batch.input_ids, document_ids=batch.document_ids)
            teacher_hidden = teacher_hidden.flatten(0, 1)[rows]
        teacher_hidden = teacher_hidden.clone()  # an inference tensor cannot meet autograd
        with record_function("distill.student_forward"):
            out = model.hidden_states(
                batch.input_ids, document_ids=batch.document_ids, output_router_logits=True
            )
        hidden = out.hidden_states.flatten(0, 1)[rows]
        if chunk_size:  # the fused head + divergence (its backward is done here too)
            total = linear_divergence(hidden, model.lm_head.weight, teacher_hidden, teacher.lm_head.weight,
                                      divergence, beta, temperature, chunk_size)  # fmt: skip
        else:  # the reference path: plain torch, autograd through the whole [N, V] logits
            with torch.no_grad():
                teacher_logits = teacher.lm_head(teacher_hidden)
            total = token_divergence(
                model.lm_head(hidden), teacher_logits, divergence, beta, temperature
            ).sum()
        return LossOutput(total, out.router_logits, {"kl": total.detach()})

    return loss


def _check_temperature(temperature: float) -> None:
    if not temperature > 0:
        raise ValueError(f"distillation temperature must be > 0, got {temperature}")


@torch.no_grad()
def mean_divergence(
    student: torch.nn.Module,
    teacher: torch.nn.Module,
    rows: Sequence[Row],
    kind: str = "forward",
    pad_id: int = 0,
) -> float:
    """The mean per-target divergence of ``student`` to ``teacher`` on ``rows`` (an evaluation, not a loss)."""
    from qwen3.train.batch import collate

    batch = collate(rows, pad_id).to(student.lm_head.weight.device)
    targets = _target_rows(batch)
    s = student(batch.input_ids, document_ids=batch.document_ids).flatten(0, 1)[targets]
    t = teacher(batch.input_ids, document_ids=batch.document_ids).flatten(0, 1)[targets]
    return float(token_divergence(s, t, kind).mean())


# -------------------------------------------------------------------------------------------- compatibility
class IncompatibleTeacher(SettingsError):
    """The teacher's vocabulary or chat template differs from the student's; the message names both."""


def vocabulary_fingerprint(tokenizer: Any) -> str:
    digest = hashlib.sha256()
    for token_id in range(len(tokenizer)):
        digest.update(tokenizer.token_bytes(token_id) + b"\x00")
    return digest.hexdigest()[:16]


def chat_template(tokenizer: Any) -> str:
    """The template conversations are rendered with: the tokenizer's own, else our Qwen3 template (the one
    ``qwen3.chat.render`` reproduces)."""
    from qwen3.chat import qwen3_template

    return getattr(tokenizer, "chat_template", None) or qwen3_template()


def check_compatible(student_tokenizer: Any, teacher_tokenizer: Any, student: str, teacher: str) -> None:
    """Refuse a teacher whose tokens or chat template differ from the student's."""
    sizes = len(student_tokenizer), len(teacher_tokenizer)
    if sizes[0] != sizes[1] or vocabulary_fingerprint(student_tokenizer) != vocabulary_fingerprint(
        teacher_tokenizer
    ):
        raise IncompatibleTeacher(
            f"teacher {teacher} has another vocabulary ({sizes[1]} tokens) than student {student} ({sizes[0]} "
            "tokens): distillation compares next-token distributions and needs the same tokenizer"
        )
    if chat_template(student_tokenizer) != chat_template(teacher_tokenizer):
        raise IncompatibleTeacher(
            f"teacher {teacher} has another chat template than student {student}: the teacher would score "
            "conversations rendered in a format it was not trained on"
        )


# ----------------------------------------------------------------------------------------------- prompts
def with_mode(messages: list[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    """The conversation with its last user turn asking for ``mode`` by a soft switch (report section 4.3)."""
    if mode not in THINK_MODES:
        raise ValueError(f"mode must be one of {', '.join(THINK_MODES)}, got {mode!r}")
    out = copy.deepcopy(messages)
    last = max(i for i, m in enumerate(out) if m["role"] == "user")
    out[last]["content"] = f"{out[last]['content']} /{mode}"
    return out


def synthetic_prompts(count: int, seed: int = 0) -> list[list[dict[str, Any]]]:
    """Prompts of the synthetic arithmetic chats (qwen3.train.synthetic), flags and replies removed."""
    from qwen3.train.synthetic import chat_examples

    prompts = []
    for example in chat_examples(count, seed):
        turns = [dict(m) for m in example["messages"] if m["role"] != "assistant"]
        turns[-1]["content"] = turns[-1]["content"].replace(" /no_think", "")
        prompts.append(turns)
    return prompts


def prompt_items(spec: DistillConfig) -> list[Any]:
    """The world items behind ``spec.task = "world:<family>"``: ``spec.prompts`` train-split items of the family
    (seed ``prompt_seed``), the queries RL trains on for the same task (grpo.task), so Table 21 compares the two
    on the same prompts; none for the synthetic source."""
    if spec.task == SYNTHETIC_TASK:
        return []
    from qwen3.world import generate

    items = generate(spec.task.split(":", 1)[1], "train", spec.prompts, seed=spec.prompt_seed)
    with_tools = [item.id for item in items if item.tools]
    if with_tools:
        raise SettingsError(
            f"distill.task {spec.task!r}: item {with_tools[0]} offers tools, which distillation prompts do not carry"
        )
    return items


def distill_prompts(spec: DistillConfig) -> list[list[dict[str, Any]]]:
    """The prompts of ``spec.task``: the synthetic arithmetic chats or the world items' queries (module doc)."""
    if spec.task == SYNTHETIC_TASK:
        return synthetic_prompts(spec.prompts, spec.prompt_seed)
    return [copy.deepcopy(item.messages) for item in prompt_items(spec)]


def record_prompts(spec: DistillConfig, run_dir: Any) -> None:
    """RUN_DIR/data/prompts.jsonl: the world items' ids and query hashes, so a caller can check them against a
    test split (the recipe does); nothing for the synthetic source."""
    import json
    from pathlib import Path

    from qwen3.utils.atomic import atomic_write_text

    items = prompt_items(spec)
    if items:
        lines = [json.dumps({"id": item.id, "query_hash": item.query_hash}) + "\n" for item in items]
        atomic_write_text(Path(run_dir) / "data" / "prompts.jsonl", "".join(lines))


def prompt_row(prompt_ids: Sequence[int], completion_ids: Sequence[int]) -> Row:
    """A row training on the completion only: inputs ids[:-1], targets ids[1:] from the first completion token."""
    ids = list(prompt_ids) + list(completion_ids)
    labels = [IGNORE] * (len(prompt_ids) - 1) + list(completion_ids)
    return Row(ids[:-1], labels)


# ------------------------------------------------------------------------------------------- row sources
class ListRows:
    """A fixed list of rows served in a fresh seeded order each epoch (a ``RowSource``)."""

    def __init__(self, rows: Sequence[Row], seed: int = 0):
        if not rows:
            raise ValueError("ListRows needs at least one row")
        self.rows, self.seed, self.position = list(rows), seed, 0

    def next_row(self) -> Row:
        epoch, index = divmod(self.position, len(self.rows))
        order = list(range(len(self.rows)))
        random.Random(self.seed + epoch).shuffle(order)
        self.position += 1
        return self.rows[order[index]]

    def state_dict(self) -> dict[str, Any]:
        return {"position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.position = int(state["position"])


class CountedRows:
    """Wraps a row source and counts every row served as trained tokens of ``student`` (and, with ``teacher``,
    as forward tokens of the teacher that scores it); ``counters()`` are what the trainer logs each step: the
    run's totals so far (``flops``, ``student_flops``, ...) and this step's share (``step_flops``, ...)."""

    def __init__(self, source: Any, counter: ComputeCounter, teacher: str | None = None):
        self.source, self.counter, self.teacher = source, counter, teacher
        self.logged: dict[str, int] = {}  # the totals of the last record

    def next_row(self) -> Row:
        row = self.source.next_row()
        self.counter.train("student", len(row.input_ids))
        if self.teacher is not None:
            self.counter.forward(self.teacher, len(row.input_ids))
        return row

    def counters(self) -> dict[str, int]:
        inner = self.source.counters() if hasattr(self.source, "counters") else {}
        totals = self.counter.totals()
        steps = {f"step_{key}": value - self.logged.get(key, 0) for key, value in totals.items()
                 if key.endswith("flops")}  # fmt: skip
        self.logged = totals
        return {**inner, **totals, **steps}

    def state_dict(self) -> dict[str, Any]:
        return {"source": self.source.state_dict(), "compute": self.counter.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.source.load_state_dict(state["source"])
        self.counter.load_state_dict(state["compute"])
        self.logged = self.counter.totals()  # the checkpoint is taken right after a record


@dataclass
class RolloutSettings:
    """How the student samples on-policy: ``rows`` completions per refill (one global batch), each prompt in
    the modes of ``modes`` in turn, at ``temperature`` for at most ``max_tokens`` tokens."""

    rows: int
    max_tokens: int = 32
    temperature: float = 1.0
    modes: tuple[str, ...] = THINK_MODES
    seed: int = 0
    dtype: torch.dtype | None = None  # the engine's copy of the student (None: the student's own dtype)


class OnPolicyRollouts:
    """Student samples from the current weights: when its buffer is empty it copies the trainer's model into an
    inference engine (``attach`` first) and generates one batch of completions; each becomes a row that trains on
    the completion only. Generation tokens count as student forward tokens."""

    def __init__(self, prompts: Sequence[list[dict[str, Any]]], tokenizer: Any, settings: RolloutSettings,
                 counter: ComputeCounter, engine_options: dict[str, Any] | None = None):  # fmt: skip
        if not prompts:
            raise ValueError("on-policy rollouts need at least one prompt")
        self.prompts, self.tokenizer, self.settings, self.counter = (
            list(prompts),
            tokenizer,
            settings,
            counter,
        )
        self.engine_options = engine_options or {}
        self.policy: torch.nn.Module | None = None
        self.env: Any = None
        self.llm: Any = None
        self.buffer: list[Row] = []
        self.refills = 0

    def attach(self, policy: torch.nn.Module, env: Any = None) -> None:
        """Sample from ``policy`` (the trainer's model); under torchrun (``env``) this rank generates its share of
        each batch and the ranks exchange their rows, so every rank holds the whole global batch."""
        self.policy, self.env = policy, env

    def next_row(self) -> Row:
        if not self.buffer:
            self.buffer = self._generate()
        return self.buffer.pop(0)

    def _engine(self) -> Any:
        from qwen3.engine.llm import LLM
        from qwen3.train.grpo import inference_copy

        if self.policy is None:
            raise RuntimeError("OnPolicyRollouts.attach(model) must be called before rows are drawn")
        if self.llm is None:
            # GRPO's engine copy, not a cast of the policy: casting would take RoPE's fp32 inv_freq to bf16 too.
            device = self.policy.lm_head.weight.device if torch.cuda.is_available() else torch.device("cpu")
            dtype = self.settings.dtype or self.policy.lm_head.weight.dtype
            self.llm = LLM(inference_copy(self.policy, device, dtype), tokenizer=self.tokenizer,
                           **self.engine_options)  # fmt: skip
        # The current weights, converted to the engine's dtype; the engine's layouts are rebuilt.
        self.llm.engine.load_weights(self.policy.state_dict().items())
        return self.llm

    @torch.no_grad()
    def _generate(self) -> list[Row]:
        """One global batch: completion ``serial`` answers prompt ``serial % prompts`` in mode ``serial // prompts``
        (cycling), seeded ``seed + serial``, so the batch does not depend on how it is split over ranks."""
        with record_function("distill.rollout"):
            return self._sample()

    def _sample(self) -> list[Row]:
        from qwen3.engine.sampling_params import SamplingParams

        llm, s = self._engine(), self.settings
        serials = shard(range(self.refills * s.rows, (self.refills + 1) * s.rows), self.env)
        conversations, params = [], []
        for serial in serials:
            prompt = self.prompts[serial % len(self.prompts)]
            conversations.append(with_mode(prompt, s.modes[(serial // len(self.prompts)) % len(s.modes)]))
            params.append(
                SamplingParams(temperature=s.temperature, max_tokens=s.max_tokens, seed=s.seed + serial)
            )
        outputs = llm.chat(conversations, params, progress=False) if conversations else []
        self.refills += 1
        pairs = [(list(out.prompt_token_ids), list(out.outputs[0].token_ids)) for out in outputs]
        rows = []
        for prompt_ids, completion in gather(pairs, self.env):
            self.counter.forward("student", len(prompt_ids) + len(completion))
            rows.append(prompt_row(prompt_ids, completion))
        return rows

    def state_dict(self) -> dict[str, Any]:
        buffered = [{"input_ids": r.input_ids, "labels": r.labels} for r in self.buffer]
        return {"refills": self.refills, "buffer": buffered}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.refills = int(state["refills"])
        self.buffer = [Row(r["input_ids"], r["labels"]) for r in state["buffer"]]


# ------------------------------------------------------------------------------------------- off-policy data
def teacher_examples(
    teacher_llm: Any, prompts: Sequence[list[dict[str, Any]]], modes: Sequence[str] = THINK_MODES,
    max_tokens: int = 64, temperature: float = 0.7, seed: int = 0, env: Any = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """The teacher's replies to every prompt in every mode, as chat examples (``{"messages": [...]}``, the reply
    with its ``reasoning_content``) for SFT or for scoring into a top-k store. Conversation i is seeded
    ``seed + i``; under torchrun (``env``) each rank generates its share and every rank gets all of them."""
    from qwen3.engine.sampling_params import SamplingParams

    conversations = [with_mode(prompt, mode) for mode in modes for prompt in prompts]
    mine = shard(range(len(conversations)), env)
    params = [SamplingParams(temperature=temperature, max_tokens=max_tokens, seed=seed + i) for i in mine]
    outputs = teacher_llm.chat([conversations[i] for i in mine], params, progress=False) if mine else []
    replies = gather([out.outputs[0].message() for out in outputs], env)
    return [{"messages": [*conv, reply]} for conv, reply in zip(conversations, replies)]


def example_rows(examples: Sequence[dict[str, Any]], tokenizer: Any, max_len: int) -> list[Row]:
    """Chat examples -> rows with targets on the final assistant turn (truncated to ``max_len`` inputs)."""
    from qwen3.chat import tokenize_conversation

    rows = []
    for example in examples:
        conv = tokenize_conversation(example["messages"], tokenizer, tools=example.get("tools"))
        labels = [t if m else IGNORE for t, m in zip(conv.input_ids[1:], conv.assistant_mask[1:])]
        rows.append(Row(conv.input_ids[:-1][:max_len], labels[:max_len]))
    return rows


# ------------------------------------------------------------------------------------------------ config
@dataclass
class DistillConfig:
    """The ``[distill]`` table of a distillation preset (report section 4.5; the report gives no values).

    - ``mode``: "on_policy" (phase 2), "off_policy_sft" or "off_policy_logits" (phase 1).
    - ``teacher``: a checkpoint directory or a preset name (random weights from ``teacher_seed``);
      ``teacher_dtype``: the weights it scores (and, off-policy, generates) with: "float32", or "bfloat16"
      (inference only, so no fp32 master copy is needed; the log-softmax and divergence stay fp32).
    - ``divergence`` ("forward", "reverse", "jsd" with ``beta``; GKD, arXiv 2306.13649) and ``temperature``
      (Hinton et al. 2015, arXiv 1503.02531) of the on-policy loss; the top-k loss is forward KL.
    - ``top_k``: teacher entries kept per position for "off_policy_logits" (TRL issue #3055's ask: not the
      full vocabulary); ``store``: the top-k file (default RUN_DIR/teacher_topk.safetensors).
    - ``task``: where the prompts come from: "synthetic" (the synthetic arithmetic chats) or "world:<family>"
      (that family's train-split items, as ``grpo.task``); ``prompts`` of them (seed ``prompt_seed``); ``modes``: the soft switches each prompt
      is asked in, in turn (report: both modes); ``max_new_tokens`` and ``rollout_temperature`` for sampling
      (student on-policy, teacher off-policy); ``rollout_dtype``: the weights of the student's engine copy
      ("auto": bfloat16 under ``precision = "bf16"``, else float32).
    """

    mode: str = "on_policy"
    teacher: str = "qwen3-debug-tiny"
    teacher_seed: int = 1
    teacher_dtype: str = "float32"
    divergence: str = "forward"
    beta: float = 0.5
    temperature: float = 1.0
    top_k: int = 32
    store: str | None = None
    task: str = SYNTHETIC_TASK
    prompts: int = 64
    prompt_seed: int = 0
    modes: list[str] = field(default_factory=lambda: list(THINK_MODES))
    max_new_tokens: int = 32
    rollout_temperature: float = 1.0
    rollout_dtype: str = "auto"

    def __post_init__(self) -> None:
        def fail(message: str) -> None:
            raise SettingsError(f"distill.{message}")

        if self.mode not in MODES:
            fail(f"mode: must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.rollout_dtype not in ("auto", *TEACHER_DTYPES):
            fail(f"rollout_dtype: must be auto, {', '.join(TEACHER_DTYPES)}, got {self.rollout_dtype!r}")
        if self.teacher_dtype not in TEACHER_DTYPES:
            fail(f"teacher_dtype: must be one of {', '.join(TEACHER_DTYPES)}, got {self.teacher_dtype!r}")
        if self.divergence not in DIVERGENCES:
            fail(f"divergence: must be one of {', '.join(DIVERGENCES)}, got {self.divergence!r}")
        if not 0 < self.beta < 1:
            fail(f"beta: must be in (0, 1), got {self.beta}")
        if not self.temperature > 0 or not self.rollout_temperature >= 0:
            fail(
                f"temperature: must be > 0 (rollout_temperature >= 0), got {self.temperature}, {self.rollout_temperature}"
            )
        if self.top_k < 1 or self.prompts < 1 or self.max_new_tokens < 1:
            fail(
                f"top_k, prompts, max_new_tokens: must be >= 1, got {self.top_k}, {self.prompts}, {self.max_new_tokens}"
            )
        if self.task != SYNTHETIC_TASK:
            from qwen3.world import FAMILIES

            family = self.task.split(":", 1)[1] if self.task.startswith("world:") else None
            if family not in FAMILIES:
                fail(f"task: {SYNTHETIC_TASK!r} or 'world:<family>' with a family in {', '.join(FAMILIES)}, "
                     f"got {self.task!r}")  # fmt: skip
        bad = [m for m in self.modes if m not in THINK_MODES]
        if not self.modes or bad:
            fail(f"modes: a non-empty list of {', '.join(THINK_MODES)}, got {self.modes!r}")


# ------------------------------------------------------------------------------------------------ runner
def split_table(table: dict[str, Any], section: str, cls: type) -> tuple[Any, Any]:
    """(the ``[section]`` table as ``cls``, the rest as a ``TrainConfig``); errors name the section's keys."""
    from qwen3.train.config import TrainConfig
    from qwen3.train.settings import from_table

    rest = copy.deepcopy(table)
    spec = from_table(cls, rest.pop(section, {}) or {}, section)
    return spec, TrainConfig.from_dict(rest)


def student_tokenizer(config: Any) -> Any:
    """The tokenizer the trainer will build for ``config`` (same rule: qwen3.train.build.build_tokenizer)."""
    from pathlib import Path

    from qwen3.model.checkpoint import load_config
    from qwen3.train.build import build_tokenizer

    name = config.model.name
    directory = Path(name) if (Path(name) / "config.json").is_file() else None
    tokenizer = build_tokenizer(config.data, load_config(name).vocab_size, directory)
    if tokenizer is None:
        raise SettingsError("distillation needs a tokenizer: data.synthetic = 'patterns' has none")
    return tokenizer


def rollout_dtype(spec: DistillConfig, config: Any) -> torch.dtype | None:
    """The dtype the student samples in: ``distill.rollout_dtype``, "auto" following ``precision`` (bf16
    training samples from bf16 weights, as the forward it trains with runs in bf16; fp32 samples in fp32)."""
    name = spec.rollout_dtype
    if name == "auto":
        name = "bfloat16" if config.precision == "bf16" else "float32"
    return getattr(torch, name)


def load_teacher(spec: DistillConfig, device: Any) -> tuple[torch.nn.Module, Any]:
    from qwen3.engine.llm import load_model_and_tokenizer

    model, tokenizer = load_model_and_tokenizer(
        spec.teacher, dtype=spec.teacher_dtype, device=device, seed=spec.teacher_seed
    )
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model.eval(), tokenizer


def parse_stage(table: dict[str, Any]) -> tuple[DistillConfig, Any]:
    return split_table(table, "distill", DistillConfig)


def run_distill(
    table: dict[str, Any],
    resume: bool = False,
    overwrite: bool = False,
    progress: bool | None = None,
    env: Any = None,
    hooks: Sequence[Any] = (),
) -> Any:
    """Run a distillation preset: a TrainConfig table plus ``[distill]`` (``DistillConfig``); ``hooks`` go to
    the trainer."""
    from qwen3.train import distributed
    from qwen3.train.grpo import loss_chunk_size
    from qwen3.train.trainer import Trainer

    spec, config = split_table(table, "distill", DistillConfig)
    env = env or distributed.init_distributed(config.device)
    if spec.mode == "on_policy" and env.distributed and config.distributed == "fsdp":
        raise SettingsError(
            "distill: distributed = 'fsdp' does not run on-policy distillation (each rank's engine samples from "
            "the whole student); use distributed = 'ddp'"
        )
    tokenizer = student_tokenizer(config)
    teacher, teacher_tokenizer = load_teacher(spec, env.device)
    check_compatible(tokenizer, teacher_tokenizer, config.model.name, spec.teacher)
    from qwen3.model.checkpoint import load_config

    counter = ComputeCounter.for_models(student=load_config(config.model.name), teacher=teacher.config)
    prompts = distill_prompts(spec)
    if env.is_main:
        record_prompts(spec, config.run_dir)
    rollouts = None
    if spec.mode == "on_policy":
        settings = RolloutSettings(config.rows_per_step(env.world_size), spec.max_new_tokens,
                                   spec.rollout_temperature, tuple(spec.modes), config.seed,
                                   rollout_dtype(spec, config))  # fmt: skip
        engine = {"max_model_len": config.data.seq_len, "max_num_seqs": settings.rows}
        rollouts = OnPolicyRollouts(prompts, tokenizer, settings, counter, engine)
        rows: Any = CountedRows(rollouts, counter, teacher="teacher")
        loss = distill_on_policy(
            teacher, spec.divergence, spec.beta, spec.temperature, loss_chunk_size(config)
        )
    else:
        rows, loss = _off_policy(spec, config, teacher, tokenizer, counter, env)
    trainer = Trainer(config, rows=rows, loss_fn=loss, resume=resume, overwrite=overwrite, env=env,
                      progress=progress, hooks=hooks)  # fmt: skip
    if rollouts is not None:
        rollouts.attach(trainer.model, env)
    return trainer.fit()


def _off_policy(spec: DistillConfig, config: Any, teacher: torch.nn.Module, tokenizer: Any,
                counter: ComputeCounter, env: Any = None) -> tuple[Any, LossFn | None]:  # fmt: skip
    """Phase 1: the teacher's replies in both modes, then SFT rows or top-k rows (the store is built once)."""
    import dataclasses

    from qwen3.engine.llm import LLM
    from qwen3.train.build import build_rows
    from qwen3.train.grpo import loss_chunk_size
    from qwen3.train.loss import make_loss

    prompts = distill_prompts(spec)
    llm = LLM(teacher, tokenizer=tokenizer, max_model_len=config.data.seq_len, max_num_seqs=len(prompts))
    examples = teacher_examples(
        llm, prompts, spec.modes, spec.max_new_tokens, spec.rollout_temperature, config.seed, env
    )
    counter.forward("teacher", sum(_example_tokens(llm, e) for e in examples))
    if spec.mode == "off_policy_sft":
        data = dataclasses.replace(config.data, kind="sft", synthetic=None)
        source = build_rows(data, tokenizer, teacher.config.vocab_size, examples)
        return CountedRows(source, counter), make_loss(config.loss.type, **config.loss.options)
    store = _topk_store(spec, config, teacher, tokenizer, examples, env)
    # The teacher scored every stored position once, whether this process built the store or an interrupted one
    # did (a restart before the first checkpoint reuses the store: its compute still counts).
    counter.forward("teacher", sum(len(sequence.input_ids) for sequence in store.sequences))
    source = ListRows([sequence.to_row() for sequence in store.sequences], config.data.seed)
    return CountedRows(source, counter), distill_topk(store.temperature, loss_chunk_size(config))


def _topk_store(spec: DistillConfig, config: Any, teacher: torch.nn.Module, tokenizer: Any,
                examples: list[dict[str, Any]], env: Any) -> Any:  # fmt: skip
    """The run's top-k store: reused when it holds this teacher, k and temperature, else built. Under torchrun
    rank 0 alone decides and writes; each rank scores its share of the rows, the shares are gathered, and the
    others wait for the file at a barrier (one writer, no race)."""
    from pathlib import Path

    from qwen3.train.topk_store import TopKStore, topk_sequences

    path = Path(spec.store or Path(config.run_dir) / "teacher_topk.safetensors")
    label, main = teacher_label(spec), env is None or env.is_main
    store = TopKStore.load(path) if main and path.is_file() else None
    # A store of another teacher or k (an earlier run in this directory) is rebuilt, never reused.
    reusable = store is not None and (store.k, store.temperature, store.teacher) == (
        spec.top_k, spec.temperature, label
    )  # fmt: skip
    if env is not None and env.distributed:
        from qwen3.train.distributed import broadcast_object

        reusable = broadcast_object(reusable, env)
    if reusable:
        return store if store is not None else TopKStore.load(path)
    rows = example_rows(examples, tokenizer, config.data.seq_len)
    sequences = topk_sequences(teacher, shard(rows, env), spec.top_k, spec.temperature, STORE_BATCH,
                               tokenizer.pad_token_id)  # fmt: skip
    store = TopKStore(gather(sequences, env), spec.top_k, spec.temperature, teacher.config.vocab_size, label)
    if main:
        store.save(path)
    if env is not None and env.distributed:
        torch.distributed.barrier()
    return store


def teacher_label(spec: DistillConfig) -> str:
    """The teacher's name in a store: its directory, or the preset and the seed of its random weights."""
    from pathlib import Path

    return spec.teacher if Path(spec.teacher).is_dir() else f"{spec.teacher} (seed {spec.teacher_seed})"


def _example_tokens(llm: Any, example: dict[str, Any]) -> int:
    """Tokens of one teacher generation (prompt and reply): each is one forward position."""
    from qwen3.chat import render

    return len(llm.tokenizer.encode(render(example["messages"])))


@register_stage("distill", check=lambda table: [parse_stage(table)[-1]],
                description="strong-to-weak distillation, off- or on-policy (report section 4.5)")  # fmt: skip
def run_stage(table: dict[str, Any], *, resume: bool = False, overwrite: bool = False, env: Any = None,
              progress: bool | None = None) -> Any:  # fmt: skip
    return run_distill(table, resume=resume, overwrite=overwrite, progress=progress, env=env)
