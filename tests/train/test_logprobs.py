"""token_logprobs against the plain torch computation: values and gradients."""

import pytest
import torch

from qwen3.train.batch import IGNORE
from qwen3.train.logprobs import token_logprobs


def plain(hidden, weight, targets, temperature):
    logits = (hidden @ weight.T).float() / temperature
    logp_all = torch.log_softmax(logits, dim=-1)
    keep = targets != IGNORE
    safe = targets.clamp(min=0)
    logp = torch.where(keep, logp_all.gather(1, safe[:, None])[:, 0], torch.zeros(()))
    entropy = torch.where(keep, -(logp_all.exp() * logp_all).sum(-1), torch.zeros(()))
    return logp, entropy


def inputs(seed=0, n=13, h=8, v=37, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, h, generator=g, dtype=dtype).requires_grad_()
    weight = torch.randn(v, h, generator=g, dtype=dtype).requires_grad_()
    targets = torch.randint(0, v, (n,), generator=g)
    targets[[1, n - 2]] = IGNORE
    return hidden, weight, targets


@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("chunk_size", [4, 512])
@pytest.mark.parametrize("save_limit", [0, 1 << 20])  # the backward recomputes the logits / keeps them
def test_values_and_gradients_match_plain_torch(temperature, chunk_size, save_limit):
    hidden, weight, targets = inputs()
    logp, entropy = token_logprobs(
        hidden, weight, targets, temperature, chunk_size, with_entropy=True, save_limit=save_limit
    )
    ref_logp, ref_entropy = plain(hidden.double(), weight.double(), targets, temperature)
    assert logp.dtype == torch.float32
    torch.testing.assert_close(logp.double(), ref_logp.double(), atol=2e-6, rtol=1e-5)
    torch.testing.assert_close(entropy.double(), ref_entropy.double(), atol=2e-6, rtol=1e-5)
    assert (logp[targets == IGNORE] == 0).all() and (entropy[targets == IGNORE] == 0).all()
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(len(targets), generator=g), torch.randn(len(targets), generator=g)
    grads = torch.autograd.grad((logp * a).sum() + (entropy * b).sum(), (hidden, weight))
    ref = torch.autograd.grad((ref_logp * a).sum() + (ref_entropy * b).sum(), (hidden, weight))
    for ours, theirs in zip(grads, ref):
        torch.testing.assert_close(ours.double(), theirs.double(), atol=1e-5, rtol=1e-5)


def test_gradcheck_in_float64():
    hidden, weight, targets = inputs(n=5, h=3, v=7, dtype=torch.float64)

    def both(h, w):
        return token_logprobs(h, w, targets, 0.8, 2, with_entropy=True)

    assert torch.autograd.gradcheck(both, (hidden, weight))


@pytest.mark.parametrize("save_limit", [0, 1 << 20])
def test_an_unused_entropy_gets_no_gradient_and_the_kept_path_equals_recomputing(save_limit):
    hidden, weight, targets = inputs()
    logp, entropy = token_logprobs(hidden, weight, targets, 0.9, 4, with_entropy=True, save_limit=save_limit)
    grads = torch.autograd.grad((logp * torch.arange(13.0)).sum(), (hidden, weight))
    ref_logp, _ = plain(hidden.double(), weight.double(), targets, 0.9)
    ref = torch.autograd.grad((ref_logp * torch.arange(13.0).double()).sum(), (hidden, weight))
    for ours, theirs in zip(grads, ref):
        torch.testing.assert_close(ours.double(), theirs.double(), atol=1e-5, rtol=1e-5)


def test_logprob_only_backward_and_bad_input():
    hidden, weight, targets = inputs()
    logp = token_logprobs(hidden, weight, targets)
    (grad,) = torch.autograd.grad(logp.sum(), hidden)
    (ref,) = torch.autograd.grad(plain(hidden, weight, targets, 1.0)[0].sum(), hidden)
    torch.testing.assert_close(grad, ref, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="temperature must be > 0"):
        token_logprobs(hidden, weight, targets, temperature=0.0)
    with pytest.raises(ValueError, match=r"targets \(3,\) must be \[13\]"):
        token_logprobs(hidden, weight, targets[:3])


def plain_truncated(hidden, weight, targets, temperature, top_k, top_p):
    """Top-k, then top-p over the top-k renormalised, the target kept; written out per row."""
    logits = (hidden @ weight.T) / temperature
    rows = []
    for row, target in zip(logits, targets.tolist()):
        if target == IGNORE:
            rows.append(torch.zeros(()))
            continue
        order = row.detach().argsort(descending=True)[: top_k or None]
        probs = torch.softmax(row.detach()[order], -1)
        before = probs.cumsum(-1) - probs
        kept = order[(before < top_p) | (torch.arange(len(order)) == 0)].tolist()
        kept = sorted(set(kept) | {target})
        rows.append(row[target] - torch.logsumexp(row[kept], -1))
    return torch.stack(rows)


@pytest.mark.parametrize(("top_k", "top_p"), [(5, 1.0), (0, 0.5), (8, 0.7)])
def test_truncated_logprobs_renormalise_over_the_kept_tokens(top_k, top_p):
    hidden, weight, targets = inputs(dtype=torch.float64)
    logp, entropy = token_logprobs(hidden, weight, targets, 0.9, 4, True, top_k=top_k, top_p=top_p)
    expected = plain_truncated(hidden, weight, targets, 0.9, top_k, top_p)
    torch.testing.assert_close(logp, expected)
    assert torch.isfinite(entropy).all() and (entropy <= plain(hidden, weight, targets, 0.9)[1] + 1e-9).all()
    ours = torch.autograd.grad(logp.sum(), (hidden, weight), retain_graph=True)
    theirs = torch.autograd.grad(expected.sum(), (hidden, weight))
    for a, b in zip(ours, theirs):
        torch.testing.assert_close(a, b)
    (grad_h,) = torch.autograd.grad(entropy.sum(), hidden)
    assert torch.isfinite(grad_h).all()


def test_under_bf16_autocast_matmuls_are_bf16_and_results_fp32():
    hidden, weight, targets = inputs()
    with torch.autocast("cpu", torch.bfloat16):
        logp, entropy = token_logprobs(hidden, weight, targets, 0.9, 4, True, top_k=6)
    assert logp.dtype == entropy.dtype == torch.float32
    exact = token_logprobs(hidden, weight, targets, 0.9, 4, top_k=6)
    assert (logp - exact).abs().max() < 0.1 and (logp - exact).abs().max() > 0  # bf16 rounding, nothing more
    grad_h, grad_w = torch.autograd.grad((logp + entropy).sum(), (hidden, weight))
    assert grad_h.dtype == hidden.dtype and grad_w.dtype == weight.dtype
    assert torch.isfinite(grad_h).all() and torch.isfinite(grad_w).all()
