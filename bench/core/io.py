"""Atomic, validated file I/O: every record is written to a temp file and renamed into place."""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
import tempfile
from pathlib import Path
from typing import Any

import yaml

from bench.core.errors import ConfigError, DataError, TicketbenchError

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


# Bounds checked before anything is parsed, so a small hostile file (a symlink to /dev/zero, a FIFO, a
# number with a million digits) is a one-line error, never a hang or a MemoryError. Annotation files of
# the real releases reach 1.5 GB (GQA's train questions); a store's own JSON files are far smaller.
MAX_DATA_BYTES = 8 << 30
MAX_STORE_BYTES = 256 << 20
MAX_CONFIG_BYTES = 1 << 20
MAX_INT_DIGITS = 100  # no count, step or seed needs more; Python refuses > 4300 digits with a traceback


def _check_regular(path: Path, st: os.stat_result, what: str, error: type[TicketbenchError]) -> None:
    if not stat.S_ISREG(st.st_mode):
        kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "not a file")
        raise error(f"{path}: expected a regular {what}, found {kind}")


def read_bounded(path: str | os.PathLike, limit: int = MAX_DATA_BYTES, what: str = "file",
                 error: type[TicketbenchError] = DataError) -> bytes:
    """The bytes of `path`, a regular file (symlinks followed) of at most `limit` bytes; anything else
    (a FIFO, a device, a directory, a file too large) is a one-line `error` naming it."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise error(f"{path}: {what} not found") from None
    except OSError as e:
        raise error(f"{path}: cannot read {what}: {e.strerror or e}") from None
    _check_regular(path, st, what, error)
    if st.st_size > limit:

        raise error(f"{path}: {st.st_size} bytes, more than the {limit} a {what} may have")
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)  # the file may have grown since stat
    except OSError as e:
        raise error(f"{path}: cannot read {what}: {e.strerror or e}") from None
    if len(data) > limit:
        raise error(f"{path}: more than the {limit} bytes a {what} may have")
    return data


def read_text_bounded(path: str | os.PathLike, limit: int = MAX_DATA_BYTES, what: str = "file",
                      error: type[TicketbenchError] = DataError) -> str:
    """`read_bounded`, decoded as UTF-8 (a non-UTF-8 file is a one-line error naming the byte offset)."""
    data = read_bounded(path, limit, what, error)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(f"{path}: not UTF-8 text (byte {e.start}: {data[e.start:e.start + 1]!r})") from None


def _bounded_int(source: str):
    def parse(text: str) -> int:
        if len(text.lstrip("-")) > MAX_INT_DIGITS:
            raise DataError(f"{source}: an integer of {len(text.lstrip('-'))} digits (at most {MAX_INT_DIGITS})")
        return int(text)
    return parse


def parse_json(text: str, source: str) -> Any:
    """JSON text with integers of at most MAX_INT_DIGITS digits; errors name `source`."""
    try:
        return json.loads(text, parse_int=_bounded_int(source))
    except json.JSONDecodeError as e:
        raise DataError(f"{source}: malformed JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    except RecursionError:
        raise DataError(f"{source}: JSON nested too deeply") from None


def read_json(path: str | os.PathLike, limit: int = MAX_DATA_BYTES) -> Any:
    """Read a JSON file (a regular file of at most `limit` bytes); a missing, oversized or malformed file
    is a one-line DataError naming it."""
    return parse_json(read_text_bounded(path, limit), str(path))


def read_jsonl_numbered(path: str | os.PathLike) -> list[tuple[int, dict]]:
    """(line number, object) for every non-blank line of a JSON-lines file; a malformed line is a
    DataError naming file and line number."""
    path = Path(path)
    lines = read_text_bounded(path).splitlines()
    rows = []
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line, parse_int=_bounded_int(f"{path}:{i}"))
        except json.JSONDecodeError as e:
            raise DataError(f"{path}:{i}: malformed JSON line: {e.msg}") from None
        except RecursionError:
            raise DataError(f"{path}:{i}: JSON nested too deeply") from None
        if not isinstance(row, dict):
            raise DataError(f"{path}:{i}: expected a JSON object, found {type(row).__name__}")
        rows.append((i, row))
    return rows


# ---- YAML as configs are read: no aliases, no duplicate keys, YAML 1.2's numbers -----------------------
_DECIMAL_INT = re.compile(r"^[-+]?(0|[1-9][0-9]*)$")
_DECIMAL_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$|^[-+]?\.(inf|Inf|INF)$|^\.(nan|NaN|NAN)$")


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader with the YAML 1.1 surprises refused: an alias (`*x`, the "billion laughs"
    bomb) or merge key, a repeated key (the last would silently win), and numbers YAML 1.2 reads as
    strings — hex / octal / binary / leading-zero / sexagesimal / underscored forms (`0x10` is 16 and
    `010` is 8 in YAML 1.1) — and integers of more than MAX_INT_DIGITS digits."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise yaml.constructor.ConstructorError(
                None, None, f"aliases (*{event.anchor}) are not allowed; write the value out", event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                raise yaml.constructor.ConstructorError(None, None, "merge keys (<<) are not allowed",
                                                        key_node.start_mark)
            key = self.construct_object(key_node, deep=True)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key: PyYAML's own check says so
                break
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (the later one would silently win)", key_node.start_mark)
        return super().construct_mapping(node, deep)

    def construct_yaml_int(self, node):
        text = str(node.value)
        if not _DECIMAL_INT.match(text):
            raise yaml.constructor.ConstructorError(
                None, None, f"{text!r} is not a decimal integer (YAML 1.1 would read it as "
                            f"{super().construct_yaml_int(node)}): write it in decimal, or quote it", node.start_mark)
        if len(text.lstrip("+-")) > MAX_INT_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer of {len(text.lstrip('+-'))} digits (at most {MAX_INT_DIGITS})", node.start_mark)
        return int(text)

    def construct_yaml_float(self, node):
        text = str(node.value)
        if not _DECIMAL_FLOAT.match(text):
            raise yaml.constructor.ConstructorError(
                None, None, f"{text!r} is not a decimal number: write it in decimal, or quote it", node.start_mark)
        return super().construct_yaml_float(node)


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)
# YAML 1.2 reads 1e-9 (no dot) as a number; PyYAML's 1.1 resolver leaves it a string.
_StrictLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+[eE][-+]?[0-9]+$"),
                                    list("-+0123456789"))
_StrictLoader.add_constructor("tag:yaml.org,2002:float", _StrictLoader.construct_yaml_float)


def load_yaml(text: str, source: str, error: type[TicketbenchError] = ConfigError) -> Any:
    """YAML `text` read safely and strictly (`_StrictLoader`); any problem is one line naming `source`."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise error(f"{source}: invalid YAML{where}: {what}") from None
    except RecursionError:
        raise error(f"{source}: invalid YAML: nested too deeply") from None


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSON-lines file (see `read_jsonl_numbered`)."""
    return [row for _, row in read_jsonl_numbered(path)]


def short_hash(obj: Any, n: int = 12) -> str:
    """Short content hash of a JSON-able object (canonical key order)."""
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()[:n]


def file_hash(path: str | os.PathLike, n: int = 16) -> str:
    """sha256 of a regular file (a FIFO or a device such as /dev/zero would be read forever)."""
    _check_regular(Path(path), os.stat(path), "file", DataError)  # before open: opening a FIFO blocks
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n]
