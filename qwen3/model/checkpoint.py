"""Hugging Face checkpoint directories: ``load_model``, ``save_model``, ``load_config``, ``init_checkpoint``.

Loading builds the model on the meta device, validates every tensor name, shape and dtype against the model from
the safetensors headers alone (all problems reported in one ``CheckpointError``), then copies tensors one at a
time into freshly allocated parameters, converting dtype on the way. Files are reopened every 64 MiB of copied data
so pages of the memory-mapped files we have finished with leave our resident set: peak memory stays near one copy
of the weights. Pickle files are never read. Saving writes the released layout (sharded above
``max_shard_size``) into a temporary directory that replaces the target only when complete.
"""

from __future__ import annotations

import json
import math
import re
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from torch import nn

from qwen3.model.config import ConfigError, Qwen3Config
from qwen3.model.hf_files import (
    FILE_DTYPES,
    INDEX_FILE,
    SINGLE_FILE,
    CheckpointError,
    TensorReader,
    plan_tensors,
    stored_tensors,
)
from qwen3.model.model import Qwen3ForCausalLM
from qwen3.model.presets import PRESETS, QWEN_BOS, QWEN_EOS, get_preset
from qwen3.model.weights import EXPERT_LAYOUTS, HFTensor, export_tensor, hf_tensors
from qwen3.tokenizer.tokenizer import Qwen3Tokenizer
from qwen3.utils.atomic import TMP_PREFIX, atomic_directory, atomic_write_json

DTYPE_NAMES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
    "float16": torch.float16,
    "fp16": torch.float16,
    "float64": torch.float64,
}


# ----- public API -----
def load_config(path_or_preset: str | Path) -> Qwen3Config:
    """The config of a checkpoint directory or of a preset."""
    if (Path(path_or_preset) / "config.json").is_file():
        return Qwen3Config.from_pretrained(path_or_preset)
    if str(path_or_preset) in PRESETS:
        return get_preset(str(path_or_preset))
    raise _not_found(path_or_preset)


