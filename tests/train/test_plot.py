"""`qwen3 plot`: a chain of stages is one curve with each stage named at its start, and the plot has a title."""

from __future__ import annotations

import json

import pytest

from qwen3.train.plot import plot_runs, run_series, stage_label

pytest.importorskip("matplotlib")


def write_stage(directory, stage: str | None, losses: list[float]) -> None:
    directory.mkdir(parents=True)
    lines = [json.dumps({"step": i + 1, "loss": loss}) for i, loss in enumerate(losses)]
    (directory / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    if stage is not None:
        (directory / "train_config.json").write_text(json.dumps({"stage": stage}))


@pytest.fixture
def chain(tmp_path):
    run = tmp_path / "pretrain"
    write_stage(run / "s1", "s1-general", [5.0, 4.0, 3.0])
    write_stage(run / "s2", "s2-reasoning", [3.5, 2.5])
    write_stage(run / "s3", None, [4.0])  # no config: the directory names the stage
    return run


def test_stages_follow_each_other_and_are_labelled(chain):
    steps, values, stages = run_series(chain)
    assert steps == [1, 2, 3, 4, 5, 6] and values == [5.0, 4.0, 3.0, 3.5, 2.5, 4.0]
    assert stages == [(0, "S1 general"), (3, "S2 reasoning"), (5, "S3")]
    assert stage_label(chain / "s2") == "S2 reasoning"


def test_a_single_run_has_no_stages(chain):
    assert run_series(chain / "s1")[2] == []


def test_the_figure_has_a_title_and_the_stage_names(chain, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    drawn = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda figure: drawn.append(figure) or close(figure))
    out = plot_runs([chain], tmp_path / "loss.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    axes = drawn[0].axes[0]
    assert axes.get_title() == "loss: pretrain"
    assert [text.get_text().strip() for text in axes.texts] == ["S1 general", "S2 reasoning", "S3"]
    assert [line.get_xdata()[0] for line in axes.lines[1:]] == [3, 5]  # a boundary line per later stage
    plot_runs([chain], tmp_path / "titled.png", title="S1-S3 on the debug corpus")
    assert drawn[1].axes[0].get_title() == "S1-S3 on the debug corpus"
