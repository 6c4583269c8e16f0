"""The model-based reward without a reference (report section 4.4): "leveraging human preference data, we train a
reward model to assign scalar scores". A Qwen3 backbone (the decoder without its LM head) with a scalar head
reading the hidden state of the last token of the rendered conversation, trained on preference pairs with the
Bradley-Terry loss -log sigmoid(r(chosen) - r(rejected)) (Bradley & Terry 1952; InstructGPT, Ouyang et al. 2022,
arXiv 2203.02155).

A reward-model directory holds ``backbone/`` (a Hugging Face Qwen3 directory with the tokenizer: any Qwen3
checkpoint loads it), ``score_head.safetensors`` (the [1, hidden] head and its bias) and ``reward_model.json``; it
is written atomically. ``RewardModel.load(dir).score(conversations)`` scores in padded batches;
``RewardModelReward`` makes it a reward of ``qwen3.train.reward_system`` (sigmoid of the score, in [0, 1]).

``qwen3 train reward-model-debug``: a ``TrainConfig`` table (model, optim, schedule, steps, micro_batch_size =
pairs per step, data.seq_len) plus ``[reward_model]`` (``RewardModelConfig``). Pairs come from the task world's
preference family (``source = "world"``) or from generated arithmetic replies (``"synthetic"``: a right answer
stated in full against a wrong, hedged, repeated or empty one).
"""

from __future__ import annotations

import json
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from qwen3.train.reward_system import RewardResult
from qwen3.train.settings import SettingsError
from qwen3.train.stages import register_stage
from qwen3.utils.atomic import atomic_directory, atomic_write_json

FORMAT = "qwen3-reward-model-v1"
SOURCES = ("synthetic", "world")


@dataclass
class PreferencePair:
    messages: list[dict[str, Any]]  # the query conversation
    chosen: str
    rejected: str


class RewardModel(nn.Module):
    """``score_ids(input_ids [B, T], lengths [B]) -> [B]``: the head on the hidden state at position length - 1.

    It keeps the whole causal LM it was made from (``lm``) so that the backbone saves and loads as an ordinary
    Qwen3 directory; the LM head takes no part in scoring and gets no gradient."""

    def __init__(self, lm: nn.Module, tokenizer: Any = None):
        super().__init__()
        self.lm, self.config, self.tokenizer = lm, lm.config, tokenizer
        self.head = nn.Linear(lm.config.hidden_size, 1, device=lm.lm_head.weight.device)
        nn.init.zeros_(self.head.weight)  # every reply scores 0 before training: no preference by accident
        nn.init.zeros_(self.head.bias)

    def score_ids(self, input_ids: Tensor, lengths: Tensor) -> Tensor:
        hidden = self.lm.hidden_states(input_ids)  # right padding: causal attention never lets it in
        last = hidden[torch.arange(len(lengths), device=hidden.device), lengths - 1]
        return self.head(last.to(self.head.weight.dtype)).squeeze(-1)

    @torch.no_grad()
    def score(
        self, conversations: Sequence[list[dict[str, Any]]], batch_size: int = 16, max_len: int = 4096
    ) -> list[float]:
        """Scalar scores of whole conversations (each ending with the assistant reply to judge), in batches."""
        if self.tokenizer is None:
            raise ValueError("RewardModel.score needs a tokenizer (load the directory, or set .tokenizer)")
        was_training = self.training
        self.eval()
        ids = [conversation_ids(c, self.tokenizer, max_len) for c in conversations]
        out: list[float] = []
        for start in range(0, len(ids), batch_size):
            out += self.score_ids(
                *pad(ids[start : start + batch_size], self._pad_id(), self._device())
            ).tolist()
        self.train(was_training)
        return out

    def _pad_id(self) -> int:
        return getattr(self.tokenizer, "pad_token_id", None) or 0

    def _device(self) -> torch.device:
        return self.head.weight.device

    # ---------------------------------------------------------------------------------------------- files
    def save(self, directory: str | Path) -> Path:
        from safetensors.torch import save_file

        from qwen3.model.checkpoint import save_model

        directory = Path(directory)
        with atomic_directory(directory) as tmp:
            save_model(self.lm, tmp / "backbone", tokenizer=self.tokenizer)
            head = {
                "weight": self.head.weight.detach().cpu().contiguous(),
                "bias": self.head.bias.detach().cpu(),
            }
            save_file(head, str(tmp / "score_head.safetensors"))
            atomic_write_json(tmp / "reward_model.json", {"format": FORMAT, "pooling": "last_token",
                                                          "hidden_size": self.config.hidden_size})  # fmt: skip
        return directory

    @classmethod
    def load(cls, directory: str | Path, device: str | torch.device = "cpu") -> RewardModel:
        from safetensors.torch import load_file

        from qwen3.engine.llm import load_model_and_tokenizer

        directory = Path(directory)
        meta_path = directory / "reward_model.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{directory} is not a reward-model directory (no reward_model.json)")
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"{meta_path}: format {meta.get('format')!r}, expected {FORMAT!r}")
        model, tokenizer = load_model_and_tokenizer(
            directory / "backbone", dtype=torch.float32, device=device
        )
        rm = cls(model, tokenizer)
        head = load_file(str(directory / "score_head.safetensors"))
        rm.head.load_state_dict(head)
        return rm.eval()


