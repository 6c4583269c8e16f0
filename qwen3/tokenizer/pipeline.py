"""The Qwen2/Qwen3 text pipeline as a Hugging Face ``tokenizers`` object, as the released Qwen3
tokenizer.json defines it (report section 2: byte-level BPE, 151,669 tokens).

NFC normaliser -> regex Split (``PRETOKENIZE_PATTERN``, isolated) -> byte-level mapping (no prefix space, no
regex) -> BPE without byte fallback or unk -> byte-level decoder. The same pipeline serves the tokenizer built from
the Qwen rank file and the small tokenizers trained by ``qwen3.tokenizer.train``, so both load the same way
everywhere (here and in ``transformers``).
"""

from __future__ import annotations

import json
from functools import cache

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from qwen3.tokenizer.special import ADDED_TOKENS

# The Qwen pre-tokenizer regex. \p{N} matches one digit, so numbers are split digit by digit.
PRETOKENIZE_PATTERN = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"


@cache
def byte_to_char() -> tuple[str, ...]:
    """GPT-2's reversible byte -> printable character table used by byte-level BPE vocabularies.

    Bytes that are printable Latin-1 characters stand for themselves; the other 68 bytes are mapped, in byte order,
    to U+0100 onwards (so the space byte 0x20 becomes 'Ġ' U+0120).
    """
    printable = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table: dict[int, str] = {byte: chr(byte) for byte in printable}
    next_code = 0x100
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(next_code)
            next_code += 1
    return tuple(table[byte] for byte in range(256))


@cache
def char_to_byte() -> dict[str, int]:
    return {char: byte for byte, char in enumerate(byte_to_char())}


def bytes_to_token_string(data: bytes) -> str:
    """The vocabulary spelling of a byte string (e.g. b' the' -> 'Ġthe')."""
    table = byte_to_char()
    return "".join(table[byte] for byte in data)


def token_string_to_bytes(token: str) -> bytes | None:
    """Inverse of ``bytes_to_token_string``; None when ``token`` is not a byte-level spelling (an added token)."""
    table = char_to_byte()
    try:
        return bytes(table[char] for char in token)
    except KeyError:
        return None


def configure_pipeline(tokenizer: Tokenizer) -> Tokenizer:
    """Install the Qwen normaliser, pre-tokenizer, decoder and post-processor on ``tokenizer`` (in place)."""
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()  # takes no options in Python; see tokenizer_json
    # Adds no BOS/EOS: Qwen has no BOS, and EOS comes from the chat format.
    tokenizer.post_processor = processors.ByteLevel(
        add_prefix_space=False, trim_offsets=False, use_regex=False
    )
    return tokenizer


def empty_bpe_tokenizer() -> Tokenizer:
    """A BPE tokenizer with the Qwen pipeline and no vocabulary yet (the starting point for training)."""
    return configure_pipeline(Tokenizer(_bpe_model()))


def bpe_tokenizer(vocab: dict[str, int], merges: list[tuple[str, str]]) -> Tokenizer:
    """A Qwen-pipeline tokenizer from a byte-level vocabulary and merges, with the 26 added tokens appended."""
    tokenizer = configure_pipeline(Tokenizer(_bpe_model(vocab, merges)))
    append_added_tokens(tokenizer)
    return tokenizer


def _bpe_model(
    vocab: dict[str, int] | None = None, merges: list[tuple[str, str]] | None = None
) -> models.BPE:
    return models.BPE(
        vocab,
        merges,
        dropout=None,
        unk_token=None,
        continuing_subword_prefix="",
        end_of_word_suffix="",
        fuse_unk=False,
        byte_fallback=False,
        ignore_merges=False,
    )


def append_added_tokens(tokenizer: Tokenizer) -> None:
    """Append the 26 Qwen3 added tokens right after the model vocabulary, in Qwen3's order and with its flags."""
    first_id = tokenizer.get_vocab_size(with_added_tokens=False)
    if tokenizer.get_vocab_size(with_added_tokens=True) != first_id:
        raise ValueError("the tokenizer already has added tokens; expected a bare BPE vocabulary")
    tokenizer.add_tokens([qwen3_added_token(spec.content, spec.special) for spec in ADDED_TOKENS])
    for spec in ADDED_TOKENS:
        got = tokenizer.token_to_id(spec.content)
        if got != first_id + spec.offset:
            raise ValueError(f"added token {spec.content!r} got id {got}, expected {first_id + spec.offset}")


def qwen3_added_token(content: str, special: bool) -> AddedToken:
    # Matched on the raw text (normalized=False), never absorbing neighbouring spaces.
    return AddedToken(
        content, single_word=False, lstrip=False, rstrip=False, normalized=False, special=special
    )


def tokenizer_json(tokenizer: Tokenizer) -> str:
    """Serialise ``tokenizer`` as tokenizer.json text, in the official Qwen3 layout.

    The Python ``decoders.ByteLevel`` cannot be given options and serialises with the pre-tokenizer defaults
    (prefix space, trimming, regex: all true); those options do nothing when decoding, but the official file spells
    them false, so they are rewritten here to keep our files identical in shape to Qwen's.
    """
    data = json.loads(tokenizer.to_str())
    if (data.get("decoder") or {}).get("type") == "ByteLevel":
        data["decoder"] = {
            "type": "ByteLevel",
            "add_prefix_space": False,
            "trim_offsets": False,
            "use_regex": False,
        }
    return json.dumps(data, ensure_ascii=False)
