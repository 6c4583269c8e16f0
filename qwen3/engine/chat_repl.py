"""The ``qwen3 chat`` session: reads lines from stdin, streams replies, keeps the history.

The history holds each reply as an assistant message with its ``reasoning_content``; the chat template drops the
thinking of earlier turns when the conversation is rendered, as the model card requires. ``/think`` and
``/no_think`` inside a message are the model card's soft switches and reach the model unchanged; on a line of
their own they are added to the next message. The sampling preset follows the mode the conversation asks for.
Ctrl-C during a reply stops it (the request is aborted) and keeps the session; the cut reply and its message
are not added to the history.
"""

from __future__ import annotations

import argparse
import sys
from contextlib import closing
from pathlib import Path

from qwen3.engine.cli import ReplyPrinter, Timer, _params

HELP = (
    "commands: /think, /no_think (switch thinking for the next message), /budget N|off (thinking budget), "
    "/reset (forget the conversation), /save FILE (write it as JSON), /exit"
)


class ChatSession:
    def __init__(self, llm, args: argparse.Namespace):
        from rich.console import Console

        self.llm = llm
        self.args = args
        self.console = Console()
        self.errors = Console(stderr=True)
        self.budget: int | None = args.thinking_budget
        self.pending_flag = ""
        self.messages: list[dict] = []
        self.reset()

    def reset(self) -> None:
        self.messages = [{"role": "system", "content": self.args.system}] if self.args.system else []

    def note(self, text: str) -> None:
        self.errors.print(text, style="dim", markup=False, highlight=False)

    def run(self) -> int:
        interactive = sys.stdin.isatty()
        self.note(HELP)
        while True:
            if interactive:
                self.console.print(">>> ", end="", style="bold")
            line = sys.stdin.readline()
            if not line:
                return 0
            line = line.strip()
            if not line:
                continue
            if line.startswith("/") and self.command(line):
                if line in ("/exit", "/quit"):
                    return 0
                continue
            self.reply(line + self.pending_flag)
            self.pending_flag = ""

    def command(self, line: str) -> bool:
        """Handle a command line; False when the line is not a command (it is then sent as a message)."""
        name, _, rest = line.partition(" ")
        rest = rest.strip()
        if name in ("/think", "/no_think") and not rest:
            self.pending_flag = f" {name}"
            self.note(f"thinking {'on' if name == '/think' else 'off'} from the next message")
        elif name == "/budget":
            self.set_budget(rest)
        elif name == "/reset" and not rest:
            self.reset()
            self.note("conversation cleared")
        elif name == "/save":
            self.save(rest)
        elif name in ("/exit", "/quit", "/help") and not rest:
            if name == "/help":
                self.note(HELP)
        else:
            return False
        return True

    def set_budget(self, value: str) -> None:
        if value in ("off", "none"):
            self.budget = None
        elif value.isdigit():
            self.budget = int(value)
        else:
            self.note(f"/budget takes a number of tokens >= 0 or 'off', got {value!r}")
            return
        self.note(f"thinking budget: {self.budget if self.budget is not None else 'off'}")

    def save(self, path: str) -> None:
        from qwen3.utils.atomic import atomic_write_json

        if not path:
            self.note("/save needs a file name")
            return
        try:
            atomic_write_json(Path(path), {"messages": self.messages})
        except OSError as err:
            self.note(f"could not save to {path}: {err}")
            return
        self.note(f"saved {len(self.messages)} messages to {path}")

    def reply(self, text: str) -> None:
        from qwen3.chat import resolve_thinking

        messages = [*self.messages, {"role": "user", "content": text}]
        enable = False if self.args.no_think else None
        params = _params(self.args, resolve_thinking(messages, enable), self.budget)  # flags checked at start
        printer = ReplyPrinter(self.console, chat=True)
        timer = Timer(self.llm.engine)
        output = None
        try:
            # Closing the stream (also when Ctrl-C interrupts it) aborts the request and frees its slot.
            with closing(self.llm.chat_stream(messages, params, None, enable)) as stream:
                for delta in stream:
                    printer.delta(delta)
                    timer.tokens += len(delta.token_ids)
                    if delta.finished:
                        output = delta.output
        except ValueError as err:  # e.g. the conversation no longer fits the context
            self.note(f"error: {err}")
            return
        except KeyboardInterrupt:  # stop this reply, keep the session; the cut reply stays out of the history
            printer.end()
            self.note("interrupted: the reply was not added to the conversation")
            return
        printer.end()
        self.note(timer.summary())
        if output is not None:
            self.messages = [*messages, output.message()]
