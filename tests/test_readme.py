"""The README's examples run as written: its Python snippet (on a tiny checkpoint in place of the 0.6B one) and
every `qwen3` command line of its shell blocks, which must parse with today's CLI."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from qwen3.cli import build_parser, parse_args

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
MODEL = "models/qwen3-0.6b"


def code_blocks(language: str) -> list[str]:
    """The README's ``` blocks of ``language``, outside the ```` blocks that quote a model's transcript (which
    may hold ``` blocks of their own)."""
    outside_quotes = re.sub(r"^````\w*\n.*?^````$", "", README, flags=re.DOTALL | re.MULTILINE)
    return re.findall(rf"```{language}\n(.*?)```", outside_quotes, flags=re.DOTALL)


def command_lines() -> list[list[str]]:
    """Every `qwen3 ...` invocation in the shell blocks (also inside `a && b` chains), as argument lists."""
    commands = []
    for block in code_blocks("bash"):
        for line in block.splitlines():
            for part in line.split(" && "):
                words = shlex.split(part, comments=True)
                if words and words[0].endswith("qwen3"):
                    commands.append(words[1:])
    return commands


def test_the_python_snippet_runs_as_written(tmp_path, monkeypatch):
    from qwen3.model.checkpoint import init_checkpoint

    (snippet,) = code_blocks("python")
    assert snippet.index("messages = ") < snippet.index("messages,")  # defined before use
    import qwen3

    init_checkpoint("qwen3-debug-tiny", tmp_path / MODEL, seed=0)
    monkeypatch.chdir(tmp_path)
    # Only shorter: the random model would fill all 2,048 tokens (seconds of CI time for nothing).
    thinking = qwen3.SamplingParams.thinking
    monkeypatch.setattr(
        qwen3.SamplingParams,
        "thinking",
        lambda **kw: thinking(**{**kw, "max_tokens": 24, "thinking_budget": 12}),
    )
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    assert scope["reply"].finish_reason in ("stop", "length")
    assert scope["logits"].shape[:2] == (1, len(scope["tok"].encode(scope["prompt"])))


def test_the_readme_has_commands_for_every_entry_point():
    names = {words[0] for words in command_lines() if words}
    assert {"init", "generate", "chat", "serve", "train", "plot"} <= names


@pytest.mark.parametrize("words", command_lines(), ids=" ".join)
def test_every_command_line_parses(words):
    args = parse_args(build_parser(), words)
    assert args.handler is not None


@pytest.mark.slow
def test_the_python_snippet_runs_as_written_on_the_real_shape(tmp_path, monkeypatch):
    """Exactly the README: `qwen3 init qwen3-0.6b models/qwen3-0.6b`, then the snippet unchanged (minutes, 1.2 GB)."""
    from qwen3.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["init", "qwen3-0.6b", MODEL]) == 0
    (snippet,) = code_blocks("python")
    scope: dict = {}
    exec(compile(snippet, "README.md", "exec"), scope)
    assert scope["reply"].finish_reason in ("stop", "length")
    assert scope["logits"].shape[-1] == 151936
