"""Property tests of checkpoint loading: a checkpoint directory damaged at random (a truncated or overwritten
safetensors file, a config.json with wrong values, a broken index file) either loads or fails with one of the
package's named user errors whose first line names the file; never an unrelated exception from deep inside (a struct error,
a KeyError, a segfault-prone read)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from qwen3.model.checkpoint import init_checkpoint, load_model
from qwen3.model.hf_files import CheckpointError
from qwen3.model.validation import ConfigError

NAMED = (CheckpointError, ConfigError)
CONFIG_KEYS = ["hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size",
               "intermediate_size", "head_dim", "rope_theta", "rms_norm_eps", "max_position_embeddings",
               "torch_dtype", "tie_word_embeddings", "rope_scaling", "model_type", "architectures"]  # fmt: skip
values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**65), 2**65),
    st.sampled_from(
        [0, -1, 1, 3, 2**31, 2**63, float("nan"), float("inf"), 1e-300, "bf16", "float99", [], {}]
    ),
    st.floats(),
    st.text(max_size=8),
)


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> Path:
    return init_checkpoint("qwen3-debug-tiny", tmp_path_factory.mktemp("ckpt") / "tiny", seed=0)


def weights_file(directory: Path) -> Path:
    return sorted(directory.glob("*.safetensors"))[0]


damage = st.one_of(
    st.tuples(st.just("truncate"), st.floats(0.0, 0.999)),
    st.tuples(st.just("overwrite"), st.integers(0, 4096), st.binary(min_size=1, max_size=16)),
    st.tuples(st.just("header_length"), st.integers(0, 2**64 - 1)),
    st.tuples(st.just("config"), st.sampled_from(CONFIG_KEYS), values),
    st.tuples(
        st.just("config_text"), st.sampled_from(["", "{", "[]", "null", '{"hidden_size": NaN}', "\xff"])
    ),
    st.tuples(
        st.just("index"),
        st.sampled_from(
            [
                "{",
                "[]",
                '{"weight_map": 3}',
                '{"weight_map": {"x": "nope.safetensors"}}',
                '{"weight_map": {"lm_head.weight": 7}}',
            ]
        ),
    ),  # fmt: skip
)


def apply(directory: Path, how: tuple) -> None:
    kind = how[0]
    if kind == "truncate":
        file = weights_file(directory)
        data = file.read_bytes()
        file.write_bytes(data[: int(len(data) * how[1])])
    elif kind == "overwrite":
        file = weights_file(directory)
        data = bytearray(file.read_bytes())
        start = min(how[1], len(data) - 1)
        data[start : start + len(how[2])] = how[2]
        file.write_bytes(bytes(data))
    elif kind == "header_length":  # the 8-byte little-endian header size that opens a safetensors file
        file = weights_file(directory)
        data = file.read_bytes()
        file.write_bytes(how[1].to_bytes(8, "little") + data[8:])
    elif kind == "config":
        config = json.loads((directory / "config.json").read_text())
        config[how[1]] = how[2]
        (directory / "config.json").write_text(json.dumps(config, allow_nan=True))
    elif kind == "config_text":
        (directory / "config.json").write_text(how[1], errors="surrogateescape")
    elif kind == "index":
        (directory / "model.safetensors.index.json").write_text(how[1])


def check_damaged(pristine: Path, scratch: Path, how: tuple) -> None:
    directory = scratch / "damaged"
    shutil.rmtree(directory, ignore_errors=True)
    shutil.copytree(pristine, directory)
    apply(directory, how)
    try:
        load_model(directory)
    except NAMED as err:
        first_line = str(err).splitlines()[0] if str(err) else ""
        # The first line says which file or directory (a list of every problem may follow).
        assert "damaged" in first_line or ".json" in first_line or ".safetensors" in first_line, (
            how,
            str(err),
        )
    # Anything else propagates and fails the test with the damage that caused it.


def damage_many(pristine: Path, scratch: Path, examples: int) -> None:
    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(how=damage)
    # Values that once reached torch (an unhashable model_type, sizes past a C long, 2**31 layers that took hours
    # to build on the meta device, an integer rope_theta past a double's integer range): always tried.
    @example(how=("config", "model_type", []))
    @example(how=("config", "hidden_size", 2**63))
    @example(how=("config", "vocab_size", 2**63))
    @example(how=("config", "num_hidden_layers", 2**31))
    @example(how=("config", "head_dim", 2**31))
    @example(how=("config", "rope_theta", 2**65))
    @example(how=("config", "rms_norm_eps", float("nan")))
    def run(how):
        check_damaged(pristine, scratch, how)

    run()


def test_damaged_checkpoints_load_or_fail_with_a_named_error(pristine, tmp_path):
    damage_many(pristine, tmp_path, 80)


@pytest.mark.slow
def test_damaged_checkpoints_at_length(pristine, tmp_path):
    damage_many(pristine, tmp_path, 2_000)
