"""``qwen3 serve PATH``: the OpenAI-compatible server (docs/serve.md).

Drop-in for ``vllm serve Qwen/Qwen3-8B --reasoning-parser qwen3 --enable-auto-tool-choice --tool-call-parser
hermes``: those three flags are accepted (reasoning and tool parsing are always on), the rest of vLLM's common
flags keep their names.
"""

from __future__ import annotations

import argparse
import os
import sys

API_KEY_ENV = "QWEN3_API_KEY"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve a model over the OpenAI API",
        description="Serve a checkpoint directory (or a preset name, random weights) with an OpenAI-compatible API: "
        "/v1/chat/completions, /v1/completions, /v1/models, /health, /metrics.",
    )
    p.add_argument("model", metavar="PATH", help="checkpoint directory or preset name")
    p.add_argument(
        "--host", default="127.0.0.1", help="default 127.0.0.1 (local only); 0.0.0.0 for all interfaces"
    )
    p.add_argument("--port", type=int, default=8000)
    p.add_argument(
        "--api-key", default=None, help=f"require 'Authorization: Bearer KEY' (or set ${API_KEY_ENV})"
    )
    p.add_argument("--served-model-name", nargs="+", default=None, help="names clients use (default: PATH)")
    p.add_argument(
        "--chat-template", default=None, help="Jinja file, template text, or 'model' (the model's own)"
    )
    p.add_argument(
        "--default-chat-template-kwargs",
        default=None,
        metavar="JSON",
        help="e.g. '{\"enable_thinking\": false}'; the request's chat_template_kwargs win",
    )
    engine = p.add_argument_group("engine")
    engine.add_argument("--dtype", choices=["auto", "bfloat16", "float32", "float16"], default="auto")
    engine.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    engine.add_argument("--weights", default="auto", help="auto, reference, fused, packed or int8")
    engine.add_argument("--max-model-len", type=int, default=None)
    engine.add_argument("--max-num-seqs", type=int, default=64, help="sequences decoded together")
    engine.add_argument("--max-num-batched-tokens", type=int, default=2048)
    engine.add_argument("--kv-cache-memory-gb", type=float, default=None)
    engine.add_argument("--seed", type=int, default=0)
    limits = p.add_argument_group("limits")
    limits.add_argument("--max-body-bytes", type=int, default=16 * 1024 * 1024)
    limits.add_argument("--max-messages", type=int, default=2048, help="messages (or prompts) per request")
    limits.add_argument(
        "--max-tokens-limit", type=int, default=None, help="largest max_tokens (default: context)"
    )
    limits.add_argument("--max-concurrent-requests", type=int, default=256, help="0: no limit")
    limits.add_argument("--max-queue", type=int, default=1024, help="requests waiting beyond it; then 429")
    compat = p.add_argument_group("vLLM compatibility (accepted; the behaviour is always on)")
    compat.add_argument("--reasoning-parser", choices=["qwen3", "deepseek_r1"], default="qwen3")
    compat.add_argument("--enable-auto-tool-choice", action="store_true")
    compat.add_argument("--tool-call-parser", choices=["hermes"], default="hermes")
    p.add_argument("--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"])
    p.add_argument(
        "--shutdown-timeout", type=float, default=30.0, help="seconds open requests get on shutdown"
    )
    p.set_defaults(handler=run_serve)


def build_config(args: argparse.Namespace):
    """The server's settings from the flags, checked before the model is loaded."""
    from qwen3.serve.config import ServerConfig, load_chat_template, parse_json_object

    kwargs = {}
    if args.default_chat_template_kwargs:
        kwargs = parse_json_object(args.default_chat_template_kwargs, "--default-chat-template-kwargs")
    template = None
    if args.chat_template:
        template = load_chat_template(args.chat_template, lambda: _model_chat_template(args.model))
    return ServerConfig(
        served_model_names=args.served_model_name or [args.model],
        model_path=args.model,
        api_key=args.api_key or os.environ.get(API_KEY_ENV) or None,
        default_chat_template_kwargs=kwargs,
        chat_template=template,
        max_body_bytes=args.max_body_bytes,
        max_messages=args.max_messages,
        max_tokens_limit=args.max_tokens_limit,
        max_concurrent_requests=args.max_concurrent_requests or None,
        max_queue=args.max_queue,
    )


def run_serve(args: argparse.Namespace) -> int:
    from qwen3.cli import UserFacingError

    try:
        import uvicorn

        from qwen3.engine import LLMEngine
        from qwen3.serve.app import create_app
    except ImportError as err:
        raise UserFacingError(
            f"{err}: install the server's dependencies with pip install 'qwen3[serve]'"
        ) from None
    try:
        config = build_config(args)
    except ValueError as err:
        raise UserFacingError(str(err)) from None
    print(f"loading {args.model} ...", file=sys.stderr, flush=True)
    try:
        engine = LLMEngine.from_pretrained(
            args.model,
            dtype=None if args.dtype == "auto" else args.dtype,
            device=args.device,
            seed=args.seed,
            weights=args.weights,
            max_model_len=args.max_model_len,
            max_num_seqs=args.max_num_seqs,
            max_num_batched_tokens=args.max_num_batched_tokens,
            kv_cache_memory_gb=args.kv_cache_memory_gb,
        )
    except (ValueError, OSError, RuntimeError) as err:  # RuntimeError: torch, e.g. an unknown --device
        raise UserFacingError(str(err)) from None
    app = create_app(engine, config)
    auth = "with an API key" if config.api_key else "without an API key"
    print(
        f"serving {config.model_name!r} (context {engine.max_model_len}) on http://{args.host}:{args.port}/v1 {auth}",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level=args.log_level,
        timeout_graceful_shutdown=args.shutdown_timeout,
    )
    return 0


def _model_chat_template(path: str) -> str | None:
    from qwen3.tokenizer import load_tokenizer

    return load_tokenizer(path).chat_template
