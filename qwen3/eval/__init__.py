"""The evaluation suite (docs/eval.md): graders for every task family of ``qwen3.world``, backends that run a
model in process (``qwen3.LLM``) or behind any OpenAI-compatible server, and the runner behind ``qwen3 eval``.

- :class:`Reply` (one model reply, thinking-aware), :class:`Grade` and :func:`grade` (``qwen3/eval/graders.py``,
  ToolUse in ``qwen3/eval/tooluse.py``); :func:`answers_equal` (``qwen3/eval/verify.py``, sympy);
  :func:`run_python` (``qwen3/eval/sandbox.py``, a limited child process).
- Backends and the runner are imported on first use (they pull in torch / openai).
"""

from __future__ import annotations

import importlib
from typing import Any

from qwen3.eval.graders import GRADERS, Grade, extract_answer, grade, safe_grade
from qwen3.eval.reply import Reply
from qwen3.eval.verify import answers_equal

_LAZY = {
    "run_python": "qwen3.eval.sandbox",
    "RunResult": "qwen3.eval.sandbox",
    "InProcessBackend": "qwen3.eval.backends",
    "OpenAIBackend": "qwen3.eval.backends",
    "GenParams": "qwen3.eval.backends",
    "run_suites": "qwen3.eval.runner",
    "pass_at_k": "qwen3.eval.runner",
    "SUITES": "qwen3.eval.runner",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'qwen3.eval' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = ["GRADERS", "Grade", "Reply", "answers_equal", "extract_answer", "grade", "safe_grade", *_LAZY]
