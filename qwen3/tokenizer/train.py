"""Train a small byte-level BPE with Qwen3's pipeline and added tokens (for miniature models and debug presets).

The result has the same normaliser, pre-tokenizer and byte-level alphabet as Qwen3 (all 256 bytes are always in
the vocabulary, so any text encodes), and the 26 Qwen3 added tokens, with Qwen3's order and flags, right after the
learned vocabulary. ``save_pretrained`` writes it in the official format, so ``load_tokenizer`` and
``transformers.AutoTokenizer`` both load it.

``debug_tokenizer(vocab_size)`` trains on a corpus that ``synthetic_corpus`` generates in code (syllable words,
numbers, arithmetic, punctuation, code-like lines and chat-format turns), so it is deterministic and needs no data.
"""

from __future__ import annotations

import itertools
import random
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from tokenizers import pre_tokenizers, trainers

from qwen3.tokenizer import special
from qwen3.tokenizer.pipeline import append_added_tokens, empty_bpe_tokenizer, tokenizer_json
from qwen3.tokenizer.special import ADDED_TOKENS
from qwen3.tokenizer.tokenizer import Qwen3Tokenizer
from qwen3.utils.cache import cached_file

BYTE_ALPHABET_SIZE = 256
MIN_VOCAB_SIZE = BYTE_ALPHABET_SIZE + len(ADDED_TOKENS)
# Bump when synthetic_corpus or the training settings change, so cached debug tokenizers are rebuilt.
DEBUG_CORPUS_VERSION = 1
DEBUG_CORPUS_DOCUMENTS = 4000

_ADDED_TOKEN_PATTERN = re.compile("|".join(re.escape(spec.content) for spec in ADDED_TOKENS))


def train_bpe(texts: Iterable[str], vocab_size: int, *, min_frequency: int = 2) -> Qwen3Tokenizer:
    """Learn a byte-level BPE of exactly ``vocab_size`` tokens, counting the 256 bytes and the 26 added tokens.

    Added-token strings in ``texts`` are cut out before counting, as encoding matches them atomically. Raises
    ValueError when the corpus has too few pairs occurring ``min_frequency`` times to fill the vocabulary.
    """
    if vocab_size < MIN_VOCAB_SIZE:
        raise ValueError(
            f"vocab_size {vocab_size} is below {MIN_VOCAB_SIZE} (256 bytes + {len(ADDED_TOKENS)} added)"
        )
    learned_size = vocab_size - len(ADDED_TOKENS)
    tokenizer = empty_bpe_tokenizer()
    trainer = trainers.BpeTrainer(
        vocab_size=learned_size,
        min_frequency=min_frequency,
        show_progress=False,
        special_tokens=[],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(_without_added_tokens(texts), trainer=trainer)
    got = tokenizer.get_vocab_size(with_added_tokens=False)
    if got != learned_size:
        raise ValueError(
            f"the corpus supports only {got + len(ADDED_TOKENS)} tokens at min_frequency={min_frequency}, "
            f"not {vocab_size}: give more text, a lower min_frequency or a smaller vocab_size"
        )
    append_added_tokens(tokenizer)
    return Qwen3Tokenizer(tokenizer, source=f"<trained, vocab_size={vocab_size}>")


def _without_added_tokens(texts: Iterable[str]) -> Iterator[str]:
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"training texts must be str, got {type(text).__name__}")
        yield from (piece for piece in _ADDED_TOKEN_PATTERN.split(text) if piece)


def debug_tokenizer(vocab_size: int = 512) -> Qwen3Tokenizer:
    """A deterministic small tokenizer for debug model presets, trained on ``synthetic_corpus`` and cached."""
    path = cached_file(
        f"tokenizers/debug-{vocab_size}-v{DEBUG_CORPUS_VERSION}/tokenizer.json",
        lambda: tokenizer_json(train_bpe(_debug_corpus(vocab_size), vocab_size).backend).encode("utf-8"),
    )
    return Qwen3Tokenizer.from_file(path)


