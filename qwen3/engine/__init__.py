"""The inference engine (docs/engine.md): ``LLM`` for offline use, ``LLMEngine`` (add_request / step / abort) for
servers, ``SamplingParams`` and ``EngineConfig``. Submodules follow nano-vllm's layout: sampling_params, sequence,
scheduler, kv_cache, model_runner, sampler, thinking_budget, llm_engine, llm.

Names are imported lazily, so ``qwen3.engine.cli`` (loaded by ``qwen3 --help``) does not import torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "LLM": "qwen3.engine.llm",
    "LLMEngine": "qwen3.engine.llm_engine",
    "EngineConfig": "qwen3.engine.config",
    "SamplingParams": "qwen3.engine.sampling_params",
    "ChatOptions": "qwen3.engine.detokenizer",
    "CompletionDelta": "qwen3.engine.outputs",
    "CompletionOutput": "qwen3.engine.outputs",
    "Logprob": "qwen3.engine.outputs",
    "RequestOutput": "qwen3.engine.outputs",
    "Usage": "qwen3.engine.outputs",
}


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'qwen3.engine' has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[name]), name)
    globals()[name] = value
    return value


__all__ = list(_LAZY)
