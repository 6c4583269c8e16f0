"""The training view of a conversation: token ids plus a mask of the tokens the assistant produced.

``input_ids`` is exactly ``tokenizer.encode(render(messages, tools))``: the text is encoded once, whole, and the
mask is read off the token offsets, so the ids are never those of a per-turn encoding that the model would not see
at inference. A token belongs to the assistant when it starts inside an assistant turn's output: the think block,
content, tool calls and the closing ``<|im_end|>``; not the ``<|im_start|>assistant\\n`` header, nor the ``\\n``
after ``<|im_end|>``.

Which assistant turns are loss targets (``train_on``):

- ``"final"`` (default): the turns after the last real user query, i.e. the final answer and the multi-step tool
  calls that lead to it. These are the turns the official rendering keeps the thinking of; earlier turns are
  rendered without their think block, so training on them would teach the model to answer without ``<think>``,
  which it never does at inference. Use :func:`expand_turns` to make every turn a target in its own example.
- ``"all"``: every assistant turn, as rendered. Pair it with ``prefix_preserving=True`` (every turn keeps its
  think block) to train whole multi-turn agent trajectories in one sequence.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from qwen3.chat.messages import normalize_messages
from qwen3.chat.template import last_query_index, render_segments

TRAIN_ON = ("final", "all")


class OffsetTokenizer(Protocol):
    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]: ...


@dataclass
class TokenizedConversation:
    input_ids: list[int]
    assistant_mask: list[bool]  # True for the assistant's tokens (the loss targets)

    def __post_init__(self) -> None:
        if len(self.input_ids) != len(self.assistant_mask):
            raise ValueError(
                f"input_ids has {len(self.input_ids)} tokens but assistant_mask has {len(self.assistant_mask)}"
            )


def _target_spans(
    messages: Sequence[Any], tools: Sequence[Any] | None, train_on: str, prefix_preserving: bool
) -> tuple[str, list[tuple[int, int]]]:
    """The rendered text and the (start, end) character spans of the assistant output that is trained on."""
    first_target = last_query_index(normalize_messages(messages)) + 1 if train_on == "final" else 0
    text_parts: list[str] = []
    spans: list[tuple[int, int]] = []
    position = 0
    for segment in render_segments(messages, tools, prefix_preserving=prefix_preserving):
        if segment.assistant and segment.message_index is not None and segment.message_index >= first_target:
            spans.append((position, position + len(segment.text)))
        text_parts.append(segment.text)
        position += len(segment.text)
    return "".join(text_parts), spans


def tokenize_conversation(
    messages: Sequence[Any],
    tokenizer: OffsetTokenizer,
    tools: Sequence[Any] | None = None,
    enable_thinking: bool | None = None,
    train_on: str = "final",
    prefix_preserving: bool = False,
) -> TokenizedConversation:
    """Token ids of the rendered conversation and the mask of the assistant tokens to train on.

    ``enable_thinking`` only changes a generation prompt, which a training example does not have; it is accepted so
    that the same keyword arguments work for :func:`qwen3.chat.render` and here.
    """
    if train_on not in TRAIN_ON:
        raise ValueError(f"train_on: must be one of {', '.join(TRAIN_ON)}, got {train_on!r}")
    if enable_thinking not in (None, True, False):
        raise ValueError(f"enable_thinking: must be True, False or None, got {enable_thinking!r}")
    text, spans = _target_spans(messages, tools, train_on, prefix_preserving)
    if not spans:
        raise ValueError(
            f"messages: no assistant turn to train on with train_on={train_on!r} (the final turns are those after "
            "the last user query)"
        )
    input_ids, offsets = tokenizer.encode_with_offsets(text)
    starts = [start for start, _ in spans]
    mask = []
    for token_start, _ in offsets:
        span = bisect.bisect_right(starts, token_start) - 1
        mask.append(span >= 0 and token_start < spans[span][1])
    return TokenizedConversation(list(input_ids), mask)


def expand_turns(messages: Sequence[Any]) -> list[list[Any]]:
    """One conversation per assistant turn: the messages up to and including that turn.

    With ``train_on="final"`` each of them trains its last turn (and the tool-call steps just before it) with the
    think block that turn really had, so every turn of a long conversation becomes a target in its own mode.
    """
    turns = normalize_messages(messages)
    return [list(messages[: index + 1]) for index, turn in enumerate(turns) if turn.role == "assistant"]
