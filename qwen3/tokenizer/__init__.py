"""The Qwen3 byte-level BPE tokenizer: exact ids, streaming detokenisation, and small-vocabulary training.

``load_tokenizer(path_or_name)`` is the entry point (also exported as ``qwen3.load_tokenizer``).
"""

from qwen3.tokenizer.tokenizer import Qwen3Tokenizer, TokenizerLoadError, load_tokenizer

__all__ = ["Qwen3Tokenizer", "TokenizerLoadError", "load_tokenizer"]
