"""The OpenAI-compatible server (docs/serve.md): ``create_app(engine, ServerConfig(...))`` in qwen3/serve/app.py,
``qwen3 serve PATH`` in qwen3/serve/cli.py. Importing this package imports nothing heavy."""
