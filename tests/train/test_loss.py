import pytest
import torch
import torch.nn.functional as F

from qwen3.model.checkpoint import init_model
from qwen3.model.presets import get_preset
from qwen3.train.batch import IGNORE, Batch
from qwen3.train.loss import LOSSES, linear_cross_entropy, make_loss


def data(rows=300, hidden=32, vocab=100, seed=0):
    gen = torch.Generator().manual_seed(seed)
    h = torch.randn(rows, hidden, generator=gen, requires_grad=True)
    w = torch.randn(vocab, hidden, generator=gen, requires_grad=True)
    labels = torch.randint(0, vocab, (rows,), generator=gen)
    labels[::3] = IGNORE
    return h, w, labels


def grads(loss, *tensors):
    return torch.autograd.grad(loss, tensors)


@pytest.mark.parametrize("chunk", [7, 64, 1000])
def test_fused_linear_cross_entropy_equals_the_unfused_loss_and_gradients(chunk):
    h, w, labels = data()
    fused = linear_cross_entropy(h, w, labels, chunk)
    plain = F.cross_entropy(F.linear(h, w), labels, ignore_index=IGNORE, reduction="sum")
    torch.testing.assert_close(fused, plain, rtol=1e-5, atol=1e-4)
    for a, b in zip(grads(2.5 * fused, h, w), grads(2.5 * plain, h, w)):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_fused_loss_under_bf16_autocast_matches_autocast_unfused():
    h, w, labels = data()
    with torch.autocast("cpu", torch.bfloat16):
        fused = linear_cross_entropy(h, w, labels, 64)
        plain = F.cross_entropy(F.linear(h, w), labels, ignore_index=IGNORE, reduction="sum")
    assert fused.dtype == torch.float32
    torch.testing.assert_close(fused, plain, rtol=1e-3, atol=0.5)
    for a, b in zip(grads(fused, h, w), grads(plain, h, w)):
        assert (a - b).abs().max() <= 0.02 * b.abs().max()


def test_all_ignored_rows_give_zero_loss_and_gradient():
    h, w, labels = data(rows=10)
    loss = linear_cross_entropy(h, w, torch.full_like(labels, IGNORE))
    assert loss.item() == 0.0
    assert all(g.abs().sum() == 0 for g in grads(loss, h, w))


@pytest.mark.parametrize("preset", ["qwen3-debug-tiny", "qwen3-debug-moe-tiny"])
def test_causal_lm_loss_chunked_equals_plain_on_a_packed_batch(preset):
    model = init_model(get_preset(preset), torch.float32, "cpu", seed=0)
    gen = torch.Generator().manual_seed(1)
    ids = torch.randint(0, 512, (2, 16), generator=gen)
    labels = torch.randint(0, 512, (2, 16), generator=gen)
    labels[:, :3] = IGNORE
    documents = torch.tensor([[0] * 10 + [1] * 6, [0] * 16])
    batch = Batch(ids, labels, documents)
    chunked = make_loss("causal_lm", chunk_size=5)(model, batch)
    plain = make_loss("causal_lm", chunk_size=0)(model, batch)
    torch.testing.assert_close(chunked.loss_sum, plain.loss_sum, rtol=1e-5, atol=1e-4)
    logits = model(ids, document_ids=documents)
    direct = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=IGNORE, reduction="sum")
    torch.testing.assert_close(plain.loss_sum, direct)
    assert len(plain.router_logits) == (2 if model.config.is_moe else 0)


def test_unknown_loss_type_is_named():
    assert "causal_lm" in LOSSES
    with pytest.raises(ValueError, match="loss.type .dpo. is not one of causal_lm"):
        make_loss("dpo")
