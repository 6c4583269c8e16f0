"""The Qwen3 chat format: rendering conversations and parsing model output."""
