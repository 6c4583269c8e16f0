"""qwen3: a hackable implementation of the Qwen3 system (arXiv 2505.09388).

The data's path through the package: ``qwen3.model`` -> ``qwen3.engine`` -> ``qwen3.serve``, with the text layer in
``qwen3.tokenizer`` and ``qwen3.chat``, and training in ``qwen3.train``.

Public names are imported lazily so that ``import qwen3`` stays cheap (the CLI and the server start fast).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> "module:attribute" (or just "module" for a subpackage)
_LAZY: dict[str, str] = {
    "Qwen3Config": "qwen3.model.config:Qwen3Config",
    "Qwen3ForCausalLM": "qwen3.model.model:Qwen3ForCausalLM",
    "StaticKVCache": "qwen3.model.cache:StaticKVCache",
    "PRESETS": "qwen3.model.presets:PRESETS",
    "load_config": "qwen3.model.checkpoint:load_config",
    "load_model": "qwen3.model.checkpoint:load_model",
    "save_model": "qwen3.model.checkpoint:save_model",
    "load_tokenizer": "qwen3.tokenizer.tokenizer:load_tokenizer",
    "Qwen3Tokenizer": "qwen3.tokenizer.tokenizer:Qwen3Tokenizer",
    "chat": "qwen3.chat",
    "LLM": "qwen3.engine.llm:LLM",
    "LLMEngine": "qwen3.engine.llm_engine:LLMEngine",
    "EngineConfig": "qwen3.engine.config:EngineConfig",
    "SamplingParams": "qwen3.engine.sampling_params:SamplingParams",
    "TrainConfig": "qwen3.train.config:TrainConfig",
    "Trainer": "qwen3.train.trainer:Trainer",
    "create_app": "qwen3.serve.app:create_app",
    "ServerConfig": "qwen3.serve.config:ServerConfig",
}


def __getattr__(name: str) -> Any:
    target = _LAZY.get(name)
    if target is None:
        raise AttributeError(f"module 'qwen3' has no attribute {name!r}")
    # "package.module" names a subpackage, "package.module:attribute" a name inside it.
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    value = getattr(module, attr) if attr else module
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["__version__", *_LAZY]