def conversation_ids(messages: list[dict[str, Any]], tokenizer: Any, max_len: int) -> list[int]:
    """The rendered conversation up to its final ``<|im_end|>`` (the token whose state is scored), keeping the
    last ``max_len`` tokens when longer."""
    from qwen3.chat import render

    ids = tokenizer.encode(render(messages).rstrip("\n"))
    return ids[-max_len:]


def pad(ids: Sequence[list[int]], pad_id: int, device: torch.device) -> tuple[Tensor, Tensor]:
    lengths = torch.tensor([len(x) for x in ids], device=device)
    width = int(lengths.max())
    batch = torch.tensor([x + [pad_id] * (width - len(x)) for x in ids], device=device)
    return batch, lengths


def bradley_terry(chosen: Tensor, rejected: Tensor) -> Tensor:
    """Mean -log sigmoid(r_c - r_r) over the pairs."""
    return -F.logsigmoid(chosen - rejected).mean()


class RewardModelReward:
    """A reward-system piece: sigmoid of the reward model's score of the conversation plus the reply."""

    def __init__(self, model: RewardModel, batch_size: int = 16):
        self.model, self.batch_size = model, batch_size

    def __call__(self, item: Any, reply: Any) -> RewardResult:
        return self.score_all([item], [reply])[0]

    def score_all(self, items: Sequence[Any], replies: Sequence[Any]) -> list[RewardResult]:
        conversations = [[*item.messages, reply.message()] for item, reply in zip(items, replies)]
        scores = self.model.score(conversations, self.batch_size)
        return [RewardResult(1 / (1 + math.exp(-s)), f"reward model: score {s:+.3f}") for s in scores]


# ---------------------------------------------------------------------------------------------------- data
def synthetic_pairs(count: int, seed: int = 0) -> list[PreferencePair]:
    """Arithmetic questions; chosen states the right result in full, rejected is wrong, hedged, repeated or
    empty-handed (surface cues a small model can learn in a few steps, as the debug preset needs)."""
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        a, b = rng.randint(0, 99), rng.randint(0, 99)
        right = a + b
        wrong = right + rng.choice([-10, -2, -1, 1, 2, 10])
        rejected = rng.choice([f"{a} + {b} = {wrong}.", "I am not sure, maybe ask someone else.",
                               f"{a} {a} {a} {a} {a} {a}", "No."])  # fmt: skip
        pairs.append(PreferencePair([{"role": "user", "content": f"What is {a} + {b}? /no_think"}],
                                    f"{a} + {b} = {right}.", rejected))  # fmt: skip
    return pairs


def world_pairs(count: int, split: str, seed: int = 0) -> list[PreferencePair]:
    from qwen3.world import generate

    return [PreferencePair(item.messages, item.reference["chosen"], item.reference["rejected"])
            for item in generate("preference", split, count, seed=seed)]  # fmt: skip


@dataclass
class RewardModelConfig:
    """``[reward_model]``: ``source`` of the pairs ("synthetic" or "world": qwen3.world's preference family),
    ``pairs`` to train on and ``eval_pairs`` held out (the world's test split; other seeds for synthetic),
    ``output``: the directory written (default RUN_DIR/reward_model)."""

    source: str = "synthetic"
    pairs: int = 256
    eval_pairs: int = 64
    output: str | None = None

    def __post_init__(self) -> None:
        if self.source not in SOURCES:
            raise SettingsError(
                f"reward_model.source: must be one of {', '.join(SOURCES)}, got {self.source!r}"
            )
        if self.pairs < 1 or self.eval_pairs < 1:
            raise SettingsError(
                f"reward_model.pairs, eval_pairs: must be >= 1, got {self.pairs}, {self.eval_pairs}"
            )


