"""``Qwen3Tokenizer``: the Qwen3 byte-level BPE on top of Hugging Face ``tokenizers``, and ``load_tokenizer``.

The ids are those of the official tokenizer.json for any text: the pipeline is the official one (see
``qwen3.tokenizer.pipeline``) and the BPE runs in the ``tokenizers`` Rust library, which is linear-time.

Special tokens: with ``allow_special=True`` (the Hugging Face default) all 26 added tokens are matched atomically in
the text. With ``allow_special=False`` the special ones (``<|im_start|>``, ``<|im_end|>``, ``<|endoftext|>``, the
vision tokens) are encoded as plain text, like ``split_special_tokens=True`` in ``transformers``; the non-special
added tokens (``<think>``, ``<tool_call>``, ...) stay atomic in both modes, as they do there. With
``allow_special="none"`` no added token is matched: the whole text is encoded as plain text (for untrusted text that
must not open a think block or a tool call).
"""

from __future__ import annotations

import json
import operator
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from tokenizers import Tokenizer

from qwen3.tokenizer import special
from qwen3.tokenizer.pipeline import token_string_to_bytes, tokenizer_json
from qwen3.utils.atomic import atomic_write_json, atomic_write_text

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
# model_max_length of the released tokenizer_config (the 2504 revision) is not verified here; 131,072 is Qwen3's
# context length with YaRN (report section 2, Table 1-2; the model cards).
DEFAULT_MODEL_MAX_LENGTH = 131072
# True: every added token is atomic; False: the special ones are plain text; "none": all of them are plain text.
AllowSpecial = bool | Literal["none"]
# A Python str can hold surrogate code points (e.g. from surrogateescape or JSON "\ud800"); UTF-8 cannot.
_SURROGATE = re.compile("[\ud800-\udfff]")


class TokenizerLoadError(ValueError):
    """A tokenizer file or directory is missing, unreadable, or not a Qwen3 tokenizer."""


