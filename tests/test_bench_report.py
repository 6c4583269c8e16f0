"""bench/bench_decode.py rewrites only its own part of docs/benchmarks.md; the hand-written sections stay."""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@functools.cache
def bench_decode():
    spec = importlib.util.spec_from_file_location("bench_decode", ROOT / "bench" / "bench_decode.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_generated_part_is_replaced_and_the_rest_kept(tmp_path):
    bench = bench_decode()
    doc = tmp_path / "benchmarks.md"
    doc.write_text(f"intro\n{bench.GENERATED_BEGIN}old table\n{bench.GENERATED_END}\n## Anchors\nkept\n")
    updated = bench.with_generated_part(doc, "new table\n")
    assert updated == f"intro\n{bench.GENERATED_BEGIN}new table\n{bench.GENERATED_END}\n## Anchors\nkept\n"
    doc.write_text("hand-written only\n")
    assert (
        bench.with_generated_part(doc, "t")
        == f"{bench.GENERATED_BEGIN}t\n{bench.GENERATED_END}hand-written only\n"
    )
    assert (
        bench.with_generated_part(tmp_path / "new.md", "t")
        == f"{bench.GENERATED_BEGIN}t\n{bench.GENERATED_END}"
    )


def test_the_shipped_benchmarks_doc_has_both_markers_once():
    bench = bench_decode()
    text = (ROOT / "docs" / "benchmarks.md").read_text(encoding="utf-8")
    assert text.count(bench.GENERATED_BEGIN) == 1 and text.count(bench.GENERATED_END) == 1
    assert "## Measured design choices" in text.split(bench.GENERATED_END)[1]