def load_model(
    path_or_preset: str | Path,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> Qwen3ForCausalLM:
    """A Hugging Face checkpoint directory -> its model; a preset name -> a randomly initialised model
    (deterministic from ``seed``). ``dtype`` None: the config's ``torch_dtype``. Returned in eval mode."""
    if (Path(path_or_preset) / "config.json").is_file():
        return load_checkpoint(Path(path_or_preset), dtype, device)
    if str(path_or_preset) in PRESETS:
        return init_model(get_preset(str(path_or_preset)), dtype, device, seed)
    raise _not_found(path_or_preset)


def init_model(
    config: Qwen3Config,
    dtype: torch.dtype | str | None = None,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> Qwen3ForCausalLM:
    dtype = resolve_dtype(dtype, config.torch_dtype if config.torch_dtype in DTYPE_NAMES else "float32")
    model = _empty_model(config, dtype, device)
    model.init_weights(torch.Generator().manual_seed(seed))
    return model.eval()


def init_checkpoint(
    preset: str,
    out_dir: str | Path,
    seed: int = 0,
    dtype: torch.dtype | str | None = None,
    with_tokenizer: bool = True,
) -> Path:
    """Write a randomly initialised checkpoint directory for ``preset``: config, generation config, weights and,
    unless ``with_tokenizer`` is False, the tokenizer with the chat template, so the directory runs as it is.

    Released presets get the real Qwen3 tokenizer; debug presets a debug BPE of exactly their vocabulary size,
    with the config's bos/eos ids set to its ``<|endoftext|>`` / ``<|im_end|>``.
    """
    config = get_preset(preset)
    tokenizer = None
    if with_tokenizer:
        from qwen3.tokenizer.train import tokenizer_for_vocab

        tokenizer = tokenizer_for_vocab(config.vocab_size)
        config = config.replace(bos_token_id=tokenizer.endoftext_id, eos_token_id=tokenizer.im_end_id)
    model = init_model(config, dtype=dtype, seed=seed)
    model.generation_config = default_generation_config(config, tokenizer)
    return save_model(model, out_dir, tokenizer=tokenizer)


def load_checkpoint(
    directory: Path, dtype: torch.dtype | str | None = None, device: torch.device | str = "cpu"
) -> Qwen3ForCausalLM:
    config = Qwen3Config.from_pretrained(directory)
    stored = stored_tensors(directory)
    with torch.device("meta"):
        shapes = {name: tuple(p.shape) for name, p in Qwen3ForCausalLM(config).named_parameters()}
    plan = plan_tensors(directory, config, shapes, stored)
    stored_dtype = FILE_DTYPES[next(iter(stored.values())).dtype]
    dtype = resolve_dtype(dtype, config.torch_dtype if config.torch_dtype in DTYPE_NAMES else stored_dtype)
    model = _empty_model(config.replace(torch_dtype=_dtype_name(dtype)), dtype, device)
    params = dict(model.named_parameters())
    reader = TensorReader()
    for name, spec in plan.items():
        item = stored[name]
        reader.copy(item, name, [(p.tensor_index, params[p.param].data[p.param_index]) for p in spec.parts])
    reader.close()
    model.generation_config = _read_generation_config(directory)
    return model.eval()


def save_model(
    model: Qwen3ForCausalLM,
    out_dir: str | Path,
    max_shard_size: int | str = "5GB",
    expert_layout: str = "per_expert",
    tokenizer: Qwen3Tokenizer | None = None,
) -> Path:
    """Write ``model`` as a Hugging Face directory (transformers ``from_pretrained`` loads it). Other files already
    in ``out_dir`` (tokenizer, ...) are kept; the old weights are replaced atomically. A ``tokenizer`` given is
    written into the same directory with its chat template (our Qwen3 template when it has none)."""
    if expert_layout not in EXPERT_LAYOUTS:
        raise ValueError(f"expert_layout {expert_layout!r} is not one of {EXPERT_LAYOUTS}")
    out_dir = Path(out_dir)
    params = dict(model.named_parameters())
    dtype = model.lm_head.weight.dtype
    config = model.config.replace(torch_dtype=_dtype_name(dtype))
    specs = hf_tensors({name: tuple(p.shape) for name, p in params.items()}, expert_layout)
    shards = _plan_shards(specs, dtype.itemsize, parse_size(max_shard_size))
    names = (
        [SINGLE_FILE]
        if len(shards) == 1
        else [f"model-{i:05d}-of-{len(shards):05d}.safetensors" for i in range(1, len(shards) + 1)]
    )
    with atomic_directory(out_dir) as tmp:
        _copy_other_files(out_dir, tmp)
        for file_name, shard in zip(names, shards):
            tensors = {spec.name: export_tensor(spec, params).cpu() for spec in shard}
            save_file(tensors, str(tmp / file_name), metadata={"format": "pt"})
            del tensors
        if len(shards) > 1:
            weight_map = {spec.name: file_name for file_name, shard in zip(names, shards) for spec in shard}
            total = sum(math.prod(spec.shape) for spec in specs) * dtype.itemsize
            atomic_write_json(tmp / INDEX_FILE, {"metadata": {"total_size": total}, "weight_map": weight_map})
        config.save_pretrained(tmp)
        atomic_write_json(
            tmp / "generation_config.json", model.generation_config or default_generation_config(config)
        )
        if tokenizer is not None:
            _write_tokenizer(tokenizer, tmp)
    return out_dir


def _write_tokenizer(tokenizer: Qwen3Tokenizer, directory: Path) -> None:
    from qwen3.chat.jinja import qwen3_template

    tokenizer.save_pretrained(directory, chat_template=tokenizer.chat_template or qwen3_template())


def default_generation_config(config: Qwen3Config, tokenizer: Qwen3Tokenizer | None = None) -> dict:
    """The released hybrid models' generation_config.json (as on Hugging Face): thinking-mode sampling, stop at
    ``<|im_end|>`` or ``<|endoftext|>``. Ids come from ``tokenizer`` when given, else the Qwen3 ids for the real
    vocabulary, else the config's own ids."""
    out: dict = {"do_sample": True, "temperature": 0.6, "top_k": 20, "top_p": 0.95}
    if tokenizer is not None:
        return {
            **out,
            "bos_token_id": tokenizer.endoftext_id,
            "eos_token_id": list(tokenizer.eos_token_ids),
            "pad_token_id": tokenizer.pad_token_id,
        }
    if config.vocab_size > QWEN_EOS:
        return {
            **out,
            "bos_token_id": QWEN_BOS,
            "eos_token_id": [QWEN_EOS, QWEN_BOS],
            "pad_token_id": QWEN_BOS,
        }
    ids = {
        "bos_token_id": config.bos_token_id,
        "eos_token_id": config.eos_token_id,
        "pad_token_id": config.pad_token_id,
    }
    return {**out, **{key: value for key, value in ids.items() if value is not None}}


def resolve_dtype(dtype: torch.dtype | str | None, default: torch.dtype | str) -> torch.dtype:
    value = default if dtype is None or dtype == "auto" else dtype
    if isinstance(value, torch.dtype):
        return value
    if value not in DTYPE_NAMES:
        raise ValueError(f"dtype {value!r} is not one of {sorted(DTYPE_NAMES)}")
    return DTYPE_NAMES[value]


def parse_size(size: int | str) -> int:
    """Bytes from an int or "5GB" (10^9) / "5GiB" (2^30) / "200MB" / "10KB"."""
    if isinstance(size, int):
        return size
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(i?)B\s*", size, flags=re.IGNORECASE)
    if match is None:
        raise ValueError(f"max_shard_size {size!r} is not a size like '5GB', '500MB' or an integer")
    power = "KMGT".find(match[2].upper()) + 1
    return int(float(match[1]) * (1024 if match[3] else 1000) ** power)


# ----- internals -----
def _empty_model(config: Qwen3Config, dtype: torch.dtype, device: torch.device | str) -> Qwen3ForCausalLM:
    """A model whose parameters are allocated (uninitialised) directly in ``dtype`` on ``device``."""
    with torch.device("meta"):
        model = Qwen3ForCausalLM(config)
    for name, param in list(model.named_parameters()):
        module_name, _, leaf = name.rpartition(".")
        empty = torch.empty(param.shape, dtype=dtype, device=device)
        setattr(model.get_submodule(module_name), leaf, nn.Parameter(empty))
    if config.tie_word_embeddings:
        model.lm_head.weight = model.model.embed_tokens.weight
    model.model.rotary_emb.reset_buffers(device)
    return model


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


def _not_found(path_or_preset: str | Path) -> Exception:
    if Path(path_or_preset).is_dir():
        return CheckpointError(f"{path_or_preset}: no config.json in this directory")
    from qwen3.utils.suggest import did_you_mean

    name = str(path_or_preset)
    return ValueError(
        f"{name!r} is neither a checkpoint directory nor a preset{did_you_mean(name, PRESETS)}; presets: "
        f"{', '.join(PRESETS)}"
    )


def _read_generation_config(directory: Path) -> dict | None:
    path = directory / "generation_config.json"
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise CheckpointError(f"{path}: invalid JSON at line {err.lineno}: {err.msg}") from None


# ----- saving internals -----
def _plan_shards(specs: list[HFTensor], itemsize: int, limit: int) -> list[list[HFTensor]]:
    """Fill shards in order; start a new one when the next tensor would pass ``limit`` (a tensor larger than the
    limit gets a shard of its own)."""
    shards: list[list[HFTensor]] = [[]]
    size = 0
    for spec in specs:
        nbytes = math.prod(spec.shape) * itemsize
        if shards[-1] and size + nbytes > limit:
            shards.append([])
            size = 0
        shards[-1].append(spec)
        size += nbytes
    return shards


_OWN_FILES = re.compile(
    r"^(config\.json|generation_config\.json|model\.safetensors(\.index\.json)?|"
    r"model-\d+-of-\d+\.safetensors)$"
)


def _copy_other_files(old_dir: Path, new_dir: Path) -> None:
    if not old_dir.is_dir():
        return
    for child in old_dir.iterdir():
        if _OWN_FILES.match(child.name) or child.name.startswith(TMP_PREFIX):
            continue
        if child.is_dir():
            shutil.copytree(child, new_dir / child.name)
        else:
            shutil.copy2(child, new_dir / child.name)


__all__ = ["CheckpointError", "ConfigError", "init_checkpoint", "load_config", "load_model", "save_model"]
