"""`ticketbench compare OUT --methods a,b --baseline imp`: a leaderboard of pruning methods.

It compares by the suite's one rule (`reports.compare`, shared with `report --compare`): like against
like — a method's ticket found on task S meets the baseline's ticket found on S (a task-free or
pre-training source meets the baseline's `pretrain` ticket) on the same target task, sparsity, search
replicate and fine-tuning seed; a source the baseline has no like ticket for is listed as unpaired,
not ranked. Only tasks whose dense model is clearly above chance (dense's 95 % interval above
chance) and converged (where the plan ran the convergence check) are ranked; the others are named.

Per method: the area under the accuracy–sparsity curve per task (trapezoids from the dense model at
sparsity 0 over the sparsities both sides have, divided by the span: a mean score in points) with its
95 % CI, the highest strict and relaxed matching sparsity (point estimates), the mean paired
difference against the baseline with its 95 % CI and outcome, Holm-corrected across the methods
(Holm 1979: a win or loss stands only when its adjusted p-value is below 5 %), the outcome per
(source, task, sparsity) cell, and the search's cost from its `search.json`. The intervals are the
suite's one family (`reports.stats`: stratified cluster bootstrap within task over search
replicates and seeds, floored at the task's seed noise; tie margin half that noise). With one run per
cell there is no interval: the statistics say "not testable" and nothing is ranked.

`paired_cells(df, method, baseline)` pairs like with like, `leaderboard(df, methods, ...)` builds the
tables and `write_leaderboard(out, methods, ...)` writes CSV / MD / TeX, figures and a README into
`<out>/report/compare-<methods>-vs-<baseline>/`, so several comparisons live side by side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from bench.core.errors import TicketbenchError
from bench.core.io import atomic_write_text, read_json, safe_name, short_hash
from bench.core.layout import Layout
from bench.core.source import PRETRAIN, Source
from bench.cost import kept_flops
from reports import plots, stats
from reports.compare import (
    NOT_TESTABLE,
    OUTCOMES,
    cell_outcomes,
    eligible,
    holm_outcomes,
    like_source,
    paired_cells,
)
from reports.context import load_context, prune_stale
from reports.store import DENSE, read_records
from reports.tables import matching_sparsity
from reports.writers import fmt_num, write_table
from tickets import Ticket
from tickets.registry import METHODS, get_method

# ---- pairing: the suite's one rule (reports.compare) -------------------------------------------
baseline_source = like_source  # the leaderboard's name for it


def auc(curve: dict[float, float], dense: float | None = None) -> float:
    """Mean score over the sparsity range: trapezoids over the sorted sparsities (from the dense
    score at sparsity 0 when given), divided by the span. NaN with fewer than two points."""
    pts = sorted(curve.items())
    if dense is not None and dense == dense and (not pts or pts[0][0] > 0):
        pts = [(0.0, float(dense))] + pts
    if len(pts) < 2:
        return float("nan")
    xs, ys = np.array([p[0] for p in pts]), np.array([p[1] for p in pts])
    return float(np.sum((xs[1:] - xs[:-1]) * (ys[1:] + ys[:-1]) / 2) / (xs[-1] - xs[0]))


def auc_weights(sparsities, with_dense: bool = True) -> dict[float, float]:
    """The weight of each point's score in `auc` (trapezoids / span); key 0.0 is dense's when
    `with_dense`. Linear, so the AUC's interval follows from the cells' (`auc_estimate`)."""
    xs = sorted(float(s) for s in sparsities)
    if with_dense and (not xs or xs[0] > 0):
        xs = [0.0] + xs
    if len(xs) < 2:
        return {}
    span = xs[-1] - xs[0]
    w = {x: 0.0 for x in xs}
    for x0, x1 in zip(xs[:-1], xs[1:]):
        w[x0] += (x1 - x0) / 2 / span
        w[x1] += (x1 - x0) / 2 / span
    return w


def auc_estimate(rows: pd.DataFrame, sparsities, dense: stats.Estimate | None, floor_sd: float) -> stats.Estimate:
    """`auc` of one source's runs on one task over `sparsities` (from dense's score at 0 when given)
    with its 95 % CI: the suite's interval of a weighted sum of cell means, dense's error added."""
    w = auc_weights(sparsities, with_dense=dense is not None)
    if not w:
        return stats.NO_RUNS
    part = rows[rows["sparsity"].round(6).isin([round(x, 6) for x in w if x > 0 or dense is None])]
    est = stats.estimate(part, cell="sparsity", weights={k: v for k, v in w.items() if k > 0 or dense is None},
                         floor_sd=floor_sd)
    if dense is None or 0.0 not in w:
        return est
    return stats.combine([(1.0, est), (w[0.0], dense)])


# ---- the search's cost ----------------------------------------------------------------------------
COST_FIELDS = ("search_s", "train_steps", "score_calls", "flow_calls", "calib_samples")


def _search_logs(out_dir: str | Path, sources) -> dict[str, set]:
    """Per source: the `search.json` of the searches its runs' tickets came from
    (`tickets/<search id>/search.json`, or beside the tickets in stores written before per-search
    ids), else every stored one of that source."""
    out = Path(out_dir)
    used: dict[str, set] = {}
    for rec in read_records(out)[0]:
        path = (rec.get("ticket") or {}).get("path")
        if path:
            parts = Path(path).parts  # …/tickets/<hash>/<method>__<task>/sparsity-….safetensors
            if len(parts) >= 4 and parts[-4] == Layout(out).tickets.name:
                used.setdefault(str(rec["source"]), set()).add(Layout(out).search(parts[-3]) / parts[-2])
    logs = {}
    for source in sources:
        dirs = used.get(source) or set(Layout(out).tickets.glob(f"*/{Source.parse(source).key}"))
        logs[source] = {f for d in dirs for f in (Layout.search_log(d), Layout.search_log(d.parent)) if f.exists()}
    return logs


def search_costs(out_dir: str | Path, sources) -> dict[str, dict]:
    """Per source: wall seconds, training steps, gradient / flow evaluations and calibration samples of
    its search (`_search_logs`)."""
    costs = {}
    for source, logs in _search_logs(out_dir, sources).items():
        total = {f: 0.0 for f in COST_FIELDS}
        found = False
        for f in sorted(logs):
            found = True
            log = read_json(f)
            cost = log.get("cost") or {}
            total["search_s"] += float(log.get("seconds") or 0.0)
            for k in COST_FIELDS[1:]:
                total[k] += float(cost.get(k) or 0)
            if not cost:  # written before costs were recorded: count the training rounds' steps
                total["train_steps"] += sum(float((t.get("train_metrics") or {}).get("steps") or 0)
                                            for t in log.get("tickets", []))
        costs[source] = total if found else {f: float("nan") for f in COST_FIELDS}
    return costs


def calibration_of(log: dict) -> str:
    """'vqa train split, 128 samples, seed 0' for a search that read calibration data ('…, 8 gradient
    batches' for one that read source-loss gradients); '' otherwise."""
    cost = log.get("cost") or {}
    n, batches = int(cost.get("calib_samples") or 0), int(cost.get("score_calls") or 0)
    if not n and not batches:
        return ""
    task = log.get("source_task")
    data = "pre-training corpus" if task in (None, "", PRETRAIN) else f"{task} train split"
    if not n:  # gradient-based (SNIP, GraSP, the Fisher mask): seeded batches of the source
        return f"{data}, {batches} gradient batches"
    seed = (log.get("hparams") or {}).get("calib_seed")
    return f"{data}, {n} samples" + (f", seed {seed}" if seed is not None else "")


def _ticket_files(log_file: Path) -> list[Path]:
    """The ticket files of one search: beside its `search.json`, or (per-search-id layout) one folder down."""
    d = log_file.parent
    return sorted([*d.glob("sparsity-*.safetensors"), *d.glob("*/sparsity-*.safetensors")])


def search_facts(out_dir: str | Path, sources) -> dict[str, dict]:
    """Per source: its tickets' pattern (structured when they remove whole heads and neurons), its
    search's peak memory (MB, the process's resident set; NaN for searches recorded before either
    was), its calibration data, and per ticket sparsity the theoretical FLOPs kept (`bench.cost.
    kept_flops`, read from the ticket files) and the structured latency the search measured."""
    facts = {}
    for source, logs in _search_logs(out_dir, sources).items():
        recs = [(f, read_json(f)) for f in sorted(logs)]
        peaks = [float((r.get("cost") or {}).get("peak_rss_mb", "nan")) for _, r in recs]
        pattern = {str(r.get("pattern") or "unstructured") for _, r in recs}
        method = Source.parse(source).method
        if method in METHODS.names() and getattr(get_method(method), "structured", False):
            pattern = {"structured"}
        flops: dict[float, list] = {}
        latency = [r["latency"] for _, r in recs if isinstance(r.get("latency"), dict)]
        for f, r in recs:
            recorded = [t for t in r.get("tickets") or [] if isinstance(t.get("flops_kept"), (int, float))]
            for t in recorded:  # recorded by the search; else read from the ticket files (older stores)
                flops.setdefault(round(float(t["target"]), 6), []).append(float(t["flops_kept"]))
            for path in [] if recorded else _ticket_files(f):
                t = Ticket.load(path)
                try:
                    kept = kept_flops(t.backbone, t.masks)
                except TicketbenchError:  # a backbone the cost model cannot read (a plugin's): no FLOPs column
                    continue
                flops.setdefault(round(float(t.metadata.get("target_sparsity", t.sparsity)), 6), []).append(kept)
        facts[source] = {"pattern": "/".join(sorted(pattern)), "peak_rss_mb": max(peaks) if peaks else float("nan"),
                         "calibration": "; ".join(sorted({c for c in (calibration_of(r) for _, r in recs) if c})),
                         "flops": {s: float(np.mean(v)) for s, v in sorted(flops.items())},
                         "latency": latency[0] if latency else None}
    return facts


def evaluated_as(method: str) -> str:
    """How the matrix evaluates `method`'s tickets: its own output, or — for methods whose paper
    publishes a trained network or reconstructed weights — "mask of X, rewound to θ0"."""
    m = get_method(method) if method in METHODS.names() else None
    what = getattr(m, "publishes", None)
    return f"mask of {method}, rewound to θ0 (its paper publishes {what})" if what else "its ticket on θ0"


def _flops_text(ss: list, facts: dict) -> str:
    per: dict[float, list] = {}
    for s in ss:
        for sp, v in facts[s]["flops"].items():
            per.setdefault(sp, []).append(v)
    return ", ".join(f"{100 * sp:g}%: {100 * np.mean(v):.0f}%" for sp, v in sorted(per.items())) or "–"


def _latency_text(ss: list, facts: dict) -> str:
    lat = next((facts[s]["latency"] for s in ss if facts[s].get("latency")), None)
    if not lat:
        return "–"
    return "; ".join(f"{100 * float(r['sparsity']):g}%: ×{float(r['dense_ms']) / float(r['ticket_ms']):.2f}"
                     for r in lat.get("tickets", [])) + f" ({lat.get('device', 'device not recorded')})"


def with_search_facts(summary: pd.DataFrame, facts: dict[str, dict]) -> pd.DataFrame:
    """The leaderboard's summary with per method: `evaluated_as`, `pattern`, `calibration`, `flops`
    (theoretical FLOPs kept per sparsity), `latency` (structured tickets: speed-up over dense on the
    named device) and `peak_rss_mb` (the largest over its sources)."""
    out = summary.copy()
    srcs = [[s for s in str(v).split(", ") if s in facts] for v in out["sources"]]
    out["evaluated_as"] = [evaluated_as(m) for m in out["method"]]
    out["pattern"] = ["/".join(sorted({facts[s]["pattern"] for s in ss})) or "–" for ss in srcs]
    out["calibration"] = ["; ".join(sorted({facts[s]["calibration"] for s in ss} - {""})) or "none" for ss in srcs]
    out["flops"] = [_flops_text(ss, facts) for ss in srcs]
    out["latency"] = [_latency_text(ss, facts) for ss in srcs]
    out["peak_rss_mb"] = [max((facts[s]["peak_rss_mb"] for s in ss), default=float("nan")) for ss in srcs]
    return out


# ---- without fine-tuning ---------------------------------------------------------------------------
def no_finetune_frame(out_dir: str | Path) -> pd.DataFrame:
    """One row per done run that recorded its model scored before fine-tuning (`no_finetune`: tasks
    whose head starts from θ0's): source, backbone, task, sparsity, value, weights (θ0 ⊙ m or the
    method's reconstructed weights)."""
    rows = []
    for rec in read_records(out_dir)[0]:
        nf = rec.get("no_finetune")
        if isinstance(nf, dict) and isinstance(nf.get("value"), (int, float)):
            rows.append({"run_id": str(rec.get("run_id") or rec["_path"].parent.name), "source": str(rec["source"]),
                         "backbone": str(rec["backbone"]), "task": str(rec["task"]),
                         "sparsity": round(float(rec["sparsity"]), 6), "value": float(nf["value"]),
                         "weights": str(nf.get("weights", ""))})
    return pd.DataFrame(rows, columns=NO_FINETUNE_COLUMNS)


NO_FINETUNE_COLUMNS = ["run_id", "source", "backbone", "task", "sparsity", "value", "weights"]


def no_finetune_frame_empty() -> pd.DataFrame:
    return pd.DataFrame(columns=NO_FINETUNE_COLUMNS)


def with_no_finetune(per_task: pd.DataFrame, nf: pd.DataFrame) -> pd.DataFrame:
    """`auc_no_finetune` per (method, source, task): the AUC over the same sparsities of the pruned
    model scored without fine-tuning (from dense θ0's own score at 0 when recorded); NaN where the
    task's head does not start from θ0 (nothing to score without training). A point estimate: the
    score depends on no fine-tuning seed."""
    out = per_task.copy()

    def one(source: str, r) -> float:
        part = nf[(nf["source"] == source) & (nf["backbone"] == r.backbone) & (nf["task"] == r.task)]
        dense = nf[(nf["source"] == DENSE) & (nf["backbone"] == r.backbone) & (nf["task"] == r.task)]["value"]
        wanted = {round(float(x.rstrip("%")) / 100, 6) for x in str(r.sparsities).split(", ") if x}
        curve = part[part["sparsity"].isin(wanted)].groupby("sparsity")["value"].mean().to_dict()
        return auc(curve, float(dense.mean()) if len(dense) else None) if curve else float("nan")

    rows = list(out.itertuples(index=False))
    out["auc_no_finetune"] = [one(r.source, r) for r in rows]
    out["baseline_auc_no_finetune"] = [one(r.baseline_source, r) for r in rows]
    return out


# ---- the leaderboard ------------------------------------------------------------------------------
@dataclass
class Leaderboard:
    """summary: one row per method (the baseline first); per_task: AUC and matching sparsity per
    (method, source, task) beside the like baseline ticket's; outcomes: per (source, task, sparsity);
    cells: every paired (source, task, sparsity, seed); noise: seed noise per task."""

    methods: list[str]
    baseline: str
    summary: pd.DataFrame
    per_task: pd.DataFrame
    outcomes: pd.DataFrame
    cells: pd.DataFrame
    noise: pd.DataFrame
    unpaired: dict = field(default_factory=dict)
    testable: bool = False
    excluded: str = ""  # the tasks not ranked (dense not clearly above chance) and why

    def verdicts(self) -> list[str]:
        return [f"{r.method}: {r.verdict}" for r in self.summary.itertuples(index=False) if r.method != self.baseline]


def _curves(df: pd.DataFrame, source: str, bb: str, task: str) -> dict[float, float]:
    part = df[(df["source"] == source) & (df["backbone"] == bb) & (df["task"] == task)]
    return part.groupby("sparsity")["value"].mean().to_dict()


def _per_task(df: pd.DataFrame, cells: pd.DataFrame, relaxed: float, noise: pd.DataFrame) -> pd.DataFrame:
    """Per (method, source, task): AUC of the method's and of the like baseline ticket's curves over
    the sparsities both have (from dense at 0), their paired difference, each with its 95 % CI, and
    the matching sparsities."""
    match = matching_sparsity(df, sorted(set(df["task"])), relaxed)
    match = match.set_index(["backbone", "task", "source"]) if not match.empty else match
    rows, ests = [], []
    pairs = cells[["method", "source", "baseline_source", "backbone", "task"]].drop_duplicates()
    for r in pairs.itertuples(index=False):
        mine, base = _curves(df, r.source, r.backbone, r.task), _curves(df, r.baseline_source, r.backbone, r.task)
        common = sorted(set(mine) & set(base))
        floor = stats.noise_of(noise, r.backbone, r.task)
        dense = stats.dense_estimate(df, r.backbone, r.task, noise)
        dense = None if math.isnan(dense.mean) else dense
        on = (df["backbone"] == r.backbone) & (df["task"] == r.task)
        a = auc_estimate(df[on & (df["source"] == r.source)], common, dense, floor)
        b = auc_estimate(df[on & (df["source"] == r.baseline_source)], common, dense, floor)
        mine_cells = cells[(cells["source"] == r.source) & (cells["backbone"] == r.backbone) & (cells["task"] == r.task)]
        w = auc_weights(common, with_dense=dense is not None)
        diff = stats.estimate(mine_cells, cell="sparsity", weights={k: v for k, v in w.items() if k > 0},
                              floor_sd=floor, value="diff") if w else stats.NO_RUNS
        row = {"method": r.method, "source": r.source, "baseline_source": r.baseline_source,
               "backbone": r.backbone, "task": r.task, "sparsities": ", ".join(f"{100 * s:g}%" for s in common),
               "auc": a.mean, "auc_low": a.lo, "auc_high": a.hi,
               "baseline_auc": b.mean, "baseline_auc_low": b.lo, "baseline_auc_high": b.hi,
               "auc_diff": diff.mean, "auc_diff_low": diff.lo, "auc_diff_high": diff.hi}
        for side, src in (("", r.source), ("baseline_", r.baseline_source)):
            key = (r.backbone, r.task, src)
            has = not match.empty and key in match.index
            row[f"{side}strict_sparsity"] = match.loc[key, "strict_sparsity"] if has else float("nan")
            row[f"{side}relaxed_sparsity"] = match.loc[key, "relaxed_sparsity"] if has else float("nan")
        rows.append(row)
        ests.append((a, b))
    cols = ["method", "source", "baseline_source", "backbone", "task", "sparsities", "auc", "auc_low", "auc_high",
            "baseline_auc", "baseline_auc_low", "baseline_auc_high", "auc_diff", "auc_diff_low", "auc_diff_high",
            "strict_sparsity", "baseline_strict_sparsity", "relaxed_sparsity", "baseline_relaxed_sparsity"]
    out = pd.DataFrame(rows, columns=cols)
    out.attrs["estimates"] = ests
    return out


def _verdict(p: stats.Paired, outcome: str, holm_p: float, baseline: str) -> str:
    if p.cells == 0:
        return f"{NOT_TESTABLE}: no cell paired with {baseline}"
    if outcome == NOT_TESTABLE:
        return (f"{NOT_TESTABLE}: {p.reason or stats.ONE_SEED} (mean difference {p.mean:+.2f} points, "
                "descriptive only); run two seeds or more")
    word = {"win": f"better than {baseline}", "loss": f"worse than {baseline}",
            "tie": f"level with {baseline} (within ±{p.margin:.2f}, half the seed noise)",
            "inconclusive": f"inconclusive against {baseline}"}[outcome]
    held = " (not significant after Holm's correction)" if outcome == "inconclusive" and p.outcome in ("win", "loss") else ""
    return f"{word}{held}: {p.mean:+.2f} points, 95 % CI [{p.lo:+.2f}, {p.hi:+.2f}], Holm p {holm_p:.3g}" if not math.isnan(
        holm_p) else f"{word}{held}: {p.mean:+.2f} points, 95 % CI [{p.lo:+.2f}, {p.hi:+.2f}]"


def leaderboard(df: pd.DataFrame, methods: list[str], baseline: str = "imp", *, relaxed: float = 0.99,
                costs: dict | None = None, tasks: list[str] | None = None,
                no_finetune: pd.DataFrame | None = None, reference: pd.DataFrame | None = None) -> Leaderboard:
    """The leaderboard of `methods` against `baseline` from the matrix DataFrame (`collect_matrix`):
    only tasks whose dense model is clearly above chance and converged (where `reference`, the dense
    runs at more steps, checks it) are ranked (`reports.compare.eligible`),
    each method's overall outcome is Holm-corrected across the methods, every AUC has its 95 % CI."""
    present = sorted(set(df["method"]) - {DENSE})
    for m in [baseline, *methods]:
        if m not in present:
            raise TicketbenchError(f"no finished runs of method '{m}' in the store; methods present: "
                                   f"{', '.join(present) or 'none'}")
    methods = [m for m in dict.fromkeys(methods) if m != baseline]
    if not methods:
        raise TicketbenchError(f"compare: give at least one method other than the baseline '{baseline}'")
    noise = stats.seed_noise(df)
    full = df
    df, excluded = eligible(df, tasks, reference)
    parts, unpaired = [], {}
    for m in methods:
        c, u = paired_cells(df, m, baseline)
        parts.append(c)
        if u:
            unpaired[m] = u
    cells = pd.concat([p for p in parts if len(p)], ignore_index=True) if any(len(p) for p in parts) else parts[0]
    outcomes = cell_outcomes(cells, noise)
    per_task = _per_task(df, cells, relaxed, noise)
    ests = per_task.attrs.get("estimates", [])
    per_task = with_no_finetune(per_task, no_finetune if no_finetune is not None else no_finetune_frame_empty())
    per_task.attrs["estimates"] = ests
    costs = costs or {}
    overall = {m: stats.compare_paired(cells[cells["method"] == m], noise) for m in methods}
    judged = dict(zip(methods, holm_outcomes([overall[m] for m in methods])))
    rows = []
    # a method's sources (and their search cost) whether or not their tasks are ranked; the baseline's: those
    # like them
    own = {m: sorted(set(full.loc[(full["method"] == m) & (full["source"] != DENSE), "source"]) - set(unpaired.get(m, [])))
           for m in methods}
    base_all = set(full.loc[full["method"] == baseline, "source"])
    base_sources = sorted({like_source(base_all, src, baseline) for m in methods for src in own[m]} - {None}) or sorted(
        base_all)
    ests = per_task.attrs.get("estimates", [])
    for m in [baseline] + methods:
        is_base = m == baseline
        mine = cells[cells["method"] == m]
        sel = (per_task["method"] == m).to_numpy()
        oc = outcomes[outcomes["method"] == m]
        srcs = base_sources if is_base else own[m]
        p = overall.get(m) or stats.compare_paired(mine, noise)
        outcome, holm_p = ("baseline", math.nan) if is_base else judged[m]
        testable = not is_base and outcome != NOT_TESTABLE
        if is_base:
            keep = ~per_task.duplicated(["baseline_source", "backbone", "task"]).to_numpy()
            auc_e = stats.over_tasks([e[1] for e, k in zip(ests, keep) if k])
            strict, rel = per_task["baseline_strict_sparsity"][keep], per_task["baseline_relaxed_sparsity"][keep]
        else:
            auc_e = stats.over_tasks([e[0] for e, k in zip(ests, sel) if k])
            strict, rel = per_task["strict_sparsity"][sel], per_task["relaxed_sparsity"][sel]
        cost = {f: sum(costs.get(s, {}).get(f, float("nan")) for s in srcs) for f in COST_FIELDS}
        nf = per_task["baseline_auc_no_finetune"][keep] if is_base else per_task["auc_no_finetune"][sel]
        counts = {o: int((oc["outcome"] == o).sum()) if testable else float("nan") for o in OUTCOMES}
        rows.append({
            "method": m, "sources": ", ".join(srcs), "cells": p.cells, "seeds": p.seeds,
            "auc": auc_e.mean, "auc_low": auc_e.lo, "auc_high": auc_e.hi,
            "auc_no_finetune": float(nf.mean()) if nf.notna().any() else float("nan"),
            # no sparsity matches → 0, so a method that never matches is not dropped from the mean
            "strict_sparsity": float(strict.fillna(0).mean()) if len(strict) and strict.notna().any() else float("nan"),
            "relaxed_sparsity": float(rel.fillna(0).mean()) if len(rel) else float("nan"),
            "mean_diff": 0.0 if is_base else p.mean, "ci_low": p.lo if testable else float("nan"),
            "ci_high": p.hi if testable else float("nan"), "outcome": outcome, "holm_p": holm_p,
            "wins": counts["win"], "ties": counts["tie"], "losses": counts["loss"],
            "inconclusive": counts["inconclusive"], **cost,
            "verdict": "baseline" if is_base else _verdict(p, outcome, holm_p, baseline),
        })
    summary = pd.DataFrame(rows)
    ranked = (summary["method"] == baseline) | summary["ci_low"].notna()
    any_testable = bool((ranked & (summary["method"] != baseline)).any())
    # Rank by the mean paired difference (the baseline at 0) among the testable methods only: a method
    # with one seed per cell is listed after them, 'not testable', never ranked.
    order = summary["mean_diff"].where(ranked).rank(ascending=False, method="min")
    summary.insert(0, "rank", [str(int(r)) if any_testable and r == r else NOT_TESTABLE for r in order])
    summary = summary.iloc[order.fillna(len(summary) + 1).argsort(kind="stable")].reset_index(drop=True)
    per_task.attrs.pop("estimates", None)
    lb = Leaderboard(methods, baseline, summary, per_task, outcomes, cells, noise, unpaired, any_testable)
    lb.excluded = excluded
    return lb


# ---- writing ------------------------------------------------------------------------------------
# The leaderboard's Markdown / TeX headers where the CSV's names would be ambiguous to a reviewer.
HEADERS = {"auc": "AUC after fine-tuning (mask fixed)", "auc_no_finetune": "AUC without fine-tuning",
           "flops": "FLOPs kept", "peak_rss_mb": "peak memory (MB)", "search_s": "pruning wall (s)",
           "train_steps": "pruning train steps", "calib_samples": "calibration samples"}


def compare_dir_name(methods: list[str], baseline: str) -> str:
    for m in [*methods, baseline]:
        safe_name(m, "method")
    name = f"compare-{'-'.join(methods)}-vs-{baseline}"
    if len(name) > 96:  # many methods: a readable prefix and a hash of the full list
        name = f"compare-{'-'.join(methods[:2])}-and-{len(methods) - 2}-more-{short_hash(methods)}-vs-{baseline}"
    return name


def _display(df: pd.DataFrame, pct_cols=(), digits: int = 2) -> pd.DataFrame:
    out = df.copy()
    for c in out.columns:
        if c in pct_cols:
            out[c] = out[c].map(lambda v: "–" if v != v else f"{100 * v:.0f}%")
        elif out[c].dtype.kind == "f":
            out[c] = out[c].map(lambda v: fmt_num(v, digits))
    return out


def plot_leaderboard(lb: Leaderboard, stem: Path) -> list[Path]:
    """Left: mean paired difference against the baseline with its 95 % CI per method (points only,
    marked untestable, with one seed). Right: AUC difference per task and method."""
    plt = plots.plt
    s = lb.summary[lb.summary["method"] != lb.baseline].iloc[::-1]  # best at the top
    y = np.arange(len(s))
    fig, (ax, bx) = plt.subplots(1, 2, figsize=(11, 0.45 * len(s) + 2.2), sharey=True,
                                 gridspec_kw={"width_ratios": [1, 1.3]})
    ok = s["ci_low"].notna().to_numpy()
    ax.axvline(0, color="#444", lw=1)
    if ok.any():
        m = s["mean_diff"][ok]
        ax.errorbar(m, y[ok], xerr=[m - s["ci_low"][ok], s["ci_high"][ok] - m], fmt="o", color="#1f77b4",
                    capsize=4, label="mean, 95 % bootstrap CI")
    if (~ok).any():
        ax.plot(s["mean_diff"][~ok], y[~ok], "x", color="#7f7f7f", label=f"{NOT_TESTABLE} (one seed)")
    ax.set_yticks(y, s["method"])
    ax.set_xlabel(f"paired difference vs {lb.baseline} (points)")
    ax.legend(loc="best", fontsize=8)
    pt = lb.per_task.groupby(["method", "task"])["auc_diff"].mean().unstack("task").reindex(s["method"])
    width = 0.8 / max(len(pt.columns), 1)
    for i, task in enumerate(pt.columns):
        bx.barh(y + (i - (len(pt.columns) - 1) / 2) * width, pt[task].fillna(0), height=width, label=task)
    bx.axvline(0, color="#444", lw=1)
    if len(pt.columns):
        bx.legend(loc="best", fontsize=8, title="target task")
    bx.set_xlabel(f"AUC minus {lb.baseline}'s (points)")
    fig.suptitle(f"vs {lb.baseline}, like against like", fontsize=11)
    fig.tight_layout()
    return plots.save(fig, stem)


def plot_curves(lb: Leaderboard, df: pd.DataFrame, stem: Path) -> list[Path]:
    """Accuracy against sparsity per target task over the paired cells: one line per method (mean over
    its sources and seeds), the like baseline tickets dashed, the dense score dotted."""
    plt = plots.plt
    tasks = sorted(set(lb.cells["task"]))
    fig, axes = plt.subplots(1, max(len(tasks), 1), figsize=(4.2 * max(len(tasks), 1), 3.4), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, task in zip(axes[0], tasks):
        part = lb.cells[lb.cells["task"] == task]
        for i, m in enumerate(lb.methods):
            g = part[part["method"] == m].groupby("sparsity")["value"].mean()
            if len(g):
                ax.plot(100 * g.index, g.values, marker="o", ms=3, color=colours(i % 10), label=m)
        base = part.drop_duplicates(["baseline_source", "sparsity", "seed"])
        for b, g in base.groupby("baseline_source"):
            curve = g.groupby("sparsity")["baseline_value"].mean()
            ax.plot(100 * curve.index, curve.values, "--", color="black", lw=1.2, label=b)
        dense = df[(df["source"] == DENSE) & (df["task"] == task)]["value"]
        if len(dense):
            ax.axhline(dense.mean(), color="grey", ls=":", lw=1, label="dense")
        ax.set_title(task)
        ax.set_xlabel("sparsity (%)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel("score (points)")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.tight_layout()
    fig.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0.0), ncol=min(6, max(len(labels), 1)),
               frameon=False, fontsize=8)
    return plots.save(fig, stem)


def write_leaderboard(out_dir: str | Path, methods: list[str], baseline: str = "imp", config=None,
                      plan: str | None = None) -> Path:
    """Write the leaderboard into `<out>/report/compare-<methods>-vs-<baseline>/` (tables as CSV, MD
    and TeX, `leaderboard.png/pdf`, README.md) from one plan's runs (default: the last plan run);
    other comparisons' directories are left alone."""
    name = compare_dir_name(list(methods), baseline)
    ctx = load_context(out_dir, config, subdir=name, plan=plan)
    rd = ctx.report_dir
    sources = sorted(set(ctx.df.loc[ctx.df["method"].isin([baseline, *methods]), "source"]))
    nf = no_finetune_frame(ctx.out)  # this plan's runs only
    lb = leaderboard(ctx.df, list(methods), baseline, relaxed=ctx.config.report.relaxed,
                     costs=search_costs(ctx.out, sources), no_finetune=nf[nf["run_id"].isin(set(ctx.df["run_id"]))],
                     reference=ctx.convergence)
    lb.summary = with_search_facts(lb.summary, search_facts(ctx.out, sources))  # pattern, FLOPs, calibration, …
    rd.mkdir(parents=True, exist_ok=True)
    sp = ("strict_sparsity", "relaxed_sparsity")
    ctx.add(write_table(rd, "leaderboard", lb.summary, _display(lb.summary, sp).rename(columns=HEADERS),
                        f"{', '.join(lb.methods)} vs {baseline}: mean paired difference (points) over the paired "
                        "(task, sparsity, search, seed) cells with its 95 % CI and outcome (tie margin: half the seed "
                        "noise; Holm-corrected across methods); win/tie/loss/inconclusive per (source, task, "
                        "sparsity); AUC = mean score over the sparsity range, with its 95 % CI; matching sparsity "
                        "averaged over tasks (0 = none matches); search cost. Only tasks whose dense model is "
                        "clearly above chance and converged (where checked) are ranked. 'AUC after fine-tuning' is the matrix's score (θ0 ⊙ m "
                        "fine-tuned with the mask fixed); 'AUC without fine-tuning' scores the pruned model "
                        "before any training (θ0 ⊙ m, or the method's reconstructed weights), only where the "
                        "task's head starts from θ0's ('–' elsewhere). FLOPs: theoretical forward FLOPs per "
                        "token kept, % of dense, per sparsity (pruned multiply-adds skipped; attention scores "
                        "not counted). Latency: structured tickets only, speed-up of the exported smaller "
                        "model over dense on the named device."))
    pt_sp = sp + ("baseline_strict_sparsity", "baseline_relaxed_sparsity")
    ctx.add(write_table(rd, "per_task", lb.per_task, _display(lb.per_task, pt_sp),
                        "Per method, source and target task, beside the like baseline ticket."))
    ctx.add(write_table(rd, "outcomes", lb.outcomes, _display(lb.outcomes),
                        "Per (source, task, sparsity): mean paired difference over searches and seeds, its 95 % CI "
                        "(floored at the seed noise), the tie margin and the outcome."))
    ctx.add(write_table(rd, "seed_noise", lb.noise, _display(lb.noise),
                        "Seed noise per task (points): dense's own std, the std pooled over every cell with two "
                        "seeds or more, and the larger of the two, the noise the statistics use."))
    ctx.add({"csv": atomic_write_text(rd / "cells.csv", lb.cells.to_csv(index=False))})
    ctx.add(plot_leaderboard(lb, rd / "leaderboard"))
    ctx.add(plot_curves(lb, ctx.df, rd / "curves"))
    lines = [f"# {', '.join(lb.methods)} vs {baseline}", "",
             *[f"- {v}" for v in lb.verdicts()], "",
             "![leaderboard](leaderboard.png)", "", "![accuracy against sparsity](curves.png)", "",
             "Tables: [leaderboard](leaderboard.md), [per task](per_task.md), [per cell](outcomes.md), "
             "[seed noise](seed_noise.md); every paired run: `cells.csv`.", ""]
    rewound = [m for m in lb.methods if evaluated_as(m).startswith("mask of")]
    if rewound:
        lines += ["Evaluated as their masks rewound to θ0, not as the trained network or reconstructed weights their "
                  f"papers publish: {', '.join(rewound)} (column `evaluated_as`).", ""]
    if lb.excluded:
        lines += [f"Tasks not ranked (dense model not clearly above chance, or not converged): {lb.excluded}", ""]
    if lb.unpaired:
        lines += ["Not ranked (no like baseline ticket): " +
                  "; ".join(f"{m}: {', '.join(u)}" for m, u in lb.unpaired.items()), ""]
    if not lb.testable:
        lines += [f"With one run per cell there is no interval: win/tie/loss and the CI are "
                  f"'{NOT_TESTABLE}' and nothing is ranked.", ""]
    ctx.add([atomic_write_text(rd / "README.md", "\n".join(lines))])
    prune_stale(ctx, ".compare-files.json")
    return rd
