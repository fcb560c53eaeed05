"""What every report builder needs: the matrix, the config, task and sparsity orders, the tickets."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

import pandas as pd

from bench.config import SECTIONS, Config, build_config, load_config
from bench.core.errors import ConfigError, DataError
from bench.core.io import (
    MAX_CONFIG_BYTES,
    atomic_write_json,
    file_hash,
    load_yaml,
    read_json,
    read_text_bounded,
)
from bench.core.layout import Layout, file_name, inside
from reports.store import collect_matrix, load_results, split_convergence
from reports.tables import ladder, task_order
from reports.ticket_views import TicketView, iter_tickets


@dataclass
class ReportContext:
    out: Path
    report_dir: Path
    config: Config
    df: pd.DataFrame
    tasks: list[str]
    backbones: list[str]
    sparsities: list[float]
    written: list[Path] = field(default_factory=list)
    searches: list[str] | None = None  # the plan's ticket folders (None: every ticket in the store)
    regimes: dict = field(default_factory=dict)  # {backbone label: "adversarial" | "standard"}
    # Dense runs at a multiple of the recipe's steps (`matrix.convergence_check`); `df` holds the rest.
    convergence: pd.DataFrame = field(default_factory=pd.DataFrame)
    seeds: list = field(default_factory=list)  # the plan's cells: seeds and why each stopped (`Results.seeds`)
    _tickets: list[TicketView] | None = None

    @property
    def tickets(self) -> list[TicketView]:
        if self._tickets is None:
            self._tickets = list(iter_tickets(self.out, self.searches))
        return self._tickets

    def suffix(self, backbone: str) -> str:
        """File-name suffix naming the backbone, only when the store holds several."""
        return f"_{file_name(backbone)}" if len(self.backbones) > 1 else ""

    def add(self, paths) -> None:
        self.written += list(paths.values()) if isinstance(paths, dict) else list(paths)


def _known_fields_only(data: dict) -> dict:
    """Keep the sections and keys this version of the config knows (a store written by another
    version may have renamed or added fields; the report only needs a few of them)."""
    out = {}
    for key, value in data.items():
        if key == "name":
            out[key] = value
        elif key in SECTIONS and isinstance(value, dict):
            known = {f.name for f in fields(getattr(Config(), key))}
            out[key] = {k: v for k, v in value.items() if k in known}
    return out


def resolve_config(out: Path, config: Config | None) -> Config:
    """The given config, else the run's `<out>/config.yaml` (fields this version does not know
    are ignored), else the defaults."""
    if config is not None:
        return config
    path = Layout(out).config
    if not path.exists():
        return Config()
    try:
        return load_config(str(path))
    except ConfigError:
        data = load_yaml(read_text_bounded(path, MAX_CONFIG_BYTES, "config file", ConfigError), str(path)) or {}
        if not isinstance(data, dict):
            raise
        return build_config(_known_fields_only(data), where=str(path))


def load_context(out_dir: str | Path, config: Config | None = None, subdir: str = "",
                 plan: str | None = None, plans: list[str] | None = None) -> ReportContext:
    """Collect one plan's matrix (default: the last plan run; rewriting report/matrix.csv), or every
    run under `runs/` for a store without plan manifests; an empty store is a one-line DataError."""
    out = Path(out_dir)
    if not out.is_dir():
        raise DataError(f"{out}: results directory not found")
    searches, regimes, seeds = None, {}, []
    if plan or plans or Layout(out).plans.is_dir():
        results = load_results(out, plan=plan, plans=plans, write=True)
        df, searches, regimes = results.frame, list(results.searches.values()), results.regimes()
        seeds = results.seeds
        if "plan" in df.columns:
            # Mixed plans stay apart in every table and figure: the plan becomes part of the backbone label.
            df["backbone"] = df["backbone"] + "@" + df["plan"]
            searches = None
        if config is None:
            config = build_config(_known_fields_only(results.config), where=f"plan {results.plans[0]}")
    else:
        df = collect_matrix(out)
    cfg = resolve_config(out, config)
    attrs = dict(df.attrs)
    df, convergence = split_convergence(df)
    df.attrs.update(attrs)
    if df.empty:
        raise DataError(f"{out}: no finished runs under runs/*/record.json "
                        f"({df.attrs.get('failed', 0)} failed) — nothing to report; run the matrix first")
    report_dir = Layout(out).report(subdir)  # resolved inside `out` (a report/ symlinked elsewhere is refused)
    ctx = ReportContext(out=out, report_dir=report_dir, config=cfg, df=df,
                        tasks=task_order(df, cfg.matrix.tasks), backbones=sorted(set(df["backbone"])),
                        sparsities=ladder(df, cfg.report.transfer_sparsities), searches=searches,
                        regimes=regimes, convergence=convergence, seeds=seeds)
    return ctx


def _written_before(manifest: Path) -> dict[str, str]:
    """{file relative to the report folder: content hash} from a previous build's bookkeeping; entries
    that are not such pairs (an older list without hashes, a damaged or hand-edited file) are dropped,
    so they can never lead to a deletion."""
    try:
        files = read_json(manifest).get("files") if manifest.exists() else None
    except (DataError, AttributeError):
        files = None
    if not isinstance(files, dict):
        return {}
    return {k: v for k, v in files.items() if isinstance(k, str) and isinstance(v, str)}


def reused_figures(ctx: ReportContext, manifest_name: str, key: str) -> list[Path] | None:
    """The figures the previous build drew from the same inputs (`key`), when every one is still the
    very file it wrote (content hash); else None (draw them). Drawing is most of a report's cost."""
    rd = ctx.report_dir
    try:
        figures = read_json(rd / manifest_name).get("figures") if (rd / manifest_name).exists() else None
    except (DataError, AttributeError):
        return None
    if not isinstance(figures, dict) or figures.get("key") != key or not isinstance(figures.get("files"), list):
        return None
    hashes, paths = _written_before(rd / manifest_name), []
    for rel in figures["files"]:
        p = rd / rel if isinstance(rel, str) else None
        if p is None or rel not in hashes or p.is_symlink() or not p.is_file() or file_hash(p) != hashes[rel]:
            return None
        paths.append(p)
    return paths


def prune_stale(ctx: ReportContext, manifest_name: str, figures: tuple[str, list[Path]] | None = None) -> None:
    """Delete files a previous build wrote that this build did not (keeps the report idempotent
    when the store changes), then record this build's files with their content hashes. A file is
    deleted only while it is the very file a build wrote (same content hash), inside the report
    folder (resolved, symlinks included) and not a symlink: bookkeeping naming anything else deletes nothing.
    `figures`: (key of their inputs, the figure files), for `reused_figures` next time."""
    rd = ctx.report_dir
    manifest = inside(rd, rd / manifest_name, "report folder")
    now = {str(p.relative_to(rd)): file_hash(p) for p in dict.fromkeys(map(Path, ctx.written))}
    for rel, digest in _written_before(manifest).items():
        p = rd / rel
        if rel in now or p.is_symlink() or not p.is_file():
            continue
        try:
            inside(rd, p, "report folder")
        except DataError:
            continue  # never ours: a rebuild deletes only inside report/
        if file_hash(p) == digest:
            p.unlink()
    book: dict = {"files": dict(sorted(now.items()))}
    if figures is not None:
        book["figures"] = {"key": figures[0], "files": sorted(str(p.relative_to(rd)) for p in figures[1])}
    atomic_write_json(manifest, book)
