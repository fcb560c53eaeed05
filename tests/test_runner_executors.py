"""run_pairs: resume, failure isolation and retry, disk full, progress, local worker processes."""

from __future__ import annotations

import errno
import io
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from runner_fakes import calls, counting_pair, make_pairs  # noqa: E402

from bench.core.errors import TicketbenchError  # noqa: E402
from bench.runner import RunStore, run_pairs  # noqa: E402
from bench.runner.progress import report, reporting  # noqa: E402


def test_records_carry_identity_payload_and_timings(tmp_path):
    pair = make_pairs(1)[0]
    summary = run_pairs([pair], tmp_path, counting_pair, progress=False)
    assert summary.done == [pair.run_id] and summary.total == 1
    record = RunStore(tmp_path).read_record(pair.run_id)
    assert record["status"] == "done" and record["value"] == 50.0 and record["metric"] == "accuracy"
    assert (record["source"], record["task"], record["split"], record["seed"]) == ("dense", "vqa", "dev", 0)
    assert record["ticket"] == {"path": None, "content_hash": None, "sparsity": 0.0}
    assert record["timings"]["total_s"] >= 0
    assert not (RunStore(tmp_path).run_dir(pair.run_id) / "claim.lock").exists()


def test_resume_skips_finished_pairs(tmp_path):
    pairs = make_pairs(5)
    first = run_pairs(pairs[:3], tmp_path, counting_pair, progress=False)
    assert len(first.done) == 3
    second = run_pairs(pairs + pairs[:1], tmp_path, counting_pair, progress=False)  # duplicates collapse
    assert second.total == 5
    assert sorted(second.cached) == sorted(p.run_id for p in pairs[:3])
    assert sorted(second.done) == sorted(p.run_id for p in pairs[3:])
    assert calls(tmp_path) == {p.run_id: 1 for p in pairs}


def test_failed_pair_does_not_stop_others_and_is_retried(tmp_path):
    marker = tmp_path / "fixed"
    good = make_pairs(3)
    bad = make_pairs(5, fail_unless=str(marker))[4]
    pairs = [bad, *good]
    first = run_pairs(pairs, tmp_path, counting_pair, progress=False)
    assert sorted(first.done) == sorted(p.run_id for p in good)
    assert [f.run_id for f in first.failed] == [bad.run_id]
    reason = first.failed[0].reason
    assert reason.startswith("ValueError: marker") and "\n" not in reason
    record = RunStore(tmp_path).read_record(bad.run_id)
    assert record["status"] == "failed" and record["reason"] == reason
    marker.touch()
    second = run_pairs(pairs, tmp_path, counting_pair, progress=False)
    assert second.done == [bad.run_id] and len(second.cached) == 3 and not second.failed
    assert calls(tmp_path)[bad.run_id] == 2


def test_run_failed_reason_is_its_message(tmp_path):
    summary = run_pairs(
        make_pairs(1, fail="non-finite loss at step 3"), tmp_path, counting_pair, progress=False
    )
    assert summary.failed[0].reason == "non-finite loss at step 3"


def test_disk_full_leaves_no_record_and_is_retried(tmp_path, monkeypatch):
    pairs = make_pairs(2)

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)  # the record's bytes are written, then the disk is full
    summary = run_pairs(pairs, tmp_path, counting_pair, progress=False)
    assert not summary.done and len(summary.failed) == 2
    assert all("could not store the record (No space left on device)" in f.reason for f in summary.failed)
    store = RunStore(tmp_path)
    for pair in pairs:
        run_dir = store.run_dir(pair.run_id)
        assert sorted(p.name for p in run_dir.iterdir()) == []  # no record, no temp file, no lock
    monkeypatch.undo()
    again = run_pairs(pairs, tmp_path, counting_pair, progress=False)
    assert len(again.done) == 2 and all(store.is_done(p.run_id) for p in pairs)


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bars_and_summary(tmp_path):
    out = _Terminal()
    pairs = make_pairs(2) + make_pairs(3, fail="diverged")[2:]
    run_pairs(pairs[:1], tmp_path, counting_pair, progress=False)
    summary = run_pairs(pairs, tmp_path, counting_pair, progress=True, file=out)
    text = out.getvalue()
    assert "pairs" in text and pairs[1].label in text  # overall bar and the per-run bar
    assert "3 pairs: 1 done, 1 skipped as cached, 1 failed" in text
    assert f"failed {pairs[2].label} [{pairs[2].run_id}]: diverged" in text
    assert str(summary) in text


