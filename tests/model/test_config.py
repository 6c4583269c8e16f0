import json

import pytest
import torch

from qwen3.model.config import ConfigError, Qwen3Config
from qwen3.model.model import Qwen3ForCausalLM
from qwen3.model.presets import PRESETS, RELEASED, get_preset

# The model cards' figures: (non-embedding, total, activated) parameters in billions, 3 decimals; KV bytes/token (bf16).
PARAMETER_TABLE = {
    "qwen3-0.6b": (0.440, 0.596, None, 114688),
    "qwen3-1.7b": (1.409, 1.721, None, 114688),
    "qwen3-4b": (3.634, 4.022, None, 147456),
    "qwen3-8b": (6.946, 8.191, None, 147456),
    "qwen3-14b": (13.212, 14.768, None, 163840),
    "qwen3-32b": (31.206, 32.762, None, 262144),
    "qwen3-30b-a3b": (29.910, 30.532, 3.353, 98304),
    "qwen3-235b-a22b": (233.849, 235.094, 22.191, 192512),
}


@pytest.mark.parametrize("name", RELEASED)
def test_released_preset_parameter_counts_match_the_model_cards(name):
    config = get_preset(name)
    with torch.device("meta"):
        model = Qwen3ForCausalLM(config)
    total = sum(p.numel() for p in model.parameters())  # tied weights counted once
    embedding = sum(
        p.numel() for n, p in model.named_parameters() if n in ("model.embed_tokens.weight", "lm_head.weight")
    )
    experts = sum(p.numel() for n, p in model.named_parameters() if ".experts." in n)
    non_embedding, expected_total, activated, kv_bytes = PARAMETER_TABLE[name]
    assert round((total - embedding) / 1e9, 3) == non_embedding
    assert round(total / 1e9, 3) == expected_total
    if activated is not None:
        active = total - experts + experts * config.num_experts_per_tok // config.num_experts
        assert round(active / 1e9, 3) == activated
    assert config.kv_cache_bytes_per_token(2) == kv_bytes


def test_debug_presets_have_the_documented_sizes():
    def count(name):
        with torch.device("meta"):
            return sum(p.numel() for p in Qwen3ForCausalLM(get_preset(name)).parameters())

    assert 4.5e6 < count("qwen3-debug-5m") < 5.5e6
    assert 60e6 < count("qwen3-debug-moe") < 64e6
    assert (
        get_preset("qwen3-debug-moe").num_experts == 32
        and get_preset("qwen3-debug-moe").num_experts_per_tok == 4
    )


def test_get_preset_returns_an_independent_copy():
    config = get_preset("qwen3-0.6b")
    config.mlp_only_layers.append(1)
    assert PRESETS["qwen3-0.6b"].mlp_only_layers == []


@pytest.mark.parametrize("name", list(PRESETS))
def test_to_dict_from_dict_round_trip(name):
    config = get_preset(name)
    assert Qwen3Config.from_dict(json.loads(config.to_json_string())) == config


