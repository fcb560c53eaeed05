"""Is `<out>/report/` already what a build would write? A pipeline re-run that ran nothing new skips the
report build (most of a no-op re-run's cost before: pandas, matplotlib and every table; issue 30, item 10).

The key covers what a build reads: every file of the store by (path, size, mtime) — runs, tickets, θ0,
the world — the plan manifests by content (a re-run rewrites them with only a new `written_at`) and in
their order, the effective config, and the report code itself (this package and the task registry, by
their files' stamps, so an edited or upgraded reporter rebuilds). Not covered, on purpose: `timings.json`
and `config.yaml`, which every run rewrites (the README's "last run" timings then stay those of the
build). `ticketbench report` always builds; only the pipeline asks.

Light on purpose (no pandas, matplotlib or torch): a skipped report must not pay their imports.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import bench.tasks as _tasks
from bench.core import __version__
from bench.core.errors import DataError
from bench.core.io import MAX_STORE_BYTES, atomic_write_json, read_json, short_hash
from bench.core.layout import REPORT_FILES, Layout
from bench.core.statcache import file_stamps

_SKIP = {"report", ".cache", "plans", "config.yaml", "timings.json"}  # rewritten by every run, or ours


def _code_files() -> list[Path]:
    here, tasks = Path(__file__).parent, Path(_tasks.__file__).parent
    return [p for d in (here, tasks) for p in sorted(d.iterdir()) if p.suffix in (".py", ".yaml")]


def inputs_key(out: str | Path, config: dict) -> str | None:
    """The key of what a report of `out` with the effective `config` (plain data) is built from; None when
    a file changed in the last seconds (then nothing may be assumed: build)."""
    layout = Layout(out)
    store = [p for p in sorted(layout.out.iterdir()) if p.name not in _SKIP]
    stamps = file_stamps([*store, *_code_files()])
    if stamps is None:
        return None
    plans = []
    for m in sorted(layout.manifests(), key=lambda p: p.stat().st_mtime):
        try:
            manifest = read_json(m, MAX_STORE_BYTES)
        except DataError:
            return None
        if isinstance(manifest, dict):
            manifest.pop("written_at", None)
        plans.append([m.name, short_hash(manifest, 24)])
    last = layout.last.read_bytes() if layout.last.is_file() else b""
    return short_hash({"version": __version__, "store": stamps, "plans": plans,
                       "last": hashlib.sha256(last).hexdigest(), "config": config}, 24)


def is_current(out: str | Path, key: str | None) -> bool:
    """True when the last build of `<out>/report/` was from `key` and its files are still there."""
    layout = Layout(out)
    if key is None or not layout.report_inputs.is_file() or not (layout.report() / REPORT_FILES).is_file():
        return False
    try:
        book, files = read_json(layout.report_inputs), read_json(layout.report() / REPORT_FILES).get("files")
    except (DataError, AttributeError):
        return False
    if not isinstance(book, dict) or book.get("key") != key or not isinstance(files, dict):
        return False
    return all((layout.report() / rel).is_file() for rel in files)


def mark_current(out: str | Path, key: str | None) -> None:
    """Record that `<out>/report/` was just built from `key`."""
    layout = Layout(out)
    if key is not None:
        atomic_write_json(layout.report_inputs, {"key": key})
