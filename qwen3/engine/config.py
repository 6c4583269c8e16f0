"""``EngineConfig``: the engine's knobs, validated in ``__post_init__``; ``resolve`` fixes the ones that depend on the
model (context length, cache size) and says clearly when the memory budget cannot hold one sequence."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from typing import Any

import torch

from qwen3.model.config import Qwen3Config

WEIGHT_FORMATS = ("auto", "reference", "fused", "packed", "int8")
GiB = 1024**3


@dataclass
class EngineConfig:
    """
    - ``max_model_len``: tokens per sequence (prompt + output). None: ``max_position_embeddings``, or
      ``original_max_position_embeddings * factor`` when the config has YaRN ``rope_scaling`` (Qwen3's 4x extension,
      report §3.2), times ``dca_extension`` with Dual Chunk Attention.
    - ``max_num_seqs``: sequences decoded together (cache slots), further bounded by ``kv_cache_memory_gb``.
    - ``max_num_batched_tokens``: tokens one prefill step processes; longer prompts are prefilled in chunks.
    - ``kv_cache_memory_gb``: memory for the KV cache. None: enough for ``max_num_seqs`` full-length sequences, but
      at most a quarter of the machine's RAM (CPU) or 90% of the free device memory (CUDA). Each slot holds
      ``max_model_len`` tokens.
    - ``weights``: "reference" runs the model module itself (the path tests compare against); "fused" a view with
      q/k/v and gate/up fused; "packed" the fused view with oneDNN-prepacked bf16/fp32 weights (CPU);
      "int8" per-channel weight-only int8 (`_weight_int8pack_mm`). "auto": packed on CPU when oneDNN supports the
      dtype, else fused.
    - ``dual_chunk_attention``: Dual Chunk Attention (An et al. 2024, arXiv 2402.17463) for inputs longer than
      the trained length; ``dca_chunk_size`` tokens per chunk (default 3/4 of the trained length, ChunkLlama's
      choice); ``dca_extension`` how many times the trained length ``max_model_len`` defaults to.
    - ``rope_scaling``: replaces the checkpoint's (e.g. YaRN ``{"rope_type": "yarn", "factor": 4.0,
      "original_max_position_embeddings": 32768}``), like vLLM's ``--rope-scaling``.
    - ``seed``: seeds the generators of requests that have no seed of their own.
    - ``adapt_threads``: on the CPU, decode with the thread count that is fastest right now, measured every few
      hundred steps (``qwen3.engine.threads``): when other work takes cores, fewer threads stop waiting at
      barriers for a descheduled peer. False: always ``torch.get_num_threads()``.
    """

    max_model_len: int | None = None
    max_num_seqs: int = 64
    max_num_batched_tokens: int = 2048
    kv_cache_memory_gb: float | None = None
    weights: str = "auto"
    dual_chunk_attention: bool = False
    dca_chunk_size: int | None = None
    dca_extension: int = 4
    rope_scaling: dict[str, Any] | None = None
    seed: int = 0
    adapt_threads: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.adapt_threads, bool):
            raise ValueError(f"EngineConfig.adapt_threads must be True or False, got {self.adapt_threads!r}")
        for name in ("max_num_seqs", "max_num_batched_tokens", "dca_extension"):
            _positive_int(name, getattr(self, name))
        for name in ("max_model_len", "dca_chunk_size"):
            if getattr(self, name) is not None:
                _positive_int(name, getattr(self, name))
        if self.max_model_len is not None and self.max_model_len < 2:
            raise ValueError(f"EngineConfig.max_model_len must be >= 2, got {self.max_model_len}")
        if self.kv_cache_memory_gb is not None and not (
            isinstance(self.kv_cache_memory_gb, (int, float)) and self.kv_cache_memory_gb > 0
        ):
            raise ValueError(f"EngineConfig.kv_cache_memory_gb must be > 0, got {self.kv_cache_memory_gb!r}")
        if self.weights not in WEIGHT_FORMATS:
            raise ValueError(f"EngineConfig.weights must be one of {WEIGHT_FORMATS}, got {self.weights!r}")
        if self.rope_scaling is not None and not isinstance(self.rope_scaling, dict):
            raise ValueError(
                f"EngineConfig.rope_scaling must be a dict, got {type(self.rope_scaling).__name__}"
            )

    def resolve(self, model_config: Qwen3Config, dtype: torch.dtype, device: torch.device) -> ResolvedConfig:
        trained = trained_length(model_config)
        default_len = (
            trained * self.dca_extension if self.dual_chunk_attention else context_length(model_config)
        )
        max_model_len = self.max_model_len or default_len
        chunk = self.dca_chunk_size or trained * 3 // 4
        if self.dual_chunk_attention and not 0 < chunk <= trained:
            raise ValueError(
                f"EngineConfig.dca_chunk_size {chunk} must be in [1, {trained}] (the trained length)"
            )
        per_token = model_config.kv_cache_bytes_per_token(dtype.itemsize)
        budget = self.kv_cache_memory_gb * GiB if self.kv_cache_memory_gb else None
        wanted = self.max_num_seqs * max_model_len * per_token
        budget = budget or min(wanted, default_cache_budget(device))
        slots = min(self.max_num_seqs, int(budget // (max_model_len * per_token)))
        if slots < 1:
            raise ValueError(
                f"the KV cache budget of {budget / GiB:.2f} GiB holds {int(budget // per_token)} tokens "
                f"({per_token} bytes each), less than one sequence of max_model_len={max_model_len}: lower "
                "max_model_len or raise kv_cache_memory_gb"
            )
        return ResolvedConfig(
            engine=replace(self, max_model_len=max_model_len, dca_chunk_size=chunk),
            num_slots=slots,
            trained_length=trained,
            kv_bytes_per_token=per_token,
        )


@dataclass(frozen=True)
class ResolvedConfig:
    engine: EngineConfig  # max_model_len and dca_chunk_size filled in
    num_slots: int
    trained_length: int
    kv_bytes_per_token: int

    @property
    def max_model_len(self) -> int:
        assert self.engine.max_model_len is not None
        return self.engine.max_model_len


def trained_length(config: Qwen3Config) -> int:
    """The context the model was trained on: YaRN's original length when YaRN is on, else max_position_embeddings."""
    scaling = config.rope_scaling or {}
    if scaling.get("original_max_position_embeddings"):
        return int(scaling["original_max_position_embeddings"])
    return config.max_position_embeddings


def context_length(config: Qwen3Config) -> int:
    """Usable positions: original length x YaRN factor when YaRN is on, else max_position_embeddings."""
    scaling = config.rope_scaling or {}
    if scaling.get("rope_type", scaling.get("type")) == "yarn" and scaling.get(
        "original_max_position_embeddings"
    ):
        return int(scaling["original_max_position_embeddings"] * float(scaling.get("factor", 1.0)))
    return config.max_position_embeddings


def default_cache_budget(device: torch.device) -> float:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return 0.9 * free
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 4
    except (ValueError, OSError):  # pragma: no cover - platforms without sysconf
        return 4 * GiB


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"EngineConfig.{name} must be a positive integer, got {value!r}")
