"""The CPU KV cache costs memory for what sequences write, not for its size."""

import os

import torch

from qwen3.engine.kv_cache import SlotKVCache
from qwen3.model.presets import get_preset


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def test_cpu_cache_pages_become_resident_only_when_written():
    config = get_preset("qwen3-0.6b")
    before = resident_bytes()
    cache = SlotKVCache(config, num_slots=2, max_len=40960, dtype=torch.bfloat16, device="cpu")
    assert cache.nbytes == 2 * 28 * 2 * 8 * 40960 * 128 * 2  # 8.75 GiB reserved
    assert resident_bytes() - before < 256 * 2**20
    keys = cache.keys[5]
    assert keys.shape == (2, 8, 40960, 128) and keys.dtype == torch.bfloat16
    assert float(keys[1, :, -4:].abs().sum()) == 0.0  # untouched pages read as zeros
    keys[1, 3, 100] = 1.5
    assert float(cache.keys[5][1, 3, 100, 0]) == 1.5
    assert float(cache.values[5][1, 3, 100].abs().sum()) == 0.0
