"""Incremental decoding with StaticKVCache equals a full forward; packed documents equal separate runs."""

import pytest
import torch

from qwen3.model.cache import KVCache, StaticKVCache

from .conftest import max_diff, tiny, tiny_model


@pytest.mark.parametrize("preset", ["qwen3-debug-tiny", "qwen3-debug-moe-tiny"])
def test_incremental_decoding_with_ragged_rows_equals_full_forward(preset):
    config = tiny(preset, initializer_range=0.1)
    model = tiny_model(config)
    gen = torch.Generator().manual_seed(0)
    lengths = [9, 5, 7]  # prompt lengths per row
    steps = 4
    sequences = [torch.randint(0, config.vocab_size, (n + steps,), generator=gen) for n in lengths]
    cache = StaticKVCache(config, batch_size=3, max_len=32)
    assert isinstance(cache, KVCache)

    padded = torch.zeros(3, max(lengths), dtype=torch.long)
    for row, (seq, n) in enumerate(zip(sequences, lengths)):
        padded[row, :n] = seq[:n]
    with torch.no_grad():
        prefill = model(padded, cache=cache)
        cache.set_lengths(lengths)  # right padding: the rows' true lengths
        step_logits = [prefill[torch.arange(3), torch.tensor(lengths) - 1]]
        for step in range(steps):
            token = torch.stack([seq[n + step] for seq, n in zip(sequences, lengths)])[:, None]
            step_logits.append(model(token, cache=cache)[:, 0])  # positions default to the cache's lengths
        full = [model(seq[None])[0] for seq in sequences]
    for row, n in enumerate(lengths):
        for step, logits in enumerate(step_logits):
            assert max_diff(logits[row], full[row][n - 1 + step]) <= 1e-4
    assert cache.seq_lens.tolist() == [n + steps for n in lengths]


def test_cache_reset_and_overflow():
    config = tiny()
    model = tiny_model(config)
    cache = StaticKVCache(config, batch_size=2, max_len=6)
    tokens = torch.randint(0, 512, (2, 4))
    with torch.no_grad():
        first = model(tokens, cache=cache)
        cache.reset([1])
        assert cache.seq_lens.tolist() == [4, 0]
        cache.reset()
        assert torch.equal(model(tokens, cache=cache), first)  # positions restart at 0 after a reset
        with pytest.raises(ValueError, match="overflow: 8 positions needed, max_len is 6"):
            model(tokens, cache=cache)
    with pytest.raises(ValueError, match="lengths must be 2 values"):
        cache.set_lengths([1, 2, 3])


def test_explicit_positions_override_cache_offsets():
    config = tiny(initializer_range=0.1)
    model = tiny_model(config)
    tokens = torch.randint(0, 512, (1, 6))
    with torch.no_grad():
        full = model(tokens)
        cache = StaticKVCache(config, batch_size=1, max_len=8)
        model(tokens[:, :4], cache=cache, positions=torch.arange(4)[None])
        tail = model(tokens[:, 4:], cache=cache, positions=torch.tensor([[4, 5]]))
    assert max_diff(tail, full[:, 4:]) <= 1e-4


@pytest.mark.parametrize("preset", ["qwen3-debug-tiny", "qwen3-debug-moe-tiny"])
def test_document_ids_keep_packed_documents_apart(preset):
    config = tiny(preset, initializer_range=0.1)
    model = tiny_model(config)
    gen = torch.Generator().manual_seed(3)
    docs = [torch.randint(0, 512, (n,), generator=gen) for n in (5, 3, 6)]
    packed = torch.cat(docs)[None]
    document_ids = torch.cat([torch.full((len(d),), i) for i, d in enumerate(docs)])[None]
    with torch.no_grad():
        together = model(packed, document_ids=document_ids)
        separate = torch.cat([model(d[None]) for d in docs], dim=1)
        unmasked = model(packed)
    assert max_diff(together, separate) <= 1e-4
    # Without document_ids the later documents see the earlier ones.
    assert max_diff(unmasked, separate) > 1e-2


def test_document_ids_with_cache_is_rejected():
    config = tiny()
    with pytest.raises(ValueError, match="document_ids"):
        tiny_model(config)(
            torch.zeros(1, 3, dtype=torch.long),
            document_ids=torch.zeros(1, 3, dtype=torch.long),
            cache=StaticKVCache(config, 1, 4),
        )