def test_released_dense_config_json_reads_and_writes_back_unchanged():
    raw = {  # Qwen3-8B config.json (as published on Hugging Face, Qwen/Qwen3-8B)
        "architectures": ["Qwen3ForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": 151643,
        "eos_token_id": 151645,
        "head_dim": 128,
        "hidden_act": "silu",
        "hidden_size": 4096,
        "initializer_range": 0.02,
        "intermediate_size": 12288,
        "max_position_embeddings": 40960,
        "max_window_layers": 36,
        "model_type": "qwen3",
        "num_attention_heads": 32,
        "num_hidden_layers": 36,
        "num_key_value_heads": 8,
        "rms_norm_eps": 1e-06,
        "rope_scaling": None,
        "rope_theta": 1000000,
        "sliding_window": None,
        "tie_word_embeddings": False,
        "torch_dtype": "bfloat16",
        "transformers_version": "4.51.0",
        "use_cache": True,
        "use_sliding_window": False,
        "vocab_size": 151936,
    }
    config = Qwen3Config.from_dict(raw)
    assert config == get_preset("qwen3-8b").replace(extra={"transformers_version": "4.51.0"})
    assert config.to_dict() == raw


def test_v5_rope_parameters_and_num_local_experts():
    d = get_preset("qwen3-debug-moe-tiny").to_dict()
    del d["num_experts"], d["rope_theta"], d["rope_scaling"], d["torch_dtype"]
    d.update(
        num_local_experts=8,
        dtype="bfloat16",
        rope_parameters={
            "rope_type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 1024,
            "rope_theta": 5e5,
        },
    )
    config = Qwen3Config.from_dict(d)
    assert config.num_experts == 8 and config.torch_dtype == "bfloat16" and config.rope_theta == 5e5
    assert config.rope_scaling == {
        "rope_type": "yarn",
        "factor": 4.0,
        "original_max_position_embeddings": 1024,
    }
    written = config.to_dict()
    assert (
        "rope_parameters" not in written
        and "num_local_experts" not in written
        and written["num_experts"] == 8
    )
    plain = Qwen3Config.from_dict(
        {
            **get_preset("qwen3-debug-tiny").to_dict(),
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
        }
    )
    assert plain.rope_scaling is None and plain.rope_theta == 1e6


def test_v5_layer_types_are_checked_and_not_kept():
    d = {**get_preset("qwen3-debug-tiny").to_dict(), "layer_types": ["full_attention"] * 2}
    assert "layer_types" not in Qwen3Config.from_dict(d).to_dict()
    with pytest.raises(
        ConfigError, match="layer_types \\['full_attention', 'sliding_attention'\\] is not supported"
    ):
        Qwen3Config.from_dict({**d, "layer_types": ["full_attention", "sliding_attention"]})


def test_unknown_keys_are_kept():
    d = {**get_preset("qwen3-debug-tiny").to_dict(), "quantization_note": {"a": 1}}
    assert Qwen3Config.from_dict(d).to_dict()["quantization_note"] == {"a": 1}


def test_layer_is_sparse_follows_transformers_rule():
    config = get_preset("qwen3-debug-moe-tiny").replace(
        num_hidden_layers=6, decoder_sparse_step=2, mlp_only_layers=[3]
    )
    assert config.sparse_layers == [1, 5]
    assert not get_preset("qwen3-debug-tiny").layer_is_sparse(0)


def test_head_dim_default_follows_transformers():
    dense = Qwen3Config(
        vocab_size=10, hidden_size=64, num_hidden_layers=1, num_attention_heads=4, intermediate_size=8
    )
    moe = Qwen3Config(
        vocab_size=10,
        hidden_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        num_experts=4,
        num_experts_per_tok=2,
        moe_intermediate_size=8,
    )
    assert dense.head_dim == 128 and moe.head_dim == 16 and moe.model_type == "qwen3_moe"


def test_save_pretrained_writes_config_json(tmp_path):
    config = get_preset("qwen3-debug-moe-tiny")
    config.save_pretrained(tmp_path)
    assert Qwen3Config.from_pretrained(tmp_path) == config
    assert json.loads((tmp_path / "config.json").read_text())["architectures"] == ["Qwen3MoeForCausalLM"]


# ----- bad input: each error names the file and the field -----
def _write(tmp_path, **changes):
    d = get_preset("qwen3-debug-moe-tiny").to_dict()
    for key, value in changes.items():
        if value is _DELETE:
            del d[key]
        else:
            d[key] = value
    (tmp_path / "config.json").write_text(json.dumps(d))
    return tmp_path / "config.json"


_DELETE = object()


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"model_type": "llama"}, "model_type 'llama' is not supported"),
        ({"model_type": _DELETE}, "missing required field 'model_type'"),
        ({"hidden_size": _DELETE}, "missing required field 'hidden_size'"),
        ({"num_experts": _DELETE}, "missing required field 'num_experts'"),
        (
            {"num_attention_heads": 4, "num_key_value_heads": 3},
            "num_attention_heads (4) must be divisible by num_key_value_heads (3)",
        ),
        ({"num_experts_per_tok": 9}, "num_experts_per_tok (9) must be between 1 and num_experts (8)"),
        ({"hidden_size": "64"}, "hidden_size must be an integer in [1, 262144], got '64'"),
        ({"hidden_size": 2**63}, "hidden_size must be an integer in [1, 262144], got 9223372036854775808"),
        ({"num_hidden_layers": 2**31}, "num_hidden_layers must be an integer in [1, 4096]"),
        ({"model_type": []}, "model_type [] is not supported"),
        ({"rope_theta": 2**65}, "rope_theta must be a finite positive number below 2**63"),
        ({"rms_norm_eps": float("nan")}, "rms_norm_eps must be a finite positive number"),
        ({"mlp_only_layers": [5]}, "mlp_only_layers [5] are not layer indices"),
        (
            {"mlp_only_layers": [0], "intermediate_size": 0},
            "intermediate_size must be >= 1 because layers [0]",
        ),
        ({"num_local_experts": 4}, "num_local_experts (4) contradicts num_experts (8)"),
        (
            {"rope_scaling": {"rope_type": "dynamic", "factor": 2.0}},
            "rope_scaling.rope_type 'dynamic' is not supported",
        ),
        (
            {"rope_scaling": {"rope_type": "yarn", "factor": 4.0}},
            "rope_scaling.original_max_position_embeddings",
        ),
        ({"rope_parameters": {"rope_type": "default", "rope_theta": 5.0}}, "contradicts rope_theta"),
        ({"attention_bias": True}, "attention_bias true is not supported"),
        ({"use_sliding_window": True}, "use_sliding_window true is not supported"),
        ({"hidden_act": "gelu"}, "hidden_act 'gelu' is not supported"),
        ({"eos_token_id": 600}, "eos_token_id 600 must be token ids in [0, vocab_size=512)"),
        ({"head_dim": 15}, "head_dim (15) must be even"),
        ({"tie_word_embeddings": "yes"}, "tie_word_embeddings must be true or false"),
    ],
)
def test_bad_config_errors_name_file_and_field(tmp_path, changes, expected):
    path = _write(tmp_path, **changes)
    with pytest.raises(ConfigError) as info:
        Qwen3Config.from_json_file(path)
    assert expected in str(info.value)
    assert str(path) in str(info.value)


def test_dense_model_type_with_experts_is_contradictory(tmp_path):
    d = {**get_preset("qwen3-debug-tiny").to_dict(), "num_experts": 4}
    with pytest.raises(ConfigError, match="num_experts \\(4\\) > 0 contradicts model_type 'qwen3'"):
        Qwen3Config.from_dict(d, source="config.json")


def test_invalid_json_names_line(tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "qwen3",\n oops}')
    with pytest.raises(ConfigError, match="config.json: invalid JSON at line 2"):
        Qwen3Config.from_pretrained(tmp_path)
