"""ThreadGovernor: probes each candidate thread count at one batch size, keeps the fastest, restores the count."""

from __future__ import annotations

import pytest
import torch

from qwen3.engine import EngineConfig
from qwen3.engine.threads import ThreadGovernor

from .conftest import make_llm


def drive(governor: ThreadGovernor, cost: dict[int, float], steps: int, batch: int = 1) -> list[int]:
    """Run ``steps`` fake decode steps that take ``cost[threads]`` seconds; the counts used."""
    used = []
    for _ in range(steps):
        threads = governor.next_threads(batch)
        governor.observe(threads, cost[threads])
        used.append(threads)
    return used


def test_it_moves_to_the_fastest_count_and_back():
    governor = ThreadGovernor(max_threads=4, period=10, probe=2, warmup=1)
    assert governor.candidates == [4, 2, 1]
    contended = {4: 0.09, 2: 0.05, 1: 0.04}  # waiting on a descheduled peer: fewer threads win
    used = drive(governor, contended, 6)
    assert used == [4, 4, 2, 2, 1, 1] and governor.threads == 1
    assert drive(governor, contended, 9) == [1] * 9  # until the next probe
    quiet = {4: 0.01, 2: 0.018, 1: 0.03}
    drive(governor, quiet, 1 + 6)
    assert governor.threads == 4


def test_a_batch_change_restarts_the_probe():
    governor = ThreadGovernor(max_threads=2, period=10, probe=3, warmup=1)
    governor.next_threads(1)
    governor.observe(2, 0.01)
    assert governor.next_threads(5) == 2  # the probe at batch 1 is dropped, the steady count is used
    assert governor.threads == 2 and not governor._times


def test_one_thread_disables_it_and_a_step_restores_the_count():
    assert not ThreadGovernor(max_threads=1).enabled
    before = torch.get_num_threads()
    governor = ThreadGovernor(max_threads=before + 1, period=10, probe=1, warmup=1)
    governor.threads = 1
    governor._until_probe = 5
    with governor.step(1) as threads:
        assert threads == 1 and torch.get_num_threads() == 1
    assert torch.get_num_threads() == before


def test_the_engine_uses_it_on_the_cpu_unless_told_not_to():
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        assert make_llm().engine.governor is not None
        assert make_llm(adapt_threads=False).engine.governor is None
    finally:
        torch.set_num_threads(before)
    with pytest.raises(ValueError, match="adapt_threads"):
        EngineConfig(adapt_threads="yes")
