"""Build the real Qwen3 tokenizer from the Qwen BPE rank file, with no model directory.

The rank file ``qwen.tiktoken`` (one ``base64(token bytes) rank`` pair a line, ranks 0..151642) ships in the
``dashscope`` wheel, the optional extra ``qwen3[ranks]``. A rank file has no merges list, which a Hugging Face BPE
needs; ``ranks_to_merges`` recovers it: a token's merge is the pair of parts that byte-level BPE leaves when it
runs on the token's own bytes with only the lower-ranked tokens, and merge priority is rank order. This gives one
merge per multi-byte token (151,387 for Qwen), the count of the official merges list.

The conversion takes about a second, so its result is cached as a tokenizer.json keyed by the rank file's hash.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import importlib.util
from pathlib import Path

from qwen3.tokenizer.pipeline import bpe_tokenizer, bytes_to_token_string, tokenizer_json
from qwen3.utils.cache import cached_file

RANK_FILE_NAME = "qwen.tiktoken"
# Bump when the conversion or the pipeline changes, so stale cached tokenizer.json files are not reused.
CONVERSION_VERSION = 1
INSTALL_HINT = "pip install 'qwen3[ranks]' (the dashscope wheel ships it) or pass a model directory"


class RankFileError(ValueError):
    """The rank file is missing or does not parse."""


def find_rank_file() -> Path:
    """Locate ``dashscope/resources/qwen.tiktoken`` without importing dashscope (slow, with many deps)."""
    spec = importlib.util.find_spec("dashscope")
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    for location in locations:
        candidate = Path(location) / "resources" / RANK_FILE_NAME
        if candidate.is_file():
            return candidate
    where = (
        f" (dashscope found at {', '.join(locations)} but it has no resources/{RANK_FILE_NAME})"
        if locations
        else ""
    )
    raise RankFileError(f"the Qwen BPE rank file {RANK_FILE_NAME} is not installed{where}: {INSTALL_HINT}")


def read_ranks(path: str | Path) -> dict[bytes, int]:
    """Parse a tiktoken rank file; ranks must be exactly 0..n-1 and include all 256 single bytes."""
    path = Path(path)
    ranks: dict[bytes, int] = {}
    with open(path, "rb") as handle:
        for line_number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            token, rank = _parse_rank_line(line, path, line_number)
            if token in ranks:
                raise RankFileError(f"{path}:{line_number}: token {token!r} already has rank {ranks[token]}")
            ranks[token] = rank
    _check_rank_set(ranks, path)
    return ranks


def _parse_rank_line(line: bytes, path: Path, line_number: int) -> tuple[bytes, int]:
    fields = line.split()
    if len(fields) != 2:
        raise RankFileError(f"{path}:{line_number}: expected 'base64-token rank', got {line[:80]!r}")
    try:
        token = base64.b64decode(fields[0], validate=True)
        rank = int(fields[1])
    except (binascii.Error, ValueError) as err:
        raise RankFileError(f"{path}:{line_number}: cannot parse {line[:80]!r}: {err}") from None
    if not token or rank < 0:
        raise RankFileError(f"{path}:{line_number}: empty token or negative rank in {line[:80]!r}")
    return token, rank


def _check_rank_set(ranks: dict[bytes, int], path: Path) -> None:
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise RankFileError(
            f"{path}: ranks are not exactly 0..{len(ranks) - 1} (duplicated or missing ranks)"
        )
    missing = [byte for byte in range(256) if bytes([byte]) not in ranks]
    if missing:
        raise RankFileError(f"{path}: {len(missing)} single bytes have no rank (first: 0x{missing[0]:02x})")


def ranks_to_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """One merge per multi-byte token, in rank order (see the module docstring)."""
    rank_of = ranks.get
    merges: list[tuple[bytes, bytes]] = []
    for token, token_rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) < 2:
            continue
        parts = [token[i : i + 1] for i in range(len(token))]
        while len(parts) > 2:
            # The lowest-ranked adjacent pair below this token's rank; ties cannot happen (ranks are unique), and
            # a pair that occurs twice merges leftmost first, as in tiktoken.
            best_rank, best_index = token_rank, -1
            for index in range(len(parts) - 1):
                pair_rank = rank_of(parts[index] + parts[index + 1])
                if pair_rank is not None and pair_rank < best_rank:
                    best_rank, best_index = pair_rank, index
            if best_index < 0:
                raise RankFileError(
                    f"token {token!r} (rank {token_rank}) cannot be built by BPE from lower-ranked tokens"
                )
            parts[best_index : best_index + 2] = [parts[best_index] + parts[best_index + 1]]
        merges.append((parts[0], parts[1]))
    return merges


def tokenizer_json_from_ranks(ranks: dict[bytes, int]) -> str:
    """The tokenizer.json text of the Qwen3 tokenizer for these ranks (26 added tokens after the last rank)."""
    vocab = {bytes_to_token_string(token): rank for token, rank in ranks.items()}
    merges = [(bytes_to_token_string(a), bytes_to_token_string(b)) for a, b in ranks_to_merges(ranks)]
    return tokenizer_json(bpe_tokenizer(vocab, merges))


def cached_tokenizer_json(rank_file: str | Path | None = None) -> Path:
    """Path of the cached tokenizer.json built from ``rank_file`` (default: the installed Qwen rank file)."""
    rank_file = Path(rank_file) if rank_file is not None else find_rank_file()
    digest = hashlib.sha256(rank_file.read_bytes()).hexdigest()[:16]
    return cached_file(
        f"tokenizers/ranks-{digest}-v{CONVERSION_VERSION}/tokenizer.json",
        lambda: tokenizer_json_from_ranks(read_ranks(rank_file)).encode("utf-8"),
    )
