"""What made a result: the package versions and the source commit, for records and plan manifests.
Read without importing the packages (importlib.metadata) and without failing: a wheel install has no
git, a machine may have no git at all — then the commit is "unknown"."""

from __future__ import annotations

import functools
import subprocess
from importlib import metadata
from pathlib import Path

from bench.core import __version__

PACKAGES = ("torch", "transformers")
UNKNOWN = "unknown"


@functools.cache
def git_commit() -> str:
    """The commit of the source tree this package runs from (`+dirty` when tracked files differ from it),
    or "unknown" when it is not a git checkout of its own (installed wheel, no git, a foreign repository)."""
    root = Path(__file__).resolve().parents[2]  # bench/core/provenance.py -> the checkout holding bench/

    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        # Only a checkout whose top is this package's root: an install inside someone else's repository
        # (a virtualenv in a project folder) must not report that project's commit.
        if Path(git("rev-parse", "--show-toplevel")).resolve() != root:
            return UNKNOWN
        commit = git("rev-parse", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return UNKNOWN
    return commit + ("+dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    """{"ticketbench", "torch", "transformers": version} and the commit, without importing torch."""
    out = {"ticketbench": __version__}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = UNKNOWN
    out["commit"] = git_commit()
    return out
