"""IncrementalDetokenizer: streamed text equals decode(all ids) for every split, and never a broken character."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qwen3.tokenizer.streaming import IncrementalDetokenizer

from .conftest import random_text


def _stream(tokenizer, ids, cuts, skip_special_tokens=False) -> list[str]:
    detok = IncrementalDetokenizer(tokenizer, skip_special_tokens=skip_special_tokens)
    bounds = [0, *sorted(cuts), len(ids)]
    return [detok.push(ids[a:b]) for a, b in zip(bounds, bounds[1:])] + [detok.flush()]


@settings(max_examples=200, deadline=None)
@given(random_text, st.lists(st.integers(0, 200), max_size=8), st.booleans())
def test_stream_of_encoded_text_equals_decode(qwen3_tokenizer, text, cuts, skip):
    ids = qwen3_tokenizer.encode(text)
    cuts = [c for c in cuts if c <= len(ids)]
    pieces = _stream(qwen3_tokenizer, ids, cuts, skip)
    assert "".join(pieces) == qwen3_tokenizer.decode(ids, skip_special_tokens=skip)
    # Complete characters only: no replacement character appears that the text itself did not have.
    assert all("\ufffd" not in piece for piece in pieces) or "\ufffd" in text


# Arbitrary ids: single-byte tokens (many are invalid UTF-8 alone), any regular token, and added tokens.
_any_ids = st.lists(
    st.one_of(st.integers(0, 255), st.integers(0, 151642), st.integers(151643, 151668)), max_size=40
)


@settings(max_examples=200, deadline=None)
@given(_any_ids, st.lists(st.integers(0, 40), max_size=8), st.booleans())
def test_stream_of_arbitrary_ids_equals_decode(qwen3_tokenizer, ids, cuts, skip):
    cuts = [c for c in cuts if c <= len(ids)]
    streamed = "".join(_stream(qwen3_tokenizer, ids, cuts, skip))
    assert streamed == qwen3_tokenizer.decode(ids, skip_special_tokens=skip)


def test_split_character_is_held_back_until_complete(qwen3_tokenizer):
    tok = qwen3_tokenizer
    emoji_ids = tok.encode("🫠")
    assert len(emoji_ids) > 1  # the emoji spans several byte-level tokens
    detok = IncrementalDetokenizer(tok)
    assert [detok.push(i) for i in emoji_ids[:-1]] == [""] * (len(emoji_ids) - 1)
    assert detok.push(emoji_ids[-1]) == "🫠"
    assert detok.flush() == ""


def test_flush_replaces_an_incomplete_tail_and_resets(qwen3_tokenizer):
    tok = qwen3_tokenizer
    detok = IncrementalDetokenizer(tok)
    assert detok.push(tok.encode("ok 🫠")[:-1]) == "ok "
    assert detok.flush() == "\ufffd"
    assert detok.push(tok.encode("again")) == "again"


def test_skip_special_tokens_drops_only_special(qwen3_tokenizer):
    tok = qwen3_tokenizer
    detok = IncrementalDetokenizer(tok, skip_special_tokens=True)
    assert (
        detok.push(tok.encode("<|im_start|>assistant\n<think>\n</think>ok<|im_end|>"))
        == "assistant\n<think>\n</think>ok"
    )


def test_out_of_range_id_is_an_error(qwen3_tokenizer):
    with pytest.raises(ValueError, match="token id 151669 is out of range"):
        IncrementalDetokenizer(qwen3_tokenizer).push([151669])


def test_tensor_and_array_ids_skip_special_tokens_like_decode(qwen3_tokenizer):
    torch = pytest.importorskip("torch")
    numpy = pytest.importorskip("numpy")
    tok = qwen3_tokenizer
    ids = tok.encode("<|im_start|>assistant\n<think>\n</think>ok 🙂<|im_end|>")
    expected = tok.decode(ids, skip_special_tokens=True)
    for as_array in (torch.tensor, numpy.array):
        detok = IncrementalDetokenizer(tok, skip_special_tokens=True)
        assert detok.push(as_array(ids)) + detok.flush() == expected
        detok = IncrementalDetokenizer(tok, skip_special_tokens=True)
        assert "".join(detok.push(as_array(token_id)) for token_id in ids) + detok.flush() == expected
