"""Agent rollouts with real tool execution (report section 4.4, "Agent Ability": "during the RL rollout, the model
is allowed to perform complete multi-turn interaction cycles with real environment execution feedback").

Each rollout is one token sequence that grows turn by turn:

1. the prompt (the conversation rendered with its tools and the generation prompt);
2. the model's reply, sampled by our engine: its tokens are kept exactly as generated and are the loss targets;
3. if the reply calls tools (parsed by the chat parser) and fewer than ``max_rounds`` rounds have run, each call is
   executed by the harness (``execute(name, arguments) -> str``: the task world's real tools by default) and the
   ``<tool_response>`` turn plus the next generation prompt are appended exactly as ``qwen3.chat.render`` writes
   them: the text is what the rendering of the longer conversation adds to the rendering of the shorter one
   (``prefix_preserving=True``: every assistant turn keeps its think block, as it was generated). These tokens are
   masked out of the loss: the model did not produce them;
4. repeat until a reply makes no call, a reply is cut off, or ``max_rounds`` replies were sampled.

All unfinished rollouts of a round go to the engine in one ``generate`` call, whatever their lengths or rounds.
When every reply is in the form the chat template writes (the form SFT teaches), the final sequence equals
``tokenizer.encode(render(messages, tools, prefix_preserving=True))`` of the final conversation (without the last
``\\n``) and its mask marks exactly the assistant turns' tokens (the tests check both token by token); a reply in
another form (e.g. JSON spaced differently) stays as it was sampled, which is what the policy gradient needs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from qwen3.train.batch import IGNORE, Row

Executor = Callable[[str, Any], str]


@dataclass
class Generated:
    """One sampled reply: its tokens (with the final end-of-turn token), why it ended, and the sampler's
    log-probability of each token (None when not asked for)."""

    token_ids: list[int]
    finish_reason: str = "stop"
    logprobs: list[float] | None = None


# generate(prompts, keys, round) -> one reply per prompt; ``keys`` name the episodes (stable across rounds).
Generator = Callable[[list[list[int]], list[int], int], list[Generated]]


@dataclass
class ToolRollout:
    """One multi-turn episode: the final conversation and its token sequence with the generated-token mask."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    token_ids: list[int]
    generated: list[bool]  # True for tokens the model sampled (the loss targets)
    logprobs: list[float] = field(default_factory=list)  # sampler log-probabilities (0.0 where not sampled)
    replies: list[Any] = field(default_factory=list)  # qwen3.eval.Reply of each assistant turn
    rounds: int = 0
    tool_calls: int = 0
    finish_reason: str = "stop"  # "stop", "length" (a reply cut off) or "max_rounds" (still calling tools)

    def to_row(self) -> Row:
        """A training row: inputs ids[:-1], targets ids[1:] where the model generated them."""
        labels = [t if g else IGNORE for t, g in zip(self.token_ids[1:], self.generated[1:])]
        return Row(self.token_ids[:-1], labels)


def default_executor(name: str, arguments: Any) -> str:
    from qwen3.world.tools import execute

    return execute(name, arguments)


def engine_generator(engine: Any, params: Any, seeds: Sequence[int] | None = None) -> Generator:
    """Sample with our engine (a ``qwen3.LLM``, an ``LLMEngine`` or anything with an ``.engine`` that is one),
    all prompts of a round in one batch; an episode that outgrew the engine's context after its first round ends
    as "length" (a first prompt too long is the engine's error). Episode
    k's reply in round r is seeded ``seeds[k] + 7919 r`` (with
    ``seeds`` None: ``params.seed`` + k, or unseeded), so a rollout does not depend on the others in its batch."""
    llm_engine = getattr(engine, "engine", engine)
    params = params.replace(n=1, logprobs=0 if params.logprobs is None else params.logprobs)
    counter = iter(range(1 << 62))

    def seed_of(key: int, round_index: int) -> int | None:
        base = seeds[key] if seeds is not None else (None if params.seed is None else params.seed + key)
        return None if base is None else base + 7919 * round_index

    def generate(prompts: list[list[int]], keys: list[int], round_index: int) -> list[Generated]:
        pending: dict[str, Any] = {}
        for ids, key in zip(prompts, keys):
            request_id = f"tool-rollout-{next(counter)}"
            if round_index and len(ids) >= llm_engine.max_model_len:  # outgrew the context: it ends cut off
                pending[request_id] = Generated([], "length", [])
                continue
            seeded = params.replace(seed=seed_of(key, round_index))
            llm_engine.add_request(request_id, ids, seeded, stream=False)
            pending[request_id] = None
        while llm_engine.has_unfinished():
            for delta in llm_engine.step():
                if delta.finished and delta.request_id in pending:
                    pending[delta.request_id] = delta.output
        return [out if isinstance(out, Generated) else _generated(out) for out in pending.values()]

    return generate


