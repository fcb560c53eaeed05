"""Backbone fingerprints: a short hash of the prunable parameters' names and shapes."""

from __future__ import annotations

import hashlib
import json


def prunable_fingerprint(named_shapes: list[tuple[str, tuple[int, ...]]]) -> str:
    """Short sha256 of the (name, shape) list, order-sensitive.

    Two models accept the same tickets exactly when their prunable sets have the same names,
    shapes and order; backbones call this from their `fingerprint()`.
    """
    payload = [[str(name), [int(d) for d in shape]] for name, shape in named_shapes]
    return hashlib.sha256(json.dumps(payload, separators=(",", ":")).encode()).hexdigest()[:16]


def fingerprint_of(named_params) -> str:
    """Fingerprint of a `[(name, tensor)]` list (shapes taken from the tensors)."""
    return prunable_fingerprint([(n, tuple(p.shape)) for n, p in named_params])
