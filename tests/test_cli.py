from qwen3.cli import build_parser, main


def test_help_lists_registered_commands(capsys):
    assert main([]) == 2
    out = capsys.readouterr().out
    assert "usage: qwen3" in out


def test_parser_builds():
    assert build_parser().prog == "qwen3"
