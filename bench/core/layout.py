"""The output directory in one place: every path under `<out>` that the runner, the reports, the tools
and export read or write (docs/ARCHITECTURE.md, "Output directory"), and the jail that keeps writes
and deletes inside it.

    <out>/config.yaml, timings.json, world/, pretrain/<θ0 key>/, tickets/<search id>/,
    runs/<run id>/{record.json, checkpoint/, predictions.json}, plans/<plan hash>.json, plans/LAST,
    report/ (+ .report-files.json: what the last build wrote, with content hashes)

Nothing else joins output paths (tests/test_layout.py greps for it). Names that come from outside —
run ids, search ids, plan hashes, θ0 keys, file names built from a store's metadata — pass
`safe_name` or `file_name`, and a folder about to be written is resolved (symlinks included) and
must stay inside `<out>` (`inside`): a `report/` that is a symlink to elsewhere is one-line refused.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from bench.core.errors import DataError
from bench.core.io import safe_name

RECORD = "record.json"  # a run's or a search's record (the executor's)
SEARCH_LOG = "search.json"  # a search's log beside its tickets
DONE = "DONE"  # θ0 is complete; holds the weights' content hash
REPORT_FILES = ".report-files.json"  # what the last report build wrote, with content hashes
REPORT_INPUTS = ".report-inputs.json"  # the key of the store the last report was built from
UNITS = ("runs", "tickets")  # the run store's kinds of work (fine-tuning runs, ticket searches)

_UNSAFE = re.compile(r"[^A-Za-z0-9_.@+=-]")


def file_name(label: str) -> str:
    """A label from a store (a backbone, a plan hash) made into one file-name part: anything but
    letters, digits and `_.@+=-` becomes `_`, and no dot-only part, so it can never name a folder."""
    part = _UNSAFE.sub("_", str(label))
    return part.replace(".", "_") if set(part) <= {"."} else part


def inside(root: str | os.PathLike, path: str | os.PathLike, what: str = "output directory") -> Path:
    """`path`, when it resolves (symlinks followed) to `root` or below it; else a one-line DataError.
    Every write and delete under an output directory goes through this check."""
    base, target = Path(root).resolve(), Path(path).resolve()
    if target != base and base not in target.parents:
        raise DataError(f"{path}: resolves to {target}, outside the {what} {base} (a symlink or '..' "
                        f"leading out); refusing to write or delete there — remove it or use another --out")
    return Path(path)


class Layout:
    """The places of one output directory. Joins only; `inside(path)` checks a place before a write."""

    def __init__(self, out: str | os.PathLike):
        self.out = Path(out)

    @staticmethod
    def default(config_name: str) -> Path:
        """The output directory when none is given: `runs/<config name>` in the working directory."""
        return Path("runs") / config_name

    def inside(self, path: str | os.PathLike) -> Path:
        return inside(self.out, path)

    # ---- the effective config and timings of the last run ----------------------------------------
    @property
    def config(self) -> Path:
        return self.out / "config.yaml"

    @property
    def timings(self) -> Path:
        return self.out / "timings.json"

    # ---- toyland ----------------------------------------------------------------------------------
    @property
    def world(self) -> Path:
        return self.out / "world"

    # ---- θ0 ---------------------------------------------------------------------------------------
    @property
    def pretrain(self) -> Path:
        return self.out / "pretrain"

    def theta0(self, key: str) -> Path:
        return self.pretrain / safe_name(key, "θ0 key")

    def theta0s(self) -> list[Path]:
        """Every complete θ0 (its DONE written), in name order."""
        return [d for d in sorted(self.pretrain.glob("*/")) if (d / DONE).exists()]

    @staticmethod
    def done(theta0_dir: str | os.PathLike) -> Path:
        return Path(theta0_dir) / DONE

    # ---- units of work: runs and ticket searches ---------------------------------------------------
    def units(self, kind: str) -> Path:
        if kind not in UNITS:
            raise DataError(f"unknown store kind '{kind}' (expected one of {', '.join(UNITS)})")
        return self.out / kind

    def unit(self, kind: str, unit_id: str) -> Path:
        """`runs/<run id>` or `tickets/<search id>`: one unit of work's folder."""
        return self.units(kind) / safe_name(unit_id, "run id" if kind == "runs" else "search id")

    @property
    def tickets(self) -> Path:
        return self.units("tickets")

    def search(self, search_id: str) -> Path:
        return self.unit("tickets", search_id)

    @staticmethod
    def search_log(search_dir: str | os.PathLike) -> Path:
        return Path(search_dir) / SEARCH_LOG

    def ticket_files(self, search_ids: list[str] | None = None) -> list[Path]:
        """Ticket files of the given searches (None: of every search in the store), sorted."""
        pattern = "*/sparsity-*.safetensors"
        if search_ids is None:
            return sorted(self.tickets.glob(f"*/{pattern}"))
        return sorted(p for sid in dict.fromkeys(search_ids) for p in self.search(sid).glob(pattern))

    @property
    def runs(self) -> Path:
        return self.units("runs")

    def run(self, run_id: str) -> Path:
        return self.unit("runs", run_id)

    def record(self, run_id: str) -> Path:
        return self.run(run_id) / RECORD

    def records(self) -> list[Path]:
        """Every run record in the store, sorted."""
        return sorted(self.runs.glob(f"*/{RECORD}"))

    @staticmethod
    def checkpoint(run_dir: str | os.PathLike) -> Path:
        """A run's last mid-run checkpoint (removed when the run completes)."""
        return Path(run_dir) / "checkpoint"

    @staticmethod
    def predictions(run_dir: str | os.PathLike) -> Path:
        return Path(run_dir) / "predictions.json"

    # ---- plans ------------------------------------------------------------------------------------
    @property
    def plans(self) -> Path:
        return self.out / "plans"

    def manifest(self, plan_hash: str) -> Path:
        return self.plans / f"{safe_name(plan_hash, 'plan hash')}.json"

    def manifests(self) -> list[Path]:
        return list(self.plans.glob("*.json"))

    @property
    def last(self) -> Path:
        return self.plans / "LAST"

    # ---- the report -------------------------------------------------------------------------------
    def report(self, subdir: str = "") -> Path:
        """`report/` (or a folder below it), checked to resolve inside `<out>`: it is about to be written."""
        path = self.out / "report"
        if subdir:
            path = path / safe_name(subdir, "report folder")
        return self.inside(path)

    @property
    def report_inputs(self) -> Path:
        return self.report() / REPORT_INPUTS

    # ---- bookkeeping that only saves work (never input) -------------------------------------------
    @property
    def digest_cache(self) -> Path:
        return self.out / ".cache" / "digests.json"

    @property
    def matrix(self) -> Path:
        return self.report() / "matrix.csv"
