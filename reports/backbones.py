"""The backbone comparison (the VL-LTH paper's claim iii), from a results DataFrame.

Claim (iii): "LXMERT and ViLT can also play lottery tickets, but ViLT's highest sparsity is far lower
(30 % vs 70 %)". This module compares the backbones of one results frame (columns as in
`report/matrix.csv`, e.g. `load_results(out, plans=[h_uniter, h_lxmert, h_vilt]).frame`):

- `dense_clearance`: each backbone's dense score per task against chance (`reports.claims.
  dense_vs_chance`), and whether it clears chance (`CHANCE_RULE`: dense's 95 % CI above chance; the
  verdict rule: below that, a backbone's tickets on the task say nothing — a "ticket" of a model at
  chance matches a model at chance);
- `backbone_matching`: per backbone and task, the highest sparsity at which the task's own IMP
  ticket relaxed-matches (mean ≥ `relaxed` × dense; and clear of seed noise) and strictly matches
  (mean ≥ dense mean − one dense std) the dense model, with random pruning's relaxed sparsity beside it;
- `claim_iii`: the verdicts (holds / fails / not testable), computed only on tasks where *every*
  backbone clears chance; `verdict_iii` in one word;
- `overlay`: accuracy (% of dense) against sparsity, one panel per task, a line per backbone;
- `write_backbone_section(frame, report_dir, tasks)`: the tables, the figure and the Markdown lines
  of the report's "Backbones" section.

Run on a store: `python -m reports.backbones OUT --plans H1,H2,H3` (or `--plans all`).
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from bench.core.io import atomic_write_text
from bench.core.layout import Layout
from reports import stats
from reports.claims import (
    CHANCE_RULE,
    FAILS,
    HOLDS,
    NOT_TESTABLE,
    Claim,
    check_vilt,
    claims_frame,
    dense_vs_chance,
    relaxed_cells,
)
from reports.plots import plt, save
from reports.store import load_results, split_convergence
from reports.tables import matching_sparsity, summarize, task_order
from reports.writers import fmt_num, fmt_sparsity, mean_std, to_markdown, write_table

PAPER = "LXMERT and ViLT play lottery tickets too; ViLT's highest sparsity ~30% vs ~70% for UNITER / LXMERT"


def is_vilt(backbone: str) -> bool:
    return "vilt" in str(backbone).lower()


def backbone_order(backbones: Iterable[str]) -> list[str]:
    """UNITER-like first, then LXMERT, then ViLT (the paper's order), others alphabetically."""
    def key(b: str):
        low = b.lower()
        return (0 if "uniter" in low else 1 if "lxmert" in low else 2 if "vilt" in low else 3, low)

    return sorted(set(backbones), key=key)


def by_backbone(df: pd.DataFrame) -> pd.DataFrame:
    """A frame in which one (backbone, task) comes from one setup: when plans are mixed (a `plan`
    column) and a backbone has the same task in several plans, that backbone's rows are labelled
    `backbone@plan` (as the report's context labels them), so runs of different plans are never
    averaged as if they were seeds. One plan per backbone, or per backbone and task, keeps the
    plain names."""
    if "plan" not in df or df.empty:
        return df
    plans = df.groupby(["backbone", "task"])["plan"].nunique()
    several = {bb for (bb, _), n in plans.items() if n > 1}
    if not several:
        return df
    out = df.copy()
    hit = out["backbone"].isin(several)
    out.loc[hit, "backbone"] = out.loc[hit, "backbone"] + "@" + out.loc[hit, "plan"].astype(str)
    return out


def _ordered(frame: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    if frame.empty:
        return frame.reset_index(drop=True)
    frame = frame.assign(_b=frame["backbone"].map({b: i for i, b in enumerate(backbone_order(frame["backbone"]))}),
                         _t=frame["task"].map({t: i for i, t in enumerate(tasks)}))
    return frame.sort_values(["_b", "_t"]).drop(columns=["_b", "_t"]).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Dense against chance

def dense_clearance(df: pd.DataFrame, tasks: list[str] | None = None) -> pd.DataFrame:
    """`reports.claims.dense_vs_chance` in backbone order, with `clears` = dense mean − chance is
    clear of chance by `CHANCE_RULE` (False with one seed: no interval)."""
    tasks = task_order(df, tasks or ())
    out = dense_vs_chance(df, tasks)
    out["clears"] = out["learns"] == "yes"
    return _ordered(out, tasks)


# ---------------------------------------------------------------------------------------------
# Matching sparsity per backbone

def backbone_matching(df: pd.DataFrame, tasks: list[str] | None = None, relaxed: float = 0.99) -> pd.DataFrame:
    """Per (backbone, task): the task's own IMP ticket's highest sparsity whose mean reaches
    `relaxed` × dense (NaN = none on the ladder) and whether that is clear of seed noise (`imp_relaxed_clear`:
    the highest sparsity whose whole 95% CI is above the criterion), the highest strictly matching
    sparsity (mean ≥ dense − one dense std), and random pruning's highest relaxed sparsity."""
    tasks = task_order(df, tasks or ())
    cols = ["backbone", "task", "imp_relaxed", "imp_relaxed_clear", "imp_strict", "random_relaxed",
            "sparsities_tested", "seeds"]
    cells = relaxed_cells(df, tasks, relaxed, stats.seed_noise(df))
    if cells.empty:
        return pd.DataFrame(columns=cols)
    m = matching_sparsity(df, tasks, relaxed)
    strict = m[m["source"] == "imp:" + m["task"]].set_index(["backbone", "task"])["strict_sparsity"]
    rnd = m[m["source"] == "random"].set_index(["backbone", "task"])["relaxed_sparsity"]
    rows = []
    for (bb, task), c in cells.groupby(["backbone", "task"], sort=False):
        rows.append({"backbone": bb, "task": task,
                     "imp_relaxed": c[c["match"]]["sparsity"].max() if c["match"].any() else np.nan,
                     "imp_relaxed_clear": c[c["clear_match"]]["sparsity"].max() if c["clear_match"].any() else np.nan,
                     "imp_strict": strict.get((bb, task), np.nan), "random_relaxed": rnd.get((bb, task), np.nan),
                     "sparsities_tested": ", ".join(fmt_sparsity(x) for x in sorted(c["sparsity"])),
                     "seeds": int(c["seeds"].min())})
    return _ordered(pd.DataFrame(rows, columns=cols), tasks)


def matching_square(matching: pd.DataFrame, column: str, tasks: list[str]) -> pd.DataFrame:
    """Rows = backbones, columns = tasks, cells = `column` (a sparsity) as '70%', 'none'."""
    if matching.empty:
        return pd.DataFrame()
    sq = matching.pivot_table(index="backbone", columns="task", values=column, aggfunc="first", dropna=False)
    sq = sq.reindex(index=backbone_order(matching["backbone"]), columns=[t for t in tasks if t in sq.columns])
    disp = sq.apply(lambda col: col.map(lambda v: "none" if pd.isna(v) else fmt_sparsity(v)))
    disp.index.name, disp.columns.name = "backbone", None
    return disp


# ---------------------------------------------------------------------------------------------
# Claim (iii)

def usable_tasks(clearance: pd.DataFrame, backbones: list[str], tasks: list[str]) -> tuple[list[str], dict]:
    """Tasks on which every backbone's dense model clears chance; {task: why not} for the others."""
    ok, why = [], {}
    for t in tasks:
        reasons = []
        for bb in backbones:
            row = clearance[(clearance["backbone"] == bb) & (clearance["task"] == t)]
            if row.empty:
                reasons.append(f"{bb}: no dense run")
            elif not bool(row["clears"].iloc[0]):
                r = row.iloc[0]
                how = ("one seed, no noise" if r["learns"] == "unknown" else
                       f"dense − chance {r['above_chance']:+.1f}, SE {fmt_num(r['noise'])}: 95% CI not above chance")
                reasons.append(f"{bb}: dense {mean_std(r['dense_mean'], r['dense_std'])} vs chance "
                               f"{fmt_num(r['chance'])} ({how})")
        if reasons:
            why[t] = "; ".join(reasons)
        else:
            ok.append(t)
    return ok, why


def claim_iii(df: pd.DataFrame, tasks: list[str] | None = None, relaxed: float = 0.99) -> list[Claim]:
    """Claim (iii) in two parts, each holds / fails / not testable, judged only on the tasks where
    *every* backbone's dense model clears chance (`CHANCE_RULE`):

    (a) every non-UNITER backbone plays lottery tickets: on each such task its own IMP ticket clearly
        reaches `relaxed` × dense at some ladder sparsity (holds), or is clearly below it at every
        sparsity for some backbone and task (fails); anything within seed noise is not testable;
    (b) ViLT's highest relaxed sparsity is lower than the region-feature backbones':
        `reports.claims.check_vilt` (medians of the per-task highest relaxed sparsity) on those tasks."""
    df = by_backbone(df)
    tasks = task_order(df, tasks or ())
    backbones = backbone_order(df["backbone"]) if len(df) else []
    clearance = dense_clearance(df, tasks)
    noise = stats.seed_noise(df)
    cells = relaxed_cells(df, tasks, relaxed, noise)
    compared = [t for t in tasks if backbones and all(
        ((cells["backbone"] == bb) & (cells["task"] == t)).any() for bb in backbones)]
    usable, why = usable_tasks(clearance, backbones, compared)
    excluded = "; ".join(f"{t} left out ({w})" for t, w in why.items())
    rule = (f"tasks counted: those where every backbone's dense model clears chance ({CHANCE_RULE}): "
            f"{', '.join(usable) or 'none'}")
    detail = "; ".join(x for x in (rule, excluded) if x)
    claims = []

    a_claim = "LXMERT and ViLT can also play lottery tickets (own-task IMP tickets relaxed-match dense)."
    others = [b for b in backbones if "uniter" not in b.lower()]
    if not others or not compared:
        claims.append(Claim(a_claim, PAPER, "–", NOT_TESTABLE, "needs LXMERT or ViLT beside UNITER, with own-task IMP "
                            "runs on a common task, in one results frame", detail))
    elif not usable:
        claims.append(Claim(a_claim, PAPER, "–", NOT_TESTABLE, "no task on which every backbone's dense model "
                            "clearly beats chance", detail))
    else:
        outcome, per = {}, []
        for bb in others:
            for t in usable:
                c = cells[(cells["backbone"] == bb) & (cells["task"] == t)]
                outcome[(bb, t)] = ("yes" if c["clear_match"].any() else "no" if c["clear_miss"].all() else "noise")
                best = c[c["match"]]["sparsity"].max() if c["match"].any() else math.nan
                per.append(f"{bb} {t}: {'none' if math.isnan(best) else fmt_sparsity(best)} ({outcome[(bb, t)]})")
        run = "highest relaxed sparsity (clear of noise?): " + "; ".join(per)
        if any(v == "no" for v in outcome.values()):
            bad = ", ".join(f"{bb} on {t}" for (bb, t), v in outcome.items() if v == "no")
            claims.append(Claim(a_claim, PAPER, run, FAILS, f"clearly below the criterion at every sparsity: {bad}",
                                detail))
        elif all(v == "yes" for v in outcome.values()):
            claims.append(Claim(a_claim, PAPER, run, HOLDS, "", detail))
        else:
            unres = ", ".join(f"{bb} on {t}" for (bb, t), v in outcome.items() if v == "noise")
            claims.append(Claim(a_claim, PAPER, run, NOT_TESTABLE, f"within seed noise of the criterion: {unres}",
                                detail))

    b = check_vilt(df, {bb: usable for bb in backbones}, relaxed, noise)
    if not usable and b.verdict == NOT_TESTABLE:
        b.reason = "no task on which every backbone's dense model clearly beats chance"
    b.detail = "; ".join(x for x in (b.detail, detail) if x)
    claims.append(b)
    return claims


def verdict_iii(df: pd.DataFrame, tasks: list[str] | None = None, relaxed: float = 0.99) -> str:
    """Claim (iii) in one word: holds when both parts hold, fails when either fails, else not testable."""
    verdicts = {c.verdict for c in claim_iii(df, tasks, relaxed)}
    if verdicts == {HOLDS}:
        return HOLDS
    return FAILS if FAILS in verdicts else NOT_TESTABLE


# ---------------------------------------------------------------------------------------------
# Figure

def overlay(df: pd.DataFrame, tasks: list[str], stem: Path, relaxed: float = 0.99) -> list[Path]:
    """One panel per task: % of dense against sparsity, a line per backbone for its own-task IMP
    ticket (solid, ± std band) and random pruning (dashed), the relaxed level shaded; backbones
    whose dense model does not clear chance on the task are drawn faint and marked in the legend."""
    df = by_backbone(df)
    s = summarize(df)
    tasks = [t for t in tasks if t in set(s["task"])]
    backbones = backbone_order(s["backbone"])
    clearance = dense_clearance(df, tasks)
    colours = dict(zip(backbones, ["#1f77b4", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2"]))
    n = max(len(tasks), 1)
    ncols = min(3, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.4 * ncols, 3.5 * nrows), squeeze=False)
    handles: dict[str, object] = {}
    for ax, task in zip(axes.flat, tasks):
        ax.axhspan(100 * relaxed, 100, color="#ffd54f", alpha=0.35, zorder=0)
        ax.axhline(100, color="black", ls=":", lw=1.2, zorder=1)
        for bb in backbones:
            t = s[(s["backbone"] == bb) & (s["task"] == task)]
            c = clearance[(clearance["backbone"] == bb) & (clearance["task"] == task)]
            clears = bool(c["clears"].iloc[0]) if len(c) else False
            alpha = 1.0 if clears else 0.3
            for source, ls, marker in (("imp:" + task, "-", "o"), ("random", "--", "D")):
                g = t[t["source"] == source].sort_values("sparsity")
                if g.empty:
                    continue
                x = np.r_[0.0, 100 * g["sparsity"].to_numpy()]
                y = np.r_[100.0, g["pct_dense"].to_numpy()]
                sd = np.r_[0.0, g["pct_dense_std"].fillna(0).to_numpy()]
                label = (f"{bb}, {'IMP own task' if source != 'random' else 'random'}"
                         + ("" if clears else " (dense not clear of chance)"))
                (ln,) = ax.plot(x, y, ls=ls, marker=marker, ms=4, lw=2.0 if ls == "-" else 1.3,
                                color=colours[bb], alpha=alpha)
                if ls == "-" and np.any(sd > 0):
                    ax.fill_between(x, y - sd, y + sd, color=colours[bb], alpha=0.12 * alpha, lw=0)
                handles.setdefault(label, ln)
        ax.set_title(task)
        ax.set_xlabel("sparsity (%)")
        ax.set_ylabel("% of dense")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[n:]:
        ax.set_visible(False)
    fig.suptitle("Accuracy vs sparsity per backbone (own-task IMP solid, random dashed; mean ± std over seeds)",
                 y=1.0)
    fig.tight_layout()
    fig.legend(list(handles.values()), list(handles.keys()), loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(3, max(len(handles), 1)), frameon=False)
    return save(fig, stem)


# ---------------------------------------------------------------------------------------------
# The report section

def write_backbone_section(df: pd.DataFrame, report_dir: str | Path, tasks: list[str] | None = None,
                           relaxed: float = 0.99) -> tuple[list[str], list[Path]]:
    """Write backbones_dense.*, backbones_matching.*, backbones_claims.* and backbones.png/pdf into
    `report_dir`; return (the section's Markdown lines, the files written) — both empty when the
    frame has one backbone."""
    report_dir = Path(report_dir)
    report_dir.mkdir(parents=True, exist_ok=True)
    df = by_backbone(df)
    tasks = task_order(df, tasks or ())
    backbones = backbone_order(df["backbone"]) if len(df) else []
    if len(backbones) < 2:
        return [], []
    clearance = dense_clearance(df, tasks)
    matching = backbone_matching(df, tasks, relaxed)
    claims = claim_iii(df, tasks, relaxed)
    dense_disp = pd.DataFrame({
        "backbone": clearance["backbone"], "task": clearance["task"], "metric": clearance["metric"],
        "dense": [mean_std(m, s) for m, s in zip(clearance["dense_mean"], clearance["dense_std"])],
        "seeds": clearance["seeds"], "chance": clearance["chance"].map(fmt_num),
        "dense − chance": clearance["above_chance"].map(lambda c: f"{c:+.1f}" if pd.notna(c) else "–"),
        "SE vs chance": clearance["noise"].map(fmt_num), "clears": clearance["clears"].map({True: "yes", False: "no"}),
    })
    paths = list(write_table(report_dir, "backbones_dense", clearance, dense_disp,
                             f"Dense model vs chance per backbone (clears: {CHANCE_RULE})"
                             ).values())
    paths += write_table(report_dir, "backbones_matching", matching, None,
                         "Highest matching sparsity of each task's own IMP ticket, per backbone").values()
    paths += write_table(report_dir, "backbones_claims", claims_frame(claims)).values()
    figure = overlay(df, tasks, report_dir / "backbones", relaxed)
    paths += figure
    rel = matching_square(matching, "imp_relaxed", tasks)
    strict = matching_square(matching, "imp_strict", tasks)
    L = ["## Backbones: claim (iii)", "",
         f"{len(backbones)} backbones in one results frame: {', '.join(backbones)}. A backbone's tickets on a task "
         f"count only where its dense model clears chance: {CHANCE_RULE}.", "",
         "### Dense model vs chance", "", to_markdown(dense_disp, index=False),
         f"### Highest relaxed-matching sparsity (own-task IMP, mean ≥ {100 * relaxed:g}% of dense)", "",
         to_markdown(rel) if len(rel) else "no own-task IMP runs\n",
         "### Highest strictly matching sparsity (≥ dense − one dense std; needs ≥ 2 seeds)", "",
         to_markdown(strict) if len(strict) else "no own-task IMP runs\n",
         "### Claim (iii), checked", "", to_markdown(claims_frame(claims), index=False),
         f"![accuracy vs sparsity per backbone]({figure[0].name})", ""]
    return L, paths


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m reports.backbones", description=__doc__.splitlines()[0])
    p.add_argument("out", help="output directory holding the backbones' plans")
    p.add_argument("--plans", default="all", help="plan hashes, comma-separated, or 'all' (default)")
    p.add_argument("--relaxed", type=float, default=0.99)
    p.add_argument("--tasks", default="", help="task order (comma-separated; default: the store's)")
    a = p.parse_args(argv)
    res = load_results(a.out, plans=["all"] if a.plans == "all" else a.plans.split(","))
    report_dir = Layout(a.out).report()
    lines, _ = write_backbone_section(split_convergence(res.frame)[0], report_dir, [t for t in a.tasks.split(",") if t], a.relaxed)
    text = "\n".join(lines) if lines else "one backbone in the results: no comparison\n"
    atomic_write_text(report_dir / "backbones.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
