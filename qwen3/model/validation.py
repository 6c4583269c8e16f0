"""Validation of a ``Qwen3Config``: types, ranges and the contradictions transformers would not catch. Each
failure is a ``ConfigError`` naming the field (``Qwen3Config.from_json_file`` prefixes the file name).
"""

from __future__ import annotations

import math
from typing import Any

MODEL_TYPES = {"qwen3": "Qwen3ForCausalLM", "qwen3_moe": "Qwen3MoeForCausalLM"}
ROPE_TYPES = ("default", "yarn")
YARN_KEYS = {
    "rope_type",
    "factor",
    "original_max_position_embeddings",
    "attention_factor",
    "beta_fast",
    "beta_slow",
    "mscale",
    "mscale_all_dim",
    "truncate",
}
POSITIVE_INTS = (
    "vocab_size",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
    "max_position_embeddings",
    "decoder_sparse_step",
)
COUNTS = ("intermediate_size", "num_experts", "num_experts_per_tok", "moe_intermediate_size")
OPTIONAL_COUNTS = ("bos_token_id", "pad_token_id", "max_window_layers", "sliding_window")
POSITIVE_NUMBERS = ("rms_norm_eps", "rope_theta", "initializer_range")
NON_NEGATIVE_NUMBERS = ("attention_dropout", "router_aux_loss_coef")
BOOLS = (
    "tie_word_embeddings",
    "attention_bias",
    "use_sliding_window",
    "norm_topk_prob",
    "use_cache",
    "output_router_logits",
)

# Upper bounds far above every released model (Qwen3-235B-A22B: hidden 4096, 94 layers, 64 heads, 128 experts,
# vocabulary 151,936) that keep a damaged config.json from reaching torch: a size of 2**63 overflows the C long
# that torch reads, and 2**31 layers would take hours just to build on the meta device.
MAXIMA = {
    "vocab_size": 2**24,
    "hidden_size": 2**18,
    "intermediate_size": 2**20,
    "moe_intermediate_size": 2**20,
    "head_dim": 2**14,
    "num_hidden_layers": 2**12,
    "num_attention_heads": 2**12,
    "num_key_value_heads": 2**12,
    "num_experts": 2**14,
    "num_experts_per_tok": 2**14,
    "decoder_sparse_step": 2**12,
    "max_window_layers": 2**12,
    "max_position_embeddings": 2**26,
    "sliding_window": 2**26,
    "bos_token_id": 2**24,
    "pad_token_id": 2**24,
}
MAX_NUMBER = 2.0**63  # rope_theta and friends: torch converts them to a C double / long


class ConfigError(ValueError):
    """A config.json (or Qwen3Config argument) that is missing, malformed or contradictory."""


def _check_int(cfg: Any, name: str, minimum: int = 1, optional: bool = False) -> None:
    value = getattr(cfg, name)
    if value is None and optional:
        return
    maximum = MAXIMA.get(name, 2**31 - 1)
    if not isinstance(value, int) or isinstance(value, bool) or not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be an integer in [{minimum}, {maximum}], got {value!r}")


def _check_number(cfg: Any, name: str, positive: bool = True) -> None:
    value = getattr(cfg, name)
    if (
        not isinstance(value, (int, float))
        or isinstance(value, bool)
        or not math.isfinite(value)
        or abs(value) >= MAX_NUMBER
        or (positive and value <= 0)
        or value < 0
    ):
        raise ConfigError(
            f"{name} must be a finite {'positive' if positive else 'non-negative'} number below 2**63, "
            f"got {value!r}"
        )


def _check_bool(cfg: Any, name: str) -> None:
    if not isinstance(getattr(cfg, name), bool):
        raise ConfigError(f"{name} must be true or false, got {getattr(cfg, name)!r}")


