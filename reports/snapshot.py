"""Numbers in the docs come from a run: a report's headline tables copied into the repository with what made
them, and the README's result block rendered from that copy.

    ticketbench report runs/toyland --snapshot docs/results/toyland --readme README.md

copies `dense_vs_chance.csv`, `dense_convergence.csv` and `claims.csv` of `runs/toyland/report/` to
`docs/results/toyland/` with `source.json` (the commits the runs recorded, the plan, the machine, the date,
the stage timings), then rewrites the README's block between `<!-- results:toyland:begin -->` and
`<!-- results:toyland:end -->` from that folder. `tests/test_docs_results.py` renders every snapshot again
and fails when the README's block differs, so the README cannot drift from the report it cites.
"""

from __future__ import annotations

import math
import os
import platform
import re
import shutil
import time
from pathlib import Path

import pandas as pd

from bench.core.errors import DataError
from bench.core.io import atomic_write_json, atomic_write_text, read_json
from bench.core.layout import Layout
from bench.core.provenance import git_commit
from reports.store import read_records

TABLES = ("dense_vs_chance.csv", "dense_convergence.csv", "claims.csv")
SOURCE = "source.json"
STAGES = ("world", "pretrain", "find", "matrix", "report")


def machine() -> str:
    """The machine in words: CPU model, cores, memory (Linux /proc; 'unknown CPU' elsewhere)."""
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(next(x for x in Path("/proc/meminfo").read_text().splitlines() if x.startswith("MemTotal")).split()[1])
        mem = f", {kb / 2**20:.0f} GiB"
    except (OSError, StopIteration, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores ({cpu}{mem}), {platform.system()} {platform.machine()}"


def snapshot(out_dir: str | Path, dest: str | Path) -> Path:
    """Copy the report's headline tables of `out_dir` to `dest` with `source.json`; returns `dest`."""
    layout = Layout(out_dir)
    dest = Path(dest)
    missing = [t for t in TABLES if not (layout.report() / t).is_file()]
    if missing:
        raise DataError(f"{layout.report()}: no {', '.join(missing)} (run `ticketbench report {out_dir}` first)")
    done, _ = read_records(out_dir)
    commits = sorted({str((r.get("env") or {}).get("commit", "unknown")) for r in done})
    last = layout.last
    timings = read_json(layout.timings) if layout.timings.is_file() else {}
    dest.mkdir(parents=True, exist_ok=True)
    for t in TABLES:
        shutil.copyfile(layout.report() / t, dest / t)
    atomic_write_json(dest / SOURCE, {
        "commits": commits, "snapshot_commit": git_commit(), "machine": machine(),
        "date": time.strftime("%Y-%m-%d", time.gmtime()), "plan": last.read_text().strip() if last.is_file() else "",
        "runs": len(done), "timings": {k: timings[k] for k in (*STAGES, "last_total_s") if k in timings},
    })
    return dest


def _clock(seconds) -> str:
    m, s = divmod(int(round(float(seconds))), 60)
    return f"{m} min {s:02d} s" if m else f"{s} s"


def _num(x, digits: int = 1) -> str:
    try:
        x = float(x)
    except (TypeError, ValueError):
        return "–"
    return "–" if math.isnan(x) else f"{x:.{digits}f}"


def _cell(text) -> str:
    return "–" if text is None or (isinstance(text, float) and math.isnan(text)) else str(text).replace("|", "\\|")


def render(folder: str | Path) -> str:
    """The README's result block (without its markers) from a snapshot folder."""
    folder = Path(folder)
    src = read_json(folder / SOURCE)
    dvc = pd.read_csv(folder / "dense_vs_chance.csv")
    conv = pd.read_csv(folder / "dense_convergence.csv").set_index(["backbone", "task"])
    claims = pd.read_csv(folder / "claims.csv")
    t = src.get("timings") or {}
    stages = ", ".join(f"{k} {_clock(t[k])}" for k in STAGES if k in t)
    commits = ", ".join(f"`{c[:12]}{'+dirty' if c.endswith('+dirty') else ''}`" for c in src.get("commits") or ["unknown"])
    lines = [
        f"Generated from `{folder.as_posix()}/` (a copy of one run's report): measured {src.get('date', '?')} on "
        f"{src.get('machine', '?')}, commit {commits}, plan `{src.get('plan') or '?'}`, {src.get('runs', '?')} runs"
        + (f"; `ticketbench run` took {_clock(t['last_total_s'])} ({stages})." if "last_total_s" in t else "."),
        "",
        "| backbone | task (metric) | dense: mean ± std (seeds) | chance | clearly above chance | dense at 2× steps "
        "| converged |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in dvc.itertuples(index=False):
        c = conv.loc[(r.backbone, r.task)] if (r.backbone, r.task) in conv.index else None
        long = _num(c["long_mean"]) if c is not None else "–"
        converged = _cell(c["converged"]) if c is not None else "–"
        lines.append(f"| {r.backbone} | {r.task} ({r.metric}) | {_num(r.dense_mean)} ± {_num(r.dense_std)} ({r.seeds}) "
                     f"| {_num(r.chance)} | {_cell(r.learns)} | {long} | {converged} |")
    lines += ["", "| claim | verdict | this run | reason |", "|---|---|---|---|"]
    for r in claims.itertuples(index=False):
        lines.append(f"| {_cell(r.claim)} | **{_cell(r.verdict)}** | {_cell(r.this_run)} | {_cell(r.reason)} |")
    return "\n".join(lines)


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- results:{name}:begin -->", f"<!-- results:{name}:end -->"


def readme_block(readme: str | Path, name: str) -> str | None:
    """The text between a README's markers for snapshot `name`, or None when it has none."""
    begin, end = _markers(name)
    m = re.search(re.escape(begin) + r"\n(.*?)\n" + re.escape(end), Path(readme).read_text(encoding="utf-8"), re.S)
    return m.group(1) if m else None


def sync_readme(readme: str | Path, folder: str | Path) -> None:
    """Rewrite the README's block for the snapshot in `folder` (named by the folder) from `render(folder)`."""
    readme, name = Path(readme), Path(folder).name
    begin, end = _markers(name)
    text = readme.read_text(encoding="utf-8")
    if readme_block(readme, name) is None:
        raise DataError(f"{readme}: no '{begin}' … '{end}' block to fill (add both lines where the table goes)")
    new = re.sub(re.escape(begin) + r"\n.*?\n" + re.escape(end), lambda _: f"{begin}\n{render(folder)}\n{end}",
                 text, count=1, flags=re.S)
    atomic_write_text(readme, new)