def _debug_corpus(vocab_size: int) -> Iterator[str]:
    # The default corpus fills about 10k tokens; larger vocabularies get proportionally more words and text.
    scale = max(1, -(-vocab_size // 8192))
    return synthetic_corpus(DEBUG_CORPUS_DOCUMENTS * scale, lexicon_size=3000 * scale)


# ------------------------------------------------------------------------------------------ synthetic corpus
_ONSETS = [
    "",
    "b",
    "c",
    "d",
    "f",
    "g",
    "h",
    "k",
    "l",
    "m",
    "n",
    "p",
    "r",
    "s",
    "t",
    "v",
    "w",
    "z",
    "st",
    "tr",
    "ch",
]
_VOWELS = ["a", "e", "i", "o", "u", "ai", "ou", "ea"]
_CODAS = ["", "", "n", "r", "s", "t", "l", "m", "nd", "ng"]
_ACCENTED = ["é", "è", "à", "ü", "ö", "ñ", "ç", "ø"]


def synthetic_corpus(
    num_documents: int = DEBUG_CORPUS_DOCUMENTS, *, lexicon_size: int = 3000, seed: int = 0
) -> Iterator[str]:
    """Yield ``num_documents`` generated documents; the same arguments always give the same text."""
    rng = random.Random(seed)
    lexicon = _lexicon(rng, lexicon_size)
    makers = [_prose, _arithmetic, _code, _chat_turns, _cjk_and_accents]
    for _ in range(num_documents):
        yield rng.choices(makers, weights=[5, 2, 2, 2, 1])[0](rng, lexicon)


@dataclass(frozen=True)
class _Lexicon:
    words: list[str]
    cum_weights: list[float]  # Zipf's law: the k-th word has weight 1/k, as in real text


def _lexicon(rng: random.Random, size: int) -> _Lexicon:
    words: set[str] = set()
    while len(words) < size:
        syllables = rng.choices([1, 2, 3, 4], weights=[4, 5, 3, 1])[0]
        words.add(
            "".join(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS) for _ in range(syllables))
        )
    ordered = sorted(words)
    rng.shuffle(ordered)  # which words are frequent is random, not alphabetical
    return _Lexicon(ordered, list(itertools.accumulate(1.0 / rank for rank in range(1, size + 1))))


def _word(rng: random.Random, lexicon: _Lexicon) -> str:
    return rng.choices(lexicon.words, cum_weights=lexicon.cum_weights)[0]


def _sentence(rng: random.Random, lexicon: _Lexicon) -> str:
    words = [_word(rng, lexicon) for _ in range(rng.randint(3, 14))]
    if rng.random() < 0.3:
        words.insert(rng.randrange(len(words)), str(rng.randint(0, 2025)))
    text = " ".join(words)
    for _ in range(rng.randint(0, 2)):
        cut = text.find(" ", rng.randrange(len(text)))
        if cut > 0:
            text = text[:cut] + rng.choice([",", ";", ":", " -", " ("]) + text[cut:]
    return text[0].upper() + text[1:] + rng.choice([".", ".", ".", "?", "!", "..."])


def _prose(rng: random.Random, lexicon: _Lexicon) -> str:
    paragraphs = [
        " ".join(_sentence(rng, lexicon) for _ in range(rng.randint(1, 5))) for _ in range(rng.randint(1, 3))
    ]
    return "\n\n".join(paragraphs)


def _arithmetic(rng: random.Random, lexicon: _Lexicon) -> str:
    lines = []
    for _ in range(rng.randint(2, 6)):
        a, b = rng.randint(0, 999), rng.randint(1, 99)
        op = rng.choice(["+", "-", "*", "/"])
        result = {"+": a + b, "-": a - b, "*": a * b, "/": round(a / b, 3)}[op]
        lines.append(f"{a} {op} {b} = {result}")
    return "Compute:\n" + "\n".join(lines) + f"\nThe answer is \\boxed{{{result}}}."


def _code(rng: random.Random, lexicon: _Lexicon) -> str:
    name, arg, other = (_word(rng, lexicon) for _ in range(3))
    body = rng.choice(
        [f"return {arg} * {rng.randint(2, 9)}", f"return [{arg}[i] for i in range(len({arg}))]"]
    )
    return (
        f"def {name}_{other}({arg}, {other}=None):\n"
        f'    """{_sentence(rng, lexicon)}"""\n'
        f"    if {other} is None:\n        {other} = {{}}\n"
        f"    {body}\n\n\nprint({name}_{other}({rng.randint(0, 99)}))\n"
    )


def _chat_turns(rng: random.Random, lexicon: _Lexicon) -> str:
    think = _sentence(rng, lexicon) if rng.random() < 0.7 else ""
    answer = _sentence(rng, lexicon)
    tool = ""
    if rng.random() < 0.3:
        tool = f'\n<tool_call>\n{{"name": "{_word(rng, lexicon)}", "arguments": {{"x": {rng.randint(0, 99)}}}}}\n</tool_call>'
    return (
        f"<|im_start|>system\n{_sentence(rng, lexicon)}<|im_end|>\n"
        f"<|im_start|>user\n{_sentence(rng, lexicon)}{rng.choice(['', ' /think', ' /no_think'])}<|im_end|>\n"
        f"<|im_start|>assistant\n<think>\n{think}\n</think>\n\n{answer}{tool}<|im_end|>\n"
    )


def _cjk_and_accents(rng: random.Random, lexicon: _Lexicon) -> str:
    cjk = "".join(chr(rng.randint(0x4E00, 0x4E00 + 200)) for _ in range(rng.randint(4, 20)))
    accented = " ".join(_word(rng, lexicon) + rng.choice(_ACCENTED) for _ in range(rng.randint(2, 6)))
    return f"{cjk}。{accented} 🙂"


def tokenizer_for_vocab(vocab_size: int) -> Qwen3Tokenizer:
    """The tokenizer a model with ``vocab_size`` embedding rows is initialised with: the real Qwen3 tokenizer when
    its 151,669 tokens fit (the released models pad the embedding to 151,936 rows), else a debug BPE of exactly
    ``vocab_size`` tokens."""
    if vocab_size >= special.QWEN3_VOCAB_SIZE:
        return Qwen3Tokenizer.from_ranks()
    return debug_tokenizer(vocab_size)
