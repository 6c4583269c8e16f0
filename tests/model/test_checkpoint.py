"""Hugging Face directories: round trips with transformers, sharding, both expert layouts, bad input."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import qwen3
from qwen3.model.checkpoint import CheckpointError, load_model, parse_size, save_model

from .conftest import max_diff, tiny, tiny_model

REPO = Path(__file__).resolve().parents[2]


def _same_weights(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


def _hf_load(path):
    import transformers

    return transformers.AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.float32, attn_implementation="eager"
    )


@pytest.mark.parametrize(
    ("preset", "changes", "layout", "shard"),
    [
        ("qwen3-debug-tiny", {}, "per_expert", "5GB"),
        ("qwen3-debug-tiny", {"tie_word_embeddings": False}, "per_expert", "40KB"),
        ("qwen3-debug-moe-tiny", {}, "per_expert", "5GB"),
        ("qwen3-debug-moe-tiny", {}, "per_expert", "30KB"),
        ("qwen3-debug-moe-tiny", {"mlp_only_layers": [1]}, "stacked", "5GB"),
        ("qwen3-debug-moe-tiny", {}, "stacked", "30KB"),
    ],
)
def test_round_trip_through_transformers(tmp_path, preset, changes, layout, shard):
    model = tiny_model(tiny(preset, **changes))
    save_model(model, tmp_path / "ours", max_shard_size=shard, expert_layout=layout)
    sharded = (tmp_path / "ours" / "model.safetensors.index.json").exists()
    assert sharded == (shard != "5GB")
    hf = _hf_load(tmp_path / "ours")
    tokens = torch.randint(0, 512, (2, 9))
    with torch.no_grad():
        assert max_diff(hf(tokens).logits, model(tokens)) <= 1e-4
    hf.save_pretrained(tmp_path / "theirs", max_shard_size=shard)
    back = load_model(tmp_path / "theirs")
    _same_weights(back, model)
    # transformers adds its defaults for keys we omit (max_window_layers) and its version.
    assert back.config.replace(extra={}, max_window_layers=None) == model.config.replace(
        max_window_layers=None
    )


def test_what_transformers_save_pretrained_writes_for_moe(tmp_path):
    """transformers 5.24 writes the released per-expert names for a model it built itself, and keeps the stacked
    names for a model it loaded from stacked files; we load both."""
    from .conftest import to_transformers

    model = tiny_model(tiny("qwen3-debug-moe-tiny"))
    to_transformers(model).save_pretrained(tmp_path / "fresh")
    names = set(load_file(tmp_path / "fresh" / "model.safetensors"))
    assert (
        "model.layers.0.mlp.experts.7.gate_proj.weight" in names and "model.layers.0.mlp.gate.weight" in names
    )
    assert not any("gate_up_proj" in n for n in names)
    _same_weights(load_model(tmp_path / "fresh"), model)

    save_model(model, tmp_path / "stacked", expert_layout="stacked")
    _hf_load(tmp_path / "stacked").save_pretrained(tmp_path / "resaved")
    assert "model.layers.1.mlp.experts.gate_up_proj" in load_file(tmp_path / "resaved" / "model.safetensors")
    _same_weights(load_model(tmp_path / "resaved"), model)


def test_written_files_and_generation_config(tmp_path):
    save_model(tiny_model(tiny("qwen3-debug-moe-tiny")), tmp_path, expert_layout="per_expert")
    assert sorted(os.listdir(tmp_path)) == ["config.json", "generation_config.json", "model.safetensors"]
    tensors = load_file(tmp_path / "model.safetensors")
    assert tensors["model.layers.1.mlp.experts.3.down_proj.weight"].shape == (64, 32)
    assert "lm_head.weight" in tensors
    gen = json.loads((tmp_path / "generation_config.json").read_text())
    assert gen == {"do_sample": True, "temperature": 0.6, "top_k": 20, "top_p": 0.95}  # no ids in a 512 vocab
    qwen_vocab = tiny(vocab_size=151936, eos_token_id=151645, bos_token_id=151643)
    from qwen3.model.checkpoint import default_generation_config

    assert default_generation_config(qwen_vocab) == {
        "bos_token_id": 151643,
        "do_sample": True,
        "eos_token_id": [151645, 151643],
        "pad_token_id": 151643,
        "temperature": 0.6,
        "top_k": 20,
        "top_p": 0.95,
    }


def test_tied_checkpoint_has_no_lm_head_and_tie_survives_loading(tmp_path):
    save_model(tiny_model(tiny()), tmp_path)
    assert "lm_head.weight" not in load_file(tmp_path / "model.safetensors")
    model = load_model(tmp_path)
    assert model.lm_head.weight is model.model.embed_tokens.weight


def test_dtype_conversion_on_load(tmp_path):
    model = tiny_model(tiny("qwen3-debug-moe-tiny"))
    save_model(model, tmp_path)
    loaded = load_model(tmp_path, dtype="bfloat16")
    assert all(p.dtype == torch.bfloat16 for p in loaded.parameters())
    assert loaded.config.torch_dtype == "bfloat16"
    for name, param in model.named_parameters():
        assert torch.equal(dict(loaded.named_parameters())[name], param.to(torch.bfloat16)), name


def test_resave_keeps_other_files_and_replaces_weights(tmp_path):
    save_model(tiny_model(tiny("qwen3-debug-moe-tiny")), tmp_path, max_shard_size="30KB")
    (tmp_path / "tokenizer.json").write_text("{}")
    model = load_model(tmp_path)
    save_model(model, tmp_path)  # into its own directory, unsharded this time
    assert sorted(os.listdir(tmp_path)) == [
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
    ]
    _same_weights(load_model(tmp_path), model)


def test_preset_init_is_deterministic_and_cli_writes_the_same_model(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    cmd = [
        sys.executable,
        "-m",
        "qwen3",
        "init",
        "qwen3-debug-moe-tiny",
        str(tmp_path / "ckpt"),
        "--seed",
        "3",
    ]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    _same_weights(load_model(tmp_path / "ckpt"), qwen3.load_model("qwen3-debug-moe-tiny", seed=3))
    a, b = load_model("qwen3-debug-tiny", seed=1), load_model("qwen3-debug-tiny", seed=2)
    assert not torch.equal(a.model.embed_tokens.weight, b.model.embed_tokens.weight)
    bad = subprocess.run([*cmd[:4], "qwen3-7b", str(tmp_path / "x")], env=env, capture_output=True, text=True)
    assert bad.returncode == 1 and "unknown preset 'qwen3-7b' (did you mean 'qwen3-1.7b'?); presets: qwen3-0.6b" in bad.stderr


def test_init_writes_a_runnable_directory_with_tokenizer_and_template(tmp_path):
    from qwen3.chat import render
    from qwen3.model.checkpoint import init_checkpoint
    from qwen3.tokenizer import load_tokenizer

    out = init_checkpoint("qwen3-debug-tiny", tmp_path / "ckpt", seed=0)
    tokenizer = load_tokenizer(out)
    config = qwen3.load_config(out)
    assert len(tokenizer) == config.vocab_size == 512
    assert (config.bos_token_id, config.eos_token_id) == (tokenizer.endoftext_id, tokenizer.im_end_id)
    generation = json.loads((out / "generation_config.json").read_text())
    assert generation["eos_token_id"] == [tokenizer.im_end_id, tokenizer.endoftext_id]
    messages = [{"role": "user", "content": "hi /no_think"}]
    from qwen3.chat import render_jinja

    assert render_jinja(tokenizer.chat_template, messages, add_generation_prompt=True) == render(
        messages, add_generation_prompt=True
    )
    bare = init_checkpoint("qwen3-debug-tiny", tmp_path / "bare", with_tokenizer=False)
    assert not (bare / "tokenizer.json").exists()


def test_load_config_and_unknown_name():
    assert qwen3.load_config("qwen3-30b-a3b").num_experts == 128
    with pytest.raises(ValueError, match="neither a checkpoint directory nor a preset; presets: qwen3-0.6b"):
        load_model("no-such-model")


def test_parse_size():
    assert parse_size("5GB") == 5 * 10**9 and parse_size("2GiB") == 2 * 2**30 and parse_size(123) == 123
    assert parse_size("10KB") == 10000
    with pytest.raises(ValueError, match="max_shard_size 'big'"):
        parse_size("big")


# ----- bad input: one error naming the tensor / file / shapes, and no model -----
@pytest.fixture
def saved(tmp_path):
    save_model(tiny_model(tiny("qwen3-debug-moe-tiny")), tmp_path)
    return tmp_path


def _edit(path, edit):
    file = path / "model.safetensors"
    tensors = load_file(file)
    edit(tensors)
    save_file(tensors, file, metadata={"format": "pt"})


def _load_error(path):
    with pytest.raises(CheckpointError) as info:
        load_model(path)
    return str(info.value)


def test_missing_tensor(saved):
    _edit(saved, lambda t: t.pop("model.layers.1.mlp.experts.5.up_proj.weight"))
    assert "missing tensor 'model.layers.1.mlp.experts.5.up_proj.weight'" in _load_error(saved)


def test_unexpected_tensor(saved):
    _edit(saved, lambda t: t.update({"model.layers.0.self_attn.q_proj.bias": torch.zeros(64)}))
    assert (
        "unexpected tensor 'model.layers.0.self_attn.q_proj.bias' [64] in model.safetensors"
        in _load_error(saved)
    )


def test_shape_mismatch(saved):
    _edit(saved, lambda t: t.update({"model.norm.weight": torch.ones(65)}))
    assert (
        "shape mismatch for 'model.norm.weight' in model.safetensors: checkpoint has [65], model expects [64]"
        in (_load_error(saved))
    )


def test_all_problems_are_reported_together(saved):
    def edit(t):
        t.pop("model.norm.weight")
        t["extra.weight"] = torch.zeros(1)
        t["lm_head.weight"] = torch.zeros(3, 3)

    _edit(saved, edit)
    message = _load_error(saved)
    assert "(3 problems)" in message and "missing tensor 'model.norm.weight'" in message
    assert "unexpected tensor 'extra.weight'" in message and "shape mismatch for 'lm_head.weight'" in message


def test_integer_tensor_is_rejected(saved):
    _edit(saved, lambda t: t.update({"model.norm.weight": torch.ones(64, dtype=torch.int32)}))
    assert "tensor 'model.norm.weight' in model.safetensors has dtype I32" in _load_error(saved)


def test_truncated_safetensors_file(saved):
    file = saved / "model.safetensors"
    file.write_bytes(file.read_bytes()[: file.stat().st_size // 2])
    message = _load_error(saved)
    assert str(file) in message and "truncated or corrupt" in message


def test_index_naming_a_missing_shard(tmp_path):
    save_model(tiny_model(tiny("qwen3-debug-moe-tiny")), tmp_path, max_shard_size="30KB")
    shard = sorted(tmp_path.glob("model-*.safetensors"))[1]
    shard.unlink()
    message = _load_error(tmp_path)
    assert (
        "model.safetensors.index.json: names shard files that do not exist" in message
        and shard.name in message
    )


def test_index_naming_a_tensor_its_shard_lacks(tmp_path):
    save_model(tiny_model(tiny("qwen3-debug-moe-tiny")), tmp_path, max_shard_size="30KB")
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    first = sorted(tmp_path.glob("model-*.safetensors"))[0].name
    index["weight_map"]["model.norm.weight"] = first
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    assert f"maps 'model.norm.weight' to {first}, which does not contain it" in _load_error(tmp_path)


def test_no_weights_and_pickles_are_refused(saved):
    (saved / "model.safetensors").rename(saved / "pytorch_model.bin")
    message = _load_error(saved)
    assert "no model.safetensors or model.safetensors.index.json" in message and "never loaded" in message


def test_both_expert_layouts_at_once_are_rejected(saved):
    def add_stacked(t):
        gate = torch.stack([t[f"model.layers.0.mlp.experts.{e}.gate_proj.weight"] for e in range(8)])
        t["model.layers.0.mlp.experts.gate_up_proj"] = torch.cat([gate, gate], dim=1)

    _edit(saved, add_stacked)
    assert "loads model.layers.0.mlp.experts." in _load_error(saved)


def test_missing_config(tmp_path):
    with pytest.raises(CheckpointError, match="no config.json"):
        load_model(tmp_path)