def test_progress_in_a_log_is_plain_lines(tmp_path):
    """Not a terminal (a log file, CI): plain lines, no per-run bars, no carriage returns or escape codes."""
    out = io.StringIO()
    pairs = make_pairs(12)
    run_pairs(pairs[:2], tmp_path, counting_pair, progress=False)
    summary = run_pairs(pairs, tmp_path, counting_pair, progress=True, file=out)
    text = out.getvalue()
    assert "\r" not in text and "\x1b" not in text
    lines = [x for x in text.splitlines() if x.startswith("[matrix]")]
    assert lines[0].startswith("[matrix] 2/12 pairs (cached 2, failed 0)")
    assert lines[-1].startswith("[matrix] 12/12 pairs (cached 2, failed 0)")
    assert 3 <= len(lines) <= 12  # one per tenth of the pairs at most (and the first)
    assert pairs[5].label not in text.replace(str(summary), "")  # no per-run bars


def test_report_is_a_no_op_without_a_bar():
    report(1, 10, 0.5)  # no reporter installed: nothing happens
    seen = []
    with reporting(lambda step, total, loss: seen.append((step, total, loss))):
        report(2, 10, None)
    report(3, 10, None)
    assert seen == [(2, 10, None)]


def test_unknown_executor_and_bad_workers(tmp_path):
    with pytest.raises(TicketbenchError, match="unknown executor 'rey'.*did you mean 'ray'"):
        run_pairs(make_pairs(1), tmp_path, counting_pair, executor="rey", progress=False)
    with pytest.raises(TicketbenchError, match="workers"):
        run_pairs(make_pairs(1), tmp_path, counting_pair, workers=0, progress=False)


def test_worker_processes_need_a_module_level_function(tmp_path):
    with pytest.raises(TypeError, match="module-level"):
        run_pairs(make_pairs(2), tmp_path, lambda pair, run_dir: {}, workers=2, progress=False)


def test_local_worker_processes_and_a_killed_worker(tmp_path):
    """Two spawned workers share the CPU threads; a worker killed by SIGKILL (every time its pair runs)
    fails only its own pair: the pair in flight beside it is run again alone and finishes."""
    pairs = make_pairs(4, sleep=0.6) + make_pairs(5, die=True)[4:]
    first = run_pairs(pairs, tmp_path, counting_pair, workers=2, progress=False)
    killed = pairs[-1].run_id
    assert [f.run_id for f in first.failed] == [killed]
    assert "worker died" in first.failed[0].reason and "also when run alone" in first.failed[0].reason
    assert len(first.done) == 4
    store = RunStore(tmp_path)
    cores = len(os.sched_getaffinity(0))
    for run_id in first.done:
        record = store.read_record(run_id)
        assert record["pid"] != os.getpid()
        assert record["omp_threads"] == str(max(1, cores // 2))
    second = run_pairs(pairs[:4], tmp_path, counting_pair, workers=2, progress=False)
    assert sorted(second.cached) == sorted(first.done)
    assert all(calls(tmp_path)[rid] <= 2 for rid in first.done)  # at most once more, alone, after the kill
    assert calls(tmp_path)[killed] == 2  # in the shared pool, then alone


def test_a_worker_killed_once_is_run_again_alone_and_finishes(tmp_path):
    marker = tmp_path / "died"
    pairs = make_pairs(2, sleep=0.6) + make_pairs(3, die_once=str(marker))[2:]
    summary = run_pairs(pairs, tmp_path, counting_pair, workers=2, progress=False)
    assert summary.failed == [] and len(summary.done) == 3
    assert marker.exists()
    assert all(RunStore(tmp_path).is_done(p.run_id) for p in pairs)


def test_disk_full_while_claiming_fails_the_pair_and_leaves_no_lock(tmp_path, monkeypatch):
    import json

    def full(obj, f):
        raise OSError(errno.ENOSPC, "No space left on device")

    pair = make_pairs(1)[0]
    monkeypatch.setattr(json, "dump", full)
    summary = run_pairs([pair], tmp_path, counting_pair, progress=False)
    assert "could not claim the run (No space left on device)" in summary.failed[0].reason
    assert list(RunStore(tmp_path).run_dir(pair.run_id).iterdir()) == []
    monkeypatch.undo()
    assert run_pairs([pair], tmp_path, counting_pair, progress=False).done == [pair.run_id]


def test_unwritable_output_directory_is_a_one_line_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(TicketbenchError, match="output directory .* is not writable") as e:
        run_pairs(make_pairs(1), blocker / "out", counting_pair, progress=False)
    assert "\n" not in str(e.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_output_directory_is_a_one_line_error(tmp_path):
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(TicketbenchError, match="is not writable"):
            run_pairs(make_pairs(1), tmp_path / "out", counting_pair, progress=False)
    finally:
        tmp_path.chmod(0o700)


def test_step_lines_print_each_tenth_once():
    from bench.runner.progress import step_lines

    out = io.StringIO()
    on_step = step_lines("[pretrain] phase 1/2", file=out)
    for step in range(1, 101):
        on_step(step, 100, 0.5 if step % 10 == 0 else None)
    lines = out.getvalue().splitlines()
    assert lines[0] == "[pretrain] phase 1/2: step 1/100"
    assert lines[-1] == "[pretrain] phase 1/2: step 100/100, loss 0.5000"
    assert len(lines) == 11
