"""Recipe configs: plain TOML files (qwen3/recipes/configs/*.toml) naming every phase's settings.

A recipe file holds ``name``, ``seed`` and one table per concern: ``[data]`` (how much of the task world to
generate), ``[tokenizer]``, ``[flagship]`` / ``[student]`` (Qwen3Config fields of the two models), ``[train]``
(TrainConfig fields shared by every training phase), one table per training phase (``[pretrain]``, ``[stage1]``
... ``[stage4]``, ``[distill_off]``, ``[distill_on]``, ``[student_rl]``: TrainConfig fields plus the stage's own
table, merged over ``[train]``), ``[eval]`` and, optionally, ``[world]``: task-family knobs (e.g. ``reasoning =
{ kinds = [...], difficulty = 1 }``) in force for every phase alike, the data, each stage and the evaluation, so
train and test items come from the same item space. The recipe fills in what links the phases (run directories,
models, data paths), so a phase table never names a path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomllib

from qwen3.train.settings import SettingsError

CONFIG_DIR = Path(__file__).parent / "configs"
TRAIN_PHASES = (
    "pretrain",
    "stage1",
    "stage2",
    "stage3",
    "stage4",
    "distill_off",
    "distill_on",
    "student_rl",
)
TABLES = ("data", "tokenizer", "flagship", "student", "train", "eval", *TRAIN_PHASES)
# [world]: family -> knob values in force for every phase (qwen3.world.registry.knob_defaults)
OPTIONAL_TABLES = ("world",)
MODEL_FIELDS = (
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "head_dim",
)
# -- how the phases link (the recipe fills these in; a phase table never names a path)
FLAGSHIP_STAGES = ("pretrain", "stage1", "stage2", "stage3", "stage4")
STUDENT_PHASES = ("distill_off", "distill_on", "student_rl")
# which phase's model each training phase starts from (the student's first phase starts from its init model)
STARTS_FROM = {
    "stage1": "pretrain",
    "stage2": "stage1",
    "stage3": "stage2",
    "stage4": "stage3",
    "distill_on": "distill_off",
    "student_rl": "distill_off",
}
STAGE_KIND = {
    "stage1": "cold_start",
    "stage2": "grpo",
    "stage3": "fusion",
    "stage4": "general-rl",
    "distill_off": "distill",
    "distill_on": "distill",
    "student_rl": "grpo",
}
EXAMPLES_FILE = (
    "examples.json"  # OUT/: the stage-4 flagship on /think and /no_think, shown first in report.md
)
ITEM_ID = re.compile(r"\b([a-z]+)-(train|validation|test)-([0-9a-f]{12})\b")

# S2's corpus when [data] names no reasoning_mix: "more STEM, coding, reasoning and synthetic data" (section 3.2)
REASONING_MIX = {"prose": 0.2, "reasoning": 0.5, "code": 0.3}
DATA_FIELDS = ("corpus_documents", "corpus_mix", "reasoning_documents", "reasoning_mix", "test_items")

DEFAULT_SUITES = ("reasoning", "knowledge", "counterfact", "ifeval", "lengthctrl", "tooluse", "thinkfollow")


def presets() -> list[str]:
    return sorted(path.stem for path in CONFIG_DIR.glob("*.toml"))


def recipe_path(name_or_path: str | Path) -> Path:
    """A shipped preset name (smoke, tiny, small) or a path to a TOML file."""
    path = Path(name_or_path)
    if path.suffix == ".toml":
        if not path.is_file():
            raise SettingsError(f"recipe file {path} does not exist")
        return path
    shipped = CONFIG_DIR / f"{name_or_path}.toml"
    if not shipped.is_file():
        from qwen3.utils.suggest import unknown_name

        raise SettingsError(unknown_name("recipe", str(name_or_path), presets()))
    return shipped


@dataclass
class EvalSettings:
    """Evaluation after every stage (qwen3.eval, report section 4.6): ``suites`` in both modes, ``test_items``
    per suite, replies of at most ``max_tokens``, ``samples`` replies per item (pass@k for Table 21) and the
    thinking ``budgets`` of the Figure 2 curve (the report: 1K-32K tokens; scaled to the recipe's reply length)."""

    suites: list[str] = field(default_factory=lambda: list(DEFAULT_SUITES))
    max_tokens: int = 64
    samples: int = 2
    budgets: list[int] = field(default_factory=lambda: [8, 16, 32, 48, 64])
    sampling: str = "preset"

    def __post_init__(self) -> None:
        from qwen3.eval.runner import SAMPLING, SUITES

        for suite in self.suites:
            if suite not in SUITES:
                raise SettingsError(f"eval.suites: unknown suite {suite!r} (known: {', '.join(SUITES)})")
        if self.max_tokens < 1 or self.samples < 1:
            raise SettingsError(
                f"eval.max_tokens and eval.samples must be >= 1, got {self.max_tokens}, {self.samples}"
            )
        if len(self.budgets) < 1 or any(b < 1 for b in self.budgets):
            raise SettingsError(f"eval.budgets: give positive token budgets, got {self.budgets}")
        if self.sampling not in SAMPLING:
            raise SettingsError(f"eval.sampling must be one of {SAMPLING}, got {self.sampling!r}")


@dataclass
class Recipe:
    """A parsed recipe file (module docstring). ``tables`` keeps every table as written."""

    name: str
    seed: int
    source: Path
    tables: dict[str, dict[str, Any]]
    eval: EvalSettings

    @property
    def corpus_documents(self) -> int:
        return int(self.tables["data"].get("corpus_documents", 1000))

    @property
    def test_items(self) -> int:
        return int(self.tables["data"].get("test_items", 20))

    @property
    def corpus_mix(self) -> dict[str, float] | None:
        """S1's (and S3's) corpus mix of prose / reasoning / code documents (None: the world's default)."""
        return self.tables["data"].get("corpus_mix")

    @property
    def reasoning_documents(self) -> int:
        """Documents of S2's own reasoning-heavy corpus (report section 3.2); 0: S2 reads S1's corpus."""
        return int(self.tables["data"].get("reasoning_documents", 0))

    @property
    def reasoning_mix(self) -> dict[str, float]:
        return self.tables["data"].get("reasoning_mix", dict(REASONING_MIX))

    @property
    def world(self) -> dict[str, dict[str, Any]]:
        """[world]: family -> knob values every phase's items are drawn with (empty: the families' defaults)."""
        return self.tables.get("world", {})

    @property
    def vocab_size(self) -> int:
        return int(self.tables["tokenizer"].get("vocab_size", 1024))

    def model_fields(self, which: str) -> dict[str, Any]:
        return dict(self.tables[which])

    def phase_table(self, phase: str) -> dict[str, Any]:
        """``[train]`` with the phase's own table merged over it (a deep copy)."""
        from qwen3.train.pretrain import _merge  # the chain's own deep merge of config tables

        return _merge(self.tables["train"], self.tables[phase])


def load_recipe(name_or_path: str | Path) -> Recipe:
    """Parse and check a recipe; errors name the file and the table."""
    path = recipe_path(name_or_path)
    try:
        table = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise SettingsError(f"{path}: {err}") from None
    unknown = sorted(set(table) - {*TABLES, *OPTIONAL_TABLES, "name", "seed"})
    if unknown:
        raise SettingsError(f"{path}: unknown table(s) {', '.join(unknown)} (known: {', '.join(TABLES)})")
    missing = [name for name in TABLES if name not in table]
    if missing:
        raise SettingsError(f"{path}: missing table(s) {', '.join(missing)}")
    for which in ("flagship", "student"):
        bad = sorted(set(table[which]) - set(MODEL_FIELDS))
        if bad:
            raise SettingsError(
                f"{path}: [{which}] unknown field(s) {', '.join(bad)} (known: {', '.join(MODEL_FIELDS)})"
            )
    check_data(path, table["data"])
    check_world(path, table.get("world", {}))
    seed = table.get("seed", 0)
    if not isinstance(seed, int) or seed < 0:
        raise SettingsError(f"{path}: seed must be a non-negative integer, got {seed!r}")
    try:
        settings = EvalSettings(**table["eval"])
    except TypeError as err:
        raise SettingsError(f"{path}: [eval] {err}") from None
    return Recipe(
        name=str(table.get("name", path.stem)),
        seed=seed,
        source=path,
        tables={name: table[name] for name in (*TABLES, *OPTIONAL_TABLES) if name in table},
        eval=settings,
    )


def check_data(path: Path, data: dict[str, Any]) -> None:
    """[data]: known fields, and corpus mixes the corpus writer accepts (qwen3.world.corpus)."""
    from qwen3.world.corpus import mix_counts

    bad = sorted(set(data) - set(DATA_FIELDS))
    if bad:
        raise SettingsError(
            f"{path}: [data] unknown field(s) {', '.join(bad)} (known: {', '.join(DATA_FIELDS)})"
        )
    for name in ("corpus_mix", "reasoning_mix"):
        if name in data:
            if not isinstance(data[name], dict):
                raise SettingsError(
                    f"{path}: [data] {name} must be a table of kind = share, got {data[name]!r}"
                )
            try:
                mix_counts(1, data[name])
            except ValueError as err:
                raise SettingsError(f"{path}: [data] {name}: {err}") from None
    documents = data.get("reasoning_documents", 0)
    if isinstance(documents, bool) or not isinstance(documents, int) or documents < 0:
        raise SettingsError(f"{path}: [data] reasoning_documents must be an integer >= 0, got {documents!r}")


def check_world(path: Path, world: dict[str, Any]) -> None:
    """[world]: every family and knob known, every value valid (qwen3.world.registry.check_knobs)."""
    from qwen3.world.registry import check_knobs

    try:
        check_knobs(world)
    except ValueError as err:
        raise SettingsError(f"{path}: [world] {err}") from None
