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
from bench.core.io import read_bounded

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


def _check_plain(obj: Any, source: str, budget: int) -> None:
    """Walk the result: plain types only, at most 100 levels deep, and at most `budget` items. Each item
    of a genuine pickle costs at least a byte, but a memo reference (2 bytes) can repeat a whole subtree,
    so a "memo bomb" of a few hundred bytes unfolds into 2^60 items: counted here, it is refused instead
    of walked (or expanded by the caller) forever."""
    # find_class already blocks every global; this walk guards the result's shape anyway.
    stack = [(obj, 0)]
    seen = 0
    while stack:
        item, depth = stack.pop()
        seen += 1
        if seen > budget:
            raise DataError(f"{source}: the pickle unfolds into more than {budget} items (shared references "
                            "repeated: a memo bomb?); refused")
        if not isinstance(item, PLAIN_TYPES) or type(item) not in PLAIN_TYPES:
            raise DataError(f"{source}: unpickled a {type(item).__name__}, expected plain containers, strings and numbers")
        if depth > 100:
            raise DataError(f"{source}: pickle nested deeper than 100 levels")
        if isinstance(item, dict):
            stack.extend((x, depth + 1) for kv in item.items() for x in kv)
        elif isinstance(item, (list, tuple, set, frozenset)):
            stack.extend((x, depth + 1) for x in item)


MAX_PICKLE_BYTES = 2 << 30  # refer's refs(unc).p files are tens of MB


def safe_loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle `data` admitting plain data only; anything else is a one-line DataError."""
    try:
        obj = _PlainUnpickler(io.BytesIO(data), source).load()
    except DataError:
        raise
    except Exception as e:  # truncated or malformed streams raise many exception types
        raise DataError(f"{source}: not a valid data pickle ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    _check_plain(obj, source, budget=2 * len(data) + 1000)
    return obj


def safe_load(path: str | Path) -> Any:
    """Read (a regular file of at most MAX_PICKLE_BYTES) and restrictedly unpickle the file at `path`."""
    return safe_loads(read_bounded(path, MAX_PICKLE_BYTES, "pickle"), str(path))
