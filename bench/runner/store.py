"""The results store: `<out>/runs/<run_id>/record.json`, written atomically, claimed per run.

Promises (docs/RELIABILITY.md lists the tests):
- A record is written with `bench.core.io.atomic_write_json` (temp file + rename), so a crash or a full disk
  leaves either no record or a whole one; an unreadable record is treated as absent.
- `is_done` is true only for a whole record with status "done". Records with status "failed" are
  retried by the next invocation; they never block other runs.
- `claim` takes an atomic per-run lock (`runs/<run_id>/claim.lock`, created with O_CREAT|O_EXCL and
  holding pid, host and time), so concurrent runners on one output directory run each pair once.
  A lock is stale, and taken over with a warning naming its owner, when its pid on this host is dead or
  is another process (a different start time: the pid was recycled), or when its heartbeat (the lock's
  mtime, touched every `heartbeat_s` while the claim is held) is older than `stale_after_s` — on any host,
  so a lock naming a live but unrelated process (or written by hand) cannot make runners wait forever.
"""

from __future__ import annotations

import errno
import json
import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench.core.errors import TicketbenchError
from bench.core.io import MAX_STORE_BYTES, atomic_write_json, parse_json, read_text_bounded
from bench.core.layout import RECORD, Layout

log = logging.getLogger(__name__)

LOCK = "claim.lock"
# Taking over a stale lock is itself serialised by this short-lived file, so two runners that both
# judge a lock stale cannot both delete-and-recreate it.
TAKEOVER = "claim.takeover"


def _proc_stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (Linux), or None when unavailable."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


def _proc_start(pid: int) -> str | None:
    """The process's start time in clock ticks, so a recycled pid is not mistaken for the lock's owner."""
    fields = _proc_stat(pid)
    return fields[19] if fields else None


def _pid_alive(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        pass
    fields = _proc_stat(pid)
    if fields is None:
        return True  # no /proc: trust os.kill
    if fields[0] in ("Z", "X"):  # killed but not yet reaped by its parent
        return False
    return start is None or fields[19] == start


def _age_s(path: Path) -> float:
    return time.time() - path.stat().st_mtime


class Claim:
    """A held per-run lock; `release()` (or leaving a `with` block) frees it. A heartbeat thread keeps
    its mtime fresh so runners on other hosts do not take it over while the run is alive."""

    def __init__(self, path: Path, token: str, heartbeat_s: float):
        self.path = path
        self.token = token
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, args=(heartbeat_s,), daemon=True)
        self._thread.start()

    def _beat(self, every: float) -> None:
        while not self._stop.wait(every):
            try:
                os.utime(self.path)
            except OSError:
                return

    def held(self) -> bool:
        """True while the lock file on disk is still this claim's."""
        info = _read_lock(self.path)
        return info is not None and info.get("token") == self.token

    def release(self) -> None:
        """Remove the lock if it is still ours (a runner that took it over as stale keeps its own)."""
        self._stop.set()
        if self.held():
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass

    def __enter__(self) -> Claim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _read_lock(path: Path) -> dict | None:
    try:
        info = parse_json(read_text_bounded(path, 1 << 16, "lock"), str(path))
    except TicketbenchError:
        return None
    return info if isinstance(info, dict) else None


