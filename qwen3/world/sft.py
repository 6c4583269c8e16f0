"""Items as chat-SFT examples: the ideal reply in thinking or non-thinking mode, in the format of
qwen3/train/sft_data.py (``{"messages": [...], "tools": [...]}``, OpenAI messages).

- ``mode="think"``: the assistant message has ``reasoning_content`` = the item's ``solution`` (the long-CoT
  thought) and ``content`` = its ``direct`` answer.
- ``mode="no_think"``: ``reasoning_content`` is ``""``, which the template renders as the empty think block
  (``<think>\\n\\n</think>\\n\\n``) the report keeps in non-thinking replies.

The example must teach the switch, not contradict it: when the conversation's own flags (qwen3.chat.
resolve_thinking) would ask for the other mode, the flag for ``mode`` is appended to the last user message. An
item with the hard switch (``enable_thinking=False``) only makes ``no_think`` examples, and gets an explicit
``/no_think``, because the hard switch lives in the generation prompt that a training example does not have.
ToolUse items become the whole trajectory: an assistant turn with the calls of each round, the tool results,
and the final answer (thoughts from ``meta["thoughts"]`` in thinking mode).
"""

from __future__ import annotations

import copy
import json
from typing import Any

from qwen3.chat.modes import resolve_thinking
from qwen3.world.items import Item

MODES = ("think", "no_think")


def _with_flag(messages: list[dict[str, Any]], mode: str) -> list[dict[str, Any]]:
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    messages[last_user] = {**messages[last_user], "content": f"{messages[last_user]['content']} /{mode}"}
    return messages


def _prompt(item: Item, mode: str) -> list[dict[str, Any]]:
    messages = copy.deepcopy(item.messages)
    if item.enable_thinking is False:
        if mode == "think":
            raise ValueError(f"item {item.id!r} sets enable_thinking=False; it has no thinking-mode example")
        return _with_flag(messages, mode)
    if resolve_thinking(messages) != (mode == "think"):
        return _with_flag(messages, mode)
    return messages


def _tool_turns(item: Item, mode: str) -> list[dict[str, Any]]:
    thoughts = item.meta.get("thoughts") or []
    turns: list[dict[str, Any]] = []
    for index, (calls, results) in enumerate(zip(item.reference["calls"], item.reference["results"])):
        turns.append(
            {
                "role": "assistant",
                "content": "",
                "reasoning_content": thoughts[index] if mode == "think" and index < len(thoughts) else "",
                "tool_calls": [
                    {
                        "type": "function",
                        "function": {"name": c["name"], "arguments": json.dumps(c["arguments"])},
                    }
                    for c in calls
                ],
            }
        )
        turns += [{"role": "tool", "content": result} for result in results]
    return turns


def chat_example(item: Item, mode: str = "think") -> dict[str, Any]:
    """``{"messages": prompt + ideal reply, "tools": ..., "id", "family", "mode"}`` for SFT on ``item``."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if item.direct is None:
        raise ValueError(f"item {item.id!r} ({item.family}) has no direct answer to train on")
    messages = _prompt(item, mode)
    thought = item.solution or ""
    if item.family == "tooluse":
        messages += _tool_turns(item, mode)
        thoughts = item.meta.get("thoughts") or [thought]
        thought = thoughts[-1]
    if mode == "think" and not thought:
        raise ValueError(f"item {item.id!r} ({item.family}) has no solution to use as the thought")
    messages.append(
        {"role": "assistant", "content": item.direct, "reasoning_content": thought if mode == "think" else ""}
    )
    return {"messages": messages, "tools": item.tools, "id": item.id, "family": item.family, "mode": mode}
