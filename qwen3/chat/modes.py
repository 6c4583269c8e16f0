"""Which mode a conversation asks for: thinking or non-thinking.

Rules (Qwen3 report §4.3 and the model card):

- ``enable_thinking=False`` is the hard switch: the prompt ends in an empty think block and nothing overrides it.
- Otherwise the soft switches decide: the last ``/think`` or ``/no_think`` over all system and user messages (in
  order, and the last one inside a message) wins. Tool results are not instructions and are not scanned.
- Without any flag the model thinks (the default mode).

A flag is the literal ``/think`` or ``/no_think`` standing on its own: the character before it must not be a word
character or ``/`` and the character after it must not be a word character or ``/``. So ``"Really? /think"``,
``"/no_think."`` and ``"(/think)"`` are flags, while ``/thinking``, ``/think_more``, ``a/think`` and the path
``/think/x`` are not.

The mode decides sampling settings and whether a thinking budget applies. It is not the ``enable_thinking`` of
:func:`qwen3.chat.parse`: under a soft ``/no_think`` the model still writes an empty think block.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from qwen3.chat.messages import check_flag, normalize_messages

SOFT_SWITCH = re.compile(r"(?<![\w/])/(no_think|think)(?![\w/])")


def last_soft_switch(text: str) -> bool | None:
    """True for a final ``/think``, False for a final ``/no_think``, None when the text has no flag."""
    flags = SOFT_SWITCH.findall(text)
    return None if not flags else flags[-1] == "think"


def resolve_thinking(messages: Sequence[Any], enable_thinking: bool | None = None) -> bool:
    """True when the model is expected to think in its next reply (see the module docstring for the rules)."""
    check_flag("enable_thinking", enable_thinking, optional=True)
    if enable_thinking is False:
        return False
    mode = True
    for message in normalize_messages(messages):
        if message.role in ("system", "user"):
            flag = last_soft_switch(message.content)
            mode = mode if flag is None else flag
    return mode
