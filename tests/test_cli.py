import os
import subprocess
import sys
from pathlib import Path

import pytest

import qwen3
from qwen3.cli import USER_ERROR_CLASSES, UserFacingError, is_user_error, main
from qwen3.model.presets import PRESETS

ROOT = Path(__file__).resolve().parents[1]
COMMANDS = ["init", "generate", "chat", "serve", "train", "plot"]


def test_no_command_prints_the_help_with_every_command(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert out.startswith("usage: qwen3")
    for command in COMMANDS:
        assert f"    {command}" in out, command


@pytest.mark.parametrize("command", COMMANDS)
def test_each_command_has_its_own_help(capsys, command):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: qwen3 {command}")


def test_version_and_unknown_commands(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out == f"qwen3 {qwen3.__version__}\n"
    with pytest.raises(SystemExit) as exit_info:
        main(["trian"])
    assert exit_info.value.code == 2 and "invalid choice: 'trian'" in capsys.readouterr().err


def test_help_does_not_import_torch():
    """`qwen3 --help` stays instant: building the parser imports no heavy package."""
    code = "import sys; from qwen3.cli import build_parser; build_parser(); print(sorted({'torch', 'transformers', 'fastapi'} & set(sys.modules)))"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True
    ).stdout
    assert out.strip() == "[]"


def test_init_lists_and_suggests_presets(capsys):
    with pytest.raises(SystemExit):
        main(["init", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert all(name in help_text for name in PRESETS)
    assert main(["init", "--list"]) == 0
    listed = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in listed] == list(PRESETS)
    assert "28 layers, hidden 1024, vocab 151936" in listed[0]
    assert main(["init", "qwen3-0.6", "unused"]) == 1
    assert "unknown preset 'qwen3-0.6' (did you mean 'qwen3-0.6b'?)" in capsys.readouterr().err
    assert main(["init"]) == 1
    assert "give PRESET and OUT_DIR" in capsys.readouterr().err


def test_user_errors_are_told_apart_from_bugs():
    assert is_user_error(UserFacingError("bad flag"))
    assert not is_user_error(ValueError("a bug"))


def test_ctrl_c_exits_130(monkeypatch, capsys):
    from qwen3.model import cli as model_cli

    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(model_cli, "run_init", interrupted)
    assert main(["init", "qwen3-debug-tiny", "unused"]) == 130
    assert capsys.readouterr().err == "interrupted\n"


@pytest.mark.parametrize("module_name, class_name", USER_ERROR_CLASSES.items())
def test_package_errors_are_one_line_messages(module_name, class_name, monkeypatch, capsys):
    """Errors about the user's files, settings or data print one line from any command, with no traceback."""
    import importlib

    from qwen3.model import cli as model_cli

    error_class = getattr(importlib.import_module(module_name), class_name)

    def failing(args):
        raise error_class("config.json: field 'x' is wrong")

    monkeypatch.setattr(model_cli, "run_init", failing)
    assert main(["init", "qwen3-debug-tiny", "unused"]) == 1
    assert capsys.readouterr().err == "qwen3 init: error: config.json: field 'x' is wrong\n"


def test_unexpected_errors_still_raise(monkeypatch):
    from qwen3.model import cli as model_cli

    def broken(args):
        raise ValueError("a bug, not the user's input")

    monkeypatch.setattr(model_cli, "run_init", broken)
    with pytest.raises(ValueError, match="a bug"):
        main(["init", "qwen3-debug-tiny", "unused"])


def test_init_of_a_released_preset_without_the_rank_file_says_what_to_do(tmp_path, monkeypatch, capsys):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "dashscope" else real_find_spec(name, *a),
    )
    out = tmp_path / "model"
    assert main(["init", "qwen3-0.6b", str(out)]) == 1
    err = capsys.readouterr().err
    assert "qwen3[ranks]" in err and "--no-tokenizer" in err and "Traceback" not in err
    assert not out.exists()
