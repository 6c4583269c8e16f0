"""``qwen3 generate`` and ``qwen3 chat``.

Both take a checkpoint directory or a preset name. Thinking is shown dimmed and apart from the answer; timings
(tokens/s) go to stderr after each reply.
"""

from __future__ import annotations

import argparse
import sys
import time

from qwen3.engine.terminal import DEFAULT_MAX_TOKENS, ReplyPrinter, Timer, max_tokens_flag, sampling_params


def register(subparsers: argparse._SubParsersAction) -> None:
    generate = subparsers.add_parser(
        "generate",
        help="generate text for one or more prompts",
        description="Generate a reply to each prompt (as a user message in the Qwen3 chat format, or raw text with "
        "--raw). Sampling defaults to the model card's preset for the thinking mode.",
    )
    _model_arguments(generate)
    generate.add_argument("--prompt", action="append", required=True, help="repeatable; '-' reads stdin")
    generate.add_argument("--system", help="system message")
    generate.add_argument("--raw", action="store_true", help="complete the text as it is (no chat template)")
    generate.add_argument("--stream", action="store_true", help="print tokens as they are generated")
    generate.add_argument("--json", action="store_true", help="print one JSON object per prompt")
    generate.set_defaults(handler=run_generate)

    chat = subparsers.add_parser(
        "chat",
        help="interactive chat",
        description="Chat with a model. Commands: /think and /no_think (the model card's soft switches; on a line "
        "of their own they are added to your next message), /budget N|off, /reset, /save FILE, /exit.",
    )
    _model_arguments(chat)
    chat.add_argument("--system", help="system message")
    chat.set_defaults(handler=run_chat)


def _model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="checkpoint directory or preset name")
    parser.add_argument(
        "--max-tokens",
        type=max_tokens_flag,
        default=DEFAULT_MAX_TOKENS,
        help=f"new tokens per reply (default {DEFAULT_MAX_TOKENS}; 'max': up to the context length)",
    )
    parser.add_argument("--temperature", type=float, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--min-p", type=float, default=None)
    parser.add_argument("--presence-penalty", type=float, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--thinking-budget", type=int, default=None, help="max thinking tokens")
    parser.add_argument("--no-think", action="store_true", help="hard switch: no thinking at all")
    parser.add_argument("--dtype", choices=["bfloat16", "float32", "float16"], default=None)
    parser.add_argument("--weights", default="auto", help="auto, reference, fused, packed or int8")
    parser.add_argument("--max-model-len", type=int, default=None, help="context length (prompt + output)")


def _load(args: argparse.Namespace, max_num_seqs: int):
    from qwen3.cli import UserFacingError
    from qwen3.engine import LLM

    start = time.perf_counter()
    print(f"loading {args.model} ...", file=sys.stderr, flush=True)
    try:
        llm = LLM(
            args.model,
            dtype=args.dtype,
            weights=args.weights,
            max_model_len=args.max_model_len,
            max_num_seqs=max_num_seqs,
        )
    except (ValueError, OSError) as err:
        raise UserFacingError(str(err)) from None
    print(f"loaded in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return llm


def run_generate(args: argparse.Namespace) -> int:
    import json

    from rich.console import Console

    from qwen3.chat import resolve_thinking
    from qwen3.cli import UserFacingError

    prompts = [sys.stdin.read() if p == "-" else p for p in args.prompt]
    if any(not p for p in prompts):
        raise UserFacingError("--prompt is empty")
    enable = False if args.no_think else None
    jobs = []  # (prompt, messages, params): every flag is checked before the model loads
    for prompt in prompts:
        messages = [{"role": "user", "content": prompt}]
        if args.system:
            messages.insert(0, {"role": "system", "content": args.system})
        params = sampling_params(args, resolve_thinking(messages, enable), args.thinking_budget, raw=args.raw)
        jobs.append((prompt, messages, params))
    llm = _load(args, max_num_seqs=max(1, len(prompts)))
    printer, errors = ReplyPrinter(Console(), chat=not args.raw), Console(stderr=True)
    for prompt, messages, params in jobs:
        timer = Timer(llm.engine)
        try:
            if args.stream and not args.json:
                stream = (
                    llm.stream(prompt, params)
                    if args.raw
                    else llm.chat_stream(messages, params, None, enable)
                )
                for delta in stream:
                    printer.delta(delta)
                    timer.tokens += len(delta.token_ids)
                printer.end()
            else:
                result = (
                    llm.generate(prompt, params) if args.raw else llm.chat(messages, params, None, enable)
                )
                output = result[0].outputs[0]
                timer.tokens = len(output.token_ids)
                if args.json:
                    print(json.dumps(_output_json(prompt, output, result[0].usage), ensure_ascii=False))
                else:
                    printer.whole(output)
        except ValueError as err:
            raise UserFacingError(str(err)) from None
        errors.print(timer.summary(), style="dim", markup=False, highlight=False)
    return 0


def _output_json(prompt: str, output, usage) -> dict:
    return {
        "prompt": prompt,
        "text": output.text,
        "reasoning_content": output.reasoning_content,
        "content": output.content,
        "tool_calls": [call.to_dict() for call in output.tool_calls],
        "finish_reason": output.finish_reason,
        "usage": usage.to_dict(),
    }


def run_chat(args: argparse.Namespace) -> int:
    from qwen3.engine.chat_repl import ChatSession

    sampling_params(args, True, args.thinking_budget)  # bad flags fail here, before the model loads
    llm = _load(args, max_num_seqs=1)
    return ChatSession(llm, args).run()
