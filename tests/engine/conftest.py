"""Tiny random models (fp32) and engines for the engine tests."""

from __future__ import annotations

import pytest
import torch

from qwen3.engine import LLM, SamplingParams
from qwen3.tokenizer.train import tokenizer_for_vocab
from tests.model.conftest import tiny, tiny_model

GREEDY = SamplingParams(temperature=0.0, max_tokens=24, ignore_eos=True)


def make_model(preset: str = "qwen3-debug-tiny", seed: int = 0, **changes):
    """A tiny model with weights large enough (init std 0.1, random norms) that greedy outputs vary."""
    return tiny_model(tiny(preset, initializer_range=0.1, **changes), seed)


def make_llm(preset: str = "qwen3-debug-tiny", seed: int = 0, model=None, **engine) -> LLM:
    engine.setdefault("max_model_len", 256)
    engine.setdefault("weights", "reference")
    return LLM(model if model is not None else make_model(preset, seed), **engine)


def random_prompt(length: int, seed: int, vocab: int = 480) -> list[int]:
    """Ordinary token ids (below the debug tokenizer's added tokens)."""
    return torch.randint(0, vocab, (length,), generator=torch.Generator().manual_seed(seed)).tolist()


@pytest.fixture(scope="session")
def tokenizer():
    return tokenizer_for_vocab(512)


@pytest.fixture(scope="module")
def llm() -> LLM:
    return make_llm()
