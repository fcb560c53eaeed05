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


@pytest.mark.ray
def test_ray_asks_for_gpus_and_starts_a_fresh_process_per_gpu_task(tmp_path):
    """On a (logical) 4-GPU local instance, half a GPU per run gives 8 slots; Ray assigns each task a
    GPU through CUDA_VISIBLE_DEVICES, and every GPU task runs in a process of its own (max_calls=1: no
    CUDA context or device binding outlives its task)."""
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, num_gpus=4, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}})
    try:
        from bench.runner.executors.ray import RayBackend

        backend = RayBackend(counting_pair, RunStore(tmp_path), workers=2, ray_address="", gpus_per_run=0.5)
        assert backend.slots == 8
        pairs = make_pairs(6)
        summary = run_pairs(pairs, tmp_path, counting_pair, executor="ray", workers=2, progress=False,
                            gpus_per_run=0.5)
        assert sorted(summary.done) == sorted(p.run_id for p in pairs)
        store = RunStore(tmp_path)
        recs = [store.read_record(p.run_id) for p in pairs]
        assert all(r["cuda_visible_devices"] in {"0", "1", "2", "3"} for r in recs)
        assert len({r["pid"] for r in recs}) == len(recs)  # one process per GPU task
    finally:
        ray.shutdown()
