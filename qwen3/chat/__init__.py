"""The Qwen3 chat format: rendering conversations and parsing model output (docs/chat.md).

- :func:`render` renders a conversation byte-identically to the official Qwen3 chat template;
  :func:`render_jinja` renders any Jinja chat template the way transformers does, and :func:`qwen3_template` is
  our own template (the one written into tokenizer_config.json).
- :func:`resolve_thinking` says which mode (thinking or not) a conversation asks for.
- :func:`tokenize_conversation` gives token ids and the assistant mask for training; :func:`expand_turns` makes
  one example per assistant turn.
- :func:`parse` splits a completion into reasoning, content and tool calls; :class:`StreamingParser` does the same
  incrementally, and :func:`accumulate` joins its deltas.
"""

from qwen3.chat.jinja import qwen3_template, render_jinja
from qwen3.chat.modes import resolve_thinking
from qwen3.chat.parse import FunctionCall, ParsedOutput, ToolCall, parse
from qwen3.chat.streaming import DeltaMessage, DeltaToolCall, StreamingParser, accumulate
from qwen3.chat.template import render, render_segments
from qwen3.chat.training import TokenizedConversation, expand_turns, tokenize_conversation

__all__ = [
    "DeltaMessage",
    "DeltaToolCall",
    "FunctionCall",
    "ParsedOutput",
    "StreamingParser",
    "TokenizedConversation",
    "ToolCall",
    "accumulate",
    "expand_turns",
    "parse",
    "qwen3_template",
    "render",
    "render_jinja",
    "render_segments",
    "resolve_thinking",
    "tokenize_conversation",
]