class Qwen3Tokenizer:
    """Encode and decode text exactly as the official Qwen3 tokenizer does.

    Build one with ``load_tokenizer``; the constructor takes a ready ``tokenizers.Tokenizer`` whose added tokens
    include the Qwen3 control tokens.
    """

    def __init__(self, tokenizer: Tokenizer, *, chat_template: str | None = None, source: str = "<memory>"):
        self._tokenizer = tokenizer
        self._tokenizer.encode_special_tokens = False
        # Built on the first allow_special=False / "none" call.
        self._plain_tokenizers: dict[str, Tokenizer] = {}
        self._token_bytes: list[bytes] | None = None  # built on first use
        self.chat_template = chat_template
        self.source = source

        added = tokenizer.get_added_tokens_decoder()
        self.added_tokens: dict[int, str] = {
            token_id: token.content for token_id, token in sorted(added.items())
        }
        self.special_ids: frozenset[int] = frozenset(
            token_id for token_id, token in added.items() if token.special
        )
        ids = {content: token_id for token_id, content in self.added_tokens.items()}
        missing = [content for content in special.NAMED_CONTROL_TOKENS.values() if content not in ids]
        if missing:
            raise TokenizerLoadError(
                f"{source}: the added tokens lack the Qwen3 control tokens {', '.join(missing)}"
            )

        self.endoftext_id: int = ids[special.ENDOFTEXT]
        self.im_start_id: int = ids[special.IM_START]
        self.im_end_id: int = ids[special.IM_END]
        self.think_start_id: int = ids[special.THINK_START]
        self.think_end_id: int = ids[special.THINK_END]
        self.tool_call_start_id: int = ids[special.TOOL_CALL_START]
        self.tool_call_end_id: int = ids[special.TOOL_CALL_END]
        self.tool_response_start_id: int = ids[special.TOOL_RESPONSE_START]
        self.tool_response_end_id: int = ids[special.TOOL_RESPONSE_END]
        # Generation stops at either (generation_config.json eos_token_id = [im_end, endoftext]).
        self.eos_token_ids: tuple[int, ...] = (self.im_end_id, self.endoftext_id)
        self.pad_token_id: int = ids[special.PAD_TOKEN]
        self.vocab_size: int = tokenizer.get_vocab_size(with_added_tokens=True)

    # ----------------------------------------------------------------------------------------------- loading
    @classmethod
    def from_file(cls, path: str | os.PathLike, *, chat_template: str | None = None) -> Qwen3Tokenizer:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as err:
            raise TokenizerLoadError(f"cannot read {path}: {err}") from None
        try:
            tokenizer = Tokenizer.from_str(text)
        except Exception as err:  # tokenizers raises a bare Exception for malformed files
            raise TokenizerLoadError(f"{path} is not a valid tokenizer.json: {err}") from None
        return cls(tokenizer, chat_template=chat_template, source=str(path))

    @classmethod
    def from_directory(cls, directory: str | os.PathLike) -> Qwen3Tokenizer:
        directory = Path(directory)
        path = directory / TOKENIZER_FILE
        if not path.is_file():
            raise TokenizerLoadError(
                f"{directory} has no {TOKENIZER_FILE}; pass a model directory that has one"
            )
        return cls.from_file(path, chat_template=_read_chat_template(directory))

    @classmethod
    def from_ranks(cls, rank_file: str | os.PathLike | None = None) -> Qwen3Tokenizer:
        """The real Qwen3 tokenizer built from the Qwen rank file (default: the one in the dashscope wheel), with the
        Qwen3 chat template (ours, byte-identical in output to the official one) as its ``chat_template``, as the
        official tokenizer_config.json carries it."""
        from qwen3.chat.jinja import qwen3_template
        from qwen3.tokenizer.ranks import cached_tokenizer_json

        tokenizer = cls.from_file(cached_tokenizer_json(rank_file))
        tokenizer.chat_template = qwen3_template()
        return tokenizer

    # ---------------------------------------------------------------------------------------------- encoding
    def encode(self, text: str, *, allow_special: AllowSpecial = True) -> list[int]:
        _check_text(text)
        return self._encoder(allow_special).encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: Sequence[str], *, allow_special: AllowSpecial = True) -> list[list[int]]:
        texts = list(texts)
        for index, text in enumerate(texts):
            _check_text(text, f"texts[{index}]")
        encodings = self._encoder(allow_special).encode_batch_fast(texts, add_special_tokens=False)
        return [encoding.ids for encoding in encodings]

    def encode_with_offsets(
        self, text: str, *, allow_special: AllowSpecial = True
    ) -> tuple[list[int], list[tuple[int, int]]]:
        """Ids and, for each, the (start, end) character span of ``text`` it came from.

        Tokens that cover part of one character (a byte of a multi-byte character) get that character's span.
        """
        _check_text(text)
        encoding = self._encoder(allow_special).encode(text, add_special_tokens=False)
        return encoding.ids, list(encoding.offsets)

    def _encoder(self, allow_special: AllowSpecial) -> Tokenizer:
        if allow_special is True:
            return self._tokenizer
        if allow_special is not False and allow_special != "none":
            raise ValueError(f"allow_special: must be True, False or 'none', got {allow_special!r}")
        mode = "none" if allow_special else "special"
        plain = self._plain_tokenizers.get(mode)
        if plain is None:
            # A separate instance rather than toggling the flag, so concurrent encodes never see the wrong mode.
            # encode_special_tokens turns off matching for the special=True added tokens only, so for "none" the
            # copy marks every added token special (this copy only encodes; decoding uses the original).
            config = json.loads(self._tokenizer.to_str())
            if mode == "none":
                for token in config["added_tokens"]:
                    token["special"] = True
            plain = Tokenizer.from_str(json.dumps(config))
            plain.encode_special_tokens = True
            self._plain_tokenizers[mode] = plain
        return plain

    # ---------------------------------------------------------------------------------------------- decoding
    def decode(self, ids: Iterable[int], *, skip_special_tokens: bool = False) -> str:
        """Text of ``ids``; byte sequences that are not valid UTF-8 become U+FFFD (never raises for valid ids).

        ``skip_special_tokens`` drops only the special tokens: ``<think>``, ``<tool_call>`` etc. are kept.
        """
        ids = self._checked_ids(ids)
        return self._tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def decode_batch(self, batch: Iterable[Iterable[int]], *, skip_special_tokens: bool = False) -> list[str]:
        checked = [self._checked_ids(ids) for ids in batch]
        return self._tokenizer.decode_batch(checked, skip_special_tokens=skip_special_tokens)

    def token_bytes(self, token_id: int) -> bytes:
        """The raw bytes token ``token_id`` stands for; an added token gives its UTF-8 text."""
        self._check_id(token_id)
        return self._byte_table()[token_id]

    def _byte_table(self) -> list[bytes]:
        if self._token_bytes is None:
            table = [b""] * self.vocab_size
            for token, token_id in self._tokenizer.get_vocab(with_added_tokens=True).items():
                raw = None if token_id in self.added_tokens else token_string_to_bytes(token)
                table[token_id] = raw if raw is not None else token.encode("utf-8")
            self._token_bytes = table
        return self._token_bytes

    def _checked_ids(self, ids: Iterable[int]) -> list[int]:
        # Accepts tensors, arrays and numpy integers too; operator.index rejects floats instead of truncating them.
        ids = list(map(operator.index, ids.tolist() if hasattr(ids, "tolist") else ids))
        if ids and (min(ids) < 0 or max(ids) >= self.vocab_size):
            self._check_id(next(i for i in ids if not 0 <= i < self.vocab_size))
        return ids

    def _check_id(self, token_id: int) -> None:
        if not 0 <= token_id < self.vocab_size:
            raise ValueError(
                f"token id {token_id} is out of range for a vocabulary of {self.vocab_size} tokens"
            )

    # -------------------------------------------------------------------------------------------- vocabulary
    def token_to_id(self, token: str) -> int | None:
        return self._tokenizer.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        return self._tokenizer.id_to_token(token_id)

    def is_special(self, token_id: int) -> bool:
        return token_id in self.special_ids

    def __len__(self) -> int:
        return self.vocab_size

    def __repr__(self) -> str:
        return f"Qwen3Tokenizer(vocab_size={self.vocab_size}, source={self.source!r})"

    @property
    def backend(self) -> Tokenizer:
        """The underlying ``tokenizers.Tokenizer`` (e.g. for training code that wants offsets or padding)."""
        return self._tokenizer

    # ---------------------------------------------------------------------------------------------- saving
    def save_pretrained(
        self,
        directory: str | os.PathLike,
        chat_template: str | None = None,
        model_max_length: int = DEFAULT_MODEL_MAX_LENGTH,
    ) -> Path:
        """Write the official file set: tokenizer.json, tokenizer_config.json, vocab.json and merges.txt.

        ``transformers.AutoTokenizer`` loads the directory (tools that read only vocab.json + merges.txt do too).
        ``chat_template`` defaults to this tokenizer's own template (if any). Each file is written atomically.
        """
        directory = Path(directory)
        template = chat_template if chat_template is not None else self.chat_template
        serialized = tokenizer_json(self._tokenizer)
        model = json.loads(serialized)["model"]
        vocab = dict(sorted(model["vocab"].items(), key=lambda item: item[1]))
        merges = (merge if isinstance(merge, str) else " ".join(merge) for merge in model["merges"])
        atomic_write_text(directory / TOKENIZER_FILE, serialized)
        atomic_write_json(
            directory / TOKENIZER_CONFIG_FILE, self._tokenizer_config(template, model_max_length)
        )
        atomic_write_json(directory / VOCAB_FILE, vocab, indent=None)
        atomic_write_text(
            directory / MERGES_FILE, "#version: 0.2\n" + "".join(f"{merge}\n" for merge in merges)
        )
        return directory

    def _tokenizer_config(self, chat_template: str | None, model_max_length: int) -> dict[str, Any]:
        added = self._tokenizer.get_added_tokens_decoder()
        config: dict[str, Any] = {
            "add_bos_token": False,
            "add_prefix_space": False,
            "added_tokens_decoder": {
                str(token_id): {
                    "content": token.content,
                    "lstrip": token.lstrip,
                    "normalized": token.normalized,
                    "rstrip": token.rstrip,
                    "single_word": token.single_word,
                    "special": token.special,
                }
                for token_id, token in sorted(added.items())
            },
            "additional_special_tokens": [
                token.content
                for _, token in sorted(added.items())
                if token.special and token.content != special.PAD_TOKEN
            ],
            "bos_token": None,
            "clean_up_tokenization_spaces": False,
            "eos_token": special.EOS_TOKEN,
            "errors": "replace",
            "model_max_length": model_max_length,
            "pad_token": special.PAD_TOKEN,
            "split_special_tokens": False,
            "tokenizer_class": "Qwen2Tokenizer",
            "unk_token": None,
        }
        if chat_template is not None:
            config["chat_template"] = chat_template
        return config


