"""Training configuration: one dataclass per component, each validated in ``__post_init__``.

``load_train_config(path, overrides)`` reads a TOML (or JSON) file whose tables are the components
(``[model]``, ``[data]``, ``[optim]``, ``[schedule]``, ``[checkpoint]``, ``[loss]`` with ``[loss.options]``) and applies dotted overrides such as
``optim.lr=3e-4 data.seq_len=512``. Where the Qwen3 report gives no value (learning rates, batch sizes, warmup,
schedules are not published, report §3.2) the defaults are common small-model choices, not Qwen3's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qwen3.train.settings import SettingsError, apply_overrides, from_table, read_table, to_table

PRECISIONS = ("fp32", "bf16")
NAN_POLICIES = ("stop", "skip")
STRATEGIES = ("ddp", "fsdp")
DATA_KINDS = ("pretrain", "sft")
SYNTHETIC = ("patterns", "text", "chat")
SCHEDULES = ("cosine", "wsd", "constant")
DECAY_SHAPES = ("cosine", "linear")
OPTIMIZER_IMPLS = ("auto", "fused", "foreach", "for")


def _one_of(name: str, value: Any, options: Sequence[Any]) -> None:
    if value not in options:
        raise SettingsError(f"{name}: must be one of {', '.join(map(str, options))}, got {value!r}")


def _positive(name: str, value: float, allow_zero: bool = False) -> None:
    if value < 0 or (value == 0 and not allow_zero):
        raise SettingsError(f"{name}: must be {'>= 0' if allow_zero else '> 0'}, got {value!r}")


@dataclass
class ModelConfig:
    """The model to train: a preset (random init from ``init_seed``) or a Hugging Face checkpoint directory.

    ``rope_theta`` overrides the RoPE base: adjusted base frequency (ABF, Xiong et al. 2023, arXiv 2309.16039) is
    how Qwen3's long-context stage S3 raises it from 10,000 to 1,000,000 (report section 3.2); the new value is
    written into the saved config.json. ``router_aux_loss_coef`` (None: the model config's) weights the
    global-batch load-balancing loss of MoE models (Qiu et al. 2025, arXiv 2501.11873; report section 2).
    """

    name: str = "qwen3-debug-tiny"
    init_seed: int = 0
    rope_theta: float | None = None
    max_position_embeddings: int | None = None
    gradient_checkpointing: bool = False
    moe_impl: str = "auto"
    router_aux_loss_coef: float | None = None

    def __post_init__(self) -> None:
        if self.rope_theta is not None:
            _positive("model.rope_theta", self.rope_theta)
        if self.router_aux_loss_coef is not None:
            _positive("model.router_aux_loss_coef", self.router_aux_loss_coef, allow_zero=True)
        _one_of("model.moe_impl", self.moe_impl, ("auto", "grouped_mm", "loop", "reference"))


@dataclass
class DataConfig:
    """Where the training sequences come from (qwen3.train.data, qwen3.train.sft_data).

    ``kind`` "pretrain": documents (``.txt``: one per line, or one per file with ``text_unit="file"``; ``.jsonl``:
    the ``text_field`` of each line, or pre-tokenised ``input_ids``) are tokenised, each followed by EOS, and cut
    into rows of ``seq_len``; with ``document_mask`` attention never crosses a document boundary (the packing of
    Qwen's own pre-training, report §3.2) and positions restart at each document. ``kind`` "sft": chat
    examples (``messages_field`` and optional ``tools_field`` per jsonl line) with an assistant-only loss, packed
    with ``pack``. ``synthetic`` replaces files with generated data ("patterns": token-id patterns needing no
    tokenizer; "text": the tokenizer's synthetic corpus; "chat": arithmetic conversations).
    """

    kind: str = "pretrain"
    paths: list[str] = field(default_factory=list)
    synthetic: str | None = None
    synthetic_documents: int = 4000
    tokenizer: str = "auto"
    text_field: str = "text"
    text_unit: str = "line"
    messages_field: str = "messages"
    tools_field: str = "tools"
    seq_len: int = 512
    document_mask: bool = True
    shuffle: bool = True
    seed: int = 0
    on_error: str = "raise"
    train_on: str = "final"
    pack: bool = True
    overlong: str = "truncate"

    def __post_init__(self) -> None:
        _one_of("data.kind", self.kind, DATA_KINDS)
        if self.synthetic is not None:
            _one_of("data.synthetic", self.synthetic, SYNTHETIC)
            if self.paths:
                raise SettingsError("data: give either paths or synthetic, not both")
        _one_of("data.text_unit", self.text_unit, ("line", "file"))
        _one_of("data.on_error", self.on_error, ("raise", "skip"))
        _one_of("data.train_on", self.train_on, ("final", "all"))
        _one_of("data.overlong", self.overlong, ("truncate", "skip"))
        _positive("data.seq_len", self.seq_len)
        _positive("data.synthetic_documents", self.synthetic_documents)


@dataclass
class OptimConfig:
    """AdamW with decoupled weight decay (Loshchilov & Hutter 2019, arXiv 1711.05101); ``implementation`` "auto"
    takes torch's fused kernel where the device supports it (CPU and CUDA in torch 2.13), else foreach.
    Weight decay skips 1-D parameters (norm weights). ``grad_clip`` bounds the global gradient L2 norm (0: off)."""

    lr: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-8
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    implementation: str = "auto"

    def __post_init__(self) -> None:
        _positive("optim.lr", self.lr)
        if len(self.betas) != 2 or not all(0 <= b < 1 for b in self.betas):
            raise SettingsError(f"optim.betas: two values in [0, 1), got {list(self.betas)}")
        _positive("optim.eps", self.eps)
        _positive("optim.weight_decay", self.weight_decay, allow_zero=True)
        _positive("optim.grad_clip", self.grad_clip, allow_zero=True)
        _one_of("optim.implementation", self.implementation, OPTIMIZER_IMPLS)


@dataclass
class ScheduleConfig:
    """Learning rate over the run: linear warmup for ``warmup_steps``, then

    - "cosine": cosine decay to ``min_lr_ratio`` x lr at the last step (SGDR, Loshchilov & Hutter 2017,
      arXiv 1608.03983, without restarts);
    - "wsd": warmup-stable-decay (Hu et al. 2024, MiniCPM, arXiv 2404.06395): constant lr, then the last
      ``decay_fraction`` of the steps decay (``decay_shape``) to ``min_lr_ratio`` x lr. ``decay_fraction`` 0 keeps
      the stable phase to the end (a later stage decays), 1 decays over the whole run (Qwen3 S2's "accelerated
      learning-rate decay", report section 3.2);
    - "constant".
    """

    kind: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.1
    decay_fraction: float = 0.1
    decay_shape: str = "cosine"

    def __post_init__(self) -> None:
        _one_of("schedule.kind", self.kind, SCHEDULES)
        _one_of("schedule.decay_shape", self.decay_shape, DECAY_SHAPES)
        _positive("schedule.warmup_steps", self.warmup_steps, allow_zero=True)
        if not 0 <= self.min_lr_ratio <= 1:
            raise SettingsError(f"schedule.min_lr_ratio: must be in [0, 1], got {self.min_lr_ratio}")
        if not 0 <= self.decay_fraction <= 1:
            raise SettingsError(f"schedule.decay_fraction: must be in [0, 1], got {self.decay_fraction}")


@dataclass
class CheckpointConfig:
    """``every`` steps (0: only the final one) a ``step-XXXXXXXX`` directory is written atomically under
    ``RUN_DIR/checkpoints``; the newest ``keep_last`` are kept."""

    every: int = 100
    keep_last: int = 3
    save_final: bool = True

    def __post_init__(self) -> None:
        _positive("checkpoint.every", self.every, allow_zero=True)
        _positive("checkpoint.keep_last", self.keep_last)


@dataclass
class LossConfig:
    """The ``[loss]`` table: ``type`` names a registered loss factory (qwen3.train.loss ``LOSSES``: "causal_lm",
    and those stages register, e.g. "grpo") and ``[loss.options]`` holds its keyword arguments, checked against
    the factory's signature when the config is built. "causal_lm" takes ``chunk_size`` (rows per chunk of the
    fused LM head + cross-entropy; 0 = plain torch), ``normalization`` ("tokens", "sequences", "constant") and
    ``length`` (the constant's per-sequence length; Dr. GRPO, Liu et al. 2025, arXiv 2503.20783)."""

    type: str = "causal_lm"
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from qwen3.train.loss import check_loss_options

        self.options = check_loss_options(self.type, self.options)


@dataclass
class TrainConfig:
    """One training run (one stage). The global batch of an optimizer step is ``global_batch_size`` rows of
    ``data.seq_len`` tokens (None: ``micro_batch_size`` x world size); each rank runs
    global / (micro x world) micro-batches with gradient accumulation. The loss (``[loss]``, ``LossConfig``) is
    summed over the whole global batch and divided by a count of it that the loss chooses (qwen3.train.loss
    ``Normalization``: target tokens, sequences, or a constant), so accumulation and world size do not change it.

    ``init_from``: a checkpoint (``step-*`` directory, a run directory: its newest checkpoint, or a Hugging Face
    model directory) whose weights start the run, and with ``init_optimizer`` its AdamW moments (stages chained
    as one continued run). ``precision`` "bf16" runs matmuls under bf16 autocast with fp32 weights and optimizer.
    """

    run_dir: str = "runs/train"
    stage: str = "train"
    steps: int = 100
    micro_batch_size: int = 8
    global_batch_size: int | None = None
    precision: str = "fp32"
    device: str = "auto"
    seed: int = 0
    on_nan: str = "stop"
    distributed: str = "ddp"
    init_from: str | None = None
    init_optimizer: bool = False
    log_every: int = 10
    tensorboard: bool = False
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    def __post_init__(self) -> None:
        _positive("steps", self.steps)
        _positive("micro_batch_size", self.micro_batch_size)
        if self.global_batch_size is not None:
            _positive("global_batch_size", self.global_batch_size)
        _one_of("precision", self.precision, PRECISIONS)
        _one_of("device", self.device, ("auto", "cpu", "cuda"))
        _one_of("on_nan", self.on_nan, NAN_POLICIES)
        _one_of("distributed", self.distributed, STRATEGIES)
        _positive("log_every", self.log_every)

    def grad_accum_steps(self, world_size: int) -> int:
        """Micro-batches per rank per optimizer step."""
        per_pass = self.micro_batch_size * world_size
        total = self.global_batch_size or per_pass
        if total % per_pass:
            raise SettingsError(
                f"global_batch_size {total} is not a multiple of micro_batch_size {self.micro_batch_size} x "
                f"world size {world_size}"
            )
        return total // per_pass

    def rows_per_step(self, world_size: int) -> int:
        return self.global_batch_size or self.micro_batch_size * world_size

    def to_dict(self) -> dict[str, Any]:
        return to_table(self)

    @classmethod
    def from_dict(cls, table: dict[str, Any], overrides: Sequence[str] = ()) -> TrainConfig:
        return from_table(cls, apply_overrides(table, overrides))


def load_train_config(path: str | Path, overrides: Sequence[str] = ()) -> TrainConfig:
    """A TOML/JSON config file plus ``a.b=value`` overrides -> ``TrainConfig`` (errors name file and key)."""
    try:
        return TrainConfig.from_dict(read_table(path), overrides)
    except SettingsError as err:
        message = str(err)
        raise SettingsError(message if message.startswith(str(path)) else f"{path}: {message}") from None
