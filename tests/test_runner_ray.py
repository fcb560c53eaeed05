"""The Ray executor with a real local Ray instance (2 CPUs), and an unreachable cluster address."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from runner_fakes import calls, counting_pair, make_pairs  # noqa: E402

from bench.core.errors import TicketbenchError  # noqa: E402
from bench.runner import RunStore, run_pairs  # noqa: E402


def test_unreachable_ray_address_is_a_one_line_error(tmp_path):
    with pytest.raises(TicketbenchError, match="Ray address '127.0.0.1:1' is unreachable") as e:
        run_pairs(
            make_pairs(2), tmp_path, counting_pair, executor="ray", ray_address="127.0.0.1:1", progress=False
        )
    assert "\n" not in str(e.value)
    assert not (tmp_path / "runs").exists()  # the store is unchanged


@pytest.mark.ray
def test_ray_executor_runs_pairs_on_a_local_instance(tmp_path):
    ray = pytest.importorskip("ray")
    good = make_pairs(3)
    bad = make_pairs(4, fail="diverged")[3]
    summary = run_pairs([*good, bad], tmp_path, counting_pair, executor="ray", workers=2, progress=False)
    assert not ray.is_initialized()  # the instance it started is shut down
    assert sorted(summary.done) == sorted(p.run_id for p in good)
    assert [(f.run_id, f.reason) for f in summary.failed] == [(bad.run_id, "diverged")]
    store = RunStore(tmp_path)
    assert all(store.is_done(p.run_id) for p in good)
    assert store.read_record(bad.run_id)["status"] == "failed"
    assert calls(tmp_path) == {p.run_id: 1 for p in [*good, bad]}
    assert all(store.read_record(p.run_id)["pid"] != os.getpid() for p in good)  # ran in Ray workers
