"""The recipe's phases: each is ``fn(run: RecipeRun) -> result dict`` (JSON), recorded in state.json when done."""

from __future__ import annotations

import functools
import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qwen3.recipes.config import EXAMPLES_FILE, ITEM_ID, STAGE_KIND, STARTS_FROM, Recipe
from qwen3.utils.atomic import atomic_directory, atomic_write_json

EVAL_FAMILIES = ("reasoning", "knowledge", "counterfact", "ifeval", "lengthctrl", "tooluse", "thinkfollow")
TRAIN_CHECK_ITEMS = 200  # train-split items per family whose hashes are checked against the test split
REASONING_CORPUS = "corpus_s2.jsonl"  # S2's reasoning-heavy corpus, when [data] reasoning_documents > 0


def in_world(phase: Callable[[Any], dict[str, Any]]) -> Callable[[Any], dict[str, Any]]:
    """The phase run with the recipe's [world] knobs in force (qwen3.world.registry.knob_defaults): the data,
    every stage and the evaluation draw their items from the same families and difficulty."""

    @functools.wraps(phase)
    def run_phase(run) -> dict[str, Any]:
        from qwen3.world.registry import knob_defaults

        with knob_defaults(run.recipe.world):
            return phase(run)

    return run_phase


# -- data -----------------------------------------------------------------------------------------------------------
@in_world
def make_data(run) -> dict[str, Any]:
    """The pre-training corpus from the task world (train split only) and the hashes of every test item the
    evaluation will use; fails if any training query shares a hash with a test query (qwen3.world.check_disjoint)."""
    from qwen3.world import check_disjoint, generate
    from qwen3.world.corpus import write_corpus

    recipe: Recipe = run.recipe
    corpus = write_corpus(run.path("data", "corpus.jsonl"), recipe.corpus_documents, seed=recipe.seed,
                          mix=recipe.corpus_mix)  # fmt: skip
    corpora = [corpus]
    if recipe.reasoning_documents:  # S2's own corpus: other train items (seed + 1), reasoning-heavy
        corpora.append(write_corpus(run.path("data", REASONING_CORPUS), recipe.reasoning_documents,
                                    seed=recipe.seed + 1, mix=recipe.reasoning_mix))  # fmt: skip
    test = {f: generate(f, "test", recipe.test_items, seed=recipe.seed) for f in EVAL_FAMILIES}
    train = {f: generate(f, "train", TRAIN_CHECK_ITEMS, seed=recipe.seed) for f in EVAL_FAMILIES}
    check_disjoint({"train": [i for items in train.values() for i in items],
                    "test": [i for items in test.values() for i in items]})  # fmt: skip
    test_hashes = sorted(item.query_hash for items in test.values() for item in items)
    corpus_hashes = set()
    for written in corpora:
        corpus_hashes |= {
            json.loads(line).get("query_hash")
            for line in Path(written["path"]).read_text(encoding="utf-8").splitlines()
        } - {None}
    leaked = corpus_hashes & set(test_hashes)
    if leaked:
        from qwen3.world import SplitOverlapError

        raise SplitOverlapError(f"{len(leaked)} pre-training documents share a query hash with test items")
    atomic_write_json(run.path("data", "test_hashes.json"), test_hashes)
    out = {
        "corpus_documents": corpus["documents"],
        "by_kind": corpus["by_kind"],
        "test_items": len(test_hashes),
        "train_hashes_checked": len(corpus_hashes) + sum(len(v) for v in train.values()),
        "overlap": 0,
    }
    if len(corpora) > 1:
        out["reasoning_corpus"] = {"documents": corpora[1]["documents"], "by_kind": corpora[1]["by_kind"]}
    return out


def test_hashes(run) -> set[str]:
    return set(json.loads(run.path("data", "test_hashes.json").read_text()))


def check_run_data(run, run_dir: Path) -> int:
    """Every world item id in the phase's own data files (run_dir/data/*.jsonl) must be a non-test item whose
    query hash is not a test hash; returns how many ids were checked."""
    from qwen3.world import SplitOverlapError

    hashes = {h[:12] for h in test_hashes(run)}
    checked = 0
    for path in sorted((run_dir / "data").glob("*.jsonl")) if (run_dir / "data").is_dir() else []:
        for match in ITEM_ID.finditer(path.read_text(encoding="utf-8")):
            checked += 1
            if match.group(2) == "test" or match.group(3) in hashes:
                raise SplitOverlapError(f"{path}: trains on test item {match.group(0)}")
    return checked


