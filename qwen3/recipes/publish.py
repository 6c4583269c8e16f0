"""``qwen3 recipe publish RUN_DIR``: a finished run's report into the repository, and its tables into the README.

The run's ``report.md``, ``results.json`` and ``plots/*.png`` are copied to ``docs/results/<name>/`` (one atomic
directory replace; the report's image links stay valid there), then the README's marked blocks are rewritten
from that copy's results.json:

- ``time``: one sentence beside the README's first command, the run's measured wall time and machine load;
- ``results``: the targets, the Table 22 and Table 21 analogues, and a link to the full report.

Each block sits between ``<!-- qwen3 recipe publish: NAME -->`` and ``<!-- /qwen3 recipe publish: NAME -->``;
everything outside the markers is left as it is. The README is a function of docs/results/ (``readme_text``),
which a test checks, so the tables shown cannot drift from the published run.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

from qwen3.utils.atomic import atomic_directory, atomic_write_text

RESULTS_DIR = Path("docs") / "results"
BLOCKS = ("time", "results")
COPIED = ("report.md", "results.json")


class PublishError(ValueError):
    """A run that cannot be published, or a README without the markers (the message names the file)."""


def markers(block: str) -> tuple[str, str]:
    return f"<!-- qwen3 recipe publish: {block} -->", f"<!-- /qwen3 recipe publish: {block} -->"


# -- what the blocks say --------------------------------------------------------------------------------------------
def load_published(directory: Path) -> dict[str, Any]:
    path = directory / "results.json"
    if not path.is_file():
        raise PublishError(
            f"{path} does not exist: publish a finished run first (qwen3 recipe publish RUN_DIR)"
        )
    return json.loads(path.read_text(encoding="utf-8"))


def machine_line(results: dict[str, Any]) -> str:
    """The run's total wall time, the CPUs and the load it ran under (1-minute load average at each phase's end)."""
    from qwen3.recipes.report import machine_words, minutes

    loads = list(results.get("load_avg", {}).values())
    load = f", load average {min(loads):.1f}-{max(loads):.1f} during the run" if loads else ""
    return f"{minutes(sum(results['wall_s'].values()))} on {machine_words(results)}{load}"


def time_block(results: dict[str, Any] | None, link: str | None) -> str:
    if results is None:
        return "(no run is published yet: `qwen3 recipe publish runs/tiny` writes its measured time here)"
    return (
        f"The published run of recipe `{results['recipe']}` took {machine_line(results)}; "
        f"its report: [{link}]({link})."
    )


def results_block(results: dict[str, Any] | None, link: str | None) -> str:
    from qwen3.recipes.report import (
        TABLE22_LEGEND,
        examples_markdown,
        table21_markdown,
        table22,
        targets_markdown,
    )

    if results is None:
        return (
            "No run is published yet. `qwen3 recipe run tiny --out runs/tiny` followed by "
            "`qwen3 recipe publish runs/tiny` writes its tables here and its report to docs/results/tiny/."
        )
    targets = results["targets"]
    evals = results["evals"]
    suites = list(evals["stage4"]["suites"])
    passed = sum(t["pass"] for t in targets)
    return "\n".join([
        f"Recipe `{results['recipe']}`, seed {results['seed']}: `{results['command']}` ({machine_line(results)}). "
        f"Full report, with Figure 2, the training curves, the model sizes and the wall time of every phase: "
        f"[{link}]({link}).",
        "",
        *(["**Asked to think, told not to.**", "", *examples_markdown(results["examples"])]
          if "examples" in results else []),
        f"**Targets**: {passed} of {len(targets)} of the report's claims pass at this scale; each miss gives its "
        "measured cause.",
        "",
        targets_markdown(targets),
        "",
        f"**Table 22 analogue**. {TABLE22_LEGEND}",
        "",
        table22(evals, suites),
        "",
        "**Table 21 analogue** (the student: on-policy distillation vs RL alone, from the same off-policy start):",
        "",
        table21_markdown(results["table21"]),
    ])  # fmt: skip


def render_blocks(results: dict[str, Any] | None, link: str | None) -> dict[str, str]:
    return {"time": time_block(results, link), "results": results_block(results, link)}


# -- the README -----------------------------------------------------------------------------------------------------
def block_pattern(block: str) -> re.Pattern[str]:
    begin, end = markers(block)
    return re.compile(re.escape(begin) + r"\n(.*?)\n?" + re.escape(end), flags=re.DOTALL)


def replace_blocks(text: str, blocks: dict[str, str], where: str = "README.md") -> str:
    """``text`` with each marked block's content replaced; a missing or repeated marker pair is an error."""
    for block, content in blocks.items():
        begin, end = markers(block)
        pieces = block_pattern(block).split(text)  # [before, old content, after] when the block is there once
        if len(pieces) != 3:
            raise PublishError(
                f"{where}: expected one {begin} ... {end} block, found {(len(pieces) - 1) // 2}"
            )
        text = f"{pieces[0]}{begin}\n{content}\n{end}{pieces[2]}"
    return text


def published_source(text: str) -> str | None:
    """The name of the run the README's results block shows (None: the block says nothing is published)."""
    match = block_pattern("results").search(text)
    found = re.search(r"\]\(docs/results/([^/)]+)/report\.md\)", match.group(1)) if match else None
    return found.group(1) if found else None


def readme_text(text: str, repo: Path, name: str | None) -> str:
    """The README ``text`` as publishing ``docs/results/<name>`` (None: nothing published) makes it."""
    if name is None:
        return replace_blocks(text, render_blocks(None, None))
    return replace_blocks(text, render_blocks(load_published(repo / RESULTS_DIR / name), report_link(name)))


def report_link(name: str) -> str:
    return (RESULTS_DIR / name / "report.md").as_posix()


# -- publishing -----------------------------------------------------------------------------------------------------
def check_finished(run_dir: Path) -> dict[str, Any]:
    for name in COPIED:
        if not (run_dir / name).is_file():
            raise PublishError(
                f"{run_dir / name} does not exist: the run has not finished (continue it with "
                f"qwen3 recipe run RECIPE --out {run_dir} --resume)"
            )
    return json.loads((run_dir / "results.json").read_text(encoding="utf-8"))


def publish(run_dir: str | Path, repo: str | Path = ".", name: str | None = None) -> Path:
    """Copy the finished run in ``run_dir`` to ``repo/docs/results/<name>`` (default: the recipe's name) and
    rewrite the README's blocks from it; returns the published directory. The README is checked before anything
    is written."""
    run_dir, repo = Path(run_dir), Path(repo)
    results = check_finished(run_dir)
    name = name or results["recipe"]
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise PublishError(f"publish name {name!r}: use letters, digits, '.', '_' and '-'")
    readme = repo / "README.md"
    if not readme.is_file():
        raise PublishError(f"{readme} does not exist: --repo names the repository's root")
    text = readme.read_text(encoding="utf-8")
    replace_blocks(text, render_blocks(None, None), str(readme))  # markers present, before any write
    target = repo / RESULTS_DIR / name
    with atomic_directory(target) as tmp:
        for file in COPIED:
            shutil.copy2(run_dir / file, tmp / file)
        plots = sorted((run_dir / "plots").glob("*.png")) if (run_dir / "plots").is_dir() else []
        if plots:
            (tmp / "plots").mkdir()
            for plot in plots:
                shutil.copy2(plot, tmp / "plots" / plot.name)
    atomic_write_text(
        readme, replace_blocks(text, render_blocks(results, report_link(name)))
    )  # as readme_text makes it from the copy
    return target
