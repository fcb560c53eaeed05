"""A restricted unpickler for data pickles (RefCOCO+'s `refs(unc).p`).

Only plain data is admitted: dict, list, tuple, set, frozenset, str, bytes, int, float, complex,
bool and None. Any global (class or function) is refused *before* it is looked up, so a malicious
pickle's `__reduce__` payload (e.g. os.system) never runs. Refusals are one-line DataErrors.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from bench.core.errors import DataError

PLAIN_TYPES = (dict, list, tuple, set, frozenset, str, bytes, bytearray, int, float, complex, bool, type(None))


class _PlainUnpickler(pickle.Unpickler):
    def __init__(self, file, source: str):
        # Python 2 pickles (the refer toolkit's) hold byte strings: decode them as UTF-8.
        super().__init__(file, encoding="utf-8", errors="replace")
        self.source = source

    def find_class(self, module: str, name: str) -> Any:
        raise DataError(f"{self.source}: refused to unpickle global '{module}.{name}' (only plain data is allowed)")

    def persistent_load(self, pid: Any) -> Any:
        raise DataError(f"{self.source}: refused persistent id in pickle (only plain data is allowed)")


def _check_plain(obj: Any, source: str, depth: int = 0) -> None:
    # find_class already blocks every global; this walk guards the result's shape anyway.
    if not isinstance(obj, PLAIN_TYPES) or type(obj) not in PLAIN_TYPES:
        raise DataError(f"{source}: unpickled a {type(obj).__name__}, expected plain containers, strings and numbers")
    if depth > 100:
        raise DataError(f"{source}: pickle nested deeper than 100 levels")
    if isinstance(obj, dict):
        for k, v in obj.items():
            _check_plain(k, source, depth + 1)
            _check_plain(v, source, depth + 1)
    elif isinstance(obj, (list, tuple, set, frozenset)):
        for v in obj:
            _check_plain(v, source, depth + 1)


def safe_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle `data` admitting plain data only; anything else is a one-line DataError."""
    try:
        obj = _PlainUnpickler(io.BytesIO(data), source).load()
    except DataError:
        raise
    except Exception as e:  # truncated or malformed streams raise many exception types
        raise DataError(f"{source}: not a valid data pickle ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    _check_plain(obj, source)
    return obj


def safe_load(path: str | Path) -> Any:
    """Read and restrictedly unpickle the file at `path`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    return safe_loads(data, str(path))
