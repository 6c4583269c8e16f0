"""The Qwen3 model family: config, dense and MoE transformer, Hugging Face checkpoints."""