def _check_text(text: object, name: str = "text") -> None:
    if not isinstance(text, str):
        raise TypeError(f"expected {name} as str, got {type(text).__name__}")
    # isascii() is O(1) in CPython, so ASCII text skips the scan.
    if not text.isascii() and (surrogate := _SURROGATE.search(text)):
        raise ValueError(
            f"{name} has a lone surrogate U+{ord(surrogate.group()):04X} at index {surrogate.start()}; "
            "it cannot be encoded as UTF-8"
        )


def _read_chat_template(directory: Path) -> str | None:
    """The chat template of a model directory: chat_template.jinja (newer transformers) or tokenizer_config.json."""
    jinja = directory / CHAT_TEMPLATE_FILE
    if jinja.is_file():
        return jinja.read_text(encoding="utf-8")
    config_path = directory / TOKENIZER_CONFIG_FILE
    if not config_path.is_file():
        return None
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise TokenizerLoadError(f"cannot read {config_path}: {err}") from None
    template = config.get("chat_template") if isinstance(config, dict) else None
    if isinstance(template, list):  # the named-templates form: [{"name": "default", "template": "..."}, ...]
        named = {entry.get("name"): entry.get("template") for entry in template if isinstance(entry, dict)}
        template = named.get("default")
    if template is not None and not isinstance(template, str):
        raise TokenizerLoadError(
            f"{config_path}: chat_template must be a string, got {type(template).__name__}"
        )
    return template


