"""Per-token extras: [T] floats, [T][K] lists (teacher top-k), integer ids; collate pads them with 0."""

import pytest
import torch

from qwen3.train.batch import IGNORE, Row, collate


def test_extras_of_several_shapes_and_dtypes_are_padded():
    short = Row(
        [5, 6],
        [6, IGNORE],
        extras={
            "advantage": [0.5, 0.5],
            "top_ids": [[1, 2, 3], [4, 5, 6]],
            "top_logprobs": [[-0.1, -2.0, -3.0], [-0.5, -1.0, -4.0]],
        },
    )
    long = Row([7, 8, 9], [8, 9, IGNORE], extras={"advantage": [-1.0, -1.0, -1.0],
                                                  "top_ids": [[7, 8, 9]] * 3, "top_logprobs": [[0.0] * 3] * 3})  # fmt: skip
    batch = collate([short, long], pad_id=0)
    assert batch.extras["advantage"].dtype == torch.float32 and batch.extras["advantage"].shape == (2, 3)
    assert batch.extras["advantage"][0].tolist() == [0.5, 0.5, 0.0]
    ids = batch.extras["top_ids"]
    assert ids.dtype == torch.long and ids.shape == (2, 3, 3)
    assert ids[0].tolist() == [[1, 2, 3], [4, 5, 6], [0, 0, 0]] and ids[1, 2].tolist() == [7, 8, 9]
    values = batch.extras["top_logprobs"]
    assert values.dtype == torch.float32 and values[0, 1].tolist() == pytest.approx([-0.5, -1.0, -4.0])
    assert collate([Row([1], [2], extras={"ids": [3]})], 0).extras["ids"].dtype == torch.long


def test_bad_extras_are_named():
    with pytest.raises(ValueError, match="extra 'adv' has 1 values"):
        Row([1, 2], [2, IGNORE], extras={"adv": [1.0]})
    a = Row([1], [2], extras={"top": [[1, 2]]})
    b = Row([1], [2], extras={"top": [[1, 2, 3]]})
    with pytest.raises(ValueError, match="extra 'top': mixes per-token sizes"):
        collate([a, b], 0)
    with pytest.raises(ValueError, match="extra 'top': rows of one batch must all have it"):
        collate([a, Row([1], [2])], 0)
