"""Speed of the chat layer: rendering, parsing, streaming parsing, training view.

Run from the repo root: ``python bench/bench_chat.py``. Prints numbers; asserts nothing about time.
"""

from __future__ import annotations

import time
from pathlib import Path

from qwen3.chat import StreamingParser, parse, render, render_jinja, tokenize_conversation

TOOLS = [{"type": "function", "function": {"name": f"tool_{i}", "description": "does things " * 5}} for i in range(4)]


def conversation(turns: int) -> list[dict]:
    messages = [{"role": "system", "content": "You are a helpful assistant."}]
    for turn in range(turns):
        messages.append({"role": "user", "content": f"Question {turn}: what is {turn} squared? /think"})
        messages.append(
            {
                "role": "assistant",
                "content": "",
                "reasoning_content": "Let me call the tool. " * 10,
                "tool_calls": [{"type": "function", "function": {"name": "tool_0", "arguments": {"x": turn}}}],
            }
        )
        messages.append({"role": "tool", "content": f'{{"result": {turn * turn}}}'})
        messages.append({"role": "assistant", "content": f"<think>\nDone.\n</think>\n\nIt is {turn * turn}."})
    return messages


def per_call(function, repeat: int) -> float:
    start = time.perf_counter()
    for _ in range(repeat):
        function()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    import trl

    official = (Path(trl.__file__).parent / "chat_templates" / "qwen3.jinja").read_text(encoding="utf-8")
    messages = conversation(8)  # 33 messages
    text = render(messages, tools=TOOLS)
    print(f"conversation: {len(messages)} messages, {len(text)} characters rendered")
    native = per_call(lambda: render(messages, tools=TOOLS), 300)
    jinja = per_call(lambda: render_jinja(official, messages, tools=TOOLS), 300)
    print(f"render (native)            {native * 1e6:8.0f} us")
    print(f"render_jinja (official)    {jinja * 1e6:8.0f} us   ({jinja / native:.1f}x the native time)")

    output = "<think>\n" + "Some careful reasoning about the problem. " * 2000 + "\n</think>\n\nThe answer is 42."
    output += '\n<tool_call>\n{"name": "tool_0", "arguments": {"x": 1}}\n</tool_call>'
    seconds = per_call(lambda: parse(output), 50)
    print(f"parse: {len(output)} chars in {seconds * 1e3:.2f} ms ({len(output) / seconds / 1e6:.1f} M chars/s)")

    chunks = [output[i : i + 4] for i in range(0, len(output), 4)]  # about one token per chunk

    def stream() -> None:
        parser = StreamingParser()
        for chunk in chunks:
            parser.feed(chunk)
        parser.finish()

    seconds = per_call(stream, 5)
    print(f"StreamingParser: {len(chunks)} chunks of 4 chars, {seconds / len(chunks) * 1e6:.2f} us per feed")

    import qwen3

    tokenizer = qwen3.load_tokenizer("qwen3")
    seconds = per_call(lambda: tokenize_conversation(messages, tokenizer, tools=TOOLS, train_on="all"), 50)
    ids = tokenize_conversation(messages, tokenizer, tools=TOOLS, train_on="all").input_ids
    print(f"tokenize_conversation: {len(ids)} tokens in {seconds * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
