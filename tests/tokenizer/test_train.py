"""BPE training: exact size, Qwen3's added tokens after the learned vocabulary, determinism, and loadability."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings

from qwen3.tokenizer import load_tokenizer
from qwen3.tokenizer.pipeline import byte_to_char
from qwen3.tokenizer.special import ADDED_TOKENS
from qwen3.tokenizer.train import debug_tokenizer, synthetic_corpus, train_bpe

from .conftest import nfc_between_added_tokens, random_text

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def corpus() -> list[str]:
    return list(synthetic_corpus(1500))


@pytest.fixture(scope="module")
def trained(corpus):
    return train_bpe(corpus, 1024)


def test_size_counts_bytes_learned_and_added_tokens(trained):
    assert trained.vocab_size == len(trained) == 1024
    vocab = trained.backend.get_vocab(with_added_tokens=False)
    assert len(vocab) == 1024 - 26
    assert all(char in vocab for char in byte_to_char())  # every byte, used in the corpus or not


def test_added_tokens_follow_the_learned_vocabulary(trained):
    for spec in ADDED_TOKENS:
        token_id = 1024 - 26 + spec.offset
        assert trained.token_to_id(spec.content) == token_id
        assert trained.is_special(token_id) == spec.special
    assert (trained.im_start_id, trained.im_end_id, trained.think_end_id) == (999, 1000, 1023)
    assert trained.eos_token_ids == (1000, 998) and trained.pad_token_id == 998


def test_added_token_text_is_not_learned(corpus, trained):
    # The corpus is full of chat turns, but <|im_start|> etc. are cut out before counting pairs.
    learned = trained.backend.get_vocab(with_added_tokens=False)
    assert not any("im_start" in token or "think>" in token for token in learned)


@settings(max_examples=100, deadline=None)
@given(random_text)
def test_trained_round_trip(trained, text):
    ids = trained.encode(text)
    assert all(0 <= i < 1024 for i in ids)
    assert trained.decode(ids) == nfc_between_added_tokens(text)


def test_same_input_same_tokenizer_across_processes(corpus, trained):
    script = (
        "from qwen3.tokenizer.train import synthetic_corpus, train_bpe;"
        "print(train_bpe(list(synthetic_corpus(1500)), 1024).backend.to_str())"
    )
    env = {"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == trained.backend.to_str()


def test_saved_trained_tokenizer_loads_here_and_in_transformers(trained, corpus, tmp_path):
    transformers = pytest.importorskip("transformers")
    trained.save_pretrained(tmp_path, chat_template="{{ messages }}", model_max_length=2048)
    ours = load_tokenizer(tmp_path)
    hf = transformers.AutoTokenizer.from_pretrained(tmp_path)
    for text in corpus[:50]:
        ids = trained.encode(text)
        assert ours.encode(text) == ids == hf.encode(text, add_special_tokens=False)
        assert hf.decode(ids) == text
    assert (hf.eos_token_id, hf.pad_token_id) == (trained.im_end_id, trained.endoftext_id)


def test_too_small_or_unfillable_vocabulary(corpus):
    with pytest.raises(ValueError, match="vocab_size 200 is below 282"):
        train_bpe(corpus, 200)
    with pytest.raises(ValueError, match="the corpus supports only .* tokens at min_frequency=2, not 100000"):
        train_bpe(corpus[:50], 100_000)


def test_debug_tokenizer_is_cached_and_deterministic(tmp_path, monkeypatch):
    monkeypatch.setenv("QWEN3_CACHE", str(tmp_path))
    first = debug_tokenizer(512)
    cached = list(tmp_path.rglob("tokenizer.json"))
    assert len(cached) == 1 and first.vocab_size == 512
    assert debug_tokenizer(512).backend.to_str() == first.backend.to_str()
    chat = "<|im_start|>user\nWhat is 12 + 7?<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n19<|im_end|>"
    assert first.decode(first.encode(chat)) == chat
