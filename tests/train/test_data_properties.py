"""Property tests of training data files: a .jsonl / .json / .txt file with random good and broken records (bad
JSON, wrong types, broken messages and tool calls, bytes that are not UTF-8) is either read into examples or raises
``DataError`` whose message starts with the file (and line) of the bad record; nothing else escapes."""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen3.tokenizer.train import tokenizer_for_vocab
from qwen3.train.corpus import DataError, FileCorpus
from qwen3.train.sft_data import conversation_example
from tests.chat.strategies import conversation
from tests.serve.strategies import bad_message, weird

TOKENIZER = tokenizer_for_vocab(512)

record = st.one_of(
    conversation().map(lambda messages: {"messages": messages}),
    conversation(),
    st.lists(bad_message(), min_size=1, max_size=3).map(lambda messages: {"messages": messages}),
    st.dictionaries(st.text(max_size=8), weird, max_size=3),
    weird,
)
line = st.one_of(
    record.map(lambda r: json.dumps(r, allow_nan=True).encode()),
    st.binary(max_size=20).filter(lambda b: b"\n" not in b and b"\r" not in b),
    st.sampled_from([b"{", b"[1,", b'{"messages": [}', b"\xff\xfe", b"NaN", b'"\\ud800"']),
)


def check_file(path, lines: list[bytes]) -> None:
    path.write_bytes(b"\n".join(lines) + b"\n")
    try:
        corpus = FileCorpus([path])
        for index in range(len(corpus)):
            conversation_example(corpus[index], TOKENIZER)
    except DataError as err:
        assert str(err).startswith(str(path)), str(err)
    finally:
        if "corpus" in locals():
            corpus.close()


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_data_files_give_examples_or_a_located_error(tmp_path, suffix):
    @settings(max_examples=50, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(line, min_size=1, max_size=5))
    def run(lines):
        if suffix == ".json":  # one array of the records
            lines = [b"[" + b",".join(lines) + b"]"]
        check_file(tmp_path / f"data{suffix}", lines)

    run()


@pytest.mark.slow
def test_data_files_at_length(tmp_path):
    @settings(max_examples=3_000, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(line, min_size=1, max_size=8))
    def run(lines):
        check_file(tmp_path / "data.jsonl", lines)

    run()
