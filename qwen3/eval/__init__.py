"""The evaluation suite (docs/eval.md): graders for every task family of ``qwen3.world``, backends that run a
model in process (``qwen3.LLM``) or behind any OpenAI-compatible server, and the runner behind ``qwen3 eval``.

- :class:`Reply` (one model reply, thinking-aware), :class:`Grade` and :func:`grade` (``qwen3/eval/graders.py``,
  ToolUse in ``qwen3/eval/tooluse.py``); :func:`answers_equal` (``qwen3/eval/verify.py``, sympy);
  :func:`run_python` (``qwen3/eval/sandbox.py``, a limited child process).
- :class:`InProcessBackend`, :class:`OpenAIBackend` (``qwen3/eval/backends.py``) and :func:`run_suites`
  (``qwen3/eval/runner.py``). Importing the package stays cheap: torch, openai, sympy and matplotlib are imported
  by the functions that use them.
"""

from qwen3.eval.backends import ChatRequest, EvalError, GenParams, InProcessBackend, OpenAIBackend
from qwen3.eval.graders import GRADERS, Grade, extract_answer, grade, safe_grade
from qwen3.eval.reply import Reply
from qwen3.eval.runner import SUITES, EvalOptions, pass_at_k, run_suites
from qwen3.eval.sandbox import RunResult, run_python
from qwen3.eval.verify import answers_equal

__all__ = [
    "GRADERS",
    "SUITES",
    "ChatRequest",
    "EvalError",
    "EvalOptions",
    "GenParams",
    "Grade",
    "InProcessBackend",
    "OpenAIBackend",
    "Reply",
    "RunResult",
    "answers_equal",
    "extract_answer",
    "grade",
    "pass_at_k",
    "run_python",
    "run_suites",
    "safe_grade",
]
