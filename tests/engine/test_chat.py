"""Chat in-process: ``LLM.chat`` with tools, the reply printer's styling, and the ``qwen3 chat`` session (Ctrl-C,
``/budget``) driven through ``ChatSession`` with a scripted stdin."""

from __future__ import annotations

import io
import json
import re
from types import SimpleNamespace

import pytest
from rich.console import Console

from qwen3.chat.streaming import StreamingParser
from qwen3.cli import build_parser
from qwen3.engine.chat_repl import ChatSession
from qwen3.engine.terminal import ReplyPrinter

from .conftest import make_llm

DIM = "\x1b[2m"
RESET = "\x1b[0m"
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def spy_on_requests(llm, monkeypatch, max_tokens: int = 2) -> list[tuple[str, object]]:
    """Record each (prompt, params) the engine gets; the replies are cut to ``max_tokens``."""
    seen = []
    original = llm.engine.add_request

    def spy(request_id, prompt, params=None, **kw):
        seen.append((prompt, params))
        return original(request_id, prompt, params.replace(max_tokens=max_tokens), **kw)

    monkeypatch.setattr(llm.engine, "add_request", spy)
    return seen


def test_chat_renders_the_tools_into_the_prompt(monkeypatch):
    llm = make_llm(max_model_len=1024)  # the debug tokenizer spends many tokens on the tool's JSON
    seen = spy_on_requests(llm, monkeypatch)
    llm.chat([{"role": "user", "content": "weather in Paris?"}], tools=[WEATHER_TOOL])
    llm.chat([{"role": "user", "content": "weather in Paris?"}])
    (with_tools, _), (without_tools, _) = seen
    # The template names the tags in its instructions first; the last block holds the tools.
    blocks = re.findall(r"<tools>(.*?)</tools>", with_tools, flags=re.DOTALL)
    assert [json.loads(line) for line in blocks[-1].splitlines() if line] == [WEATHER_TOOL]
    assert "<tools>" not in without_tools and "get_weather" not in without_tools


def printed(console: Console) -> str:
    return console.file.getvalue()


def terminal() -> Console:
    return Console(file=io.StringIO(), force_terminal=True, color_system="standard", width=200)


def stream_reply(printer: ReplyPrinter) -> None:
    """A thought and an answer, streamed through the parser in uneven chunks."""
    parser = StreamingParser()
    for chunk in ["<think>\nLet me ", "add 2 and 2.\n</think>\n\n", "The answer", " is 4."]:
        printer.delta(SimpleNamespace(messages=parser.feed(chunk)))
    printer.delta(SimpleNamespace(messages=parser.finish()))
    printer.end()


def test_printer_dims_the_thinking_and_prints_the_answer_after_it():
    console = terminal()
    printer = ReplyPrinter(console, chat=True)
    stream_reply(printer)
    out = printed(console)
    dimmed = [part.split(RESET)[0] for part in out.split(DIM)[1:]]
    assert "".join(dimmed) == "Let me add 2 and 2."
    thought_end, answer = out.rindex("2 and 2."), out.index("The answer")
    assert thought_end < answer and "\n\n" in out[thought_end:answer]  # apart from the thinking
    assert DIM not in out[answer:] and out[answer:].replace(RESET, "").startswith("The answer is 4.")


def test_printer_whole_reply_dims_only_the_thinking():
    console = terminal()
    output = SimpleNamespace(reasoning_content="Let me think.", content="Four.", tool_calls=[])
    ReplyPrinter(console, chat=True).whole(output)
    out = printed(console)
    assert f"{DIM}Let me think.{RESET}" in out and out.index("Let me think.") < out.index("Four.")
    assert DIM not in out[out.index("Four.") :]


def pipe() -> Console:
    return Console(file=io.StringIO(), width=200)  # not a terminal, as when stdout is piped


def test_piped_printer_marks_the_thinking_with_tags_streamed_and_whole():
    streamed_console, whole_console = pipe(), pipe()
    printer = ReplyPrinter(streamed_console, chat=True)
    stream_reply(printer)
    output = SimpleNamespace(
        reasoning_content="Let me add 2 and 2.", content="The answer is 4.", tool_calls=[]
    )
    ReplyPrinter(whole_console, chat=True).whole(output)
    expected = "<think>\nLet me add 2 and 2.\n</think>\n\nThe answer is 4.\n"
    assert printed(streamed_console) == printed(whole_console) == expected


def test_piped_printer_closes_a_thought_cut_off_by_the_limit():
    console = pipe()
    printer = ReplyPrinter(console, chat=True)
    printer.delta(SimpleNamespace(messages=StreamingParser().feed("<think>\nstill going")))
    printer.end()
    assert printed(console) == "<think>\nstill going\n</think>\n"


