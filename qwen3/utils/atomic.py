"""Atomic writes: a reader (or a crash) never sees a half-written file or directory.

Files are written to a temporary sibling, flushed and fsynced, then renamed over the target (``os.replace`` is
atomic on POSIX). Directories are built under a temporary sibling name and renamed into place; an existing target
is moved aside first and removed only after the new one is in place.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"


def _default_file_mode() -> int:
    """The mode a plain ``open(path, "w")`` would give: mkstemp's 0600 would hide our files from other users."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent)
    try:
        os.fchmod(fd, _default_file_mode())
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def atomic_directory(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces ``path`` whole, on error it is removed.

    >>> with atomic_directory("ckpt/step-100") as tmp:   # doctest: +SKIP
    ...     (tmp / "model.safetensors").write_bytes(...)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=TMP_PREFIX + path.name + ".", dir=path.parent))
    os.chmod(tmp, _default_file_mode() | 0o111)  # like mkdir: mkdtemp's 0700 would hide the directory
    try:
        yield tmp
        file_mode = _default_file_mode()
        for child in tmp.rglob("*"):
            if child.is_file():
                # Some writers (safetensors, mkstemp) create 0600 files; give every file a plain write's mode.
                os.chmod(child, file_mode)
                with open(child, "rb") as handle:
                    os.fsync(handle.fileno())
        old = None
        if path.exists():
            old = path.with_name(f"{TMP_PREFIX}old-{path.name}.{os.getpid()}")
            os.replace(path, old)
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def remove_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Delete leftovers of interrupted atomic writes in ``directory`` (e.g. after kill -9 mid-save)."""
    directory = Path(directory)
    removed = []
    if directory.is_dir():
        for child in directory.iterdir():
            if child.name.startswith(TMP_PREFIX):
                if child.is_dir():
                    shutil.rmtree(child, ignore_errors=True)
                else:
                    child.unlink(missing_ok=True)
                removed.append(child)
    return removed