def _generated(output: Any) -> Generated:
    entries = output.logprobs or [None] * len(output.token_ids)
    logprobs = [
        0.0 if entry is None else float(entry[token].logprob)
        for token, entry in zip(output.token_ids, entries)
    ]
    return Generated(list(output.token_ids), output.finish_reason or "stop", logprobs)


@dataclass
class _Episode:
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    ids: list[int]
    generated: list[bool]
    logprobs: list[float]
    rollout: ToolRollout


def tool_rollouts(
    conversations: Sequence[list[dict[str, Any]]],
    tokenizer: Any,
    generate: Generator,
    tools: Sequence[list[dict[str, Any]] | None] | None = None,
    max_rounds: int = 4,
    execute: Executor = default_executor,
    enable_thinking: bool | None = None,
) -> list[ToolRollout]:
    """Run every conversation to its end (module docstring); ``tools[i]`` are the schemas offered to the i-th."""
    from qwen3.chat import render

    if max_rounds < 1:
        raise ValueError(f"max_rounds must be >= 1, got {max_rounds}")
    tools = list(tools) if tools is not None else [None] * len(conversations)
    if len(tools) != len(conversations):
        raise ValueError(f"{len(conversations)} conversations but {len(tools)} tool lists")
    episodes = []
    for messages, offered in zip(conversations, tools):
        prompt = render(messages, offered, add_generation_prompt=True, enable_thinking=enable_thinking,
                        prefix_preserving=True)  # fmt: skip
        ids = tokenizer.encode(prompt)
        episodes.append(_Episode(list(messages), offered, ids, [False] * len(ids), [0.0] * len(ids),
                                 ToolRollout(list(messages), offered, [], [])))  # fmt: skip
    active = list(episodes)
    for round_index in range(max_rounds):
        keys = [episodes.index(e) for e in active]
        outputs = generate([e.ids for e in active], keys, round_index)
        active = [e for e, out in zip(active, outputs) if _advance(e, out, round_index, max_rounds, tokenizer,
                                                                   execute, enable_thinking)]  # fmt: skip
        if not active:
            break
    return [_finish(e) for e in episodes]


def _advance(episode: _Episode, output: Generated, round_index: int, max_rounds: int, tokenizer: Any,
             execute: Executor, enable_thinking: bool | None) -> bool:  # fmt: skip
    """Append one reply (and the tool results it asked for); True when the episode goes on."""
    from qwen3.chat import render
    from qwen3.eval import Reply

    token_ids, finish_reason = output.token_ids, output.finish_reason
    episode.ids += token_ids
    episode.generated += [True] * len(token_ids)
    episode.logprobs += output.logprobs if output.logprobs is not None else [0.0] * len(token_ids)
    rollout = episode.rollout
    rollout.rounds = round_index + 1
    text = tokenizer.decode(_without_end(token_ids, tokenizer))
    reply = Reply.from_text(text, enable_thinking=enable_thinking is not False, finish_reason=finish_reason)
    rollout.replies.append(reply)
    episode.messages.append(_assistant_message(reply))
    if finish_reason != "stop" or not reply.tool_calls:
        rollout.finish_reason = "length" if finish_reason == "length" else "stop"
        return False
    if round_index + 1 == max_rounds:
        rollout.finish_reason = "max_rounds"
        return False
    before = render(episode.messages, episode.tools, prefix_preserving=True).removesuffix("\n")
    for call in reply.tool_calls:
        result = execute(call["function"]["name"], call["function"]["arguments"])
        episode.messages.append({"role": "tool", "content": result, "tool_call_id": call.get("id")})
        rollout.tool_calls += 1
    after = render(episode.messages, episode.tools, add_generation_prompt=True, enable_thinking=enable_thinking,
                   prefix_preserving=True)  # fmt: skip
    if not after.startswith(before):
        raise RuntimeError("the chat rendering is not prefix-stable here; cannot append the tool turn")
    suffix = tokenizer.encode(after[len(before) :])
    episode.ids += suffix
    episode.generated += [False] * len(suffix)
    episode.logprobs += [0.0] * len(suffix)
    return True


def _without_end(token_ids: list[int], tokenizer: Any) -> list[int]:
    end = getattr(tokenizer, "im_end_id", None)
    return token_ids[:-1] if token_ids and token_ids[-1] == end else token_ids


def _assistant_message(reply: Any) -> dict[str, Any]:
    """The turn as the conversation records it: the thought kept (an empty one too), so the rendering matches
    what was generated."""
    message = reply.message()
    message["reasoning_content"] = reply.reasoning or ""
    return message


def _finish(episode: _Episode) -> ToolRollout:
    rollout = episode.rollout
    rollout.messages, rollout.token_ids, rollout.generated = episode.messages, episode.ids, episode.generated
    rollout.logprobs = episode.logprobs
    return rollout
