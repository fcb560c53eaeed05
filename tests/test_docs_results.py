"""The README's result tables are generated from a committed report snapshot, and cannot drift from it."""

from pathlib import Path

import pandas as pd
import pytest

from bench.core.errors import DataError
from reports.snapshot import SOURCE, readme_block, render, snapshot, sync_readme

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOTS = sorted(p.parent for p in (ROOT / "docs" / "results").glob(f"*/{SOURCE}"))


@pytest.mark.parametrize("folder", SNAPSHOTS, ids=[p.name for p in SNAPSHOTS])
def test_readme_block_is_the_rendered_snapshot(folder, monkeypatch):
    monkeypatch.chdir(ROOT)  # the block names the folder relative to the repository
    block = readme_block(ROOT / "README.md", folder.name)
    assert block is not None, f"README.md has no results:{folder.name} block for {folder}"
    assert block == render(folder.relative_to(ROOT)), (
        f"README.md's results:{folder.name} block differs from {folder}: regenerate it with "
        f"`ticketbench report OUT --snapshot {folder.relative_to(ROOT)} --readme README.md`")


def _report(out: Path) -> Path:
    rep = out / "report"
    rep.mkdir(parents=True)
    pd.DataFrame([{"backbone": "toy-uniter", "task": "gqa", "metric": "accuracy", "dense_mean": 57.25, "dense_std": 1.5,
                   "seeds": 3, "chance": 31.8, "learns": "yes"}]).to_csv(rep / "dense_vs_chance.csv", index=False)
    pd.DataFrame([{"backbone": "toy-uniter", "task": "gqa", "long_mean": 57.9, "converged": "yes"}]).to_csv(
        rep / "dense_convergence.csv", index=False)
    pd.DataFrame([{"claim": "IMP beats random | at every sparsity", "verdict": "holds", "this_run": "+5.0 [2.0, 8.0]",
                   "reason": "CI above 0"}]).to_csv(rep / "claims.csv", index=False)
    (out / "timings.json").write_text('{"world": 30, "matrix": 600.4, "last_total_s": 700}')
    return out


def test_snapshot_renders_into_the_readme_block(tmp_path):
    out = _report(tmp_path / "out")
    folder = snapshot(out, tmp_path / "docs" / "toyland")
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:toyland:begin -->\nold numbers\n<!-- results:toyland:end -->\noutro\n")
    sync_readme(readme, folder)
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old numbers" not in text
    block = readme_block(readme, "toyland")
    assert block == render(folder)
    assert "| toy-uniter | gqa (accuracy) | 57.2 ± 1.5 (3) | 31.8 | yes | 57.9 | yes |" in block
    assert "IMP beats random \\| at every sparsity | **holds**" in block  # a '|' in a claim stays one cell
    assert "took 11 min 40 s (world 30 s, matrix 10 min 00 s)" in block


def test_snapshot_refuses_a_store_without_a_report_and_a_readme_without_markers(tmp_path):
    with pytest.raises(DataError, match="no dense_vs_chance.csv"):
        snapshot(tmp_path, tmp_path / "snap")
    folder = snapshot(_report(tmp_path / "out"), tmp_path / "snap")
    readme = tmp_path / "README.md"
    readme.write_text("no block here\n")
    with pytest.raises(DataError, match="no '<!-- results:snap:begin -->'"):
        sync_readme(readme, folder)
    assert readme.read_text() == "no block here\n"
