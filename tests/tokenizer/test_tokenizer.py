"""The real Qwen3 tokenizer: ids identical to the reference, special tokens, decoding, errors, linear time."""

from __future__ import annotations

import json
import random
import string
import unicodedata

import pytest
from hypothesis import given, settings

import qwen3
from qwen3.tokenizer import Qwen3Tokenizer, TokenizerLoadError, load_tokenizer
from qwen3.tokenizer.pipeline import byte_to_char
from qwen3.tokenizer.reference import reference_encode
from qwen3.tokenizer.special import ADDED_TOKENS, QWEN3_FIRST_ADDED_ID

from .conftest import nfc_between_added_tokens, random_text

# Ids published with prompts rendered by the official Qwen2.5/Qwen3 tokenizer (same BPE and pre-tokenizer).
KNOWN_PROMPT = (
    "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
    "<|im_start|>user\nWrite a function to reverse each string in a list.\nYour code should pass this test:\n"
    'assert rev(["ab"]) == ["ba"]<|im_end|>\n<|im_start|>assistant\n'
)
KNOWN_PROMPT_IDS = [
    151644, 8948, 198, 2610, 525, 1207, 16948, 11, 3465, 553, 54364, 14817, 13, 1446, 525, 264, 10950, 17847, 13,
    151645, 198, 151644, 872, 198, 7985, 264, 729, 311, 9931, 1817, 914, 304, 264, 1140, 624, 7771, 2038, 1265,
    1494, 419, 1273, 510, 2207, 5772, 19065, 370, 14013, 621, 4383, 4645, 1341, 151645, 198, 151644, 77091, 198,
]  # fmt: skip


def test_known_prompt_ids(qwen3_tokenizer):
    assert qwen3_tokenizer.encode(KNOWN_PROMPT) == KNOWN_PROMPT_IDS
    assert qwen3_tokenizer.encode("What is the capital of France?") == [3838, 374, 279, 6722, 315, 9625, 30]
    assert qwen3_tokenizer.encode("你好") == [108386]


def test_vocabulary_size_and_added_token_table(qwen3_tokenizer):
    assert len(qwen3_tokenizer) == qwen3_tokenizer.vocab_size == 151669
    for spec in ADDED_TOKENS:
        token_id = QWEN3_FIRST_ADDED_ID + spec.offset
        assert qwen3_tokenizer.token_to_id(spec.content) == token_id
        assert qwen3_tokenizer.id_to_token(token_id) == spec.content
        assert qwen3_tokenizer.is_special(token_id) == spec.special
        assert qwen3_tokenizer.encode(spec.content) == [token_id]
        assert qwen3_tokenizer.token_bytes(token_id) == spec.content.encode()


def test_named_ids_match_the_released_tokenizer(qwen3_tokenizer):
    tok = qwen3_tokenizer
    assert (tok.endoftext_id, tok.im_start_id, tok.im_end_id) == (151643, 151644, 151645)
    assert (tok.tool_call_start_id, tok.tool_call_end_id) == (151657, 151658)
    assert (tok.tool_response_start_id, tok.tool_response_end_id) == (151665, 151666)
    assert (tok.think_start_id, tok.think_end_id) == (151667, 151668)
    assert tok.eos_token_ids == (151645, 151643)
    assert tok.pad_token_id == 151643


def test_public_lazy_export(qwen3_tokenizer):
    assert qwen3.load_tokenizer is load_tokenizer
    assert isinstance(qwen3.load_tokenizer("Qwen/Qwen3-0.6B"), Qwen3Tokenizer)


@settings(max_examples=200, deadline=None)
@given(random_text)
def test_ids_match_tiktoken_reference(qwen3_tokenizer, text):
    assert qwen3_tokenizer.encode(text) == reference_encode(text)
    assert qwen3_tokenizer.encode(text, allow_special=False) == reference_encode(text, allow_special=False)
    assert qwen3_tokenizer.encode(text, allow_special="none") == reference_encode(text, allow_special="none")


@settings(max_examples=200, deadline=None)
@given(random_text)
def test_decode_inverts_encode_up_to_nfc(qwen3_tokenizer, text):
    for allow_special in (True, False):
        ids = qwen3_tokenizer.encode(text, allow_special=allow_special)
        assert qwen3_tokenizer.decode(ids) == nfc_between_added_tokens(text)
    # No added tokens: NFC applies to the whole text.
    plain = qwen3_tokenizer.encode(text, allow_special="none")
    assert qwen3_tokenizer.decode(plain) == unicodedata.normalize("NFC", text)


