import pytest


@pytest.fixture(scope="session")
def tokenizer():
    """The real Qwen3 tokenizer (built from the rank file in the dashscope wheel; nothing is downloaded)."""
    import qwen3

    return qwen3.load_tokenizer("qwen3")
