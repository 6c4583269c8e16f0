import json
import sys

import pytest

from qwen3.cli import main
from qwen3.train.cli import presets
from qwen3.train.settings import read_table
from qwen3.train.stages import check_table

from .conftest import run_losses, tiny_config


@pytest.mark.parametrize("name", presets())
def test_shipped_configs_parse(name):
    from qwen3.train.cli import config_path

    configs = check_table(read_table(config_path(name)))  # as its stage will parse it
    assert configs and all(c.steps > 0 for c in configs)


def test_train_and_plot_from_the_command_line(tmp_path, capsys):
    config = tmp_path / "c.json"
    config.write_text(json.dumps(tiny_config(tmp_path / "run").to_dict()))
    assert main(["train", str(config), "steps=3", "--no-progress"]) == 0
    assert len(run_losses(tmp_path / "run")) == 3
    # options and overrides in any order
    assert main(["train", str(config), "--resume", "--no-progress", "steps=4"]) == 0
    assert len(run_losses(tmp_path / "run")) == 4
    out = tmp_path / "plots" / "loss.png"
    assert main(["plot", str(tmp_path / "run"), "-o", str(out), "--smooth", "0.5"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "no-such-preset"], "neither a config file nor a preset; presets: debug"),
        (["train", "debug", "optim.lr=fast"], "debug.toml: optim.lr: expected float, got 'fast'"),
        (["train", "debug", "data.synthetic=null", "run_dir=RUN"], "data: give paths"),
        (["plot", "RUN"], "no metrics.jsonl"),
        (
            ["train", "debug", "init_from=RUN/nowhere", "run_dir=RUN/new"],
            "init_from 'RUN/nowhere': no such file or directory",
        ),
        (["train", "debug", "init_from=RUN", "run_dir=RUN/new"], "init_from 'RUN': not a checkpoint"),
    ],
)
def test_user_errors_are_one_line_messages(tmp_path, capsys, args, message):
    (tmp_path / "run").mkdir()
    args = [arg.replace("RUN", str(tmp_path / "run")) for arg in args]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message.replace("RUN", str(tmp_path / "run")) in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("module", "args", "message"),
    [
        (
            "matplotlib",
            ["plot", "RUN"],
            "qwen3 plot: error: qwen3 plot needs matplotlib: pip install 'qwen3[train]'",
        ),
        (
            "tensorboard",
            ["train", "debug", "tensorboard=true", "run_dir=RUN", "--no-progress"],
            "tensorboard = true needs the tensorboard package: pip install 'qwen3[train]', or set tensorboard = false",
        ),
    ],
)
def test_missing_optional_packages_name_the_install_command(
    tmp_path, capsys, monkeypatch, module, args, message
):
    monkeypatch.setitem(sys.modules, module, None)  # as if not installed
    args = [arg.replace("RUN", str(tmp_path / "run")) for arg in args]
    assert main(args) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "overrides"),
    [
        (["debug", "--no-progress", "run_dir=runs/x"], ["run_dir=runs/x"]),
        (["debug", "a=1", "--resume", "b=2", "--no-progress", "a=3"], ["a=1", "b=2", "a=3"]),
        (["--no-progress", "debug", "a=1"], ["a=1"]),
    ],
)
def test_overrides_may_follow_options_and_keep_their_order(monkeypatch, argv, overrides):
    from qwen3.train import cli as train_cli

    seen = []
    monkeypatch.setattr(train_cli, "run_train", lambda args: seen.append(args) or 0)
    assert main(["train", *argv]) == 0
    assert train_cli.main(argv) == 0  # the torchrun entry point parses the same way
    assert [args.overrides for args in seen] == [overrides, overrides]
    assert [args.no_progress for args in seen] == [True, True]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["train", "debug", "--no-progress", "--bogus"],
            "unrecognized arguments: --bogus (overrides are KEY=VALUE)",
        ),
        (
            ["train", "debug", "--no-progress", "stray"],
            "unrecognized arguments: stray (overrides are KEY=VALUE)",
        ),
        (["init", "qwen3-debug-tiny", "out", "a=1"], "unrecognized arguments: a=1"),
    ],
)
def test_leftovers_that_are_not_overrides_are_errors(monkeypatch, capsys, argv, message):
    from qwen3.train import cli as train_cli

    monkeypatch.setattr(train_cli, "run_train", lambda args: pytest.fail("must not run"))
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
