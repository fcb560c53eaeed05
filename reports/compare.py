"""The one comparison rule of the suite: `report --compare METHOD` (a method against imp, omp,
pretrained_magnitude and random) and `ticketbench compare` (the leaderboard, `reports.leaderboard`)
both pair, estimate and judge through the functions here.

**Pairing, like against like.** A method's ticket found on task S meets the reference's ticket found
on S (a method that needs no source task, or found on the pre-training objectives, meets the
reference's `pretrain` ticket; a task-free reference — random, synflow — is like every source), on
the same target task, sparsity, ticket search replicate (`search_seed`) and fine-tuning seed —
transferred and in-task tickets alike (`like_source`, `paired_cells`). A source the reference has
no like ticket for is listed as unpaired, never compared with something else.

**Which tasks.** Only tasks whose dense model is clearly above chance (`reports.claims.
dense_vs_chance`: dense's 95 % interval above chance) and, where the plan checked it
(`matrix.convergence_check`), converged (`reports.claims.convergence`) are compared (`eligible`);
the others are named.

**Judging.** Per (source, task, sparsity) and per reference overall, `reports.stats.compare_paired`:
the mean paired difference with the suite's one interval (stratified cluster bootstrap within task,
floored at the task's seed noise), a tie margin of half the seed noise (or `report.tie_margin` points
when set) and win / tie / loss / inconclusive; one run per cell: not testable. Several statements in
one table are corrected together (Holm 1979, `reports.stats.holm`): a win or loss stands only when
its Holm-adjusted p-value is below 5 %.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from bench.core.errors import TicketbenchError
from bench.core.source import PRETRAIN, Source
from reports import stats
from reports.claims import convergence, dense_vs_chance, eligible_tasks, unconverged
from reports.context import load_context
from reports.store import DENSE

REFERENCES = ("imp", "omp", "pretrained_magnitude", "random")
NOT_TESTABLE = "not testable"
CELL_KEYS = stats.PAIR_KEYS  # backbone, task, sparsity, search_seed, seed
OUTCOMES = ("win", "tie", "loss", "inconclusive")


def like_source(sources: set[str], method_source: str, reference: str) -> str | None:
    """The reference's ticket that is like `method_source`: same source task; a task-free or
    pre-training source pairs with the reference's pre-training ticket. A task-free reference
    (random, synflow, …) needs no source task, so it is like every source."""
    task = Source.parse(method_source).task
    for cand in ([f"{reference}:{task}", reference] if task and task != PRETRAIN else
                 [f"{reference}:{PRETRAIN}", reference]):
        if cand in sources:
            return cand
    return None


def paired_cells(df: pd.DataFrame, method: str, reference: str) -> tuple[pd.DataFrame, list[str]]:
    """(one row per paired (source, task, sparsity, search, seed) cell: value, reference value, diff;
    the method's sources with no like reference ticket)."""
    ref_sources = set(df.loc[df["method"] == reference, "source"])
    rows, unpaired = [], []
    for source in sorted(set(df.loc[(df["method"] == method) & (df["source"] != DENSE), "source"])):
        ref = like_source(ref_sources, source, reference)
        if ref is None:
            unpaired.append(source)
            continue
        both = stats.paired(df[df["source"] == source], df[df["source"] == ref])
        rows.append(both.rename(columns={"value_a": "value", "value_b": "baseline_value"})
                    .assign(method=method, source=source, baseline_source=ref))
    cols = ["method", "source", "baseline_source"] + CELL_KEYS + ["value", "baseline_value", "diff"]
    if not rows:
        return pd.DataFrame(columns=cols), unpaired
    return pd.concat(rows, ignore_index=True)[cols], unpaired


def eligible(df: pd.DataFrame, tasks: list[str] | None = None,
             reference: pd.DataFrame | None = None) -> tuple[pd.DataFrame, str]:
    """(the rows of tasks whose dense model is clearly above chance and, where the plan checked it
    (`reference`: the dense runs at a multiple of the recipe's steps), converged, per backbone; a
    sentence naming the tasks left out and why)."""
    tasks = list(tasks) if tasks else list(dict.fromkeys(df["task"]))
    dvc = dense_vs_chance(df, tasks)
    conv = convergence(df, reference, tasks) if reference is not None and len(reference) else None
    keep, why = [], []
    for bb in sorted(set(df["backbone"])):
        ok, excluded = eligible_tasks(dvc, bb, tasks)
        if conv is not None:
            late = unconverged(conv, bb, ok)
            gone = set(conv[(conv["backbone"] == bb) & (conv["converged"] == "no")]["task"])
            ok = [t for t in ok if t not in gone]
            excluded = "; ".join(x for x in (excluded, f"dense not converged: {late}" if late else "") if x)
        keep += [(bb, t) for t in ok]
        if excluded:
            why.append((f"{bb}: " if df["backbone"].nunique() > 1 else "") + excluded)
    mask = pd.Series([(b, t) in set(keep) for b, t in zip(df["backbone"], df["task"])], index=df.index, dtype=bool)
    return df[mask], "; ".join(why)


def cell_outcomes(cells: pd.DataFrame, noise: pd.DataFrame, tie_margin: float = 0.0) -> pd.DataFrame:
    """The outcome per (source, task, sparsity) over its paired searches and seeds (`stats.compare_paired`)."""
    cols = ["method", "source", "baseline_source", "backbone", "task", "sparsity", "n_seeds", "diff", "ci_low",
            "ci_high", "margin", "outcome"]
    rows = []
    keys = ["method", "source", "baseline_source", "backbone", "task", "sparsity"]
    for key, g in cells.groupby(keys, sort=False):
        p = stats.compare_paired(g, noise, tie_margin=tie_margin)
        rows.append({**dict(zip(keys, key)), "n_seeds": p.seeds, "diff": p.mean, "ci_low": p.lo, "ci_high": p.hi,
                     "margin": p.margin, "outcome": p.outcome})
    return pd.DataFrame(rows, columns=cols)


def holm_outcomes(results: list[stats.Paired]) -> list[tuple[str, float]]:
    """(outcome, Holm-adjusted p) per statement: a win or loss whose adjusted p is not below 5 % is
    inconclusive once the family is accounted for."""
    adj, rejected = stats.holm([p.p if p.outcome in ("win", "loss") else math.nan for p in results])
    return [(("inconclusive" if p.outcome in ("win", "loss") and not r else p.outcome), a)
            for p, r, a in zip(results, rejected, adj)]


def compare_frame(df: pd.DataFrame, method: str, tie_margin: float = 0.0,
                  reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """`report --compare`: one row per (reference, source, backbone, task, sparsity): the method's
    value, the like reference ticket's, the mean paired difference (points) with its 95 % CI, the tie
    margin and the outcome (module docstring). Cells on a task whose dense model is not clearly above
    chance are listed for the record, "not testable", and count in no overall statement."""
    methods = sorted(set(df["method"]) - {DENSE})
    if method not in methods:
        raise TicketbenchError(
            f"no finished runs of method '{method}' in the store; methods present: {', '.join(methods) or 'none'}")
    noise = stats.seed_noise(df)
    d, excluded = eligible(df, reference=reference)
    ok = set(zip(d["backbone"], d["task"]))
    rows, overall = [], {}
    for ref in REFERENCES:
        if ref == method or ref not in methods:
            continue
        cells, _ = paired_cells(df, method, ref)
        if cells.empty:
            continue
        on = pd.Series([(b, t) in ok for b, t in zip(cells["backbone"], cells["task"])], index=cells.index, dtype=bool)
        overall[ref] = stats.compare_paired(cells[on], noise, tie_margin=tie_margin)
        if not on.any():
            overall[ref].reason = f"no task clearly above chance ({excluded})"
        out = cell_outcomes(cells, noise, tie_margin)
        means = cells.groupby(["source", "backbone", "task", "sparsity"], sort=False)[["value", "baseline_value"]].mean()
        for r in out.itertuples(index=False):
            v = means.loc[(r.source, r.backbone, r.task, r.sparsity)]
            counted = (r.backbone, r.task) in ok
            rows.append({"backbone": r.backbone, "task": r.task, "sparsity": r.sparsity, "reference": ref,
                         "source": r.source, "reference_source": r.baseline_source, "value": v["value"],
                         "reference_value": v["baseline_value"], "diff": r.diff,
                         "ci_low": r.ci_low if counted else math.nan, "ci_high": r.ci_high if counted else math.nan,
                         "seeds": r.n_seeds, "margin": r.margin,
                         "margin_kind": "stated tolerance" if tie_margin > 0 else "half the seed noise",
                         "outcome": r.outcome if counted else NOT_TESTABLE,
                         "note": "" if counted else "dense not clearly above chance on this task"})
    cols = ["backbone", "task", "sparsity", "reference", "source", "reference_source", "value", "reference_value",
            "diff", "ci_low", "ci_high", "seeds", "margin", "margin_kind", "outcome", "note"]
    out = pd.DataFrame(rows, columns=cols)
    out.attrs["overall"] = overall  # per reference: the paired difference over its counted cells (a `stats.Paired`)
    out.attrs["excluded"] = excluded  # the tasks left out (dense not clearly above chance) and why
    return out


def compare_summary(cmp: pd.DataFrame) -> pd.DataFrame:
    """Per reference: wins / ties / losses / inconclusive / not testable over the cells, and the
    mean paired difference over the counted cells with its 95 % CI and outcome (`compare_frame`'s
    `attrs["overall"]`), Holm-corrected across the references."""
    cols = ["reference", "wins", "ties", "losses", "inconclusive", "not_testable", "cells", "mean_diff", "ci_low",
            "ci_high", "outcome", "holm_p", "reason"]
    if cmp.empty:
        out = pd.DataFrame(columns=cols)
        out.attrs["excluded"] = cmp.attrs.get("excluded", "")
        return out
    refs = list(dict.fromkeys(cmp["reference"]))
    none = stats.Paired(0, 0, math.nan, math.nan, math.nan, math.nan, NOT_TESTABLE)
    overall = [cmp.attrs.get("overall", {}).get(r, none) for r in refs]
    rows = []
    for ref, p, (outcome, adj) in zip(refs, overall, holm_outcomes(overall)):
        o = cmp[cmp["reference"] == ref]["outcome"]
        rows.append({"reference": ref, "wins": int((o == "win").sum()), "ties": int((o == "tie").sum()),
                     "losses": int((o == "loss").sum()), "inconclusive": int((o == "inconclusive").sum()),
                     "not_testable": int((o == NOT_TESTABLE).sum()), "cells": int(len(o)), "mean_diff": p.mean,
                     "ci_low": p.lo, "ci_high": p.hi, "outcome": outcome, "holm_p": adj, "reason": p.reason})
    out = pd.DataFrame(rows, columns=cols)
    out.attrs["excluded"] = cmp.attrs.get("excluded", "")
    return out


def verdict(summary: pd.DataFrame, method: str) -> str:
    """One sentence per reference, from the overall paired difference (Holm-corrected)."""
    if summary.empty and summary.attrs.get("excluded"):
        return f"'{method}' is {NOT_TESTABLE}: no task to compare on — {summary.attrs['excluded']}."
    if summary.empty:
        return (f"'{method}' shares no (task, sparsity) cell with imp, omp, pretrained_magnitude or random on a task "
                "whose dense model is clearly above chance.")
    parts = []
    for r in summary.itertuples(index=False):
        if r.outcome == NOT_TESTABLE:
            mean = "" if math.isnan(r.mean_diff) else f" (mean {r.mean_diff:+.2f} points, descriptive only)"
            parts.append(f"{NOT_TESTABLE} against {r.reference}: {r.reason or stats.ONE_SEED}{mean}")
            continue
        word = {"win": "better than", "loss": "worse than", "tie": "level with",
                "inconclusive": "inconclusive against"}[r.outcome]
        parts.append(f"{word} {r.reference} ({r.mean_diff:+.2f} points, 95% CI [{r.ci_low:+.2f}, {r.ci_high:+.2f}]; "
                     f"{r.wins}W/{r.ties}T/{r.losses}L/{r.inconclusive}I cells)")
    return f"'{method}' is " + "; ".join(parts) + "."


def compare_method(out_dir: str | Path, method: str, config=None) -> pd.DataFrame:
    """Rank `method` against imp, omp, pretrained_magnitude and random for every task and
    sparsity (difference in points, win / tie / loss); reads the store and writes only report/matrix.csv."""
    ctx = load_context(out_dir, config)
    return compare_frame(ctx.df, method, ctx.config.report.tie_margin, ctx.convergence)
