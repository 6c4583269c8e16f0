"""report.md and results.json of a recipe run: the report's Table 22 and Table 21 analogues, Figure 2, the
targets of issue 14 with measured numbers, curves, wall times, model sizes and the command to reproduce.

Everything here is computed from the run's own files (eval/*.json, runs/*/metrics.jsonl, state.json): a target
passes or misses on the measured numbers, and a miss names its cause as measured (no tuning, no hiding).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from qwen3.recipes.config import EXAMPLES_FILE, FLAGSHIP_STAGES, STUDENT_PHASES
from qwen3.utils.atomic import atomic_write_json, atomic_write_text

STAGE_TITLES = {
    "pretrain": "Base (S1-S3)",
    "stage1": "Stage 1 cold start",
    "stage2": "Stage 2 reasoning RL",
    "stage3": "Stage 3 fusion",
    "stage4": "Stage 4 general RL",
}
STAGE_COLUMNS = {"pretrain": "Base", "stage1": "St.1", "stage2": "St.2", "stage3": "St.3", "stage4": "St.4"}
MODES = {"think": "Thinking", "no_think": "Non-thinking"}
SCHEMA_VERSION = 1
# results.json keys that vary between runs of the same recipe and seed (timings, and whether a phase was resumed);
# everything else is a function of the recipe and the seed
VOLATILE_KEYS = {
    "wall_s",
    "elapsed_s",
    "tokens_per_s",
    "rollout_tokens_per_s",
    "update_tokens_per_s",
    "resumed",
    "load_avg",
    "machine",
}


# -- numbers --------------------------------------------------------------------------------------------------------
def score(
    evals: dict[str, Any], phase: str, suite: str, mode: str, key: str = "score"
) -> tuple[float, float]:
    """(value, standard error) of a suite in a mode (ThinkFollow's one score serves both modes)."""
    by_mode = evals[phase]["suites"][suite]
    summary = by_mode.get(mode) or by_mode["both"]
    return float(summary[key]), float(summary["stderr"])


def mean_modes(evals: dict[str, Any], phase: str, suite: str) -> tuple[float, float]:
    values = [score(evals, phase, suite, mode) for mode in MODES]
    return sum(v for v, _ in values) / 2, math.sqrt(sum(se**2 for _, se in values)) / 2


def pct(value: float, se: float | None = None) -> str:
    return f"{100 * value:.1f}" + (f" ± {100 * se:.1f}" if se is not None else "")


def miss_cause(delta: float, se: float, values: list[float], margin: float = 0.0) -> str:
    """Why a comparison "delta > margin" missed, from the numbers alone."""
    if all(v == 0 for v in values):
        return "every score is 0: the model solves no item at this scale"
    if delta < 0 and abs(delta) > 2 * se:
        return f"measured decrease of {pct(-delta)} points"
    if abs(delta - margin) <= 2 * se:
        return f"the difference ({pct(delta)}) is within 2 standard errors ({pct(2 * se)}) of the {pct(margin)}-point bar: not resolved at this n"
    return (
        f"the difference ({pct(delta)}) is {pct(margin - delta)} points short of the {pct(margin)}-point bar"
    )


def compare(name: str, report: str, after: tuple[float, float], before: tuple[float, float],
            margin: float = 0.0) -> dict[str, Any]:  # fmt: skip
    """A target "after exceeds before by more than margin"."""
    delta = after[0] - before[0]
    se = math.sqrt(after[1] ** 2 + before[1] ** 2)
    passed = delta > margin
    return {
        "target": name,
        "report": report,
        "measured": f"{pct(*after)} vs {pct(*before)} (Δ {pct(delta, se)})",
        "values": {"after": after[0], "before": before[0], "delta": delta, "stderr": se},
        "pass": passed,
        "cause": "" if passed else miss_cause(delta, se, [after[0], before[0]], margin),
    }


def threshold(name: str, report: str, value: tuple[float, float], at_least: float) -> dict[str, Any]:
    passed = value[0] >= at_least
    return {
        "target": name,
        "report": report,
        "measured": f"{pct(*value)} (needs >= {pct(at_least)})",
        "values": {"value": value[0], "stderr": value[1], "threshold": at_least},
        "pass": passed,
        "cause": "" if passed else f"{pct(at_least - value[0])} points short",
    }


def budget_target(curve: dict[str, Any]) -> dict[str, Any]:
    """Figure 2: accuracy non-decreasing, within its standard error, over >= 5 thinking budgets."""
    points = curve["think"]
    drops = [
        (a["budget"], b["budget"], a["score"] - b["score"])
        for a, b in zip(points, points[1:], strict=False)
        if b["score"] < a["score"] - math.sqrt(a["stderr"] ** 2 + b["stderr"] ** 2)
    ]
    enough = len(points) >= 5
    flat_zero = all(p["score"] == 0 for p in points)
    passed = enough and not drops and not flat_zero
    cause = "" if passed else (
        f"only {len(points)} budgets" if not enough
        else "flat at 0 at every budget: no reasoning to scale" if flat_zero
        else "; ".join(f"{pct(d)} drop from budget {x} to {y}, beyond the standard error" for x, y, d in drops)
    )  # fmt: skip
    return {
        "target": "reasoning accuracy non-decreasing over >= 5 thinking budgets (within its standard error)",
        "report": "Figure 2",
        "measured": ", ".join(f"{p['budget']}: {pct(p['score'], p['stderr'])}" for p in points),
        "values": {str(p["budget"]): p["score"] for p in points},
        "pass": passed,
        "cause": cause,
    }


def student_numbers(run, evals: dict[str, Any]) -> dict[str, Any]:
    """Table 21: the student's reasoning after the off-policy start, RL alone and on-policy distillation, with
    each phase's compute (FLOPs of the FLOP counter: distillation logs it; RL alone = 6N per trained token plus
    2N per rollout token, N the student's matmul parameters)."""
    from qwen3.train.metrics import read_metrics

    n = run.state["phases"]["init"]["result"]["student"]["matmul_parameters"]
    rows = {}
    for phase in ("distill_off", "student_rl", "distill_on"):
        think = evals[f"{phase}"]["suites"]["reasoning"]["think"]
        no_think = evals[f"{phase}"]["suites"]["reasoning"]["no_think"]
        k = think["samples"]
        records = [r for r in read_metrics(run.run_dir(phase)) if "step" in r]
        if records and "flops" in records[-1]:
            flops = float(records[-1]["flops"])
        else:
            tokens = sum(r.get("tokens", 0) for r in records)
            flops = float(8 * n * tokens)
        rows[phase] = {
            "think_pass@1": think["pass@1"],
            f"think_pass@{k}": think.get(f"pass@{k}", think["pass@1"]),
            "no_think_pass@1": no_think["pass@1"],
            "stderr": think["stderr"],
            "k": k,
            "flops": flops,
            "steps": records[-1]["step"] if records else 0,
        }
    return rows


def targets(run, evals: dict[str, Any], table21: dict[str, Any]) -> list[dict[str, Any]]:
    out = [
        compare("thinking beats non-thinking on reasoning by >= 20 points after stage 4", "Table 22, AIME'24 81.4 vs 31.0",
                score(evals, "stage4", "reasoning", "think"), score(evals, "stage4", "reasoning", "no_think"), 0.20),
        budget_target(evals["stage4"]["budget"]),
        compare("stage 2 raises thinking-mode reasoning over stage 1", "section 4.2",
                score(evals, "stage2", "reasoning", "think"), score(evals, "stage1", "reasoning", "think")),
        threshold("ThinkFollow >= 90 after stage 3", "Table 22, 88.7", score(evals, "stage3", "thinkfollow", "both"), 0.90),
        threshold("ThinkFollow >= 98.9 after stage 4", "Table 22, 98.9", score(evals, "stage4", "thinkfollow", "both"), 0.989),
    ]  # fmt: skip
    for suite, label in (
        ("tooluse", "ToolUse"),
        ("ifeval", "instruction following"),
        ("lengthctrl", "LengthCtrl"),
    ):
        out.append(compare(f"stage 4 raises {label} over stage 3 (mean of both modes)", "Table 22",
                           mean_modes(evals, "stage4", suite), mean_modes(evals, "stage3", suite)))  # fmt: skip
    out.append(compare("stage 3 raises CounterFactQA over stage 2 (mean of both modes)", "Table 22, +10.9",
                       mean_modes(evals, "stage3", "counterfact"), mean_modes(evals, "stage2", "counterfact")))  # fmt: skip
    on, rl = table21["distill_on"], table21["student_rl"]
    k = on["k"]
    for key in ("think_pass@1", f"think_pass@{k}"):
        out.append(compare(f"on-policy distillation beats RL alone on the student's reasoning ({key})", "Table 21",
                           (on[key], on["stderr"]), (rl[key], rl["stderr"])))  # fmt: skip
    ratio = on["flops"] / rl["flops"] if rl["flops"] else math.inf
    out.append({
        "target": "on-policy distillation at <= 1/3 of RL's compute",
        "report": "Table 21, 1,800 vs 17,920 GPU hours",
        "measured": f"{on['flops']:.3g} vs {rl['flops']:.3g} FLOPs (ratio {ratio:.2f})",
        "values": {"distill_flops": on["flops"], "rl_flops": rl["flops"], "ratio": ratio},
        "pass": ratio <= 1 / 3,
        "cause": "" if ratio <= 1 / 3 else (
            f"distillation took {ratio:.2f} of RL's FLOPs ({on['steps']} vs {rl['steps']} steps; "
            "a distillation step also runs the teacher's forward)"
        ),
    })  # fmt: skip
    return out


# -- tables ---------------------------------------------------------------------------------------------------------
def table22(evals: dict[str, Any], suites: list[str]) -> str:
    """Benchmarks x modes x stages, grouped by mode as the report's Table 22 is (short column names, legend in
    ``TABLE22_LEGEND``)."""
    from qwen3.eval.runner import SUITES

    stages = [s for s in STAGE_TITLES if s in evals]
    head = (
        "| Benchmark | " + " | ".join(f"{MODES[m]} {STAGE_COLUMNS[s]}" for m in MODES for s in stages) + " |"
    )
    lines = [head, "|---|" + "---:|" * (2 * len(stages))]
    for suite in suites:
        cells = [pct(*score(evals, s, suite, m)) for m in MODES for s in stages]
        lines.append(f"| {SUITES[suite][1]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


TABLE22_LEGEND = (
    "Base: after pre-training S1-S3; St.1-St.4: after post-training stage 1 (long-CoT cold start), 2 (reasoning "
    "RL), 3 (thinking-mode fusion), 4 (general RL). Percent ± one standard error."
)


def table21_markdown(rows: dict[str, Any]) -> str:
    titles = {"distill_off": "Off-policy distillation (start)", "student_rl": "+ RL alone",
              "distill_on": "+ On-policy distillation"}  # fmt: skip
    k = rows["distill_on"]["k"]
    rl = rows["student_rl"]["flops"]
    lines = [
        f"| Student | Reasoning pass@1 (thinking) | pass@{k} (thinking) | pass@1 (non-thinking) | steps | "
        "compute (FLOPs) | compute / RL alone |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for phase, row in rows.items():
        ratio = f"{row['flops'] / rl:.2f}" if rl else "-"
        lines.append(
            f"| {titles[phase]} | {pct(row['think_pass@1'], row['stderr'])} | {pct(row[f'think_pass@{k}'])} | "
            f"{pct(row['no_think_pass@1'])} | {row['steps']} | {row['flops']:.3g} | {ratio} |"
        )
    return "\n".join(lines)


def targets_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| target | report | measured | result |", "|---|---|---|---|"]
    for row in rows:
        result = "pass" if row["pass"] else f"MISS: {row['cause']}"
        lines.append(f"| {row['target']} | {row['report']} | {row['measured']} | {result} |")
    return "\n".join(lines)


# -- plots ----------------------------------------------------------------------------------------------------------
def plots(run) -> dict[str, str]:
    """Loss, reward and entropy curves of the training phases, and the Figure 2 budget curve (PNG)."""
    from qwen3.eval.report import plot_budget
    from qwen3.train.metrics import read_metrics
    from qwen3.train.plot import plot_runs

    def having(metric: str) -> list[Path]:
        return [
            run.run_dir(p) for p in (*FLAGSHIP_STAGES, *STUDENT_PHASES)
            if any(metric in r for m in sorted(run.run_dir(p).rglob("metrics.jsonl")) for r in read_metrics(m))
        ]  # fmt: skip

    out = {}
    for metric, title in (
        ("loss", "training loss"),
        ("reward_mean", "RL reward"),
        ("entropy", "policy entropy"),
    ):
        runs = having(metric)
        if runs:
            out[metric] = str(
                plot_runs(runs, run.path("plots", f"{metric}.png"), metric, title=title).relative_to(run.out)
            )
    budget = json.loads(run.path("eval", "stage4.json").read_text())["budget"]
    out["budget"] = str(
        plot_budget(
            budget, run.path("plots", "budget.png"), "Figure 2: thinking budget (stage 4)"
        ).relative_to(run.out)
    )
    return out


# -- outputs --------------------------------------------------------------------------------------------------------
def fenced(text: str) -> list[str]:
    """``text`` as a Markdown code block; its four-backtick fence keeps the question's own ``` blocks inside."""
    return ["````text", text.replace("````", "` ` ` `"), "````", ""]


def examples_markdown(examples: dict[str, Any]) -> list[str]:
    lines = [
        "The final flagship (`final/`), greedy, on a validation question it never trained on, asked once with "
        "`/think` and once with `/no_think`; the raw completions.",
        "",
    ]
    for reply in examples["replies"]:
        question = f"{examples['question']} {reply['flag']}"
        lines += [
            f"User, with `{reply['flag']}`:",
            "",
            *fenced(question),
            "Model:",
            "",
            *fenced(reply["text"]),
        ]
    return lines


def load_evals(run) -> dict[str, Any]:
    return {path.stem: json.loads(path.read_text()) for path in sorted(run.path("eval").glob("*.json"))}


def build_results(run) -> dict[str, Any]:
    evals = load_evals(run)
    table21 = student_numbers(run, evals)
    phases = run.state["phases"]
    return {
        "schema": SCHEMA_VERSION,
        "recipe": run.recipe.name,
        "seed": run.recipe.seed,
        "command": run.command,
        "models": phases["init"]["result"],
        "data": {**phases["data"]["result"], "tokenizer": phases["tokenizer"]["result"]},
        "training": {name: phases[name]["result"] for name in phases if name in run.recipe.tables},
        "evals": evals,
        "table21": table21,
        "targets": targets(run, evals, table21),
        "wall_s": {name: phases[name]["wall_s"] for name in phases},
        "load_avg": {name: phases[name]["load_avg"] for name in phases if "load_avg" in phases[name]},
        "machine": run.state.get("machine", {}),
    }


def without_timings(value: Any) -> Any:
    """``value`` without the keys that differ between runs of one recipe and seed (what resume tests compare)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in VOLATILE_KEYS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def write_outputs(run) -> dict[str, Any]:
    results = build_results(run)
    results["examples"] = json.loads(run.path(EXAMPLES_FILE).read_text())
    results["plots"] = plots(run)
    results["wall_s"]["report"] = 0.0
    atomic_write_json(run.path("results.json"), results)
    atomic_write_text(run.path("report.md"), render(run, results))
    passed = sum(t["pass"] for t in results["targets"])
    return {"targets_passed": passed, "targets": len(results["targets"])}


def minutes(seconds: float) -> str:
    whole = round(seconds)
    return f"{whole // 60} min {whole % 60:02d} s"


CURVE_CAPTIONS = {
    "loss": "Training loss of every training phase by optimizer step (pre-training S1-S3 as one chain).",
    "reward_mean": "Mean reward of the RL phases (stage 2, stage 4, the student's RL alone).",
    "entropy": "Policy entropy of the phases that log it.",
}


def machine_words(results: dict[str, Any]) -> str:
    machine = results.get("machine", {})
    if not machine:
        return "an unrecorded machine"
    return f"{machine['cpus']} CPU cores with {machine['torch_threads']} torch thread(s)"


def render(run, results: dict[str, Any]) -> str:
    models = results["models"]
    data = results["data"]
    wall = results["wall_s"]
    load = results.get("load_avg", {})
    evals = results["evals"]
    suites = [s for s in run.recipe.eval.suites if s in evals["stage4"]["suites"]]
    curve = evals["stage4"]["budget"]
    lines = [
        f"# The miniature Qwen3: recipe `{results['recipe']}`",
        "",
        f"Reproduce: `{results['command'] or 'qwen3 recipe run ' + results['recipe']}` (seed {results['seed']}; "
        f"recipe file `{run.recipe.source.name}`; `--resume` continues it after an interruption). Every number "
        f"below was measured by this run, in {minutes(sum(wall.values()))} on {machine_words(results)}; "
        "docs/recipe.md explains the phases.",
        "",
        "## Targets (issue 14)",
        "",
        targets_markdown(results["targets"]),
        "",
        f"{sum(t['pass'] for t in results['targets'])} of {len(results['targets'])} targets pass. Scores are "
        f"percent ± one standard error over {run.recipe.test_items} test items per suite.",
        "",
        "## Asked to think, told not to",
        "",
        *examples_markdown(results["examples"]),
        "## Table 22 analogue: benchmarks x stages x modes",
        "",
        table22(evals, suites),
        "",
        f"{TABLE22_LEGEND} ThinkFollow is scored once per stage (its items carry their own flags, so both "
        "modes show that score), as in the report.",
        "",
        "## Table 21 analogue: the student, distillation vs RL alone",
        "",
        f"Both start from the same off-policy distilled student ({models['student']['parameters']:,} parameters; "
        f"teacher: the stage-4 flagship, {models['flagship']['parameters']:,}). Compute counts the phase itself.",
        "",
        table21_markdown(results["table21"]),
        "",
        "## Figure 2 analogue: thinking budget (stage 4)",
        "",
        "| budget (tokens) | " + " | ".join(str(p["budget"]) for p in curve["think"]) + " | non-thinking |",
        "|---|" + "---|" * (len(curve["think"]) + 1),
        "| reasoning | "
        + " | ".join(pct(p["score"], p["stderr"]) for p in curve["think"])
        + f" | {pct(curve['no_think']['score'], curve['no_think']['stderr'])} |",
        "",
        f"![budget curve]({results['plots']['budget']})",
        "",
        "## Training curves",
        "",
        *[
            line
            for metric, path in results["plots"].items()
            if metric != "budget"
            for line in (CURVE_CAPTIONS.get(metric, metric), "", f"![{metric}]({path})", "")
        ],
        "## Models",
        "",
        "| model | parameters | config |",
        "|---|---|---|",
        *[
            f"| {name} | {m['parameters']:,} | {', '.join(f'{k}={v}' for k, v in m['config'].items())} |"
            for name, m in models.items()
        ],  # fmt: skip
        "",
        "`final/` (the flagship after stage 4) and `student/` (after on-policy distillation) are Hugging Face "
        "directories: `qwen3 chat final`, `qwen3 serve final`, `transformers.AutoModelForCausalLM.from_pretrained`.",
        "",
        "## Data",
        "",
        f"Pre-training corpus: {data['corpus_documents']} documents from the task world "
        f"({', '.join(f'{n} {kind}' for kind, n in data['by_kind'].items())}), "
        f"tokenised by the trained byte-level BPE ({data['tokenizer']['vocab_size']} tokens, "
        f"{data['tokenizer']['chars_per_token']:.2f} characters per token). Test split: {data['test_items']} items; "
        f"{data['train_hashes_checked']} training query hashes checked against them "
        f"(qwen3.world.check_disjoint), plus "
        f"{sum(r.get('data_ids_checked', 0) for r in results['training'].values())} item ids in the stages' "
        f"own data files: overlap {data['overlap']}.",
        "",
        "## Wall time",
        "",
        f"On {machine_words(results)}; the load average is the machine's 1-minute load when the phase ended "
        "(other jobs included). A phase resumed after a kill shows its last attempt.",
        "",
        "| phase | seconds | load average |",
        "|---|---:|---:|",
        *[f"| {name} | {seconds:.1f} | {load.get(name, '')} |" for name, seconds in wall.items()],
        f"| **total** | {sum(wall.values()):.1f} | |",
        "",
    ]
    return "\n".join(lines)
