"""The shipped presets' data fit their settings: each one's corpus supports its tokenizer's vocabulary.

(`small` shipped with 8,192 tokens, more than the world's text supports: its second phase failed.)"""

from __future__ import annotations

import json

import pytest

from qwen3.recipes.config import load_recipe, presets
from qwen3.recipes.run import RecipeRun, RecipeStopped


@pytest.mark.parametrize("name", presets())
def test_a_shipped_preset_trains_its_tokenizer(name, tmp_path):
    recipe = load_recipe(name)
    with pytest.raises(RecipeStopped):
        RecipeRun(recipe, tmp_path / name, progress=False, stop_after="tokenizer").run()
    state = json.loads((tmp_path / name / "state.json").read_text())
    assert list(state["phases"])[-1] == "tokenizer"
    assert state["phases"]["tokenizer"]["result"]["vocab_size"] == recipe.vocab_size
