"""Loss normalisation: the denominator comes from the whole global batch, so accumulation does not change the
gradient, for each mode; "sequences" is the mean of per-sequence means, "constant" divides by sequences x length."""

import pytest
import torch
import torch.nn.functional as F

from qwen3.train.batch import IGNORE, Row, collate
from qwen3.train.loss import Normalization, count_sequences, make_loss, reduce_tokens
from qwen3.train.settings import SettingsError
from qwen3.train.trainer import Trainer

from .conftest import tiny_config

MODES = [("tokens", None), ("sequences", None), ("constant", 96)]


def sft_trainer(run_dir, micro, mode, length):
    config = tiny_config(
        run_dir, data__kind="sft", data__synthetic="chat", data__synthetic_documents=64, data__seq_len=96,
        data__pack=True, micro_batch_size=micro, global_batch_size=8, steps=1,
        loss__options={"normalization": mode, "length": length},
    )  # fmt: skip
    return Trainer(config, progress=False)


def gradient(trainer, rows):
    trainer.optimizer.zero_grad(set_to_none=True)
    denominator = trainer.normalization.denominator(rows)
    tokens = sum(len(row.input_ids) for row in rows)
    sums = trainer._accumulate(trainer._my_micro_batches(rows), denominator, tokens)
    grads = torch.cat([p.grad.flatten() for p in trainer.model.parameters() if p.grad is not None])
    return grads, float(sums[1]) / denominator


def per_sequence_reference(model, rows):
    """The loss by hand: token CE from plain logits, grouped by (row, document)."""
    per_sequence = {}
    for index, row in enumerate(rows):
        batch = collate([row], 0)
        logits = model(batch.input_ids, document_ids=batch.document_ids)[0].float()
        ce = F.cross_entropy(logits, batch.labels[0], ignore_index=IGNORE, reduction="none")
        for position, label in enumerate(row.labels):
            if label != IGNORE:
                per_sequence.setdefault((index, row.document_ids[position]), []).append(float(ce[position]))
    return per_sequence


@pytest.mark.parametrize(("mode", "length"), MODES)
def test_one_micro_batch_and_four_accumulation_steps_give_the_same_gradient(tmp_path, mode, length):
    whole = sft_trainer(tmp_path / "a", 8, mode, length)
    rows = [whole.rows.next_row() for _ in range(8)]
    assert (
        len({row.num_targets for row in rows}) > 1 and sum(map(count_sequences, rows)) > 8
    )  # packed, uneven
    accumulated = sft_trainer(tmp_path / "b", 2, mode, length)
    assert accumulated.accum == 4
    g_whole, loss_whole = gradient(whole, rows)
    g_accumulated, loss_accumulated = gradient(accumulated, rows)
    torch.testing.assert_close(g_accumulated, g_whole, rtol=1e-4, atol=1e-7)
    assert loss_accumulated == pytest.approx(loss_whole, rel=1e-5)
    with torch.no_grad():
        sequences = per_sequence_reference(whole.model, rows)
    values = [v for seq in sequences.values() for v in seq]
    expected = {
        "tokens": sum(values) / len(values),
        "sequences": sum(sum(seq) / len(seq) for seq in sequences.values()) / len(sequences),
        "constant": sum(values) / (len(sequences) * 96),
    }[mode]
    assert loss_whole == pytest.approx(expected, rel=1e-4)


def test_reduce_tokens_sums_each_sequence_mean():
    labels = torch.tensor([[1, 2, IGNORE, 3], [IGNORE, 4, 5, IGNORE]])
    documents = torch.tensor([[0, 0, 1, 1], [0, 0, 0, -1]])
    batch = collate([Row([0] * 4, labels[0].tolist(), documents[0].tolist()),
                     Row([0] * 4, labels[1].tolist(), documents[1].tolist())], 0)  # fmt: skip
    values = torch.tensor([[1.0, 3.0, 100.0, 5.0], [100.0, 2.0, 4.0, 100.0]])
    # sequences: (row 0, doc 0) mean 2, (row 0, doc 1) 5, (row 1, doc 0) 3
    assert float(reduce_tokens(values, batch, Normalization("sequences"))) == pytest.approx(10.0)
    assert float(reduce_tokens(values, batch)) == pytest.approx(15.0)
    rows = [Row([0] * 4, labels[i].tolist(), documents[i].tolist()) for i in range(2)]
    assert Normalization("sequences").denominator(rows) == 3
    assert Normalization("constant", 10).denominator(rows) == 30
    assert Normalization().denominator(rows) == 5


def test_bad_normalization_and_options_are_named():
    with pytest.raises(ValueError, match="normalization 'constant' needs a length"):
        Normalization("constant")
    with pytest.raises(SettingsError, match="loss 'causal_lm': normalization must be one of"):
        make_loss("causal_lm", normalization="mean")
    with pytest.raises(SettingsError, match=r"loss.options.chunk: not an option of loss 'causal_lm' \(options: "
                       "chunk_size, normalization, length\\)"):  # fmt: skip
        make_loss("causal_lm", chunk=3)
    with pytest.raises(SettingsError, match="loss.options.chunk_size: expected int, got 'big'"):
        make_loss("causal_lm", chunk_size="big")
    with pytest.raises(SettingsError, match="loss.options.chunk_size: expected int"):
        tiny_config("unused", loss__options={"chunk_size": 1.5})
    with pytest.raises(SettingsError, match="loss.type 'dpo' is not one of causal_lm"):
        tiny_config("unused", loss__type="dpo")
