"""What the engine loads: a model and its tokenizer from a checkpoint directory, a run directory, a preset name or
a ready model. Used by ``LLM`` and ``LLMEngine.from_pretrained`` (kept apart from both so neither imports the
other)."""

from __future__ import annotations

from pathlib import Path


def load_model_and_tokenizer(path_or_model, dtype=None, device="cpu", tokenizer=None, seed: int = 0):
    """A checkpoint directory (Hugging Face, or a training checkpoint / run directory: its newest model), a preset
    name (random weights; debug presets get the debug tokenizer of their vocabulary size) or a ready model, with
    its tokenizer."""
    from qwen3.model.checkpoint import load_model
    from qwen3.model.model import Qwen3ForCausalLM
    from qwen3.tokenizer import load_tokenizer
    from qwen3.tokenizer.train import tokenizer_for_vocab

    if isinstance(path_or_model, (str, Path)) and Path(path_or_model).is_dir():
        from qwen3.model.run_dir import resolve_model_dir

        path_or_model = resolve_model_dir(
            path_or_model
        )  # a training checkpoint or run directory -> its model
    if isinstance(path_or_model, Qwen3ForCausalLM):
        model = path_or_model
        if dtype is not None or str(device) != "cpu":
            from qwen3.model.checkpoint import resolve_dtype

            model = model.to(device=device, dtype=resolve_dtype(dtype, model.lm_head.weight.dtype))
    else:
        model = load_model(path_or_model, dtype=dtype, device=device, seed=seed)
    if tokenizer is None:
        directory = None if isinstance(path_or_model, Qwen3ForCausalLM) else Path(path_or_model)
        if directory is not None and (directory / "tokenizer.json").is_file():
            tokenizer = load_tokenizer(directory)
        else:
            tokenizer = tokenizer_for_vocab(model.config.vocab_size)
    elif isinstance(tokenizer, (str, Path)):
        tokenizer = load_tokenizer(tokenizer)
    return model, tokenizer
