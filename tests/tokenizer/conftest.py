"""Shared fixtures: the real Qwen3 tokenizer (built once from the rank file and cached), and text strategies."""

from __future__ import annotations

import re
import unicodedata

import pytest
from hypothesis import strategies as st

from qwen3.tokenizer import Qwen3Tokenizer, load_tokenizer
from qwen3.tokenizer.ranks import RankFileError, find_rank_file
from qwen3.tokenizer.special import ADDED_TOKENS


@pytest.fixture(scope="session")
def rank_file():
    try:
        return find_rank_file()
    except RankFileError as err:
        pytest.skip(str(err))


@pytest.fixture(scope="session")
def qwen3_tokenizer(rank_file) -> Qwen3Tokenizer:
    # The first run on a machine builds tokenizer.json from the ranks (about 2 s) into the user cache.
    return load_tokenizer("qwen3")


@pytest.fixture(scope="session")
def hf_qwen3_tokenizer(qwen3_tokenizer, tmp_path_factory):
    """transformers.AutoTokenizer loaded from the directory our save_pretrained wrote."""
    transformers = pytest.importorskip("transformers")
    directory = qwen3_tokenizer.save_pretrained(
        tmp_path_factory.mktemp("qwen3-tokenizer"), chat_template="{{ x }}"
    )
    return transformers.AutoTokenizer.from_pretrained(directory)


# Characters from many scripts and the classes the pre-tokenizer regex cares about.
_SCRIPT_RANGES = [
    (0x41, 0x7A),  # ASCII letters and some punctuation
    (0xC0, 0x24F),  # Latin-1 supplement and Latin extended
    (0x300, 0x36F),  # combining diacritical marks (NFC composes some)
    (0x370, 0x3FF),  # Greek
    (0x400, 0x4FF),  # Cyrillic
    (0x590, 0x5FF),  # Hebrew
    (0x600, 0x6FF),  # Arabic, with Arabic-Indic digits
    (0x900, 0x97F),  # Devanagari
    (0xE00, 0xE7F),  # Thai
    (0x1100, 0x11FF),  # Hangul jamo (NFC composes them into syllables)
    (0x2000, 0x206F),  # general punctuation, odd spaces
    (0x3000, 0x30FF),  # CJK punctuation, ideographic space, kana
    (0x4E00, 0x4FFF),  # CJK ideographs
    (0xAC00, 0xACFF),  # Hangul syllables
    (0xFF00, 0xFFEF),  # fullwidth forms and digits
    (0x1F300, 0x1F64F),  # emoji
]
_script_chars = st.one_of(*(st.characters(min_codepoint=lo, max_codepoint=hi) for lo, hi in _SCRIPT_RANGES))
_fragments = st.one_of(
    st.text(_script_chars, max_size=12),
    st.text(st.characters(exclude_categories=("Cs",)), max_size=6),  # anything encodable
    st.text(st.sampled_from("0123456789"), min_size=1, max_size=8),
    st.sampled_from(
        [" ", "  ", "\t", "\n", "\r\n", "\r", " \n ", "\n\n\n", "\u00a0", "\u3000", "\u2028", "\u0085"]
    ),
    st.sampled_from(
        ["'s", "'T", "'re", "'VE", "'m", "'ll", "'D", "n't", "...", "!!", "?\n", "```", "->", "=="]
    ),
    st.sampled_from([spec.content for spec in ADDED_TOKENS] + ["<|im_", "<think", "</", "|>", "<tool_call"]),
    st.sampled_from(["e\u0301", "\u1100\u1161", "A\u030a", ">\u0338", "\ufeff", "\u200d", "👨‍👩‍👧"]),
)
random_text = st.lists(_fragments, max_size=24).map("".join)


_ADDED_CONTENTS = {spec.content for spec in ADDED_TOKENS}
_ADDED_SPLIT = re.compile(
    "(" + "|".join(re.escape(content) for content in sorted(_ADDED_CONTENTS, key=len, reverse=True)) + ")"
)


def nfc_between_added_tokens(text: str) -> str:
    """What decode(encode(text)) gives: the normaliser runs on the text between added tokens, never across them."""
    return "".join(
        p if p in _ADDED_CONTENTS else unicodedata.normalize("NFC", p) for p in _ADDED_SPLIT.split(text)
    )
