import pytest

from qwen3.chat import tokenize_conversation
from qwen3.tokenizer.train import debug_tokenizer
from qwen3.train.batch import IGNORE
from qwen3.train.corpus import DataError, Document, SequenceCorpus
from qwen3.train.data import DocumentStream
from qwen3.train.sft_data import PackedConversations, conversation_example
from qwen3.train.synthetic import chat_examples


@pytest.fixture(scope="module")
def tokenizer():
    return debug_tokenizer(512)


def conversation(question: str, answer: str) -> dict:
    return {"messages": [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]}


def test_targets_are_exactly_the_assistant_tokens_shifted(tokenizer):
    record = conversation("What is 2 + 2?", "4")
    example = conversation_example(Document(record, "item 0"), tokenizer)
    reference = tokenize_conversation(record["messages"], tokenizer)
    assert example.input_ids == reference.input_ids[:-1]
    expected = [t if m else IGNORE for t, m in zip(reference.input_ids[1:], reference.assistant_mask[1:])]
    assert example.labels == expected
    trained = tokenizer.decode([t for t in example.labels if t != IGNORE])
    assert trained == "<think>\n\n</think>\n\n4<|im_end|>"


def test_tools_and_bare_message_lists_are_accepted(tokenizer):
    tools = [{"type": "function", "function": {"name": "add", "parameters": {}}}]
    record = {**conversation("add 1 and 2", "3"), "tools": tools}
    with_tools = conversation_example(Document(record, "x"), tokenizer)
    bare = conversation_example(Document(record["messages"], "x"), tokenizer)
    assert len(with_tools.input_ids) > len(bare.input_ids)
    assert tokenizer.decode(with_tools.input_ids).count('"name": "add"') == 1


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"msgs": []}, "item 3: no 'messages' field"),
        ({"messages": "hi"}, "item 3: 'messages' must be a list"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "item 3: .*robot"),
        ({"messages": [{"role": "user", "content": "only a question"}]}, "item 3: .*no assistant turn"),
        (7, "item 3: expected an object"),
    ],
)
def test_malformed_examples_name_their_record(tokenizer, record, message):
    with pytest.raises(DataError, match=message):
        conversation_example(Document(record, "item 3"), tokenizer)


def rows_of(tokenizer, examples, seq_len=64, pack=True, overlong="truncate"):
    stream = DocumentStream(
        SequenceCorpus(examples),
        lambda d: conversation_example(d, tokenizer),
        shuffle=False,
        on_error="raise",
    )
    return PackedConversations(stream, seq_len, pack=pack, overlong=overlong)


def test_packing_keeps_examples_whole_as_separate_documents(tokenizer):
    examples = chat_examples(12, seed=3)
    singles = [conversation_example(Document(e, ""), tokenizer) for e in examples]
    source = rows_of(tokenizer, examples, seq_len=160)
    row = source.next_row()
    count = max(row.document_ids) + 1
    assert count >= 2 and len(row.input_ids) <= 160
    assert row.input_ids == [t for s in singles[:count] for t in s.input_ids]
    assert row.labels == [t for s in singles[:count] for t in s.labels]
    assert len(row.input_ids) + len(singles[count].input_ids) > 160  # next-fit: the next one did not fit
    second = source.next_row()
    assert second.input_ids[: len(singles[count].input_ids)] == singles[count].input_ids
    unpacked = rows_of(tokenizer, examples, pack=False).next_row()
    assert unpacked.document_ids is None and unpacked.input_ids == singles[0].input_ids


def test_overlong_examples_are_truncated_or_dropped_and_counted(tokenizer, caplog):
    long = conversation("question", "answer " * 60)
    prompt_only = conversation("question " * 60, "answer")  # truncation would leave no target
    short = conversation("q", "a")
    truncating = rows_of(tokenizer, [long, prompt_only, short], seq_len=48, pack=False)
    row = truncating.next_row()
    assert len(row.input_ids) == 48 and row.num_targets > 0 and truncating.truncated == 1
    assert truncating.next_row().input_ids == conversation_example(Document(short, ""), tokenizer).input_ids
    assert truncating.dropped == 1
    dropping = rows_of(tokenizer, [long, short], seq_len=48, pack=False, overlong="skip")
    assert dropping.next_row().input_ids == conversation_example(Document(short, ""), tokenizer).input_ids
    assert dropping.dropped == 1
    # The first drop is said once (here once per row source), naming the limit to raise.
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 2 and all("data.seq_len 48" in w for w in warnings)


def test_sft_rows_resume_exactly(tokenizer):
    examples = chat_examples(30, seed=5)
    reference = rows_of(tokenizer, examples, seq_len=128)
    expected = [reference.next_row() for _ in range(10)]
    first = rows_of(tokenizer, examples, seq_len=128)
    for _ in range(4):
        first.next_row()
    resumed = rows_of(tokenizer, examples, seq_len=128)
    resumed.load_state_dict(first.state_dict())
    assert [resumed.next_row() for _ in range(6)] == expected[4:]


def test_counters_after_a_resume_equal_an_uninterrupted_runs(tokenizer):
    # A truncated example never fits after another one, so it waits for the next row when a state is saved.
    long, prompt_only = conversation("question", "answer " * 60), conversation("question " * 60, "answer")
    examples = [conversation("q", "a"), long, conversation("2 + 2?", "4"), prompt_only, long] * 3

    def counters(rows):
        return rows.truncated, rows.dropped, rows.state_dict()

    reference = rows_of(tokenizer, examples, seq_len=48)
    expected = [(reference.next_row(), counters(reference)) for _ in range(8)]
    for split in range(1, 8):
        first = rows_of(tokenizer, examples, seq_len=48)
        for _ in range(split):
            first.next_row()
        resumed = rows_of(tokenizer, examples, seq_len=48)
        resumed.load_state_dict(first.state_dict())
        assert [(resumed.next_row(), counters(resumed)) for _ in range(8 - split)] == expected[split:], split
    assert expected[-1][1][:2] == (4, 2)  # rows: s | L | s2 (D) | L | s | L | s2 (D) | L
