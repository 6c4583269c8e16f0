"""The 26 added tokens of the Qwen3 vocabulary (the released tokenizer.json's ``added_tokens``), in id order.

This table is the only place where Qwen3's control-token ids are written down: every other module resolves ids
from the loaded vocabulary by content, so a tokenizer trained here (where the added tokens follow a small learned
vocabulary) works with the same code as the real one.

``special`` is the Hugging Face flag: ``decode(..., skip_special_tokens=True)`` drops special tokens and
``split_special_tokens=True`` encodes them as plain text. ``<think>``, ``<tool_call>`` and the other non-special
tokens are still matched atomically when encoding and are kept by ``skip_special_tokens``.
"""

from __future__ import annotations

from dataclasses import dataclass

# Id of the first added token in the real vocabulary: the 151,643 BPE ranks come first.
QWEN3_FIRST_ADDED_ID = 151643
QWEN3_VOCAB_SIZE = 151669  # tokens, not embedding rows (151,936): ids 151669.. are padding rows


@dataclass(frozen=True)
class AddedTokenSpec:
    content: str
    offset: int  # id = first added id + offset
    special: bool


def _table(*rows: tuple[str, bool]) -> tuple[AddedTokenSpec, ...]:
    return tuple(AddedTokenSpec(content, offset, special) for offset, (content, special) in enumerate(rows))


ADDED_TOKENS: tuple[AddedTokenSpec, ...] = _table(
    ("<|endoftext|>", True),
    ("<|im_start|>", True),
    ("<|im_end|>", True),
    ("<|object_ref_start|>", True),
    ("<|object_ref_end|>", True),
    ("<|box_start|>", True),
    ("<|box_end|>", True),
    ("<|quad_start|>", True),
    ("<|quad_end|>", True),
    ("<|vision_start|>", True),
    ("<|vision_end|>", True),
    ("<|vision_pad|>", True),
    ("<|image_pad|>", True),
    ("<|video_pad|>", True),
    ("<tool_call>", False),
    ("</tool_call>", False),
    ("<|fim_prefix|>", False),
    ("<|fim_middle|>", False),
    ("<|fim_suffix|>", False),
    ("<|fim_pad|>", False),
    ("<|repo_name|>", False),
    ("<|file_sep|>", False),
    ("<tool_response>", False),
    ("</tool_response>", False),
    ("<think>", False),
    ("</think>", False),
)

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
THINK_START = "<think>"
THINK_END = "</think>"
TOOL_CALL_START = "<tool_call>"
TOOL_CALL_END = "</tool_call>"
TOOL_RESPONSE_START = "<tool_response>"
TOOL_RESPONSE_END = "</tool_response>"

# Attribute name on Qwen3Tokenizer -> token content. A tokenizer.json must contain all of these as added tokens.
NAMED_CONTROL_TOKENS: dict[str, str] = {
    "endoftext_id": ENDOFTEXT,
    "im_start_id": IM_START,
    "im_end_id": IM_END,
    "think_start_id": THINK_START,
    "think_end_id": THINK_END,
    "tool_call_start_id": TOOL_CALL_START,
    "tool_call_end_id": TOOL_CALL_END,
    "tool_response_start_id": TOOL_RESPONSE_START,
    "tool_response_end_id": TOOL_RESPONSE_END,
}

EOS_TOKEN = IM_END  # tokenizer_config eos_token; generation also stops at <|endoftext|>
PAD_TOKEN = ENDOFTEXT

# tokenizer_config.json's additional_special_tokens: <|im_start|>, <|im_end|> and the 11 vision tokens.
ADDITIONAL_SPECIAL_TOKENS: tuple[str, ...] = tuple(
    spec.content for spec in ADDED_TOKENS if spec.special and spec.content != ENDOFTEXT
)
