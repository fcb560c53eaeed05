"""Values computed from files, remembered against the files' (size, mtime): a re-run whose inputs did not
change reads one small JSON file instead of re-reading and re-digesting every data file (issue 30, item 10).

A key is the hash of what the value depends on besides the files (a task's version, the settings) and of
every file's (path, size, mtime in ns). A changed, added or removed file is a new key, so the value is
computed again; nothing is ever trusted that a stat would tell apart. Two guards: a file modified in the
last `RACY_S` seconds is not remembered (a write within the same mtime tick could keep its stamp, as
git's "racy clean" case), and a damaged or foreign cache file is treated as empty (it is bookkeeping,
never input: the worst it can cost is the computation it saves).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Callable, Iterable

from bench.core.errors import DataError
from bench.core.io import atomic_write_json, read_json, short_hash

RACY_S = 2.0
MAX_ENTRIES = 4096  # a store's objectives × a few versions; older entries go first when it grows past this


def file_stamps(paths: Iterable[str | os.PathLike]) -> list | None:
    """[(path, size, mtime_ns), ...] of `paths` (a folder: every file under it, in name order); None when one
    is missing or was modified in the last `RACY_S` seconds (then nothing may be remembered from it)."""
    stamps, now = [], time.time_ns()
    for path in paths:
        p = Path(path)
        files = sorted(f for f in p.rglob("*") if f.is_file()) if p.is_dir() else [p]
        for f in files:
            try:
                st = f.stat()
            except OSError:
                return None
            if now - st.st_mtime_ns < RACY_S * 1e9:
                return None
            stamps.append((str(f), st.st_size, st.st_mtime_ns))
    return stamps


class StatCache:
    """A JSON file of {key: value} (values JSON-plain), read once, written atomically on each new value."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self._entries: dict[str, Any] | None = None

    def _load(self) -> dict[str, Any]:
        if self._entries is None:
            try:
                data = read_json(self.path, 64 << 20) if self.path.is_file() else {}
            except DataError:
                data = {}
            self._entries = data if isinstance(data, dict) else {}
        return self._entries

    def get_or_compute(self, what: Any, paths: Iterable[str | os.PathLike], compute: Callable[[], Any]) -> Any:
        """The value remembered for `what` over `paths` as they are now; else `compute()`, remembered when
        the files are stable. `what` names everything else the value depends on (JSON-plain)."""
        stamps = file_stamps(paths)
        key = short_hash([what, stamps], 24) if stamps is not None else None
        entries = self._load()
        if key is not None and key in entries:
            return entries[key]
        value = compute()
        if key is not None:
            entries[key] = value
            while len(entries) > MAX_ENTRIES:
                entries.pop(next(iter(entries)))
            try:
                atomic_write_json(self.path, entries, indent=None)
            except OSError:
                pass  # a read-only store still works, only without the saving
        return value
