import json

from qwen3.world import Item, generate
from qwen3.world.__main__ import main, parse_knob


def test_generate_writes_items_that_load_back(tmp_path, capsys):
    out = tmp_path / "items.jsonl"
    assert main(["generate", "reasoning", "--count", "5", "--knob", "difficulty=3", "--out", str(out)]) == 0
    items = [Item.from_dict(json.loads(line)) for line in out.read_text().splitlines()]
    assert [i.to_dict() for i in items] == [
        i.to_dict() for i in generate("reasoning", "test", 5, difficulty=3)
    ]
    assert "wrote 5 reasoning test items" in capsys.readouterr().out


def test_sft_and_corpus_commands(tmp_path):
    sft = tmp_path / "sft.jsonl"
    assert main(["sft", "knowledge", "--count", "3", "--mode", "no_think", "--out", str(sft)]) == 0
    examples = [json.loads(line) for line in sft.read_text().splitlines()]
    assert len(examples) == 3 and all(e["messages"][-1]["reasoning_content"] == "" for e in examples)
    corpus = tmp_path / "corpus.jsonl"
    assert main(["corpus", str(corpus), "--documents", "20"]) == 0
    assert len(corpus.read_text().splitlines()) == 20


def test_bad_input_is_one_line_and_status_2(tmp_path, capsys):
    assert main(["generate", "reasoning", "--knob", "level=3", "--out", str(tmp_path / "x.jsonl")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "unknown knob 'level'" in err
    assert not (tmp_path / "x.jsonl").exists()
    assert main(["generate", "poetry", "--out", str(tmp_path / "x.jsonl")]) == 2


def test_knob_values_are_read_as_json_when_they_parse():
    assert parse_knob("difficulty=3") == ("difficulty", 3)
    assert parse_knob('kinds=["program"]') == ("kinds", ["program"])
    assert parse_knob("kinds=program,equation") == ("kinds", "program,equation")


def test_families_lists_every_knob(capsys):
    assert main(["families"]) == 0
    out = capsys.readouterr().out
    assert "reasoning:" in out and "  difficulty = 2:" in out and "  train_length = 512:" in out
