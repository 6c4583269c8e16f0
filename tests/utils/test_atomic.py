import os

import pytest

from qwen3.utils.atomic import (
    TMP_PREFIX,
    atomic_directory,
    atomic_write_json,
    atomic_write_text,
    remove_stale_temporaries,
)


def test_atomic_write_replaces_whole_file(tmp_path):
    target = tmp_path / "a" / "f.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert [p.name for p in target.parent.iterdir()] == ["f.txt"]


def test_atomic_write_json_roundtrip(tmp_path):
    target = tmp_path / "x.json"
    atomic_write_json(target, {"ü": [1, 2]})
    assert target.read_text(encoding="utf-8").startswith("{")
    assert "ü" in target.read_text(encoding="utf-8")


def test_atomic_directory_failure_keeps_old_contents(tmp_path):
    target = tmp_path / "ckpt"
    with atomic_directory(target) as tmp:
        (tmp / "w").write_text("old")
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "w").write_text("new")
        raise RuntimeError("crash mid-save")
    assert (target / "w").read_text() == "old"
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]


def test_atomic_directory_replaces_existing(tmp_path):
    target = tmp_path / "ckpt"
    for text in ("a", "b"):
        with atomic_directory(target) as tmp:
            (tmp / "w").write_text(text)
    assert (target / "w").read_text() == "b"
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]


def test_remove_stale_temporaries(tmp_path):
    (tmp_path / f"{TMP_PREFIX}half").mkdir()
    (tmp_path / f"{TMP_PREFIX}file").write_text("x")
    (tmp_path / "keep").mkdir()
    removed = remove_stale_temporaries(tmp_path)
    assert len(removed) == 2
    assert sorted(os.listdir(tmp_path)) == ["keep"]


def test_atomic_writes_use_umask_permissions(tmp_path):
    umask = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "f", "x")
        with atomic_directory(tmp_path / "d") as tmp:
            (tmp / "w").write_text("x")
            (tmp / "private").write_text("x")
            (tmp / "private").chmod(0o600)
    finally:
        os.umask(umask)
    assert (tmp_path / "f").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "d" / "private").stat().st_mode & 0o777 == 0o644
