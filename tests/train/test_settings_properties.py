"""Property tests of the training CLI's ``KEY=VALUE`` overrides: any list of overrides on a shipped config either
builds a ``TrainConfig`` whose numbers are finite, or raises ``SettingsError`` with one line naming the key."""

from __future__ import annotations

import dataclasses
import math
import typing
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from qwen3.train.config import TrainConfig
from qwen3.train.settings import SettingsError, read_table, to_table

CONFIG = Path(__file__).parents[2] / "qwen3" / "train" / "configs" / "debug.toml"


def key_paths(cls, prefix: str = "") -> list[str]:
    """Every settable dotted key of a config dataclass."""
    paths = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        name = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            paths += key_paths(hints[f.name], name + ".")
        else:
            paths.append(name)
    return paths


KEYS = key_paths(TrainConfig)
RAW_VALUES = ["0", "-1", "1", "3", "2e-4", "nan", "inf", "-inf", "1e400", "9223372036854775808", "true", "'x'",
              '"bf16"', "[]", "[1, 2]", "{}", "{a = 1}", "", "=", "'", "[", "none", "null", "0.0", "1_000"]  # fmt: skip
override = st.tuples(
    st.one_of(st.sampled_from(KEYS), st.sampled_from(KEYS).map(lambda k: k + ".x"), st.text(max_size=8)),
    st.one_of(st.sampled_from(RAW_VALUES), st.text(max_size=10)),
).map(lambda kv: f"{kv[0]}={kv[1]}")


def finite_numbers(table) -> list[str]:
    """The dotted keys of every non-finite float in a settings table."""
    bad = []
    for key, value in table.items():
        if isinstance(value, dict):
            bad += [f"{key}.{inner}" for inner in finite_numbers(value)]
        elif isinstance(value, float) and not math.isfinite(value):
            bad.append(key)
    return bad


def check(overrides: list[str]) -> None:
    try:
        config = TrainConfig.from_dict(read_table(CONFIG), overrides)
    except SettingsError as err:
        message = str(err)
        assert message and "\n" not in message, (overrides, message)
        return
    assert not finite_numbers(to_table(config)), (overrides, to_table(config))


@pytest.mark.parametrize("key", ["optim.lr", "optim.weight_decay", "schedule.min_lr_ratio"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_are_refused(key, value):
    if key not in KEYS:
        pytest.skip(f"{key} is not a TrainConfig key")
    with pytest.raises(SettingsError, match=key.split(".")[-1]):
        TrainConfig.from_dict(read_table(CONFIG), [f"{key}={value}"])


def check_many(examples: int, max_overrides: int) -> None:
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(override, max_size=max_overrides))
    def run(overrides):
        check(overrides)

    run()


def test_any_overrides_build_a_config_or_name_the_key():
    check_many(300, 4)


@pytest.mark.slow
def test_any_overrides_at_length():
    check_many(5_000, 6)
