"""The inference engine (docs/engine.md): ``LLM`` for offline use, ``LLMEngine`` (add_request / step / abort) for
servers, ``SamplingParams`` and ``EngineConfig``. Submodules follow nano-vllm's layout: sequence, scheduler,
kv_cache, model_runner, sampler, thinking_budget, llm_engine, llm."""

from qwen3.engine.config import EngineConfig
from qwen3.engine.detokenizer import ChatOptions
from qwen3.engine.llm import LLM
from qwen3.engine.llm_engine import LLMEngine
from qwen3.engine.outputs import CompletionDelta, CompletionOutput, Logprob, RequestOutput, Usage
from qwen3.engine.sampling_params import SamplingParams

__all__ = [
    "LLM",
    "ChatOptions",
    "CompletionDelta",
    "CompletionOutput",
    "EngineConfig",
    "LLMEngine",
    "Logprob",
    "RequestOutput",
    "SamplingParams",
    "Usage",
]
