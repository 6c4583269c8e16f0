"""The recipe's [world] knobs and [data] corpora: every phase draws from one item space, S2 has its own corpus."""

from __future__ import annotations

import json

import pytest

from qwen3.recipes import phases
from qwen3.recipes.config import load_recipe
from qwen3.recipes.run import RecipeRun
from qwen3.train.settings import SettingsError
from qwen3.world import generate
from qwen3.world.registry import default_knobs, knob_defaults

WORLD = {"reasoning": {"kinds": ["equation", "program"], "difficulty": 1}}


def recipe_file(tmp_path, extra: str, data: str = ""):
    text = load_recipe("smoke").source.read_text()
    text = text.replace("[data]\n", f"[data]\n{data}", 1) + "\n" + extra
    path = tmp_path / "mine.toml"
    path.write_text(text)
    return path


def test_tiny_names_its_reasoning_knobs_and_the_s2_corpus():
    recipe = load_recipe("tiny")
    assert recipe.world == WORLD
    assert recipe.reasoning_documents > 0 and sum(recipe.reasoning_mix.values()) > 0
    assert load_recipe("smoke").world == {} and load_recipe("smoke").reasoning_documents == 0


def test_data_phase_draws_under_the_world_knobs_and_writes_the_s2_corpus(tmp_path):
    path = recipe_file(tmp_path, '[world]\nreasoning = { kinds = ["equation", "program"], difficulty = 1 }\n',
                       "reasoning_documents = 40\nreasoning_mix = { reasoning = 0.5, code = 0.5 }\n")  # fmt: skip
    run = RecipeRun(load_recipe(path), tmp_path / "out", progress=False)
    result = phases.make_data(run)
    assert result["reasoning_corpus"]["documents"] == 40
    assert result["reasoning_corpus"]["by_kind"]["prose"] == 0
    with knob_defaults(WORLD):
        expected = {i.query_hash for i in generate("reasoning", "test", run.recipe.test_items, seed=0)}
    hashes = set(json.loads((tmp_path / "out" / "data" / "test_hashes.json").read_text()))
    assert expected <= hashes  # the test items the evaluation will draw, under the same knobs
    assert not {i.query_hash for i in generate("reasoning", "test", run.recipe.test_items, seed=0)} <= hashes
    s2 = [json.loads(line) for line in (tmp_path / "out" / "data" / phases.REASONING_CORPUS).open()]
    assert all("Solve for x" in d["text"] for d in s2 if d["kind"] == "reasoning")
    table = phases.phase_table(run, "pretrain")
    s2_corpus = str(tmp_path / "out" / "data" / phases.REASONING_CORPUS)
    assert table["stages"]["s2"]["data"]["paths"] == [s2_corpus]
    assert table["data"]["paths"] == [str(tmp_path / "out" / "data" / "corpus.jsonl")]
    assert default_knobs("reasoning")["difficulty"] == 2  # nothing left in force after the phase


@pytest.mark.parametrize(
    "extra, data, message",
    [
        ("[world]\nreasoning = { difficulty = 9 }\n", "", r"\[world\] knob 'difficulty'"),
        ("[world]\nnosuch = { x = 1 }\n", "", r"\[world\] unknown family 'nosuch'"),
        ("", "corpus_mixx = 1\n", r"\[data\] unknown field\(s\) corpus_mixx"),
        ("", "reasoning_mix = { poetry = 1.0 }\n", r"\[data\] reasoning_mix: .*unknown kind 'poetry'"),
        ("", "corpus_mix = { prose = 0.0 }\n", r"\[data\] corpus_mix: .*not all zero"),
        ("", "reasoning_documents = -1\n", r"\[data\] reasoning_documents must be an integer >= 0"),
    ],
)
def test_bad_world_and_data_fields_name_the_problem(tmp_path, extra, data, message):
    with pytest.raises(SettingsError, match=message):
        load_recipe(recipe_file(tmp_path, extra, data))
