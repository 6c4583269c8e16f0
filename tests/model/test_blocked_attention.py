"""Attention over packed documents block by block (qwen3/model/blocked_attention.py) equals masked SDPA."""

from __future__ import annotations

import pytest
import torch

from qwen3.model.attention import attend
from qwen3.model.blocked_attention import BlockedMask, block_mask, blocked_attention, per_block_sdpa
from qwen3.model.model import document_mask


def packed_document_ids(lengths_per_row: list[list[int]]) -> torch.Tensor:
    return torch.stack(
        [torch.cat([torch.full((n,), i) for i, n in enumerate(lengths)]) for lengths in lengths_per_row]
    )


# Rows of 150 tokens: the blocks are 64, 64 and a ragged 22; the second row's documents start later than the first's.
DOCUMENTS = packed_document_ids([[40, 30, 50, 30], [50, 60, 40]])


def qkv(heads: int, kv_heads: int, dtype=torch.float64, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    batch, length = DOCUMENTS.shape
    shapes = [(batch, heads, length, 16), (batch, kv_heads, length, 16), (batch, kv_heads, length, 16)]
    return [torch.randn(shape, generator=gen).to(dtype).requires_grad_() for shape in shapes]


def output_and_grads(fn, tensors: list[torch.Tensor], grad_out: torch.Tensor) -> list[torch.Tensor]:
    for tensor in tensors:
        tensor.grad = None
    out = fn(*tensors)
    out.backward(grad_out)
    return [out.detach(), *(tensor.grad for tensor in tensors)]


def test_blocks_skip_keys_before_the_earliest_document_start():
    blocked = block_mask(document_mask(DOCUMENTS))
    assert isinstance(blocked, BlockedMask)
    # Rows 64..127: token 64 is in the documents starting at 40 (row 0) and 50 (row 1) -> keys from 40.
    # Rows 128..149: token 128 is in the documents starting at 120 (row 0) and 110 (row 1) -> keys from 110.
    assert [(start, end, first) for start, end, first, _ in blocked.blocks] == [
        (0, 64, 0),
        (64, 128, 40),
        (128, 150, 110),
    ]
    assert blocked.blocks[2][3].shape == (2, 1, 22, 40)


def test_a_sequence_within_one_block_keeps_the_plain_mask():
    mask = document_mask(DOCUMENTS[:, :64])
    assert block_mask(mask) is mask


@pytest.mark.parametrize("heads,kv_heads", [(4, 2), (2, 2)])
@pytest.mark.parametrize("fn", [blocked_attention, per_block_sdpa])
def test_blocked_attention_equals_masked_sdpa_forward_and_backward(fn, heads, kv_heads):
    tensors = qkv(heads, kv_heads)
    grad_out = torch.randn(tensors[0].shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mask = document_mask(DOCUMENTS)
    expected = output_and_grads(lambda q, k, v: attend(q, k, v, mask), tensors, grad_out)
    got = output_and_grads(lambda q, k, v: fn(q, k, v, block_mask(mask)), tensors, grad_out)
    for name, want, have in zip(["out", "grad q", "grad k", "grad v"], expected, got):
        assert (want - have).abs().max() <= 1e-10, name


def test_blocked_attention_under_bf16_autocast_is_as_close_to_fp64_as_sdpa():
    exact_inputs = qkv(4, 2)
    grad_out = torch.randn(
        exact_inputs[0].shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    mask = document_mask(DOCUMENTS)
    exact = output_and_grads(lambda q, k, v: attend(q, k, v, mask), exact_inputs, grad_out)
    inputs = qkv(4, 2, torch.float32)
    with torch.autocast("cpu", torch.bfloat16):
        sdpa = output_and_grads(lambda q, k, v: attend(q, k, v, mask), inputs, grad_out.float())
        blocked = output_and_grads(
            lambda q, k, v: attend(q, k, v, block_mask(mask)), inputs, grad_out.float()
        )
    assert blocked[0].dtype == torch.bfloat16
    for name, want, reference, have in zip(["out", "grad q", "grad k", "grad v"], exact, sdpa, blocked):
        scale = want.abs().max()
        reference_error = (reference.double() - want).abs().max() / scale
        assert (have.double() - want).abs().max() / scale <= max(2 * reference_error, 1e-2), name


def test_a_torch_without_the_cpu_flash_op_takes_the_per_block_sdpa_path(monkeypatch):
    import qwen3.model.blocked_attention as blocked_module

    tensors = qkv(4, 2)
    grad_out = torch.randn(tensors[0].shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mask = block_mask(document_mask(DOCUMENTS))
    expected = output_and_grads(lambda q, k, v: blocked_attention(q, k, v, mask), tensors, grad_out)
    monkeypatch.setattr(blocked_module, "CPU_FLASH", "no_such_op")
    monkeypatch.setattr(blocked_module._BlockedAttention, "apply", None)  # must not be reached
    got = output_and_grads(lambda q, k, v: blocked_attention(q, k, v, mask), tensors, grad_out)
    for a, b in zip(got, expected):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
