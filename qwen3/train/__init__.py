"""Training: data, trainer, checkpoints and one module per Qwen3 stage."""
