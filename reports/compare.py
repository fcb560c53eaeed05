"""`--compare METHOD`: is a new pruning method better than IMP, OMP, pre-trained magnitude and random?

A method can have several sources (one ticket per source task). For a target task the method is
represented by its ticket found on that task, else its pre-training ticket, else its only source;
when none of these applies (several other-task tickets and none of its own) the cell is skipped.
Like is compared against like: a reference is represented by its ticket from the *same source task*
as the method's when it has one (a transferred snip:vqa ticket on GQA meets imp:vqa, not imp:gqa),
else by its own representative. `ticketbench compare` (reports/leaderboard.py) adds the statistics.
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from bench.core.errors import TicketbenchError
from reports.context import load_context
from reports.store import DENSE

REFERENCES = ("imp", "omp", "pretrained_magnitude", "random")
# With one seed there is no std: without a stated report.tie_margin the cell is not testable (no
# fixed margin pretends to know the seed noise; `ticketbench compare` pools it over the store).
NOT_TESTABLE = "not testable"


def method_values(df: pd.DataFrame, method: str) -> pd.DataFrame:
    """Per (backbone, task, sparsity): the representative source of `method`, mean, std, seeds."""
    part = df[(df["method"] == method) & (df["source"] != DENSE)]
    rows = []
    for (bb, task, sp), g in part.groupby(["backbone", "task", "sparsity"], sort=True):
        sources = sorted(set(g["source"]))
        own = [s for s in sources if s.partition(":")[2] == task]
        pre = [s for s in sources if s.partition(":")[2] == "pretrain"]
        pick = own or pre or (sources if len(sources) == 1 else [])
        if not pick:
            continue
        v = g[g["source"] == pick[0]]["value"]
        rows.append({"backbone": bb, "task": task, "sparsity": sp, "source": pick[0],
                     "mean": v.mean(), "std": v.std(), "n_seeds": v.size})
    return pd.DataFrame(rows, columns=["backbone", "task", "sparsity", "source", "mean", "std", "n_seeds"])


def _like_reference(df: pd.DataFrame, ref: str, cand: pd.DataFrame) -> pd.DataFrame:
    """The reference's values per candidate cell, from its ticket of the candidate's source task when
    it has one, else from its representative source (`method_values`)."""
    rep = method_values(df, ref).set_index(["backbone", "task", "sparsity"])
    part = df[(df["method"] == ref) & (df["source"] != DENSE)]
    rows = []
    for r in cand.itertuples(index=False):
        like = f"{ref}:{r.source.partition(':')[2]}" if ":" in r.source else None
        v = part[(part["source"] == like) & (part["backbone"] == r.backbone) & (part["task"] == r.task)
                 & (part["sparsity"] == r.sparsity)]["value"] if like else pd.Series(dtype=float)
        if len(v):
            rows.append({"backbone": r.backbone, "task": r.task, "sparsity": r.sparsity, "source": like,
                         "mean": v.mean(), "std": v.std(), "n_seeds": v.size})
        elif (r.backbone, r.task, r.sparsity) in rep.index:
            rows.append({"backbone": r.backbone, "task": r.task, "sparsity": r.sparsity,
                         **rep.loc[(r.backbone, r.task, r.sparsity)].to_dict()})
    return pd.DataFrame(rows, columns=["backbone", "task", "sparsity", "source", "mean", "std", "n_seeds"])


def compare_frame(df: pd.DataFrame, method: str, tie_margin: float = 0.0) -> pd.DataFrame:
    """One row per (backbone, task, sparsity, reference): difference in points (method − reference)
    and the outcome win / tie / loss. Tie margin: `tie_margin` points when > 0, else one std over
    seeds (the larger of the two sides' stds); with one seed and no stated margin, 'not testable'."""
    methods = sorted(set(df["method"]) - {DENSE})
    if method not in methods:
        raise TicketbenchError(
            f"no finished runs of method '{method}' in the store; methods present: {', '.join(methods) or 'none'}")
    cand = method_values(df, method)
    rows = []
    for ref in REFERENCES:
        if ref == method:
            continue
        refv = _like_reference(df, ref, cand)
        both = cand.merge(refv, on=["backbone", "task", "sparsity"], suffixes=("", "_ref"))
        for r in both.itertuples(index=False):
            if tie_margin > 0:
                margin, kind = tie_margin, "stated tolerance"
            else:
                stds = [x for x in (r.std, r.std_ref) if not (x is None or math.isnan(x))]
                if stds:
                    margin, kind = max(stds), "1 std over seeds"
                else:
                    margin, kind = float("nan"), "1 seed: not testable"
            diff = r.mean - r.mean_ref
            outcome = (NOT_TESTABLE if margin != margin else
                       "tie" if abs(diff) <= margin + 1e-9 else ("win" if diff > 0 else "loss"))
            rows.append({"backbone": r.backbone, "task": r.task, "sparsity": r.sparsity, "reference": ref,
                         "source": r.source, "reference_source": r.source_ref,
                         "value": r.mean, "reference_value": r.mean_ref, "diff": diff,
                         "margin": margin, "margin_kind": kind, "outcome": outcome})
    return pd.DataFrame(rows, columns=["backbone", "task", "sparsity", "reference", "source", "reference_source",
                                       "value", "reference_value", "diff", "margin", "margin_kind", "outcome"])


def compare_summary(cmp: pd.DataFrame) -> pd.DataFrame:
    """Wins / ties / losses and the mean difference per reference method."""
    if cmp.empty:
        return pd.DataFrame(columns=["reference", "wins", "ties", "losses", "not_testable", "mean_diff", "cells"])
    g = cmp.groupby("reference", sort=False)
    out = pd.DataFrame({
        "wins": g["outcome"].apply(lambda o: int((o == "win").sum())),
        "ties": g["outcome"].apply(lambda o: int((o == "tie").sum())),
        "losses": g["outcome"].apply(lambda o: int((o == "loss").sum())),
        "not_testable": g["outcome"].apply(lambda o: int((o == NOT_TESTABLE).sum())),
        "mean_diff": g["diff"].mean(),
        "cells": g.size(),
    }).reset_index()
    return out


def verdict(summary: pd.DataFrame, method: str) -> str:
    """One sentence per reference, from the counts."""
    if summary.empty:
        return f"'{method}' shares no (task, sparsity) cell with imp, omp, pretrained_magnitude or random."
    parts = []
    for r in summary.itertuples(index=False):
        if r.wins + r.ties + r.losses == 0:
            parts.append(f"{NOT_TESTABLE} against {r.reference} with one seed (mean {r.mean_diff:+.2f} points, "
                         "descriptive only)")
            continue
        word = "better than" if r.wins > r.losses else ("worse than" if r.losses > r.wins else "level with")
        parts.append(f"{word} {r.reference} ({r.wins}W/{r.ties}T/{r.losses}L, mean {r.mean_diff:+.2f} points)")
    return f"'{method}' is " + "; ".join(parts) + "."


def compare_method(out_dir: str | Path, method: str, config=None) -> pd.DataFrame:
    """Rank `method` against imp, omp, pretrained_magnitude and random for every task and
    sparsity (difference in points, win / tie / loss); reads the store and writes only report/matrix.csv."""
    ctx = load_context(out_dir, config)
    return compare_frame(ctx.df, method, ctx.config.report.tie_margin)