def load_pairs(spec: RewardModelConfig, seed: int) -> tuple[list[PreferencePair], list[PreferencePair]]:
    if spec.source == "world":
        return world_pairs(spec.pairs, "train", seed), world_pairs(spec.eval_pairs, "test", seed)
    return synthetic_pairs(spec.pairs, seed), synthetic_pairs(spec.eval_pairs, seed + 1_000_003)


# ---------------------------------------------------------------------------------------------- training
@dataclass
class RewardModelResult:
    output: Path
    losses: list[float]
    eval_accuracy: float


def pair_accuracy(rm: RewardModel, pairs: Sequence[PreferencePair], max_len: int) -> float:
    """Share of pairs whose chosen reply scores strictly higher."""
    chosen = rm.score(
        [[*p.messages, {"role": "assistant", "content": p.chosen}] for p in pairs], max_len=max_len
    )
    rejected = rm.score(
        [[*p.messages, {"role": "assistant", "content": p.rejected}] for p in pairs], max_len=max_len
    )
    return sum(c > r for c, r in zip(chosen, rejected)) / len(pairs)


def parse_stage(table: dict[str, Any]) -> tuple[RewardModelConfig, Any]:
    from qwen3.train.distill import split_table

    return split_table(table, "reward_model", RewardModelConfig)


@register_stage("reward-model", check=lambda table: [parse_stage(table)[-1]],
                description="a Bradley-Terry reward model on preference pairs (report section 4.4)")  # fmt: skip
def run_stage(table: dict[str, Any], *, resume: bool = False, overwrite: bool = False, env: Any = None,
              progress: bool | None = None) -> RewardModelResult:  # fmt: skip
    """Train a reward model (single process). Every ``checkpoint.every`` steps (and at the end with
    ``checkpoint.save_final``) a ``RUN_DIR/checkpoints/step-*`` directory holds the reward model, the AdamW
    state, the RNG and pair-sampler states and the log; ``resume`` continues from the newest one exactly."""
    from qwen3.train import build, checkpoint, distributed
    from qwen3.train.distill import student_tokenizer
    from qwen3.train.metrics import MetricsLogger
    from qwen3.train.schedule import lr_at

    spec, config = parse_stage(table)
    output = Path(spec.output or Path(config.run_dir) / "reward_model")
    latest = checkpoint.latest_checkpoint(config.run_dir)
    if resume and latest is None:
        raise SettingsError(f"--resume: {config.run_dir} has no complete reward-model checkpoint")
    if not resume and (output.exists() or latest is not None):
        if not overwrite:
            raise SettingsError(f"{config.run_dir} already holds a reward-model run ({output.name} or "
                                "checkpoints): choose another run_dir, pass --resume or --overwrite")  # fmt: skip
        import shutil

        shutil.rmtree(checkpoint.checkpoints_dir(config.run_dir), ignore_errors=True)
    env = env or distributed.init_distributed(config.device)
    if env.distributed:
        raise SettingsError(
            "reward-model training runs in one process (it is a few minutes); run it without torchrun"
        )
    checkpoint.seed_everything(config.seed)
    tokenizer = student_tokenizer(config)
    if resume:
        checkpoint.clean_stale(config.run_dir)
        rm = RewardModel.load(latest / "reward_model", env.device).train()
    else:
        rm = RewardModel(build.build_model(config.model, env.device, config.data.seq_len), tokenizer).train()
    train_pairs, eval_pairs = load_pairs(spec, config.seed)
    optimizer = build.build_optimizer(rm, config.optim, env.device)
    metrics = MetricsLogger(
        config.run_dir, config.steps, config.stage, env.is_main, False, config.log_every, progress
    )
    rng, losses, first = random.Random(config.seed), [], 1
    if resume:
        first = _restore(latest, optimizer, rng, metrics) + 1
    else:
        metrics.reset_to("")
    metrics.start(first - 1)
    started = time.perf_counter()
    every = config.checkpoint.every
    try:
        for step in range(first, config.steps + 1):
            batch = rng.sample(train_pairs, min(config.micro_batch_size, len(train_pairs)))
            record = _train_step(rm, optimizer, batch, config, tokenizer, lr_at(config.schedule, config.optim.lr,
                                                                                 step - 1, config.steps))  # fmt: skip
            record.update(step=step, elapsed_s=time.perf_counter() - started)
            losses.append(record["loss"])
            metrics.log(record)
            if (every and step % every == 0) or (step == config.steps and config.checkpoint.save_final):
                _save_checkpoint(config, step, rm, optimizer, rng, metrics)
        accuracy = pair_accuracy(rm, eval_pairs, config.data.seq_len)
        metrics.message(f"held-out pair accuracy {accuracy:.3f} on {len(eval_pairs)} pairs; saved {output}")
    finally:
        metrics.close()
    rm.save(output)
    atomic_write_json(Path(config.run_dir) / "reward_model_eval.json", {"eval_accuracy": accuracy,
                      "eval_pairs": len(eval_pairs), "source": spec.source})  # fmt: skip
    return RewardModelResult(output, losses, accuracy)


