"""The world's own ideal replies (``Item.solution`` as the thought, ``Item.direct`` as the answer, the reference
calls for ToolUse) score 1 through the whole runner: the generators and the graders agree on every format."""

from __future__ import annotations

import json

import pytest

from qwen3.eval import Reply
from qwen3.eval.runner import SUITES, EvalOptions, run_suites
from qwen3.eval.tooluse import expected_rounds

world = pytest.importorskip("qwen3.world")
if not hasattr(world, "generate"):
    pytest.skip("qwen3.world has no generators in this version", allow_module_level=True)


def ideal_reply(item, request) -> Reply:
    thinking = request.enable_thinking is not False
    if item.family == "thinkfollow":
        thought = "Let me think this through." if item.reference["mode"] == "think" else ""
        return Reply.from_text(f"<think>\n{thought}\n</think>\n\n{item.direct or 'OK'}")
    content = item.direct or ""
    if item.family == "tooluse":
        rounds = expected_rounds(item.reference)
        calling = sum(1 for m in request.messages if m.get("tool_calls"))
        if calling < len(rounds):
            content = "\n".join(
                f"<tool_call>\n{json.dumps({'name': c['name'], 'arguments': c['arguments']})}\n</tool_call>"
                for c in rounds[calling]
            )
    if not thinking:
        return Reply.from_text(content, enable_thinking=False, tools=bool(item.tools))
    return Reply.from_text(
        f"<think>\n{item.solution or 'thinking'}\n</think>\n\n{content}", tools=bool(item.tools)
    )


class Oracle:
    name = label = "oracle"

    def __init__(self, items):
        self.by_query = {item.query_hash: item for item in items}

    def complete(self, requests, progress=False):
        return [ideal_reply(self._find(request), request) for request in requests]

    def _find(self, request):
        """The item whose query the request's conversation starts with (later rounds append to it)."""
        from qwen3.world.items import query_hash

        for length in range(len(request.messages), 0, -1):
            key = query_hash(request.messages[:length], request.tools)
            if key in self.by_query:
                return self.by_query[key]
        raise KeyError("request of no known item")


@pytest.mark.parametrize("suite", [s for s in SUITES if s != "budget"])
def test_ideal_replies_score_one(suite):
    family = SUITES[suite][0]
    if family not in getattr(world, "FAMILIES", {}):
        pytest.skip(f"qwen3.world has no {family!r} family yet")
    items = world.generate(family, "test", 12, seed=0)
    missing = [i.id for i in items if i.direct is None and family not in ("tooluse", "thinkfollow")]
    assert not missing, f"{family} items without a direct answer: {missing[:3]}"
    options = EvalOptions(limit=12, sampling="greedy")
    results = run_suites(
        Oracle(items), [suite], ["think", "no_think"], options, {family: items}, log=lambda _: None
    )
    for mode, summary in results["suites"][suite].items():
        bad = [r for r in summary["items"] if not r["correct"]]
        assert not bad, f"{suite} [{mode}]: {bad[0]['id']}: {bad[0]['reason']}"
