import pytest

from qwen3.cli import USER_ERROR_CLASSES, build_parser, main


def test_help_lists_registered_commands(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "usage: qwen3" in out


def test_parser_builds():
    assert build_parser().prog == "qwen3"


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
