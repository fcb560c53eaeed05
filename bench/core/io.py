"""Atomic, validated file I/O: every record is written to a temp file and renamed into place."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any

from bench.core.errors import DataError, TicketbenchError

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:+=-]*$")


def safe_name(name: str, what: str = "name") -> str:
    """Refuse names that could escape the output directory (`../x`, `a/b`, absolute paths)."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise TicketbenchError(f"invalid {what} '{name}': use letters, digits and _.:+=- only (no '/' or '..')")
    return name


def _umask() -> int:
    """The process's umask, read without changing it (Linux: /proc/self/status) where possible."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)  # elsewhere: read it by setting it, and put it back at once
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write `data` to `path` so that readers see either the old file or the whole new one.
    The file gets the mode an ordinary `open(path, "w")` would (0666 less the umask, usually 0644),
    not mkstemp's private 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def atomic_write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=indent, sort_keys=True, default=str) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a missing or malformed file is a one-line DataError naming it."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None


def read_jsonl_numbered(path: str | os.PathLike) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSON-lines file; a malformed line is a
    DataError naming file and line number."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{i}: malformed JSON line: {e.msg}") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{i}: expected a JSON object, found {type(row).__name__}")
        rows.append((i, row))
    return rows


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSON-lines file (see `read_jsonl_numbered`)."""
    return [row for _, row in read_jsonl_numbered(path)]


def short_hash(obj: Any, n: int = 12) -> str:
    """Short content hash of a JSON-able object (canonical key order)."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


def file_hash(path: str | os.PathLike, n: int = 16) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]