# -- tokenizer and models -------------------------------------------------------------------------------------------
def make_tokenizer(run) -> dict[str, Any]:
    """A byte-level BPE with the Qwen3 added tokens, learned on the corpus, saved with the Qwen3 chat template."""
    from qwen3.chat.jinja import qwen3_template
    from qwen3.tokenizer.train import train_bpe

    lines = run.path("data", "corpus.jsonl").read_text(encoding="utf-8").splitlines()
    texts = [json.loads(line)["text"] for line in lines]
    tokenizer = train_bpe(texts, run.recipe.vocab_size)
    tokenizer.save_pretrained(run.path("tokenizer"), chat_template=qwen3_template())
    tokens = sum(len(tokenizer.encode(text)) for text in texts)
    return {
        "vocab_size": tokenizer.vocab_size,
        "corpus_tokens": tokens,
        "chars_per_token": sum(map(len, texts)) / tokens,
    }


def model_config(run, which: str):
    from qwen3.model.presets import get_preset
    from qwen3.tokenizer import load_tokenizer

    tokenizer = load_tokenizer(run.path("tokenizer"))
    return get_preset("qwen3-debug-tiny").replace(
        vocab_size=tokenizer.vocab_size,
        bos_token_id=tokenizer.endoftext_id,
        eos_token_id=tokenizer.im_end_id,
        rope_theta=10_000.0,
        **run.recipe.model_fields(which),
    ), tokenizer


def init_models(run) -> dict[str, Any]:
    """Randomly initialised flagship and student directories (seeded), each with the trained tokenizer."""
    from qwen3.model.checkpoint import default_generation_config, init_model, save_model
    from qwen3.train.flops import matmul_params

    sizes = {}
    for offset, which in enumerate(("flagship", "student")):
        config, tokenizer = model_config(run, which)
        model = init_model(config, seed=run.recipe.seed + offset)
        model.generation_config = default_generation_config(config, tokenizer)
        save_model(model, run.path("models", which), tokenizer=tokenizer)
        sizes[which] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "matmul_parameters": matmul_params(config),
            "config": {k: getattr(config, k) for k in ("vocab_size", *run.recipe.model_fields(which))},
        }
    return sizes


# -- training -------------------------------------------------------------------------------------------------------
def phase_steps(recipe: Recipe, name: str) -> int:
    table = recipe.phase_table(name)
    if name == "pretrain":
        return sum(
            int(link.get("steps", table.get("steps", 100))) for link in table.get("stages", {}).values()
        )
    return int(table.get("steps", 100))


def phase_table(run, name: str) -> dict[str, Any]:
    """The phase's TrainConfig table with the links filled in: run directory, starting model, data, teacher."""
    table = run.recipe.phase_table(name)
    table["run_dir"] = str(run.run_dir(name))
    table["seed"] = run.recipe.seed
    if name == "pretrain":
        start = run.path("models", "flagship")
        table.setdefault("data", {})["paths"] = [str(run.path("data", "corpus.jsonl"))]
        if run.recipe.reasoning_documents:
            s2 = table.setdefault("stages", {}).setdefault("s2", {})
            s2.setdefault("data", {})["paths"] = [str(run.path("data", REASONING_CORPUS))]
    else:
        table["stage"] = STAGE_KIND[name]
        start = run.model_of(STARTS_FROM[name]) if name in STARTS_FROM else run.path("models", "student")
    table.setdefault("model", {})["name"] = str(start)
    if name.startswith("distill"):
        table.setdefault("distill", {})["teacher"] = str(run.path("final"))
    return table


def trainer_phase(name: str) -> Callable[[Any], dict[str, Any]]:
    def run_phase(run) -> dict[str, Any]:
        from qwen3.train.stages import run_table

        table = phase_table(run, name)
        resume = run.resumable(name)
        run_table(table, resume=resume, overwrite=not resume, progress=False)
        return {"resumed": resume, **phase_summary(run, name)}

    run_phase.__name__ = f"train_{name}"
    return in_world(run_phase)


PRETRAIN_LINKS = ("s1", "s2", "s3")


