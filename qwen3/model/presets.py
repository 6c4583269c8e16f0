"""Configs of the eight released Qwen3 models (their config.json files on Hugging Face, verified against the model
cards' parameter counts) and small debug models for tests and benchmarks (a 5M dense and a 62M MoE shape).

``get_preset(name)`` returns a fresh copy, so callers may change it freely.
"""

from __future__ import annotations

from typing import Any

from qwen3.model.config import Qwen3Config

QWEN_BOS, QWEN_EOS = 151643, 151645  # <|endoftext|>, <|im_end|>


def _released(**fields: Any) -> Qwen3Config:
    common = dict(
        vocab_size=151936,
        head_dim=128,
        hidden_act="silu",
        max_position_embeddings=40960,
        initializer_range=0.02,
        rms_norm_eps=1e-6,
        rope_theta=1000000.0,
        rope_scaling=None,
        attention_bias=False,
        attention_dropout=0.0,
        use_sliding_window=False,
        sliding_window=None,
        max_window_layers=fields["num_hidden_layers"],
        bos_token_id=QWEN_BOS,
        eos_token_id=QWEN_EOS,
        torch_dtype="bfloat16",
        use_cache=True,
    )
    if fields.get("num_experts"):
        common.update(
            model_type="qwen3_moe",
            num_experts_per_tok=8,
            norm_topk_prob=True,
            decoder_sparse_step=1,
            mlp_only_layers=[],
            router_aux_loss_coef=0.001,
            output_router_logits=False,
            tie_word_embeddings=False,
        )
    return Qwen3Config(**{**common, **fields})


def _debug(**fields: Any) -> Qwen3Config:
    common = dict(
        max_position_embeddings=4096,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        torch_dtype="float32",
        tie_word_embeddings=True,
    )
    return Qwen3Config(**{**common, **fields})


PRESETS: dict[str, Qwen3Config] = {
    "qwen3-0.6b": _released(hidden_size=1024, intermediate_size=3072, num_hidden_layers=28, num_attention_heads=16,
                            num_key_value_heads=8, tie_word_embeddings=True),
    "qwen3-1.7b": _released(hidden_size=2048, intermediate_size=6144, num_hidden_layers=28, num_attention_heads=16,
                            num_key_value_heads=8, tie_word_embeddings=True),
    "qwen3-4b": _released(hidden_size=2560, intermediate_size=9728, num_hidden_layers=36, num_attention_heads=32,
                          num_key_value_heads=8, tie_word_embeddings=True),
    "qwen3-8b": _released(hidden_size=4096, intermediate_size=12288, num_hidden_layers=36, num_attention_heads=32,
                          num_key_value_heads=8, tie_word_embeddings=False),
    "qwen3-14b": _released(hidden_size=5120, intermediate_size=17408, num_hidden_layers=40, num_attention_heads=40,
                           num_key_value_heads=8, tie_word_embeddings=False),
    "qwen3-32b": _released(hidden_size=5120, intermediate_size=25600, num_hidden_layers=64, num_attention_heads=64,
                           num_key_value_heads=8, tie_word_embeddings=False),
    "qwen3-30b-a3b": _released(hidden_size=2048, intermediate_size=6144, num_hidden_layers=48, num_attention_heads=32,
                               num_key_value_heads=4, num_experts=128, moe_intermediate_size=768),
    "qwen3-235b-a22b": _released(hidden_size=4096, intermediate_size=12288, num_hidden_layers=94,
                                 num_attention_heads=64, num_key_value_heads=4, num_experts=128,
                                 moe_intermediate_size=1536),
    # Unit tests: a few layers, runs in milliseconds.
    "qwen3-debug-tiny": _debug(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, head_dim=16),
    # Engine/training benchmark model ("5M dense"): 5.25M parameters.
    "qwen3-debug-5m": _debug(vocab_size=8192, hidden_size=256, intermediate_size=768, num_hidden_layers=4,
                             num_attention_heads=4, num_key_value_heads=2, head_dim=64),
    # Benchmark MoE ("62M MoE": 32 experts, top-4, 4 layers): 61.9M parameters, untied like the released MoEs.
    "qwen3-debug-moe": _debug(vocab_size=8192, hidden_size=512, num_hidden_layers=4, num_attention_heads=8,
                              num_key_value_heads=4, head_dim=64, num_experts=32, num_experts_per_tok=4,
                              moe_intermediate_size=256, norm_topk_prob=True, tie_word_embeddings=False),
    # Unit tests of the MoE path.
    "qwen3-debug-moe-tiny": _debug(vocab_size=512, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                                   num_attention_heads=4, num_key_value_heads=2, head_dim=16, num_experts=8,
                                   num_experts_per_tok=2, moe_intermediate_size=32, norm_topk_prob=True,
                                   tie_word_embeddings=False),
}  # fmt: skip

RELEASED = [name for name in PRESETS if "debug" not in name]


def get_preset(name: str) -> Qwen3Config:
    if name not in PRESETS:
        from qwen3.utils.suggest import unknown_name

        raise KeyError(unknown_name("preset", name, PRESETS))
    return PRESETS[name].replace()
