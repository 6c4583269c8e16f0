import json

import pytest

from qwen3.train.batch import IGNORE, collate
from qwen3.train.corpus import DataError, FileCorpus, SequenceCorpus
from qwen3.train.data import DocumentStream, PackedDocuments, document_tokens


def ids_of(document):
    return document_tokens(document, None, "text", 1000)


def test_jsonl_txt_and_json_corpora_give_records_with_locations(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"text": "x"}\n\n{"text": "y"}\n')
    (tmp_path / "b.txt").write_text("first line\n\nsecond line\r\n")
    (tmp_path / "c.json").write_text('[{"text": "z"}]')
    corpus = FileCorpus([tmp_path])  # a directory: its files, sorted
    got = [(corpus[i].record, corpus[i].location) for i in range(len(corpus))]
    assert got == [
        ({"text": "x"}, f"{tmp_path}/a.jsonl:1"),
        ({"text": "y"}, f"{tmp_path}/a.jsonl:3"),
        ("first line", f"{tmp_path}/b.txt:1"),
        ("second line", f"{tmp_path}/b.txt:3"),
        ({"text": "z"}, f"{tmp_path}/c.json[0]"),
    ]
    whole = FileCorpus([tmp_path / "b.txt"], text_unit="file")
    assert len(whole) == 1 and whole[0].record == "first line\n\nsecond line\r\n"


def test_malformed_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "ok"}\n{"text": broken}\n{"other": 1}\n')
    corpus = FileCorpus([path])
    with pytest.raises(DataError, match=r"bad\.jsonl:2: invalid JSON"):
        corpus[1]
    with pytest.raises(DataError, match=r"bad\.jsonl:3: no 'text' field"):
        document_tokens(corpus[2], str.split, "text", 100)
    (tmp_path / "latin1.txt").write_bytes(b"fine\ncaf\xe9\n")
    with pytest.raises(DataError, match=r"latin1\.txt:2: not valid UTF-8"):
        FileCorpus([tmp_path / "latin1.txt"])[1]
    with pytest.raises(DataError, match="no such file"):
        FileCorpus([tmp_path / "missing.jsonl"])


def test_malformed_documents_raise_or_are_skipped_and_counted(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_text(
        "\n".join(['{"input_ids": [1, 2]}', "not json", '{"input_ids": [3]}', '{"input_ids": [5000]}'])
    )
    strict = DocumentStream(FileCorpus([path]), ids_of, shuffle=False)
    assert strict.next() == [1, 2]
    with pytest.raises(DataError, match=r"mixed\.jsonl:2"):
        strict.next()
    lenient = DocumentStream(FileCorpus([path]), ids_of, shuffle=False, on_error="skip")
    assert [lenient.next() for _ in range(3)] == [[1, 2], [3], [1, 2]]  # line 4: id outside the vocabulary
    assert lenient.skipped == 2 and lenient.epoch == 1


def test_shuffle_is_a_seeded_permutation_per_epoch():
    corpus = SequenceCorpus([[i] for i in range(50)])

    def order(seed, count=100):
        stream = DocumentStream(corpus, ids_of, shuffle=True, seed=seed)
        return [stream.next()[0] for _ in range(count)]

    first = order(0)
    assert first == order(0)
    assert first != order(1)
    assert sorted(first[:50]) == list(range(50)) and sorted(first[50:]) == list(range(50))
    assert first[:50] != first[50:]  # each epoch draws its own permutation


def test_iterables_are_read_in_order_and_replayed_on_resume():
    docs = [[i + 1] * 3 for i in range(5)]
    with pytest.raises(DataError, match="shuffle needs an indexable corpus"):
        DocumentStream(iter(docs), ids_of, shuffle=True)
    stream = DocumentStream(docs, ids_of, shuffle=False)  # a list passed as a plain (re-iterable) iterable
    one_shot = DocumentStream((d for d in docs), ids_of, shuffle=False)
    assert [one_shot.next() for _ in range(5)] == docs
    with pytest.raises(DataError, match="one-shot iterator"):
        one_shot.next()
    [stream.next() for _ in range(3)]
    state = stream.state_dict()
    again = DocumentStream(docs, ids_of, shuffle=False)
    again.load_state_dict(state)
    assert [again.next() for _ in range(4)] == [docs[3], docs[4], docs[0], docs[1]]


def packer(docs, seq_len=8, document_mask=True, seed=0):
    stream = DocumentStream(SequenceCorpus(docs), ids_of, shuffle=False, seed=seed)
    return PackedDocuments(stream, seq_len, eos_id=0, document_mask=document_mask)


def test_packing_separates_documents_with_eos_and_loses_no_token():
    docs = [[1, 2, 3], [4, 5, 6, 7, 8, 9, 10, 11, 12, 13], [14, 15]]
    source = packer(docs)
    rows = [source.next_row() for _ in range(3)]
    stream = [t for doc in docs for t in (*doc, 0)] * 2
    # Consecutive rows share one boundary token: row k covers stream[8k : 8k + 9].
    for k, row in enumerate(rows):
        assert row.input_ids == stream[8 * k : 8 * k + 8]
    first = rows[0]
    assert first.document_ids == [0, 0, 0, 0, 1, 1, 1, 1]
    # Targets inside a document are the next token; the EOS -> next document target is dropped.
    assert first.labels == [2, 3, 0, IGNORE, 5, 6, 7, 8]
    unmasked = packer(docs, document_mask=False).next_row()
    assert unmasked.document_ids is None and unmasked.labels == [2, 3, 0, 4, 5, 6, 7, 8]


def test_packing_resumes_exactly_from_its_state():
    docs = [list(range(1 + i, 4 + 2 * i)) for i in range(7)]
    reference = packer(docs, seq_len=5)
    expected = [reference.next_row() for _ in range(12)]
    first = packer(docs, seq_len=5)
    for _ in range(5):
        first.next_row()
    state = json.loads(json.dumps(first.state_dict()))  # what a checkpoint stores
    resumed = packer(docs, seq_len=5)
    resumed.load_state_dict(state)
    assert [resumed.next_row() for _ in range(7)] == expected[5:]
    changed = packer(docs[:-1], seq_len=5)
    with pytest.raises(DataError, match="data changed"):
        changed.load_state_dict(state)


def test_collate_pads_and_masks():
    rows = [packer([[1, 2, 3]], seq_len=4).next_row(), packer([[5, 6]], seq_len=2).next_row()]
    batch = collate(rows, pad_id=9)
    assert batch.input_ids.tolist() == [[1, 2, 3, 0], [5, 6, 9, 9]]
    assert batch.labels[1].tolist() == [6, 0, IGNORE, IGNORE]
    assert batch.document_ids[1].tolist() == [0, 0, -1, -1]
    assert batch.attention_mask.tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch.num_tokens == 6
