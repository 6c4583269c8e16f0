"""`qwen3 recipe publish`: a finished run copied into docs/results/NAME, the README's blocks written from it, and
the repository's README checked against what publishing its docs/results/ would write (so it cannot go stale)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from qwen3.cli import main
from qwen3.recipes.publish import (
    BLOCKS,
    RESULTS_DIR,
    PublishError,
    markers,
    publish,
    published_source,
    readme_text,
)

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def outside_blocks(text: str) -> str:
    for block in BLOCKS:
        begin, end = markers(block)
        text = re.sub(re.escape(begin) + ".*?" + re.escape(end), block, text, flags=re.DOTALL)
    return text


@pytest.fixture
def repo(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    shutil.copy2(README, repo / "README.md")
    return repo


def test_publish_copies_the_run_and_writes_the_readme_blocks(smoke_run, repo):
    before = (repo / "README.md").read_text()
    assert main(["recipe", "publish", str(smoke_run), "--repo", str(repo)]) == 0
    target = repo / RESULTS_DIR / "smoke"
    assert {p.name for p in target.iterdir()} == {"report.md", "results.json", "plots"}
    assert (target / "results.json").read_text() == (smoke_run / "results.json").read_text()
    report = (target / "report.md").read_text()
    for image in re.findall(r"!\[[^\]]*\]\(([^)]+)\)", report):
        assert (target / image).is_file(), image  # the report's plots resolve in the published copy
    text = (repo / "README.md").read_text()
    assert outside_blocks(text) == outside_blocks(before)  # only the marked blocks changed
    assert published_source(text) == "smoke"
    results = json.loads((target / "results.json").read_text())
    assert "](docs/results/smoke/report.md)" in text and results["command"] in text
    for target_row in results["targets"]:
        assert target_row["target"] in text
    assert "| Benchmark |" in text and "| Student |" in text  # Table 22 and Table 21
    assert readme_text(text, repo, "smoke") == text  # what the README test recomputes
    publish(smoke_run, repo)  # publishing again replaces the copy and gives the same README
    assert (repo / "README.md").read_text() == text


def test_publish_refuses_an_unfinished_run_or_a_readme_without_markers(smoke_run, repo, tmp_path):
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "state.json").write_text('{"phases": {}}')
    with pytest.raises(PublishError, match="has not finished"):
        publish(unfinished, repo)
    begin, _ = markers("results")
    (repo / "README.md").write_text((repo / "README.md").read_text().replace(begin, ""))
    with pytest.raises(PublishError, match="expected one"):
        publish(smoke_run, repo)
    assert not (repo / RESULTS_DIR).exists()  # nothing written before the README was checked
    with pytest.raises(PublishError, match="publish name"):
        publish(smoke_run, repo, name="../x")


def test_the_readme_shows_what_docs_results_holds():
    """The README's blocks are exactly what `qwen3 recipe publish` writes from the published run (or the
    placeholder when none is published)."""
    text = README.read_text(encoding="utf-8")
    name = published_source(text)
    published = sorted(p.parent.name for p in (ROOT / RESULTS_DIR).glob("*/results.json"))
    if name is None:
        assert readme_text(text, ROOT, None) == text
        assert not published, f"docs/results/ holds {published} but the README shows none of them"
        pytest.skip(
            "no run is published yet (qwen3 recipe run tiny --out runs/tiny; qwen3 recipe publish runs/tiny)"
        )
    assert name in published, f"the README shows docs/results/{name}, which does not exist"
    assert readme_text(text, ROOT, name) == text, "README.md is stale: run qwen3 recipe publish again"
