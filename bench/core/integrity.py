"""Stored artifacts are checked against the hash recorded when they were written, before use: a
flipped byte in θ0 must fail loudly, not train (and store new runs and tickets under the old hash)."""

from __future__ import annotations

from pathlib import Path

from bench.core.errors import CheckpointError
from bench.core.io import file_hash
from bench.core.layout import DONE


def verify_theta0(theta0_dir: str | Path) -> str:
    """Check `<θ0>/model.safetensors` against the hash in `<θ0>/DONE`; return the hash."""
    d = Path(theta0_dir)
    done, weights = d / DONE, d / "model.safetensors"
    if not done.exists():  # not a pretrain-stage directory (e.g. a user's saved backbone): nothing recorded
        return file_hash(weights) if weights.exists() else ""
    expected = done.read_text().strip()
    try:
        found = file_hash(weights)
    except FileNotFoundError:
        raise CheckpointError(f"θ0 {weights}: file missing (its DONE records hash {expected}); "
                              f"delete {d} to pre-train it again") from None
    if found != expected:
        raise CheckpointError(f"θ0 {weights}: content hash {found} does not match {expected} recorded in its DONE "
                              f"(the file changed after it was written); delete {d} to pre-train it again")
    return found
