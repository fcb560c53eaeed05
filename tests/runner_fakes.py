"""Cheap, module-level pair functions for the runner tests (worker processes and Ray import them by name).

Each call appends a line to `<out>/calls/<run_id>.log`, so tests count how often a pair was computed.
Behaviour is steered by the pair's config: `sleep` (seconds), `fail` (message), `fail_unless` (a path
that must exist), `die_once` (a marker path: SIGKILL the worker the first time), `die` (SIGKILL it every time).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

from bench.core.errors import RunFailed
from bench.runner import PairSpec, run_pairs
from bench.runner.progress import report

TASKS = ("vqa", "gqa", "nlvr2", "snli_ve")


def make_pairs(n: int, **config) -> list[PairSpec]:
    """`n` distinct dense pairs over a few tasks and seeds, all with the same fake config."""
    return [
        PairSpec(
            backbone="toy-uniter",
            source="dense",
            method="dense",
            source_task="",
            sparsity=0.0,
            task=TASKS[i % len(TASKS)],
            seed=i // len(TASKS),
            ticket_path=None,
            ticket_hash=None,
            theta0_hash="theta0",
            split="dev",
            data_hash="data",
            config=dict(config),
        )
        for i in range(n)
    ]


def calls_dir(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / "calls"


def calls(out_dir: str | os.PathLike) -> dict[str, int]:
    """run_id → how many times the pair function started on it."""
    d = calls_dir(out_dir)
    if not d.exists():
        return {}
    return {p.stem: len(p.read_text().splitlines()) for p in d.glob("*.log")}


def counting_pair(pair: PairSpec, run_dir: Path) -> dict:
    """Count the call, pretend to train (reporting steps), then succeed or fail as configured."""
    cfg = pair.config
    log = calls_dir(run_dir.parent.parent) / f"{pair.run_id}.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    call = len(log.read_text().splitlines())
    if cfg.get("die_once") and not Path(cfg["die_once"]).exists():
        Path(cfg["die_once"]).touch()
        os.kill(os.getpid(), signal.SIGKILL)
    if cfg.get("die"):
        os.kill(os.getpid(), signal.SIGKILL)
    steps = int(cfg.get("steps", 3))
    for step in range(1, steps + 1):
        time.sleep(float(cfg.get("sleep", 0.0)) / steps)
        report(step, steps, 1.0 / step)
    if cfg.get("fail"):
        raise RunFailed(cfg["fail"])
    if cfg.get("fail_unless") and not Path(cfg["fail_unless"]).exists():
        raise ValueError(f"marker {cfg['fail_unless']} missing\nsecond line of the traceback text")
    value = 50.0 + pair.seed
    return {
        "metric": "accuracy",
        "value": value,
        "metrics": {"accuracy": value},
        "call": call,
        "pid": os.getpid(),
        "omp_threads": os.environ.get("OMP_NUM_THREADS"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }


def valued_pair(pair: PairSpec, run_dir: Path) -> dict:
    """Count the call and return the value the pair's config plants: `mean` plus `wobble` with the sign of
    the seed's parity (so a cell's mean is `mean` after every even number of seeds), or fail when the seed
    is listed in `fail_seeds`."""
    counting_pair(pair, run_dir)
    cfg = pair.config
    if pair.seed in cfg.get("fail_seeds", ()):
        raise RunFailed(f"planted failure at seed {pair.seed}")
    value = float(cfg["mean"]) + float(cfg.get("wobble", 0.0)) * (1 if pair.seed % 2 == 0 else -1)
    return {"metric": "accuracy", "value": value, "metrics": {"accuracy": value}}


def main(argv: list[str]) -> None:
    """A runner process for the concurrency and kill tests: prints its summary as JSON."""
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--pairs", type=int, default=4)
    ap.add_argument("--sleep", type=float, default=0.0)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument(
        "--hang-on-write", default="", help="marker file: touch it and hang at the record's fsync"
    )
    args = ap.parse_args(argv)
    if args.hang_on_write:

        def hang(fd: int) -> None:  # the temp file is written, not yet renamed into place
            Path(args.hang_on_write).touch()
            time.sleep(3600)

        os.fsync = hang
    pairs = make_pairs(args.pairs, **({"sleep": args.sleep} if args.sleep else {}))
    summary = run_pairs(pairs, args.out, counting_pair, progress=False, poll_s=0.1, workers=args.workers)
    print(
        json.dumps(
            {"done": summary.done, "cached": summary.cached, "failed": [f.reason for f in summary.failed]}
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