def is_qwen3_name(name: str) -> bool:
    """Names that mean "the real Qwen3 tokenizer": 'qwen3' and hub ids 'Qwen/Qwen3-*' (all share one tokenizer)."""
    lowered = name.lower()
    return lowered == "qwen3" or lowered.startswith("qwen/qwen3-")


def load_tokenizer(path_or_name: str | os.PathLike) -> Qwen3Tokenizer:
    """Load a tokenizer from a model directory, a tokenizer.json file, or by name.

    A path that exists wins over a name. The names 'qwen3' and 'Qwen/Qwen3-*' build the real tokenizer from the
    Qwen rank file (``pip install 'qwen3[ranks]'``), cached after the first build; nothing is downloaded.
    """
    path = Path(path_or_name)
    if path.is_file():
        return Qwen3Tokenizer.from_file(path)
    if (path / TOKENIZER_FILE).is_file():
        return Qwen3Tokenizer.from_directory(path)
    if isinstance(path_or_name, str) and is_qwen3_name(path_or_name):
        return Qwen3Tokenizer.from_ranks()
    if path.is_dir():
        raise TokenizerLoadError(f"{path} has no {TOKENIZER_FILE}; pass a model directory that has one")
    raise TokenizerLoadError(
        f"{str(path_or_name)!r} is not a model directory, a tokenizer.json file, or a known name "
        "('qwen3', 'Qwen/Qwen3-<size>')"
    )