def chain_dirs(root: Path, name: str) -> list[Path]:
    """The run directories of phase ``name`` under its ``root`` (runs/<name>): the pre-training chain's links, in
    order, or the one run of any other phase."""
    return [root / link for link in PRETRAIN_LINKS] if name == "pretrain" else [root]


def phase_runs(run, name: str) -> list[Path]:
    return chain_dirs(run.run_dir(name), name)


def phase_summary(run, name: str) -> dict[str, Any]:
    """The last metrics record of each run of the phase (loss, reward, compute) and the test-leak check."""
    from qwen3.train.metrics import read_metrics

    summary: dict[str, Any] = {"runs": {}, "data_ids_checked": 0}
    for run_dir in phase_runs(run, name):
        records = [r for r in read_metrics(run_dir) if "step" in r]
        summary["runs"][run_dir.name] = records[-1] if records else {}
        summary["data_ids_checked"] += check_run_data(run, run_dir)
    return summary


# -- evaluation -----------------------------------------------------------------------------------------------------
EXAMPLE_FLAGS = ("/think", "/no_think")


def mode_examples(run, backend) -> dict[str, Any]:
    """The flagship's replies to one validation reasoning question (never trained on), asked once with ``/think``
    and once with ``/no_think``, greedy, with the evaluation's reply limit: the report's first sight of the
    switch. Deterministic, so a resumed run writes the same report."""
    from qwen3.eval.backends import ChatRequest, GenParams
    from qwen3.world import generate

    item = generate("reasoning", "validation", 1, seed=run.recipe.seed)[0]
    question = item.messages[-1]["content"]
    params = GenParams(temperature=0.0, max_tokens=run.recipe.eval.max_tokens)
    requests = [
        ChatRequest([*item.messages[:-1], {"role": "user", "content": f"{question} {flag}"}], params)
        for flag in EXAMPLE_FLAGS
    ]
    replies = backend.complete(requests)
    return {
        "item": item.id,
        "question": question,
        "replies": [{"flag": flag, "text": reply.raw} for flag, reply in zip(EXAMPLE_FLAGS, replies)],
    }


def eval_phase(
    name: str, budget: bool = False, student: bool = False, examples: bool = False
) -> Callable[[Any], dict[str, Any]]:
    def run_phase(run) -> dict[str, Any]:
        from qwen3.eval.backends import InProcessBackend
        from qwen3.eval.runner import EvalOptions, run_suites

        settings = run.recipe.eval
        suites = ["reasoning"] if student else list(settings.suites)
        if budget:
            suites.append("budget")
        options = EvalOptions(
            samples=settings.samples if student else 1,
            seed=run.recipe.seed,
            limit=run.recipe.test_items,
            sampling=settings.sampling,
            max_tokens=settings.max_tokens,
            budgets=tuple(settings.budgets),
            records=False,
        )
        backend = InProcessBackend(str(run.model_of(name)))
        results = run_suites(backend, suites, options=options, log=run.display.log)
        results["model"] = name
        atomic_write_json(run.path("eval", f"{name}.json"), results)
        if examples:
            atomic_write_json(run.path(EXAMPLES_FILE), mode_examples(run, backend))
        return {
            suite: {mode: round(summary["score"], 6) for mode, summary in modes.items()}
            for suite, modes in results["suites"].items()
        }

    run_phase.__name__ = f"eval_{name}"
    return in_world(run_phase)


# -- outputs --------------------------------------------------------------------------------------------------------
def export_phase(source: str, target: str) -> Callable[[Any], dict[str, Any]]:
    """Copy the phase's final model to OUT/<target> (a Hugging Face directory with the tokenizer and template)."""

    def run_phase(run) -> dict[str, Any]:
        model = run.model_of(source)
        with atomic_directory(run.path(target)) as tmp:
            shutil.copytree(model, tmp, dirs_exist_ok=True)
            for file in run.path("tokenizer").iterdir():
                if not (tmp / file.name).exists():
                    shutil.copy2(file, tmp / file.name)
        return {
            "from": str(model.relative_to(run.out)),
            "files": sorted(p.name for p in run.path(target).iterdir()),
        }

    run_phase.__name__ = f"export_{target}"
    return run_phase


def write_report(run) -> dict[str, Any]:
    from qwen3.recipes.report import write_outputs

    return write_outputs(run)
