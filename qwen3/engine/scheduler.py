"""``Scheduler``: continuous batching over a fixed number of cache slots.

Waiting sequences are admitted whenever a slot is free; the running ones always occupy slots ``0..B-1`` (when one
leaves, the sequence in the last slot moves into its place), so a decode step's keys and values are a view of the
first B cache rows. Each step is either

- a prefill step: the running sequences with more than one pending token (new prompts, the rest of a chunked
  prompt, forced stop-thinking tokens), up to ``max_num_batched_tokens`` tokens in all, a long prompt cut into
  chunks; or
- a decode step: every running sequence with its one pending token.

Prefill goes first (as in nano-vllm), so a new request joins the decode batch one step after its prompt is in.
The ``n`` completions of one request prefill their prompt once: the others copy its cache rows.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from qwen3.engine.sequence import Sequence, SequenceStatus


@dataclass
class ScheduledBatch:
    is_prefill: bool
    seqs: list[Sequence]
    num_tokens: list[int]  # tokens each sequence processes this step

    def completes(self, i: int) -> bool:
        """Whether sequence i has no pending tokens after this step (so a token is sampled for it)."""
        return self.seqs[i].num_pending == self.num_tokens[i]


class Scheduler:
    def __init__(
        self,
        num_slots: int,
        max_num_batched_tokens: int,
        move_slot: Callable[[int, int, int], None],
    ):
        self.num_slots = num_slots
        self.max_num_batched_tokens = max_num_batched_tokens
        self._move_slot = move_slot  # (src, dst, num_tokens): copy a sequence's cache rows
        self.waiting: deque[Sequence] = deque()
        self.running: list[Sequence] = []

    def add(self, seq: Sequence) -> None:
        self.waiting.append(seq)

    def has_unfinished(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> ScheduledBatch | None:
        while self.waiting and len(self.running) < self.num_slots:
            seq = self.waiting.popleft()
            seq.slot = len(self.running)
            seq.status = SequenceStatus.RUNNING
            self.running.append(seq)
        if not self.running:
            return None
        prefill = [seq for seq in self.running if seq.num_pending > 1 and not self.awaits_fork(seq)]
        if not prefill:
            return ScheduledBatch(False, list(self.running), [1] * len(self.running))
        budget = self.max_num_batched_tokens
        seqs, counts = [], []
        for seq in prefill:
            if budget <= 0:
                break
            count = min(seq.num_pending, budget)
            seqs.append(seq)
            counts.append(count)
            budget -= count
        return ScheduledBatch(True, seqs, counts)

    @staticmethod
    def awaits_fork(seq: Sequence) -> bool:
        """A sibling completion waits while its parent prefills the shared prompt; admitted too late for that,
        it prefills on its own."""
        parent = seq.parent
        if parent is None or seq.num_computed_tokens:
            return False
        if parent.status is SequenceStatus.RUNNING and parent.num_computed_tokens < seq.num_tokens:
            return True
        seq.parent = None
        return False

    @staticmethod
    def forks(parent: Sequence) -> list[Sequence]:
        """The siblings that take over ``parent``'s cache rows now that its prompt is in."""
        return [c for c in parent.children if c.parent is parent and c.status is SequenceStatus.RUNNING]

    def free(self, seq: Sequence) -> None:
        """Release a finished or aborted sequence's slot (or take it off the waiting queue)."""
        if seq.slot < 0:
            if seq in self.waiting:
                self.waiting.remove(seq)
            return
        slot = seq.slot
        last = self.running.pop()
        if last is not seq:
            self._move_slot(last.slot, slot, last.num_computed_tokens)
            last.slot = slot
            self.running[slot] = last
        seq.slot = -1