def validate(cfg: Any) -> None:
    if not isinstance(cfg.model_type, str) or cfg.model_type not in MODEL_TYPES:
        raise ConfigError(
            f"model_type {cfg.model_type!r} is not supported (expected one of {sorted(MODEL_TYPES)})"
        )
    for name in POSITIVE_INTS:
        _check_int(cfg, name)
    for name in COUNTS:
        _check_int(cfg, name, minimum=0)
    for name in OPTIONAL_COUNTS:
        _check_int(cfg, name, minimum=0, optional=True)
    for name in POSITIVE_NUMBERS:
        _check_number(cfg, name)
    for name in NON_NEGATIVE_NUMBERS:
        _check_number(cfg, name, positive=False)
    for name in BOOLS:
        _check_bool(cfg, name)
    if cfg.num_attention_heads % cfg.num_key_value_heads:
        raise ConfigError(
            f"num_attention_heads ({cfg.num_attention_heads}) must be divisible by "
            f"num_key_value_heads ({cfg.num_key_value_heads})"
        )
    if cfg.head_dim % 2:
        raise ConfigError(f"head_dim ({cfg.head_dim}) must be even for rotate-half RoPE")
    if cfg.hidden_act != "silu":
        raise ConfigError(f"hidden_act {cfg.hidden_act!r} is not supported (Qwen3 uses 'silu')")
    if cfg.attention_bias:
        raise ConfigError("attention_bias true is not supported (Qwen3 has no QKV bias)")
    if cfg.use_sliding_window:
        raise ConfigError("use_sliding_window true is not supported (no Qwen3 model uses a sliding window)")
    _validate_token_ids(cfg)
    _validate_moe(cfg)
    _validate_rope_scaling(cfg.rope_scaling)
    if not isinstance(cfg.extra, dict):
        raise ConfigError(f"extra must be a dict, got {type(cfg.extra).__name__}")


def _validate_token_ids(cfg: Any) -> None:
    eos = cfg.eos_token_id
    ids = eos if isinstance(eos, list) else [] if eos is None else [eos]
    for token in ids:
        if not isinstance(token, int) or isinstance(token, bool) or not 0 <= token < cfg.vocab_size:
            raise ConfigError(f"eos_token_id {eos!r} must be token ids in [0, vocab_size={cfg.vocab_size})")
    for name in ("bos_token_id", "pad_token_id"):
        value = getattr(cfg, name)
        if value is not None and value >= cfg.vocab_size:
            raise ConfigError(f"{name} ({value}) must be < vocab_size ({cfg.vocab_size})")


def _validate_moe(cfg: Any) -> None:
    if not cfg.is_moe:
        if cfg.num_experts:
            raise ConfigError(f"num_experts ({cfg.num_experts}) > 0 contradicts model_type 'qwen3' (dense)")
        if cfg.intermediate_size < 1:
            raise ConfigError(f"intermediate_size must be an integer >= 1, got {cfg.intermediate_size!r}")
        return
    if cfg.num_experts < 1:
        raise ConfigError(f"num_experts must be >= 1 for model_type 'qwen3_moe', got {cfg.num_experts}")
    if not 1 <= cfg.num_experts_per_tok <= cfg.num_experts:
        raise ConfigError(
            f"num_experts_per_tok ({cfg.num_experts_per_tok}) must be between 1 and num_experts ({cfg.num_experts})"
        )
    if cfg.moe_intermediate_size < 1:
        raise ConfigError(f"moe_intermediate_size must be an integer >= 1, got {cfg.moe_intermediate_size!r}")
    bad = [i for i in cfg.mlp_only_layers if not isinstance(i, int) or not 0 <= i < cfg.num_hidden_layers]
    if bad:
        raise ConfigError(f"mlp_only_layers {bad} are not layer indices in [0, {cfg.num_hidden_layers})")
    dense = [i for i in range(cfg.num_hidden_layers) if not cfg.layer_is_sparse(i)]
    if dense and cfg.intermediate_size < 1:
        raise ConfigError(f"intermediate_size must be >= 1 because layers {dense} use the dense MLP")


def _validate_rope_scaling(scaling: Any) -> None:
    if scaling is None:
        return
    if not isinstance(scaling, dict):
        raise ConfigError(f"rope_scaling must be null or an object, got {scaling!r}")
    rope_type = scaling.get("rope_type")
    if rope_type not in ROPE_TYPES:
        raise ConfigError(
            f"rope_scaling.rope_type {rope_type!r} is not supported (expected one of {ROPE_TYPES})"
        )
    unknown = sorted(set(scaling) - (YARN_KEYS if rope_type == "yarn" else {"rope_type"}))
    if unknown:
        raise ConfigError(f"rope_scaling has unknown keys {unknown} for rope_type {rope_type!r}")
    for key in ("factor", "original_max_position_embeddings"):
        value = scaling.get(key)
        if (
            not isinstance(value, (int, float))
            or isinstance(value, bool)
            or not math.isfinite(value)
            or not 0 < value < MAX_NUMBER
        ):
            raise ConfigError(f"rope_scaling.{key} must be a finite positive number for YaRN, got {value!r}")