def _save_checkpoint(config: Any, step: int, rm: RewardModel, optimizer: Any, rng: random.Random,
                     metrics: Any) -> Path:  # fmt: skip
    """``RUN_DIR/checkpoints/step-N/``: the trainer's checkpoint layout (``checkpoint.write_checkpoint``) with
    ``reward_model/`` (a directory ``RewardModel.load`` reads) for the weights and the pair sampler's state in
    the trainer-state file."""
    from qwen3.train import checkpoint

    version, internal, gauss = rng.getstate()
    state = {"step": step, "stage": config.stage, "sampler": [version, list(internal), gauss]}
    return checkpoint.write_checkpoint(
        config.run_dir, step, lambda tmp: rm.save(tmp / "reward_model"), optimizer.state_dict(), state,
        config.to_dict(), metrics.text(), config.checkpoint.keep_last,
    )  # fmt: skip


def _restore(latest: Path, optimizer: Any, rng: random.Random, metrics: Any) -> int:
    """Load a checkpoint's optimizer, RNG, sampler and log; returns its step."""
    from qwen3.train import checkpoint

    state = checkpoint.load_trainer_state(latest)
    optimizer_state = checkpoint.load_optimizer_file(latest)
    if optimizer_state is None:  # a complete checkpoint has it: it is written before the trainer-state file
        raise FileNotFoundError(f"{latest / 'optimizer.pt'}: the checkpoint has no optimizer state")
    optimizer.load_state_dict(optimizer_state)
    checkpoint.load_rng_file(latest)
    version, internal, gauss = state["sampler"]
    rng.setstate((version, tuple(internal), gauss))
    metrics.reset_to((latest / "metrics.jsonl").read_text(encoding="utf-8"))
    metrics.message(f"resumed from {latest} at step {state['step']}")
    return int(state["step"])


def _train_step(rm: RewardModel, optimizer: Any, batch: Sequence[PreferencePair], config: Any, tokenizer: Any,
                lr: float) -> dict[str, float]:  # fmt: skip
    t0 = time.perf_counter()
    for group in optimizer.param_groups:
        group["lr"] = lr
    conversations = [[*p.messages, {"role": "assistant", "content": reply}]
                     for reply_of in ("chosen", "rejected") for p in batch
                     for reply in [getattr(p, reply_of)]]  # fmt: skip
    ids = [conversation_ids(c, tokenizer, config.data.seq_len) for c in conversations]
    scores = rm.score_ids(*pad(ids, rm._pad_id(), rm._device()))
    chosen, rejected = scores[: len(batch)], scores[len(batch) :]
    loss = bradley_terry(chosen, rejected)
    loss.backward()
    norm = torch.nn.utils.clip_grad_norm_(rm.parameters(), config.optim.grad_clip or float("inf"))
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    tokens = sum(len(x) for x in ids)
    chosen, rejected = chosen.detach(), rejected.detach()
    return {
        "loss": float(loss.detach()), "lr": lr, "grad_norm": float(norm), "tokens": tokens,
        "tokens_per_s": tokens / (time.perf_counter() - t0),
        "accuracy": float((chosen > rejected).float().mean()), "margin": float((chosen - rejected).mean()),
    }  # fmt: skip