class RunStore:
    """Records of units of work under `<out>/<kind>/<run_id>/`: fine-tuning runs (`runs`) and ticket
    searches (`tickets`) share the same claims and atomic records."""

    def __init__(self, out_dir: str | os.PathLike, stale_after_s: float = 600.0, heartbeat_s: float = 30.0,
                 kind: str = "runs"):
        self.out_dir = Path(out_dir)
        self.layout, self.kind = Layout(out_dir), kind
        self.runs_dir = self.layout.units(kind)
        self.stale_after_s = stale_after_s
        self.heartbeat_s = heartbeat_s
        self.host = socket.gethostname()

    def run_dir(self, run_id: str) -> Path:
        return self.layout.unit(self.kind, run_id)

    def record_path(self, run_id: str) -> Path:
        return self.run_dir(run_id) / RECORD

    def read_record(self, run_id: str) -> dict | None:
        """The run's record, or None when it is absent, unreadable or not a whole record for this run."""
        try:
            # Bounded: a record that is a FIFO or a symlink to /dev/zero counts as absent, never hangs.
            record = parse_json(read_text_bounded(self.record_path(run_id), MAX_STORE_BYTES, "record"),
                                str(self.record_path(run_id)))
        except TicketbenchError:
            return None
        if (
            not isinstance(record, dict)
            or record.get("run_id") != run_id
            or record.get("status") not in ("done", "failed")
        ):
            return None
        return record

    def is_done(self, run_id: str) -> bool:
        """True when a whole record with status "done" exists (failed runs are retried)."""
        record = self.read_record(run_id)
        return record is not None and record["status"] == "done"

    def write_record(self, run_id: str, record: dict[str, Any]) -> Path:
        """Write the record atomically; an OSError (e.g. ENOSPC) propagates and leaves no record file
        behind that could be mistaken for a finished run."""
        if record.get("run_id") != run_id:
            raise ValueError(f"record for run {record.get('run_id')!r} written under {run_id!r}")
        try:
            return atomic_write_json(self.record_path(run_id), record)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                # A previous failed record must not survive as if it described this attempt.
                self.record_path(run_id).unlink(missing_ok=True)
            raise

    def check_writable(self) -> None:
        """Fail in one line, before any work, when the output directory cannot be written."""
        self.layout.inside(self.runs_dir)  # a `runs/` symlinked out of the output directory is refused
        try:
            self.runs_dir.mkdir(parents=True, exist_ok=True)
            fd, probe = tempfile.mkstemp(prefix=".probe.", dir=self.runs_dir)
            os.close(fd)
            os.unlink(probe)
        except OSError as e:
            raise TicketbenchError(
                f"output directory {self.out_dir} is not writable: {e.strerror or e}"
            ) from None

    def claim(self, run_id: str) -> Claim | None:
        """Take the run's lock, or None when the run is done or another live runner holds it.
        An OSError (disk full) while taking it propagates and leaves no lock behind."""
        run_dir = self.layout.inside(self.run_dir(run_id))
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = run_dir / LOCK
        for _ in range(3):  # a takeover frees the lock; try the exclusive create again
            if self.is_done(run_id):
                return None
            token = uuid.uuid4().hex
            try:
                fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            except FileExistsError:
                if not self._take_over_if_stale(lock):
                    return None
                continue
            info = {
                "pid": os.getpid(),
                "start": _proc_start(os.getpid()),
                "host": self.host,
                "time": time.time(),
                "token": token,
            }
            try:
                with os.fdopen(fd, "w") as f:
                    json.dump(info, f)
            except OSError:
                lock.unlink(missing_ok=True)  # an empty lock would block the run for no one
                raise
            if self.is_done(run_id):  # finished by another runner between our check and our lock
                Claim(lock, token, self.heartbeat_s).release()
                return None
            self._remove_stray_temps(run_dir)
            return Claim(lock, token, self.heartbeat_s)
        return None

    def _is_stale(self, lock: Path) -> bool:
        info = _read_lock(lock)
        try:
            age = _age_s(lock)
        except FileNotFoundError:
            return True
        if info is None:
            # Created but never written: its creator died between open and write (or is writing now).
            return age > 10.0
        if abs(age) > self.stale_after_s:
            return True  # no heartbeat (or a time far in the future): a holder touches it every heartbeat_s
        if info.get("host") == self.host and isinstance(info.get("pid"), int) and not isinstance(info["pid"], bool):
            return not _pid_alive(info["pid"], info.get("start") if isinstance(info.get("start"), str) else None)
        return False

    def _take_over_if_stale(self, lock: Path) -> bool:
        """Remove `lock` if it is stale; True when the caller should try to create it again."""
        if not self._is_stale(lock):
            return False
        guard = lock.with_name(TAKEOVER)
        try:
            fd = os.open(guard, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                if _age_s(guard) > 30.0:  # its holder died mid-takeover (a window of microseconds)
                    guard.unlink(missing_ok=True)
            except FileNotFoundError:
                pass
            return False
        try:
            os.close(fd)
            # Re-check under the guard: another runner may have replaced the stale lock meanwhile.
            if self._is_stale(lock):
                info = _read_lock(lock) or {}
                log.warning("taking over the stale lock %s (pid %s on host %s, process start %s): its holder "
                            "is gone or has not renewed it for %gs", lock, info.get("pid", "?"),
                            info.get("host", "?"), info.get("start", "?"), self.stale_after_s)
                lock.unlink(missing_ok=True)
            return True
        finally:
            guard.unlink(missing_ok=True)

    @staticmethod
    def _remove_stray_temps(run_dir: Path) -> None:
        # A writer killed mid-write leaves `.record.json.*.tmp`; we hold the claim, so nobody writes now.
        for tmp in run_dir.glob(f".{RECORD}.*.tmp"):
            tmp.unlink(missing_ok=True)


class RoutedStore:
    """One scheduler call over units of several kinds (ticket searches and the fine-tuning pairs they make
    ready): each unit's claim and record live in its kind's folder. `kinds` maps run ids to a kind
    (`tickets`); any other run id is a `default` unit."""

    def __init__(self, out_dir: str | os.PathLike, kinds: dict[str, str], default: str = "runs"):
        self.kinds, self.default = kinds, default
        self.stores = {k: RunStore(out_dir, kind=k) for k in {default, *kinds.values()}}

    def of(self, run_id: str) -> RunStore:
        return self.stores[self.kinds.get(run_id, self.default)]

    def run_dir(self, run_id: str) -> Path:
        return self.of(run_id).run_dir(run_id)

    def record_path(self, run_id: str) -> Path:
        return self.of(run_id).record_path(run_id)

    def read_record(self, run_id: str) -> dict | None:
        return self.of(run_id).read_record(run_id)

    def is_done(self, run_id: str) -> bool:
        return self.of(run_id).is_done(run_id)

    def write_record(self, run_id: str, record: dict[str, Any]) -> Path:
        return self.of(run_id).write_record(run_id, record)

    def claim(self, run_id: str) -> Claim | None:
        return self.of(run_id).claim(run_id)

    def check_writable(self) -> None:
        for store in self.stores.values():
            store.check_writable()
