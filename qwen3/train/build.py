"""Turn a ``TrainConfig`` into the parts the trainer runs: model, tokenizer, row source, optimizer."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from qwen3.train.batch import RowSource
from qwen3.train.config import DataConfig, ModelConfig, OptimConfig
from qwen3.train.corpus import DataError, FileCorpus, SequenceCorpus
from qwen3.train.data import DocumentStream, PackedDocuments, document_tokens
from qwen3.train.settings import SettingsError
from qwen3.train.sft_data import PackedConversations, conversation_example
from qwen3.train.synthetic import PATTERN_EOS, chat_examples, pattern_documents, text_documents

QWEN_VOCAB_TOKENS = 151669  # BPE ranks + added tokens of the Qwen3 tokenizer


# ------------------------------------------------------------------------------------------------------ model
def build_model(
    spec: ModelConfig, device: torch.device, seq_len: int, weights_from: Path | None = None
) -> torch.nn.Module:
    """fp32 weights (the optimizer's master copy): from ``weights_from`` (a Hugging Face directory), a
    checkpoint directory named by ``spec.name``, or a preset initialised from ``spec.init_seed``."""
    from qwen3.model.checkpoint import init_model, load_config, load_model

    if weights_from is not None:
        model = load_model(weights_from, dtype=torch.float32, device=device)
    else:
        try:
            config = load_config(spec.name)
        except (FileNotFoundError, ValueError) as err:
            raise SettingsError(f"model.name: {err}") from None
        if (Path(spec.name) / "config.json").is_file():
            model = load_model(spec.name, dtype=torch.float32, device=device)
        else:
            model = init_model(config, torch.float32, device, spec.init_seed)
    _apply_overrides(model, spec, device)
    limit = model.config.max_position_embeddings
    if seq_len > limit:
        raise SettingsError(
            f"data.seq_len {seq_len} exceeds the model's max_position_embeddings {limit}; raise "
            "model.max_position_embeddings"
        )
    model.model.gradient_checkpointing = spec.gradient_checkpointing
    if model.config.is_moe:
        model.set_moe_impl(spec.moe_impl)
    return model.train()


def _apply_overrides(model: torch.nn.Module, spec: ModelConfig, device: torch.device) -> None:
    """RoPE base / context length changes (ABF); the new values go into the config that checkpoints save."""
    from qwen3.model.rope import RotaryEmbedding

    changes: dict[str, Any] = {}
    if spec.rope_theta is not None and spec.rope_theta != model.config.rope_theta:
        changes["rope_theta"] = spec.rope_theta
    if spec.max_position_embeddings is not None:
        changes["max_position_embeddings"] = spec.max_position_embeddings
    if spec.router_aux_loss_coef is not None and model.config.is_moe:
        changes["router_aux_loss_coef"] = spec.router_aux_loss_coef
    if changes:
        model.config = model.config.replace(**changes)
        model.model.rotary_emb = RotaryEmbedding(model.config).to(device)


# -------------------------------------------------------------------------------------------------- tokenizer
def build_tokenizer(data: DataConfig, vocab_size: int, model_dir: Path | None = None) -> Any | None:
    """The tokenizer for ``data`` (None for pre-tokenised synthetic patterns). "auto": the model directory's
    tokenizer.json, else the Qwen3 tokenizer for Qwen-sized vocabularies, else the debug tokenizer that fits."""
    from qwen3.tokenizer import load_tokenizer
    from qwen3.tokenizer.train import debug_tokenizer

    if data.synthetic == "patterns":
        return None
    name = data.tokenizer
    if name == "auto":
        if model_dir is not None and (model_dir / "tokenizer.json").is_file():
            name = str(model_dir)
        else:
            name = "qwen3" if vocab_size >= QWEN_VOCAB_TOKENS else "debug"
    tokenizer = debug_tokenizer(vocab_size) if name == "debug" else load_tokenizer(name)
    if tokenizer.vocab_size > vocab_size:
        raise SettingsError(
            f"data.tokenizer {name!r} has {tokenizer.vocab_size} tokens but the model's vocabulary has {vocab_size}"
        )
    return tokenizer


# -------------------------------------------------------------------------------------------------------- data
def corpus_for(data: DataConfig, vocab_size: int) -> FileCorpus | SequenceCorpus:
    if data.synthetic == "patterns":
        return SequenceCorpus(pattern_documents(data.synthetic_documents, vocab_size, seed=data.seed))
    if data.synthetic == "text":
        return SequenceCorpus(text_documents(data.synthetic_documents, seed=data.seed))
    if data.synthetic == "chat":
        return SequenceCorpus(chat_examples(data.synthetic_documents, seed=data.seed))
    if not data.paths:
        raise SettingsError("data: give paths (files or directories) or synthetic")
    return FileCorpus(data.paths, data.text_unit)


def build_rows(
    data: DataConfig, tokenizer: Any | None, vocab_size: int, source: Iterable[Any] | None = None
) -> RowSource:
    """The row source of ``data``; ``source`` (a list or an iterable of documents / examples) replaces files."""
    if source is None:
        corpus: Any = corpus_for(data, vocab_size)
    else:
        corpus = SequenceCorpus(source) if isinstance(source, (list, tuple)) else source
    shuffle = data.shuffle and isinstance(corpus, (FileCorpus, SequenceCorpus))
    if data.kind == "pretrain":
        encode = tokenizer.encode if tokenizer is not None else None

        def tokens(document):
            return document_tokens(document, encode, data.text_field, vocab_size)

        stream = DocumentStream(corpus, tokens, shuffle, data.seed, data.on_error)
        eos = tokenizer.endoftext_id if tokenizer is not None else PATTERN_EOS
        return PackedDocuments(stream, data.seq_len, eos, data.document_mask)
    if tokenizer is None:
        raise DataError("SFT data needs a tokenizer (data.tokenizer)")

    def example(document):
        return conversation_example(document, tokenizer, data.messages_field, data.tools_field, data.train_on)

    stream = DocumentStream(corpus, example, shuffle, data.seed, data.on_error)
    return PackedConversations(stream, data.seq_len, data.pack, data.overlong, data.document_mask)


def pad_id(tokenizer: Any | None) -> int:
    return tokenizer.pad_token_id if tokenizer is not None else PATTERN_EOS


# --------------------------------------------------------------------------------------------------- optimizer
def build_optimizer(model: torch.nn.Module, optim: OptimConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW; 1-D parameters (norm weights) without weight decay. "auto" = fused where torch has a kernel."""
    decay, no_decay = [], []
    for param in model.parameters():
        if param.requires_grad:
            (decay if param.ndim >= 2 else no_decay).append(param)
    groups = [
        {"params": decay, "weight_decay": optim.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    kind = optim.implementation
    if kind == "auto":
        kind = "fused" if device.type in ("cpu", "cuda") else "foreach"
    return torch.optim.AdamW(
        groups,
        lr=optim.lr,
        betas=tuple(optim.betas),
        eps=optim.eps,
        fused=kind == "fused" or None,
        foreach=True if kind == "foreach" else (False if kind == "for" else None),
    )