def session(llm, *flags: str) -> ChatSession:
    chat = ChatSession(llm, build_parser().parse_args(["chat", "unused-model", *flags]))
    chat.console = Console(file=io.StringIO())
    chat.errors = Console(file=io.StringIO())
    return chat


def run_session(chat: ChatSession, monkeypatch, script: list[str]) -> int:
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(script) + "\n"))
    return chat.run()


def test_budget_command_reaches_the_requests(llm, monkeypatch):
    seen = spy_on_requests(llm, monkeypatch)
    chat = session(llm, "--thinking-budget", "7")
    script = ["first", "/budget 3", "second", "/budget off", "third", "/budget x", "fourth"]
    assert run_session(chat, monkeypatch, script) == 0
    assert [params.thinking_budget for _, params in seen] == [7, 3, None, None]
    assert "/budget takes a number of tokens >= 0 or 'off', got 'x'" in printed(chat.errors)


def test_the_flag_typed_last_wins(llm, monkeypatch):
    seen = spy_on_requests(llm, monkeypatch)
    chat = session(llm, "--max-tokens", "2")
    script = [
        "/think",
        "Why is the sky blue? /no_think",
        "/no_think",
        "and the sea?",
        "/think",
        "/think again",
    ]
    assert run_session(chat, monkeypatch, script) == 0
    users = [m["content"] for m in chat.messages if m["role"] == "user"]
    assert users == ["Why is the sky blue? /no_think", "and the sea? /no_think", "/think again"]
    # the sampling preset follows the mode: non-thinking, non-thinking, thinking (model card temperatures)
    assert [params.temperature for _, params in seen] == [0.7, 0.7, 0.6]


def test_unknown_commands_are_answered_not_sent(llm, monkeypatch):
    seen = spy_on_requests(llm, monkeypatch)
    chat = session(llm, "--max-tokens", "2")
    assert run_session(chat, monkeypatch, ["/thnik", "/reset now", "//etc/hosts is a file"]) == 0
    errors = printed(chat.errors)
    assert "unknown command /thnik; commands: /think, /no_think" in errors
    assert "/reset takes no argument, got 'now'" in errors
    assert [m["content"] for m in chat.messages if m["role"] == "user"] == ["/etc/hosts is a file"]
    assert len(seen) == 1


def interrupt_on_call(monkeypatch, owner, name: str, call: int) -> list[int]:
    """Make ``owner.name`` raise KeyboardInterrupt (as Ctrl-C would) on its ``call``-th call; returns the count."""
    calls = [0]
    original = getattr(owner, name)

    def interrupted(*args, **kw):
        calls[0] += 1
        if calls[0] == call:
            raise KeyboardInterrupt
        return original(*args, **kw)

    monkeypatch.setattr(owner, name, interrupted)
    return calls


@pytest.mark.parametrize("where", ["model step", "printing"])
def test_ctrl_c_stops_the_reply_and_keeps_the_session(monkeypatch, where):
    llm = make_llm(max_num_seqs=1)
    chat = session(llm, "--max-tokens", "20", "--seed", "0")
    if where == "model step":
        calls = interrupt_on_call(monkeypatch, llm.engine.runner, "run", call=4)
    else:
        calls = interrupt_on_call(monkeypatch, ReplyPrinter, "delta", call=4)
    chat.reply("first")
    assert calls[0] >= 4  # the interruption came in the middle of the reply
    assert "interrupted: the reply was not added" in printed(chat.errors)
    assert chat.messages == []  # neither the cut reply nor its message
    engine = llm.engine
    assert not engine.has_unfinished() and not engine.scheduler.running and not engine.scheduler.waiting
    chat.reply("second")
    assert [(m["role"], m.get("content")) for m in chat.messages][0] == ("user", "second")
    assert [m["role"] for m in chat.messages] == ["user", "assistant"]
    assert printed(chat.errors).count(" tokens in ") == 1  # the timing line of the finished reply


@pytest.mark.parametrize("freed", [False, True])
def test_abort_after_a_step_cut_short_cleans_up(monkeypatch, freed):
    """Ctrl-C can land after a step finished a sequence, before or after it freed the slot but before the step
    reported it: aborting the request still frees the slot and forgets the request, without another model step."""
    llm = make_llm(max_num_seqs=1)
    engine = llm.engine
    engine.add_request("r", "hello", engine.default_params.replace(max_tokens=3, ignore_eos=True))
    free = engine.scheduler.free

    def interrupted(seq):
        if freed:
            free(seq)
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.scheduler, "free", interrupted)
    with pytest.raises(KeyboardInterrupt):
        for _ in range(10):
            engine.step()
    monkeypatch.undo()
    assert bool(engine.scheduler.running) is not freed
    steps = engine.stats.steps
    engine.abort("r")
    engine.step()
    assert not engine.has_unfinished() and not engine.scheduler.running and engine.stats.steps == steps
