"""What save_pretrained writes loads in transformers.AutoTokenizer and gives the same ids and text."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings

from qwen3.tokenizer.special import ADDED_TOKENS, ADDITIONAL_SPECIAL_TOKENS

from .conftest import random_text


@settings(max_examples=100, deadline=None)
@given(random_text)
def test_same_ids_as_transformers(qwen3_tokenizer, hf_qwen3_tokenizer, text):
    ids = qwen3_tokenizer.encode(text)
    assert ids == hf_qwen3_tokenizer.encode(text, add_special_tokens=False)
    assert (
        qwen3_tokenizer.encode(text, allow_special=False)
        == hf_qwen3_tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
    )
    for skip in (False, True):
        assert qwen3_tokenizer.decode(ids, skip_special_tokens=skip) == hf_qwen3_tokenizer.decode(
            ids, skip_special_tokens=skip
        )


def test_transformers_sees_qwen3_special_tokens(hf_qwen3_tokenizer):
    hf = hf_qwen3_tokenizer
    assert (hf.eos_token, hf.pad_token, hf.bos_token) == ("<|im_end|>", "<|endoftext|>", None)
    assert (hf.eos_token_id, hf.pad_token_id) == (151645, 151643)
    assert len(hf) == 151669
    assert hf.chat_template == "{{ x }}"


def test_tokenizer_config_fields(saved_qwen3_dir):
    config = json.loads((saved_qwen3_dir / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "Qwen2Tokenizer"
    assert (config["eos_token"], config["pad_token"], config["bos_token"], config["unk_token"]) == (
        "<|im_end|>",
        "<|endoftext|>",
        None,
        None,
    )
    assert config["errors"] == "replace" and config["split_special_tokens"] is False
    assert config["add_prefix_space"] is False and config["clean_up_tokenization_spaces"] is False
    assert config["chat_template"] == "{{ x }}" and config["model_max_length"] == 40960
    assert config["additional_special_tokens"] == list(ADDITIONAL_SPECIAL_TOKENS)
    assert len(ADDITIONAL_SPECIAL_TOKENS) == 13
    decoder = config["added_tokens_decoder"]
    for spec in ADDED_TOKENS:
        entry = decoder[str(151643 + spec.offset)]
        assert entry == {
            "content": spec.content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": spec.special,
        }


def test_tokenizer_json_has_the_official_pipeline(saved_qwen3_dir):
    data = json.loads((saved_qwen3_dir / "tokenizer.json").read_text())
    assert data["normalizer"] == {"type": "NFC"}
    split, byte_level = data["pre_tokenizer"]["pretokenizers"]
    assert split["behavior"] == "Isolated" and split["pattern"]["Regex"].startswith(
        "(?i:'s|'t|'re|'ve|'m|'ll|'d)"
    )
    assert byte_level == {
        "type": "ByteLevel",
        "add_prefix_space": False,
        "trim_offsets": False,
        "use_regex": False,
    }
    assert data["decoder"] == byte_level and data["post_processor"] == byte_level
    model = data["model"]
    assert (model["type"], model["byte_fallback"], model["unk_token"], model["ignore_merges"]) == (
        "BPE",
        False,
        None,
        False,
    )
    assert len(model["vocab"]) == 151643 and len(model["merges"]) == 151387


def test_vocab_and_merges_files_alone_give_the_same_ids(qwen3_tokenizer, tmp_path):
    transformers = pytest.importorskip("transformers")
    qwen3_tokenizer.save_pretrained(tmp_path)
    assert (tmp_path / "merges.txt").read_text().splitlines()[:3] == ["#version: 0.2", "Ġ Ġ", "ĠĠ ĠĠ"]
    (tmp_path / "tokenizer.json").unlink()  # transformers must rebuild from vocab.json + merges.txt
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    assert len(hf) == 151669
    for text in ["Hello <|im_start|>user\n<think>\nhi</think> 你好 12345 🫠 naïve", "  \r\n\tx'LL y's  "]:
        assert hf.encode(text, add_special_tokens=False) == qwen3_tokenizer.encode(text)


def test_the_named_tokenizer_saves_the_chat_template_transformers_renders(tmp_path):
    from transformers import AutoTokenizer

    from qwen3.chat import render
    from qwen3.tokenizer import load_tokenizer

    load_tokenizer("qwen3").save_pretrained(tmp_path)
    theirs = AutoTokenizer.from_pretrained(tmp_path)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi /no_think"}]
    for enable_thinking in (True, False):
        expected = render(messages, add_generation_prompt=True, enable_thinking=enable_thinking)
        rendered = theirs.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, enable_thinking=enable_thinking
        )
        assert rendered == expected
        assert theirs.encode(rendered, add_special_tokens=False) == load_tokenizer("qwen3").encode(expected)
