"""Load-balancing losses: transformers' per-micro-batch form and the global-batch form (Qiu et al. 2025)."""

import tempfile

import pytest
import torch
import torch.multiprocessing as mp

from qwen3.model.moe import GlobalBatchLoadBalancer, global_batch_load_balancing_loss, load_balancing_loss

from .conftest import tiny, tiny_model, to_transformers

E, K, LAYERS = 8, 2, 3


def _logits(tokens, seed, requires_grad=False):
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(tokens, E, generator=gen).requires_grad_(requires_grad) for _ in range(LAYERS))


def _mask(batch, length, seed):
    mask = torch.ones(batch, length)
    mask[:, length - 1 - seed % 3 :] = 0  # right padding
    return mask


@pytest.mark.parametrize("masked", [False, True])
def test_single_batch_loss_equals_transformers(masked):
    from transformers.models.qwen3_moe.modeling_qwen3_moe import load_balancing_loss_func

    logits = _logits(2 * 10, seed=0)
    mask = _mask(2, 10, 1) if masked else None
    ours = load_balancing_loss(logits, E, K, mask)
    theirs = load_balancing_loss_func(logits, E, K, mask)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-6)


def test_loss_from_model_router_logits_equals_transformers_aux_loss():
    model = tiny_model(tiny("qwen3-debug-moe-tiny", initializer_range=0.1))
    tokens = torch.randint(0, 512, (2, 11))
    hf = to_transformers(model)
    with torch.no_grad():
        out = model(tokens, output_router_logits=True)
        theirs = hf(tokens, output_router_logits=True).aux_loss
    ours = load_balancing_loss(out.router_logits, model.config.num_experts, model.config.num_experts_per_tok)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


@pytest.mark.parametrize("per_layer", [False, True])
@pytest.mark.parametrize("masked", [False, True])
def test_global_batch_loss_over_micro_batches_equals_single_batch_loss_over_concatenation(per_layer, masked):
    sizes = [(2, 5), (1, 7), (3, 4)]  # (batch, length) of three micro-batches
    micro = [_logits(b * t, seed=i) for i, (b, t) in enumerate(sizes)]
    masks = [_mask(b, t, i) for i, (b, t) in enumerate(sizes)] if masked else None
    concatenated = tuple(torch.cat([m[layer] for m in micro]) for layer in range(LAYERS))
    flat_mask = torch.cat([m.reshape(-1) for m in masks]) if masked else None
    expected = load_balancing_loss(concatenated, E, K, flat_mask, per_layer=per_layer)
    got = global_batch_load_balancing_loss(micro, E, K, masks, per_layer=per_layer)
    assert got.item() == pytest.approx(expected.item(), rel=1e-6)


def test_global_batch_loss_differs_from_averaged_micro_batch_losses():
    """Each micro-batch routes to a different pair of experts: unbalanced per micro-batch, balanced globally."""

    def routed_to(experts):
        logits = torch.full((16, E), -5.0)
        logits[:, experts] = 5.0
        return (logits,)

    micro = [routed_to([0, 1]), routed_to([2, 3]), routed_to([4, 5]), routed_to([6, 7])]
    per_micro = sum(load_balancing_loss(m, E, K) for m in micro) / 4
    global_loss = global_batch_load_balancing_loss(micro, E, K)
    # f sums to k and P to 1: perfectly balanced routing gives k, all tokens on the same k experts give E.
    assert per_micro.item() == pytest.approx(E, rel=1e-3) and global_loss.item() == pytest.approx(K, rel=1e-3)


def test_balancer_accumulates_counts_across_micro_batches():
    micro = [_logits(n, seed=i, requires_grad=True) for i, n in enumerate((6, 9, 5))]
    balancer = GlobalBatchLoadBalancer(E, K)
    losses = [balancer.step_loss(m) for m in micro]
    # Micro-batch 1 sees only itself: the per-micro-batch loss.
    assert losses[0].item() == pytest.approx(load_balancing_loss(micro[0], E, K).item(), rel=1e-6)
    # The last sees the whole global batch: token-weighted, the losses with the final counts give the global loss.
    final = GlobalBatchLoadBalancer(E, K)
    for m in micro:
        final.step_loss(m)
    frequency = final.counts / final.tokens
    weighted = sum(
        n
        / 20
        * E
        * (frequency.mean(0) * torch.stack([torch.softmax(x, -1).mean(0) for x in m]).mean(0)).sum()
        for n, m in zip((6, 9, 5), micro)
    )
    assert weighted.item() == pytest.approx(global_batch_load_balancing_loss(micro, E, K).item(), rel=1e-6)
    assert torch.equal(final.counts, balancer.counts) and final.tokens.item() == 20
    losses[-1].backward()
    assert micro[-1][0].grad is not None and micro[0][0].grad is None
    balancer.reset()
    assert balancer.counts is None


def _distributed_worker(rank, world, init_file, results):
    torch.distributed.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world
    )
    try:
        logits = _logits(7 + 3 * rank, seed=rank)
        balancer = GlobalBatchLoadBalancer(E, K, process_group=torch.distributed.group.WORLD)
        results[rank] = (balancer.step_loss(logits).item(), 7 + 3 * rank)
    finally:
        torch.distributed.destroy_process_group()


@pytest.mark.distributed
def test_balancer_synchronises_counts_across_data_parallel_ranks():
    world = 2
    with tempfile.TemporaryDirectory() as tmp, mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_distributed_worker, args=(world, f"{tmp}/init", results), nprocs=world)
        results = dict(results)
    everything = tuple(
        torch.cat([_logits(7 + 3 * r, seed=r)[layer] for r in range(world)]) for layer in range(LAYERS)
    )
    expected = load_balancing_loss(everything, E, K).item()
    total = sum(tokens for _, tokens in results.values())
    # Data-parallel gradients average the ranks' losses; weighted by tokens this is the global-batch loss.
    assert sum(loss * tokens / total for loss, tokens in results.values()) == pytest.approx(
        expected, rel=1e-6
    )
