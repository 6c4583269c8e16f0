import pytest

from qwen3.train.config import ScheduleConfig, TrainConfig, load_train_config
from qwen3.train.schedule import lr_at
from qwen3.train.settings import SettingsError, parse_override

CONFIG = """
run_dir = "runs/x"
steps = 50
[model]
name = "qwen3-debug-tiny"
[optim]
lr = 1e-3
betas = [0.9, 0.99]
[data]
paths = ["a.jsonl"]
"""


def test_toml_plus_dotted_overrides(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text(CONFIG)
    config = load_train_config(
        path,
        [
            "optim.lr=3e-4",
            "data.seq_len=256",
            "model.name=qwen3-debug-5m",
            "data.paths=['b.txt', 'c.txt']",
            "precision=bf16",
            "init_from=ckpt",
            "data.synthetic=none",
        ],
    )
    assert config.optim.lr == 3e-4 and config.optim.betas == (0.9, 0.99)
    assert config.data.seq_len == 256 and config.data.paths == ["b.txt", "c.txt"]
    assert config.model.name == "qwen3-debug-5m" and config.precision == "bf16" and config.init_from == "ckpt"
    assert config.data.synthetic is None
    assert config.steps == 50
    again = TrainConfig.from_dict(config.to_dict())  # what checkpoints store round-trips
    assert again == config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("optim.lrr=1", "unknown key 'optim.lrr'; known keys in optim: lr, betas"),
        ("optim.lr=fast", "optim.lr: expected float, got 'fast'"),
        ("optim.lr=-1", "optim.lr: must be > 0"),
        ("steps=1.5", "steps: expected int, got 1.5"),
        ("precision=fp8", "precision: must be one of fp32, bf16"),
        ("data.shuffle=1", "data.shuffle: expected bool"),
        ("data.paths=x.txt", "data.paths: expected a list"),
        ("nokey", "expected KEY=VALUE"),
    ],
)
def test_errors_name_the_key_and_value(tmp_path, override, message):
    path = tmp_path / "c.toml"
    path.write_text(CONFIG)
    with pytest.raises(SettingsError, match=message.replace("(", r"\(").replace("[", r"\[")) as info:
        load_train_config(path, [override])
    assert str(path) in str(info.value)


def test_file_errors(tmp_path):
    with pytest.raises(SettingsError, match="cannot read"):
        load_train_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("steps = = 3")
    with pytest.raises(SettingsError, match="bad.toml: not valid TOML"):
        load_train_config(bad)


def test_override_values_parse_as_toml_or_bare_strings():
    assert parse_override("a.b=3e-4") == (["a", "b"], 3e-4)
    assert parse_override("a=[1, 2]") == (["a"], [1, 2])
    assert parse_override("a=true") == (["a"], True)
    assert parse_override("a=qwen3-debug-tiny") == (["a"], "qwen3-debug-tiny")


def test_accumulation_follows_global_batch_and_world_size():
    config = TrainConfig(micro_batch_size=4, global_batch_size=16)
    assert (
        config.grad_accum_steps(1) == 4
        and config.grad_accum_steps(2) == 2
        and config.grad_accum_steps(4) == 1
    )
    with pytest.raises(SettingsError, match="not a multiple"):
        config.grad_accum_steps(3)
    assert TrainConfig(micro_batch_size=4).rows_per_step(2) == 8


def test_schedules():
    warm_cosine = ScheduleConfig(kind="cosine", warmup_steps=10, min_lr_ratio=0.1)
    lrs = [lr_at(warm_cosine, 1.0, s, 111) for s in range(111)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0) and lrs[10] == pytest.approx(1.0)
    assert lrs[-1] == pytest.approx(0.1) and lrs[60] == pytest.approx(0.55)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    wsd = ScheduleConfig(
        kind="wsd", warmup_steps=0, decay_fraction=0.2, decay_shape="linear", min_lr_ratio=0.0
    )
    lrs = [lr_at(wsd, 2.0, s, 101) for s in range(101)]
    # The last 20 steps decay: from the peak at step 81 linearly to the minimum at step 100.
    assert set(lrs[:82]) == {2.0} and lrs[-1] == 0.0 and lrs[91] == pytest.approx(2.0 * (1 - 10 / 19))
    stable = ScheduleConfig(kind="wsd", decay_fraction=0.0)
    assert {lr_at(stable, 1.0, s, 20) for s in range(20)} == {1.0}
    assert lr_at(ScheduleConfig(kind="constant"), 0.5, 7, 10) == 0.5