def test_special_tokens_as_text_when_not_allowed(qwen3_tokenizer):
    tok = qwen3_tokenizer
    text = "<|im_start|>user\n<think>\nx</think><tool_call>{}</tool_call><|endoftext|>"
    ids = tok.encode(text, allow_special=False)
    assert tok.im_start_id not in ids and tok.endoftext_id not in ids
    # Like transformers' split_special_tokens=True: the non-special added tokens stay atomic.
    for token_id in (tok.think_start_id, tok.think_end_id, tok.tool_call_start_id, tok.tool_call_end_id):
        assert token_id in ids
    assert tok.decode(ids) == text


def test_no_added_token_is_matched_with_allow_special_none(qwen3_tokenizer):
    tok = qwen3_tokenizer
    text = "".join(spec.content for spec in ADDED_TOKENS)
    for ids in (tok.encode(text, allow_special="none"), *tok.encode_batch([text], allow_special="none")):
        assert max(ids) < QWEN3_FIRST_ADDED_ID and tok.decode(ids) == text
    think = tok.encode("<think>", allow_special="none")
    assert think == tok.encode("<think", allow_special="none") + [29]
    assert tok.encode_with_offsets("<think>", allow_special="none")[0] == think
    with pytest.raises(ValueError, match="allow_special: must be True, False or 'none', got 'no'"):
        tok.encode("x", allow_special="no")


def test_skip_special_tokens_keeps_think_and_tool_tags(qwen3_tokenizer):
    tok = qwen3_tokenizer
    ids = tok.encode(
        "<|im_start|>assistant\n<think>\nhm\n</think>\n\n<tool_call>\n{}\n</tool_call><|im_end|>"
    )
    assert (
        tok.decode(ids, skip_special_tokens=True)
        == "assistant\n<think>\nhm\n</think>\n\n<tool_call>\n{}\n</tool_call>"
    )


def _byte_tokens(tok: Qwen3Tokenizer, data: bytes) -> list[int]:
    """One single-byte token per byte of ``data`` (any byte string, valid UTF-8 or not)."""
    return [tok.token_to_id(byte_to_char()[byte]) for byte in data]


@pytest.mark.parametrize(
    "data",
    [b"\xe4", b"\xe4\xbd", b"\xbd", b"\xe4a", b"\xe4\xbd\xa0", b"\xed\xa0\x80", b"\xff\xfe", b"\xf0\x9f\x99"],
)
def test_invalid_utf8_decodes_to_replacement_characters(qwen3_tokenizer, data):
    ids = _byte_tokens(qwen3_tokenizer, data)
    assert qwen3_tokenizer.decode(ids) == data.decode("utf-8", errors="replace")
    assert qwen3_tokenizer.decode(ids + [qwen3_tokenizer.im_end_id]).endswith("<|im_end|>")


def test_decode_rejects_ids_out_of_range(qwen3_tokenizer):
    with pytest.raises(ValueError, match=r"token id 151669 is out of range for a vocabulary of 151669"):
        qwen3_tokenizer.decode([1, 151669])
    with pytest.raises(ValueError, match=r"token id -1 is out of range"):
        qwen3_tokenizer.decode([-1])
    with pytest.raises(ValueError, match=r"token id 200000"):
        qwen3_tokenizer.token_bytes(200000)


def test_encode_rejects_non_text(qwen3_tokenizer):
    with pytest.raises(TypeError, match="expected text as str, got bytes"):
        qwen3_tokenizer.encode(b"abc")


def test_encode_names_a_lone_surrogate(qwen3_tokenizer):
    message = r"text has a lone surrogate U\+D800 at index 1; it cannot be encoded as UTF-8"
    with pytest.raises(ValueError, match=message):
        qwen3_tokenizer.encode("a\ud800b")
    with pytest.raises(ValueError, match=r"text has a lone surrogate U\+DFFF at index 2"):
        qwen3_tokenizer.encode_with_offsets("é\U0001f642\udfff")
    with pytest.raises(ValueError, match=r"texts\[1\] has a lone surrogate U\+DC80 at index 0"):
        qwen3_tokenizer.encode_batch(["ok", "\udc80"])


def test_batch_encode_and_decode_match_single_calls(qwen3_tokenizer):
    texts = ["Hello world", "", "<|im_start|>user\nhi<|im_end|>", "  \r\n\t数字 12345 🙂"]
    batch = qwen3_tokenizer.encode_batch(texts)
    assert batch == [qwen3_tokenizer.encode(text) for text in texts]
    assert qwen3_tokenizer.decode_batch(batch) == texts
    plain = qwen3_tokenizer.encode_batch(texts, allow_special=False)
    assert plain == [qwen3_tokenizer.encode(text, allow_special=False) for text in texts]


