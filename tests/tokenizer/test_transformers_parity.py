"""What save_pretrained writes loads in transformers.AutoTokenizer and gives the same ids and text."""

from __future__ import annotations

import json

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


def test_tokenizer_config_fields(qwen3_tokenizer, tmp_path):
    qwen3_tokenizer.save_pretrained(tmp_path, chat_template="T", model_max_length=40960)
    config = json.loads((tmp_path / "tokenizer_config.json").read_text())
    assert config["tokenizer_class"] == "Qwen2Tokenizer"
    assert (config["eos_token"], config["pad_token"], config["bos_token"], config["unk_token"]) == (
        "<|im_end|>",
        "<|endoftext|>",
        None,
        None,
    )
    assert config["errors"] == "replace" and config["split_special_tokens"] is False
    assert config["add_prefix_space"] is False and config["clean_up_tokenization_spaces"] is False
    assert config["chat_template"] == "T" and config["model_max_length"] == 40960
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


def test_tokenizer_json_has_the_official_pipeline(qwen3_tokenizer, tmp_path):
    qwen3_tokenizer.save_pretrained(tmp_path)
    data = json.loads((tmp_path / "tokenizer.json").read_text())
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
