"""A per-machine cache for artefacts that are slow to build and cheap to rebuild (e.g. tokenizer.json files).

The directory is ``$QWEN3_CACHE`` when set, else ``~/.cache/qwen3``. Entries are written atomically, so a crash
mid-build leaves no half-written file, and two processes building the same entry at once both succeed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from qwen3.utils.atomic import atomic_write_bytes


def cache_dir() -> Path:
    override = os.environ.get("QWEN3_CACHE")
    return Path(override).expanduser() if override else Path.home() / ".cache" / "qwen3"


def cached_file(relative_path: str, build: Callable[[], bytes]) -> Path:
    """Path of the cache entry ``relative_path``, calling ``build()`` to create it when it is missing."""
    path = cache_dir() / relative_path
    if not path.is_file():
        atomic_write_bytes(path, build())
    return path