def test_offsets_cover_the_text(qwen3_tokenizer):
    text = "<|im_start|>user\nnaïve 你好 🙂<|im_end|>"
    ids, offsets = qwen3_tokenizer.encode_with_offsets(text)
    assert ids == qwen3_tokenizer.encode(text)
    assert offsets[0] == (0, len("<|im_start|>")) and offsets[-1] == (
        len(text) - len("<|im_end|>"),
        len(text),
    )
    starts = [start for start, _ in offsets]
    assert starts == sorted(starts)
    covered = "".join(text[start:end] for start, end in dict.fromkeys(offsets))
    assert covered == text


def test_token_bytes_concatenate_to_the_utf8_text(qwen3_tokenizer):
    text = "naïve café 你好 🙂 <think>"
    ids = qwen3_tokenizer.encode(text)
    assert b"".join(qwen3_tokenizer.token_bytes(i) for i in ids) == text.encode()


LONG_INPUTS = {  # built when the test runs, not at collection
    "letters": lambda: "".join(random.Random(0).choices(string.ascii_letters, k=1_000_000)),  # no spaces
    "one-letter": lambda: "a" * 1_000_000,
    "digits": lambda: "7" * 1_000_000,
    "spaces": lambda: " " * 1_000_000,
    "punctuation": lambda: "!" * 1_000_000,
    "cjk": lambda: "你" * 300_000,
    "crlf": lambda: "\r\n" * 500_000,
}


@pytest.mark.timeout(120)  # linear time: seconds at most; a quadratic BPE would take hours
@pytest.mark.parametrize("name", list(LONG_INPUTS))
def test_long_inputs_without_spaces_finish(qwen3_tokenizer, name):
    text = LONG_INPUTS[name]()
    assert qwen3_tokenizer.decode(qwen3_tokenizer.encode(text)) == text


# ------------------------------------------------------------------------------------------------- loading
def test_load_from_directory_and_file(qwen3_tokenizer, tmp_path):
    qwen3_tokenizer.save_pretrained(tmp_path, chat_template="{{ messages }}")
    from_dir = load_tokenizer(tmp_path)
    assert from_dir.chat_template == "{{ messages }}"
    assert from_dir.encode(KNOWN_PROMPT) == KNOWN_PROMPT_IDS
    assert load_tokenizer(tmp_path / "tokenizer.json").chat_template is None


def test_chat_template_jinja_file_wins(qwen3_tokenizer, tmp_path):
    qwen3_tokenizer.save_pretrained(tmp_path, chat_template="from config")
    (tmp_path / "chat_template.jinja").write_text("from jinja file")
    assert load_tokenizer(tmp_path).chat_template == "from jinja file"


def test_directory_without_tokenizer_json(tmp_path):
    with pytest.raises(TokenizerLoadError, match=f"{tmp_path} has no tokenizer.json"):
        load_tokenizer(tmp_path)


def test_unknown_name():
    with pytest.raises(TokenizerLoadError, match="'no-such-model' is not a model directory"):
        load_tokenizer("no-such-model")


def test_corrupt_tokenizer_json(tmp_path):
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0", "model": ')
    with pytest.raises(TokenizerLoadError, match="tokenizer.json is not a valid tokenizer.json"):
        load_tokenizer(tmp_path)


def test_corrupt_tokenizer_config(qwen3_tokenizer, tmp_path):
    qwen3_tokenizer.save_pretrained(tmp_path)
    (tmp_path / "tokenizer_config.json").write_text("{not json")
    with pytest.raises(TokenizerLoadError, match="cannot read .*tokenizer_config.json"):
        load_tokenizer(tmp_path)


def test_missing_control_tokens_are_named(qwen3_tokenizer, tmp_path):
    data = json.loads(qwen3_tokenizer.backend.to_str())
    data["added_tokens"] = [t for t in data["added_tokens"] if t["content"] not in ("<think>", "<|im_end|>")]
    (tmp_path / "tokenizer.json").write_text(json.dumps(data))
    with pytest.raises(TokenizerLoadError, match=r"lack the Qwen3 control tokens <\|im_end\|>, <think>"):
        load_tokenizer(tmp_path)


def test_decode_accepts_arrays_and_tensors(qwen3_tokenizer):
    import numpy as np
    import torch

    ids = qwen3_tokenizer.encode("hello <think>")
    assert qwen3_tokenizer.decode(np.array(ids)) == "hello <think>"
    assert qwen3_tokenizer.decode(torch.tensor(ids)) == "hello <think>"
    assert qwen3_tokenizer.decode([np.int64(i) for i in ids]) == "hello <think>"
    with pytest.raises(TypeError):
        qwen3_tokenizer.decode([1.5])
