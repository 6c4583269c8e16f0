"""The Qwen3 byte-level BPE tokenizer."""
