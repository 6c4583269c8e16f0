"""Comments and docs cite the report, the model cards or the released files, never a "facts sheet" that the
repository does not ship (issue 15 section 5: 27 such citations pointed at nothing)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UNSHIPPED = re.compile(r"facts[ _](sheet|section|table)|listed in the facts", re.I)


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    if listed.returncode != 0:  # an unpacked archive: every file under the package, the tests and the docs
        return [p for d in ("qwen3", "tests", "docs", "bench") for p in (ROOT / d).rglob("*") if p.is_file()]
    return [ROOT / name for name in listed.stdout.splitlines()]


def test_no_file_cites_an_unshipped_facts_sheet():
    this = Path(__file__).resolve()
    hits = []
    for path in tracked_text_files():
        if path.suffix not in {".py", ".md", ".toml", ".txt", ".c", ".h"} or path.resolve() == this:
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if UNSHIPPED.search(line):
                hits.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not hits, "\n".join(hits)
