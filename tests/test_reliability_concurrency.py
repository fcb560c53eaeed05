"""Two real `ticketbench matrix` processes on one output directory run every pair exactly once."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from reliability_support import ROOT, SOURCES, TASKS, prepare, records, tiny_args

SEEDS = 4  # 3 pairs x 4 seeds = 12 runs to share


def test_two_real_runners_on_one_output_directory(tmp_path):
    out = tmp_path / "out"
    prepare(out)  # world, θ0 and tickets: the runners only fine-tune
    args = [sys.executable, "-m", "bench", "matrix", "smoke", "--out", str(out), "--tasks", ",".join(TASKS),
            "--sources", ",".join(SOURCES), "--seeds", str(SEEDS), *tiny_args()]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
             for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    done = []
    for p, (stdout, stderr) in zip(procs, outputs):
        assert p.returncode == 0, stderr[-2000:]
        assert "Traceback" not in stderr
        m = re.search(r"(\d+) pairs: (\d+) done, (\d+) skipped as cached, (\d+) failed", stdout + stderr)
        assert m, stdout[-1000:]
        total, n_done, cached, failed = map(int, m.groups())
        # The matrix streams behind the find stage: its first line counts the (prepared, cached) search too.
        assert total == 3 * SEEDS + 1 and failed == 0 and n_done + cached == total
        done.append(n_done)
    # A runner counts a pair as done only after computing it and writing its record: together they
    # computed every pair exactly once; the other's share was skipped as cached.
    assert sum(done) == 3 * SEEDS
    recs = records(out)
    assert len(recs) == 3 * SEEDS and len({r["run_id"] for r in recs}) == 3 * SEEDS
    assert all(r["status"] == "done" for r in recs)
    assert {(r["source"], r["sparsity"], r["seed"]) for r in recs} == {
        (s, sp, seed) for seed in range(SEEDS) for s, sp in (("imp:snli_ve", 0.5), ("imp:snli_ve", 0.9), ("dense", 0.0))}
    # No lock, takeover guard or temp file is left behind.
    leftovers = [p.name for p in out.glob("runs/*/*") if p.name != "record.json"]
    assert leftovers == []
