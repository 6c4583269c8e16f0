"""Rank file parsing, the ranks -> merges conversion, and the cache of the built tokenizer.json."""

from __future__ import annotations

import base64

import pytest

from qwen3.tokenizer.pipeline import bytes_to_token_string
from qwen3.tokenizer.ranks import (
    RankFileError,
    cached_tokenizer_json,
    ranks_to_merges,
    read_ranks,
    tokenizer_json_from_ranks,
)
from qwen3.tokenizer.tokenizer import Qwen3Tokenizer


def _write_ranks(path, tokens: list[bytes]) -> None:
    path.write_text(
        "".join(f"{base64.b64encode(token).decode()} {rank}\n" for rank, token in enumerate(tokens))
    )


def _tiny_ranks() -> list[bytes]:
    return [bytes([b]) for b in range(256)] + [b"ab", b"bc", b"abc", b"cd", b"abcd", b" a", b" ab"]


def test_merges_are_what_bpe_leaves_before_the_last_step():
    ranks = {token: rank for rank, token in enumerate(_tiny_ranks())}
    merges = dict(zip([m for m in _tiny_ranks()[256:]], ranks_to_merges(ranks)))
    assert merges[b"ab"] == (b"a", b"b")
    # "abc": BPE with lower ranks merges a+b (rank 256) before b+c (257), leaving ab|c.
    assert merges[b"abc"] == (b"ab", b"c")
    # "abcd": ab, then abc (lower than cd), leaving abc|d; the pair "ab|cd" is never the merge.
    assert merges[b"abcd"] == (b"abc", b"d")
    # " ab": "ab" (256) outranks " a" (261), leaving " "|ab even though " a" is a token.
    assert merges[b" ab"] == (b" ", b"ab")


def test_unreachable_token_is_reported():
    ranks = {token: rank for rank, token in enumerate([bytes([b]) for b in range(256)] + [b"xyz", b"xy"])}
    with pytest.raises(RankFileError, match=r"token b'xyz' \(rank 256\) cannot be built"):
        ranks_to_merges(ranks)


def test_real_rank_file_gives_one_merge_per_multibyte_token(rank_file):
    ranks = read_ranks(rank_file)
    merges = ranks_to_merges(ranks)
    assert len(ranks) == 151643
    assert len(merges) == 151643 - 256 == 151387  # the length of the official merges list
    spelled = [f"{bytes_to_token_string(a)} {bytes_to_token_string(b)}" for a, b in merges[:4]]
    assert spelled == ["Ġ Ġ", "ĠĠ ĠĠ", "i n", "Ġ t"]  # the official list's first merges


def test_tiny_rank_file_builds_a_working_tokenizer(tmp_path):
    path = tmp_path / "tiny.tiktoken"
    _write_ranks(path, _tiny_ranks())
    tok = Qwen3Tokenizer.from_file(_json_file(tmp_path, read_ranks(path)))
    assert tok.encode("abcd ab") == [260, 262]
    assert tok.im_start_id == 263 + 1 and tok.vocab_size == 263 + 26
    assert tok.decode(tok.encode("abcd ab<|im_end|>")) == "abcd ab<|im_end|>"


def _json_file(directory, ranks):
    path = directory / "tokenizer.json"
    path.write_text(tokenizer_json_from_ranks(ranks))
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("IQ== 0\nIg==\n", r"tiny.tiktoken:2: expected 'base64-token rank'"),
        ("IQ== 0\n!!!! 1\n", r"tiny.tiktoken:2: cannot parse"),
        ("IQ== 0\nIg== x\n", r"tiny.tiktoken:2: cannot parse"),
        ("IQ== 0\nIQ== 1\n", r"tiny.tiktoken:2: token b'!' already has rank 0"),
        ("IQ== 0\nIg== 5\n", r"ranks are not exactly 0..1"),
        ("IQ== 0\nIg== 1\n", r"254 single bytes have no rank \(first: 0x00\)"),
    ],
)
def test_bad_rank_files_name_file_and_line(tmp_path, content, message):
    path = tmp_path / "tiny.tiktoken"
    path.write_text(content)
    with pytest.raises(RankFileError, match=message):
        read_ranks(path)


def test_cache_is_keyed_by_rank_file_content(tmp_path, monkeypatch):
    monkeypatch.setenv("QWEN3_CACHE", str(tmp_path / "cache"))
    first, second = tmp_path / "a.tiktoken", tmp_path / "b.tiktoken"
    _write_ranks(first, _tiny_ranks())
    _write_ranks(second, _tiny_ranks()[:-1])
    path_a = cached_tokenizer_json(first)
    assert path_a.is_relative_to(tmp_path / "cache") and path_a.is_file()
    assert cached_tokenizer_json(first) == path_a  # reused, not rebuilt
    assert path_a.stat().st_mtime_ns == cached_tokenizer_json(first).stat().st_mtime_ns
    path_b = cached_tokenizer_json(second)
    assert path_b != path_a
    assert Qwen3Tokenizer.from_file(path_b).vocab_size == 262 + 26


def test_missing_rank_package_says_how_to_install(monkeypatch):
    import qwen3.tokenizer.ranks as ranks_module

    monkeypatch.setattr(ranks_module.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(RankFileError, match=r"pip install 'qwen3\[ranks\]'"):
        ranks_module.find_rank_file()
