"""One hashing policy for every key (θ0 key, search id, run id, plan hash): settings enter a key only
where they differ from their defaults, as in OpenLTH's `foundations/hparams.py`.

So a release that adds a field at a default that changes nothing — to `TrainSettings`, a config
section or a method's hyperparameters — leaves every key, and so everything a user has stored, as it
was. The converse risk is a changed *default*: it would then change numbers under an unchanged key.
Two guards: `tests/test_identity.py` pins the defaults of every hashed field (changing one fails
there) and the canonical keys of the toyland and smoke plans; a deliberate change of a default bumps
`KEY_SCHEMA`, which every key hashes, so everything stored recomputes once, knowingly.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

# v2: keys hash non-default settings (stores made before this version recompute once).
KEY_SCHEMA = 2


def non_default(values: Mapping[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `values` that differ from `defaults`; nested mappings are compared entry by
    entry (and dropped when nothing in them differs); an entry the defaults lack is kept."""
    out = {}
    for key, value in values.items():
        if key not in defaults:
            out[key] = value
        elif isinstance(value, Mapping) and isinstance(defaults[key], Mapping):
            inner = non_default(value, defaults[key])
            if inner:
                out[key] = inner
        elif value != defaults[key]:
            out[key] = value
    return out


def dataclass_identity(obj: Any) -> dict[str, Any]:
    """A dataclass instance's fields that differ from their declared defaults (a field without a
    default is always kept), as plain data."""
    out = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            out[f.name] = _plain(value)
            continue
        if value != default:
            out[f.name] = _plain(value)
    return out


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return list(value) if isinstance(value, tuple) else value
