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

from qwen3.engine.terminal import ReplyPrinter, Timer, sampling_params

COMMANDS = ("/think", "/no_think", "/budget", "/reset", "/save", "/help", "/exit", "/quit")
HELP = (
    "commands: /think, /no_think (switch thinking for the next message), /budget N|off (thinking budget), "
    "/reset (forget the conversation), /save FILE (write it as JSON), /help, /exit; "
    "start a message with // to send a line that begins with /"
)


def with_pending_flag(text: str, pending_flag: str) -> str:
    """The message with a standalone ``/think`` / ``/no_think`` typed before it appended, unless the message has
    a flag of its own: that one was typed later, and the flag typed last wins."""
    from qwen3.chat.modes import last_soft_switch

    return text if last_soft_switch(text) is not None else text + pending_flag


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
            if line.startswith("//"):
                line = line[1:]
            elif line.startswith("/") and self.command(line):
                if line in ("/exit", "/quit"):
                    return 0
                continue
            self.reply(with_pending_flag(line, self.pending_flag))
            self.pending_flag = ""

    def command(self, line: str) -> bool:
        """Handle a command line; False when the line is a message (``/think ...`` or ``/no_think ...`` with text:
        the soft switch goes to the model with it). An unknown command is answered, never sent to the model."""
        name, _, rest = line.partition(" ")
        rest = rest.strip()
        if name in ("/think", "/no_think") and rest:
            return False
        if name not in COMMANDS:
            self.note(f"unknown command {name}; {HELP}")
        elif name in ("/think", "/no_think"):
            self.pending_flag = f" {name}"
            self.note(f"thinking {'on' if name == '/think' else 'off'} from the next message")
        elif name == "/budget":
            self.set_budget(rest)
        elif name == "/save":
            self.save(rest)
        elif rest:
            self.note(f"{name} takes no argument, got {rest!r}")
        elif name == "/reset":
            self.reset()
            self.note("conversation cleared")
        elif name == "/help":
            self.note(HELP)
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
        params = sampling_params(
            self.args, resolve_thinking(messages, enable), self.budget
        )  # flags checked at start
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
