"""``ThreadGovernor``: the decode thread count that is fastest on the CPU the engine gets right now.

Every decode step is a few hundred OpenMP parallel regions (our C kernels and torch's) that each end at a barrier.
When another process takes one of the cores, the thread sharing that core is descheduled for whole time slices
(milliseconds) while its peers wait at the barrier for a region that takes tens of microseconds: measured on 2
cores with a 1-core busy loop beside it, batch-1 decode lost about 3x, not the 2x the lost core explains (issue 15
section 6). Fewer threads than cores avoid the wait, but on a quiet machine they are slower.

So the governor measures instead of guessing: every ``period`` decode steps it runs ``probe`` steps with each
candidate count (all of them, half, one) at the same batch size and keeps the fastest median. On a quiet machine
the probes cost about ``probe / period`` of a step per candidate (about 1%); under contention the engine moves to
the count that does not wait on a descheduled peer. The count is set only around the engine's own decode steps
and restored after each one, so a trainer sharing the process keeps its threads.
"""

from __future__ import annotations

import statistics
from contextlib import contextmanager

import torch


class ThreadGovernor:
    def __init__(self, max_threads: int | None = None, period: int = 512, probe: int = 6, warmup: int = 4):
        self.max_threads = max_threads or torch.get_num_threads()
        candidates = {self.max_threads, max(1, self.max_threads // 2), 1}
        self.candidates = sorted(candidates, reverse=True)
        self.period, self.probe = period, probe
        self.threads = self.max_threads  # the count decode steps use between probes
        self._until_probe = warmup
        self._queue: list[int] = []  # the counts still to probe, one per `probe` steps
        self._times: dict[int, list[float]] = {}
        self._batch = 0

    @property
    def enabled(self) -> bool:
        return len(self.candidates) > 1

    def next_threads(self, batch_size: int) -> int:
        """The count for the next decode step of ``batch_size`` sequences."""
        if self._queue and batch_size != self._batch:  # a probe compares equal batches only: retry soon
            self._queue, self._times, self._until_probe = [], {}, self.probe * 4
        if not self._queue:
            self._until_probe -= 1
            if self._until_probe > 0:
                return self.threads
            self._queue = [count for count in self.candidates for _ in range(self.probe)]
            self._times, self._batch = {}, batch_size
        return self._queue[0]

    def observe(self, threads: int, seconds: float) -> None:
        """The time the step run with ``threads`` took (after ``next_threads``)."""
        if not self._queue or self._queue[0] != threads:
            return
        self._queue.pop(0)
        self._times.setdefault(threads, []).append(seconds)
        if not self._queue:
            self.threads = min(self._times, key=lambda count: statistics.median(self._times[count]))
            self._until_probe = self.period

    @contextmanager
    def step(self, batch_size: int):
        """Run one decode step with the governor's count; restores the previous count afterwards."""
        threads = self.next_threads(batch_size)
        before = torch.get_num_threads()
        if threads != before:
            torch.set_num_threads(threads)
        try:
            yield threads
        finally:
            if threads != before:
                torch.set_num_threads(before)
