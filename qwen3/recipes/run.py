"""The miniature Qwen3 recipe: every phase of the report's pipeline in one resumable run (docs/recipe.md).

A run directory ``OUT`` holds ``state.json`` (the phases finished, each with its result and wall time, rewritten
atomically after every phase), ``data/`` (world corpus, test-split hashes), ``tokenizer/``, ``models/`` (the
initial flagship and student), ``runs/<phase>/`` (each training phase's own run directory, checkpoints and
metrics), ``eval/<phase>.json`` (qwen3.eval results after that phase), ``final/`` and ``student/`` (Hugging Face
model directories), ``plots/``, ``results.json`` and ``report.md``.

Resume: a phase recorded in state.json is skipped; the first unfinished one is started again with its trainer's
own ``resume`` (continuing from its newest checkpoint), so an interrupted run ends with the same results as an
uninterrupted one for the same seed (wall times aside). Evaluation, data and tokenizer phases are deterministic
functions of their inputs and simply run again. Leftovers of atomic writes a kill interrupted are removed first.
Each phase's record also keeps the 1-minute load average at its end, and the state the machine (CPUs, torch
threads), so measured times can be read with the load they ran under.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qwen3.recipes import phases as p
from qwen3.recipes.config import FLAGSHIP_STAGES, STUDENT_PHASES, Recipe
from qwen3.utils.atomic import atomic_write_json, remove_stale_temporaries

STATE_FILE = "state.json"
# where a killed run can leave temporaries of atomic writes (run directories clean their own checkpoints)
OUTPUT_DIRS = (".", "data", "tokenizer", "models", "eval", "plots")


class RecipeStopped(Exception):
    """Raised after the phase named by ``stop_after`` (tests simulate a kill at a phase boundary with it)."""


@dataclass
class Phase:
    name: str
    run: Callable[[RecipeRun], dict[str, Any]]
    steps: int = 0  # optimizer steps, for the progress display (0: not a training phase)


class RecipeRun:
    """One run of ``recipe`` into ``out``; ``run()`` executes the phases not yet finished."""

    def __init__(
        self,
        recipe: Recipe,
        out: str | Path,
        resume: bool = False,
        overwrite: bool = False,
        progress: bool = True,
        stop_after: str | None = None,
        command: str = "",
    ):
        from qwen3.cli import UserFacingError

        self.recipe, self.out, self.command = recipe, Path(out), command
        self.stop_after = stop_after
        self.phases = build_phases(recipe)
        names = [phase.name for phase in self.phases]
        if stop_after is not None and stop_after not in names:
            raise UserFacingError(f"stop_after: unknown phase {stop_after!r} (phases: {', '.join(names)})")
        state_path = self.out / STATE_FILE
        if self.out.exists() and any(self.out.iterdir()):
            if overwrite:
                shutil.rmtree(self.out)
            elif not resume:
                raise UserFacingError(f"{self.out} is not empty: pass --resume to continue it or --overwrite")
        self.state = json.loads(state_path.read_text()) if state_path.is_file() else {"phases": {}}
        if (
            self.state.get("recipe", recipe.name) != recipe.name
            or self.state.get("seed", recipe.seed) != recipe.seed
        ):
            raise UserFacingError(
                f"{self.out} holds a run of recipe {self.state.get('recipe')!r} seed {self.state.get('seed')}, "
                f"not {recipe.name!r} seed {recipe.seed}"
            )
        self.state.update(recipe=recipe.name, seed=recipe.seed, source=str(recipe.source), machine=machine())
        if resume:
            for directory in OUTPUT_DIRS:
                remove_stale_temporaries(self.out / directory)
        self.progress = progress
        self.display: Any = None

    # -- paths ---------------------------------------------------------------------------------------------------
    def path(self, *parts: str) -> Path:
        return self.out.joinpath(*parts)

    def run_dir(self, phase: str) -> Path:
        return self.path("runs", phase)

    def model_of(self, phase: str) -> Path:
        """The Hugging Face directory a finished phase left (its run's newest checkpoint's model)."""
        from qwen3.model.run_dir import resolve_model_dir

        return resolve_model_dir(p.chain_dirs(self.run_dir(phase), phase)[-1])

    # -- running -------------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        from qwen3.recipes.progress import RecipeDisplay

        with RecipeDisplay(self.phases, self.state["phases"], enabled=self.progress) as display:
            self.display = display
            for phase in self.phases:
                if phase.name in self.state["phases"]:
                    continue
                display.start(phase, self.run_dir(phase.name) if phase.steps else None)
                started = time.perf_counter()
                result = phase.run(self)
                self.state["phases"][phase.name] = {
                    "wall_s": time.perf_counter() - started,
                    "load_avg": round(os.getloadavg()[0], 2),
                    "result": result,
                }
                atomic_write_json(self.path(STATE_FILE), self.state)
                display.finish(phase)
                if phase.name == self.stop_after:
                    raise RecipeStopped(f"stopped after phase {phase.name}")
        return self.state

    def resumable(self, phase: str) -> bool:
        """Whether ``phase``'s run directory holds checkpoints to continue from."""
        return has_checkpoints(self.out, phase)


def has_checkpoints(out: Path, phase: str) -> bool:
    """Whether the training ``phase`` of the run in ``out`` has written a checkpoint (any link of the chain)."""
    from qwen3.model.run_dir import list_checkpoints

    root = Path(out) / "runs" / phase
    dirs = p.chain_dirs(root, phase)
    return any(d.is_dir() and list_checkpoints(d) for d in dirs)


def finished_phases(out: Path) -> list[str]:
    """The phases ``out/state.json`` records as finished, in order (none before the first is done)."""
    path = Path(out) / STATE_FILE
    return list(json.loads(path.read_text())["phases"]) if path.is_file() else []


def machine() -> dict[str, int]:
    import torch

    return {"cpus": os.cpu_count() or 1, "torch_threads": torch.get_num_threads()}


# -- phases ---------------------------------------------------------------------------------------------------------
def build_phases(recipe: Recipe) -> list[Phase]:
    out = [Phase("data", p.make_data), Phase("tokenizer", p.make_tokenizer), Phase("init", p.init_models)]
    for name in FLAGSHIP_STAGES:
        out.append(Phase(name, p.trainer_phase(name), steps=p.phase_steps(recipe, name)))
        out.append(
            Phase(f"eval_{name}", p.eval_phase(name, budget=name == "stage4", examples=name == "stage4"))
        )
    out.append(Phase("final", p.export_phase("stage4", "final")))
    for name in STUDENT_PHASES:
        out.append(Phase(name, p.trainer_phase(name), steps=p.phase_steps(recipe, name)))
        out.append(Phase(f"eval_{name}", p.eval_phase(name, student=True)))
    out.append(Phase("student", p.export_phase("distill_on", "student")))
    out.append(Phase("report", p.write_report))
    return out
