"""The backbone comparison (the VL-LTH paper's claim iii), from a results DataFrame.

Claim (iii): "LXMERT and ViLT can also play lottery tickets, but ViLT's highest sparsity is far lower
(30 % vs 70 %)". This module compares the backbones of one results frame (columns as in
`report/matrix.csv`, e.g. `load_results(out, plans=[h_uniter, h_lxmert, h_vilt]).frame`):

- `dense_clearance`: each backbone's dense score per task against chance, and whether it clears
  chance by more than `CLEAR_STDS` dense seed stds (the verdict rule: below that, a backbone's
  tickets on the task say nothing — a "ticket" of a model at chance matches a model at chance);
- `backbone_matching`: per backbone and task, the highest sparsity at which the task's own IMP
  ticket relaxed-matches (mean ≥ `relaxed` × dense) and strictly matches (mean ≥ dense mean − one
  dense std) the dense model, with random pruning's relaxed sparsity beside it;
- `claim_iii`: the verdicts, computed only on tasks where *every* backbone clears chance;
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

from reports.claims import Claim, claims_frame
from reports.store import DENSE
from reports.tables import matching_sparsity, summarize, task_order
from reports.writers import fmt_num, fmt_sparsity, mean_std, to_markdown, write_table

CLEAR_STDS = 3.0  # the verdict rule: dense mean − chance > 3 dense seed stds
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
    `backbone [plan]`, so runs of different plans are never averaged as if they were seeds. (One
    plan per backbone, or one per backbone and task, keeps the plain names.)"""
    if "plan" not in df or df.empty:
        return df
    plans = df.groupby(["backbone", "task"])["plan"].nunique()
    several = {bb for (bb, _), n in plans.items() if n > 1}
    if not several:
        return df
    out = df.copy()
    hit = out["backbone"].isin(several)
    out.loc[hit, "backbone"] = out.loc[hit, "backbone"] + " [" + out.loc[hit, "plan"].astype(str).str[:8] + "]"
    return out


# ---------------------------------------------------------------------------------------------
# Dense against chance

def dense_clearance(df: pd.DataFrame, tasks: list[str] | None = None, k: float = CLEAR_STDS) -> pd.DataFrame:
    """Per (backbone, task): dense mean ± std over seeds, chance, margin = mean − chance, and
    `clears` = margin > k · std. With one dense seed the std is undefined and `clears` is False
    (noted), so a single seed can never make a verdict testable."""
    from reports.store import task_facts

    tasks = task_order(df, tasks or ())
    rows = []
    d = df[df["source"] == DENSE]
    for (bb, task, metric), g in d.groupby(["backbone", "task", "metric"], sort=False):
        recorded = g["chance"].dropna() if "chance" in g else pd.Series(dtype=float)
        chance = float(recorded.iloc[0]) if len(recorded) else task_facts(task, metric).chance
        n = int(g["seed"].nunique())
        mean = float(g["value"].mean())
        std = float(g["value"].std()) if n > 1 else math.nan
        margin = mean - chance if chance is not None else math.nan
        if chance is None or math.isnan(margin):
            clears, note = False, "no chance level"
        elif n < 2:
            clears, note = False, "1 dense seed: std undefined"
        else:
            clears = bool(margin > k * std)
            note = f"{margin / std:+.1f} stds from chance" if std > 0 else (
                "above chance, seeds identical" if margin > 0 else "at or below chance")
        rows.append({"backbone": bb, "task": task, "metric": metric, "dense_mean": mean, "dense_std": std,
                     "seeds": n, "chance": chance, "margin": margin, "clears": clears, "note": note})
    out = pd.DataFrame(rows, columns=["backbone", "task", "metric", "dense_mean", "dense_std", "seeds", "chance",
                                      "margin", "clears", "note"])
    if out.empty:
        return out
    out["_b"] = out["backbone"].map({b: i for i, b in enumerate(backbone_order(out["backbone"]))})
    out["_t"] = out["task"].map({t: i for i, t in enumerate(tasks)})
    return out.sort_values(["_b", "_t"]).drop(columns=["_b", "_t"]).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Matching sparsity per backbone

def backbone_matching(df: pd.DataFrame, tasks: list[str] | None = None, relaxed: float = 0.99) -> pd.DataFrame:
    """Per (backbone, task): the highest relaxed- and strictly-matching sparsity of the task's own
    IMP ticket (NaN = none on the ladder), the ladder tested, and random pruning's highest
    relaxed sparsity (the baseline a ticket must beat)."""
    tasks = task_order(df, tasks or ())
    m = matching_sparsity(df, tasks, relaxed)
    cols = ["backbone", "task", "metric", "imp_relaxed", "imp_relaxed_pct", "imp_strict", "random_relaxed",
            "sparsities_tested", "n_seeds", "note"]
    if m.empty:
        return pd.DataFrame(columns=cols)
    own = m[m["source"] == "imp:" + m["task"]]
    rnd = m[m["source"] == "random"].set_index(["backbone", "task"])["relaxed_sparsity"]
    rows = []
    for r in own.itertuples(index=False):
        rows.append({"backbone": r.backbone, "task": r.task, "metric": r.metric, "imp_relaxed": r.relaxed_sparsity,
                     "imp_relaxed_pct": r.relaxed_pct_dense, "imp_strict": r.strict_sparsity,
                     "random_relaxed": rnd.get((r.backbone, r.task), np.nan),
                     "sparsities_tested": r.sparsities_tested, "n_seeds": r.n_seeds, "note": r.note})
    out = pd.DataFrame(rows, columns=cols)
    out["_b"] = out["backbone"].map({b: i for i, b in enumerate(backbone_order(out["backbone"]))})
    out["_t"] = out["task"].map({t: i for i, t in enumerate(tasks)})
    return out.sort_values(["_b", "_t"]).drop(columns=["_b", "_t"]).reset_index(drop=True)


def matching_square(matching: pd.DataFrame, column: str, tasks: list[str]) -> pd.DataFrame:
    """Rows = backbones, columns = tasks, cells = `column` (a sparsity) as '70%', '–' for none."""
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
                reasons.append(f"{bb}: dense {mean_std(r.dense_mean, r.dense_std)} vs chance {fmt_num(r.chance)} "
                               f"({r.note})")
        if reasons:
            why[t] = "; ".join(reasons)
        else:
            ok.append(t)
    return ok, why


def claim_iii(df: pd.DataFrame, tasks: list[str] | None = None, relaxed: float = 0.99,
              k: float = CLEAR_STDS) -> list[Claim]:
    """Claim (iii) in two parts, each 'holds' / 'partly' / 'does not hold' / 'not testable'.

    (a) every non-UNITER backbone has an own-task IMP ticket that relaxed-matches its dense model
        at some ladder sparsity (per task);
    (b) ViLT's highest relaxed sparsity is lower than every region-feature backbone's (per task).
    Both are judged only on tasks where every backbone's dense model clears chance by more than
    k dense seed stds, and (b) only with ViLT and at least one region-feature backbone present."""
    df = by_backbone(df)
    tasks = task_order(df, tasks or ())
    backbones = backbone_order(df["backbone"]) if len(df) else []
    clearance = dense_clearance(df, tasks, k)
    matching = backbone_matching(df, tasks, relaxed)
    have_imp = set(matching["task"]) if len(matching) else set()
    compared = [t for t in tasks if t in have_imp and all(
        ((matching["backbone"] == bb) & (matching["task"] == t)).any() for bb in backbones)]
    usable, why = usable_tasks(clearance, backbones, compared)
    excluded = "; ".join(f"{t} excluded ({w})" for t, w in why.items())
    rule = f"judged on tasks where every backbone's dense model clears chance by > {k:g} dense seed stds"
    detail = rule + (f"; {excluded}" if excluded else "")

    def relaxed_of(bb: str, t: str) -> float:
        v = matching[(matching["backbone"] == bb) & (matching["task"] == t)]["imp_relaxed"]
        return float(v.iloc[0]) if len(v) and not pd.isna(v.iloc[0]) else 0.0  # none matches → 0

    def per_task(bbs: list[str], ts: list[str]) -> str:
        return "; ".join(f"{bb}: " + ", ".join(
            f"{t} {fmt_sparsity(relaxed_of(bb, t)) if relaxed_of(bb, t) > 0 else 'none'}" for t in ts) for bb in bbs)

    claims = []
    # (a) the other backbones play lottery tickets too
    a_claim = "LXMERT and ViLT can also play lottery tickets (own-task IMP tickets relaxed-match dense)."
    others = [b for b in backbones if "uniter" not in b.lower()]
    if not others or not compared:
        claims.append(Claim(a_claim, PAPER, "no LXMERT / ViLT own-task IMP runs" if not others else
                            "no task with own-task IMP runs on every backbone", "not testable",
                            "needs LXMERT or ViLT beside UNITER in one results frame"))
    elif not usable:
        claims.append(Claim(a_claim, PAPER, per_task(others, compared), "not testable", detail))
    else:
        cells = [(bb, t) for bb in others for t in usable]
        n_ok = sum(relaxed_of(bb, t) > 0 for bb, t in cells)
        claims.append(Claim(a_claim, PAPER, f"{n_ok}/{len(cells)} (backbone, task) cells; " + per_task(others, usable),
                            _verdict(n_ok, len(cells)), detail))
    # (b) ViLT's highest sparsity is lower
    b_claim = "ViLT's highest relaxed-matching sparsity is lower than UNITER's / LXMERT's."
    vilt = [b for b in backbones if is_vilt(b)]
    region = [b for b in backbones if not is_vilt(b)]
    if not vilt or not region or not compared:
        claims.append(Claim(b_claim, PAPER, "backbones: " + (", ".join(backbones) or "none"), "not testable",
                            "needs ViLT and a region-feature backbone with own-task IMP runs on a common task"))
    elif not usable:
        claims.append(Claim(b_claim, PAPER, per_task(backbones, compared), "not testable", detail))
    else:
        lower = [t for t in usable if max(relaxed_of(v, t) for v in vilt) < min(relaxed_of(r, t) for r in region)]
        med = "; ".join(f"{bb}: median {fmt_sparsity(float(np.median([relaxed_of(bb, t) for t in usable])))}"
                        for bb in backbones)
        claims.append(Claim(b_claim, PAPER, f"ViLT lower on {len(lower)}/{len(usable)} tasks ({med}); "
                            + per_task(backbones, usable), _verdict(len(lower), len(usable)),
                            detail + "; a task counts when ViLT's highest relaxed sparsity is below every "
                            "region backbone's (none = 0%)"))
    return claims


def _verdict(n_ok: int, n: int) -> str:
    if n == 0:
        return "not testable"
    return "holds" if n_ok == n else ("does not hold" if n_ok == 0 else "partly")


def verdict_iii(df: pd.DataFrame, tasks: list[str] | None = None, relaxed: float = 0.99) -> str:
    """One word for claim (iii): part (b)'s verdict, or 'not testable' when part (a) is."""
    a, b = claim_iii(df, tasks, relaxed)
    return "not testable" if "not testable" in (a.verdict, b.verdict) else b.verdict


# ---------------------------------------------------------------------------------------------
# Figure

def overlay(df: pd.DataFrame, tasks: list[str], stem: Path, relaxed: float = 0.99) -> list[Path]:
    """One panel per task: % of dense against sparsity, a line per backbone for its own-task IMP
    ticket (solid, ± std band) and random pruning (dashed), the relaxed level shaded; backbones
    whose dense model does not clear chance on the task are drawn faint and marked in the legend."""
    from reports.plots import plt, save

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
                label = f"{bb}, {'IMP own task' if source != 'random' else 'random'}" + ("" if clears else
                                                                                         " (dense not clear of chance)")
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
    dense_disp = clearance.assign(
        dense=[mean_std(m, s) for m, s in zip(clearance["dense_mean"], clearance["dense_std"])],
        chance=clearance["chance"].map(fmt_num), margin=clearance["margin"].map(fmt_num),
        clears=clearance["clears"].map({True: "yes", False: "no"}),
    )[["backbone", "task", "metric", "dense", "seeds", "chance", "margin", "clears", "note"]]
    paths = list(write_table(report_dir, "backbones_dense", clearance, dense_disp,
                             f"Dense model vs chance per backbone (clears = margin > {CLEAR_STDS:g} dense seed stds)"
                             ).values())
    rel = matching_square(matching, "imp_relaxed", tasks)
    strict = matching_square(matching, "imp_strict", tasks)
    paths += write_table(report_dir, "backbones_matching", matching, None,
                         "Highest matching sparsity of each task's own IMP ticket, per backbone").values()
    paths += write_table(report_dir, "backbones_claims", claims_frame(claims)).values()
    figure = overlay(df, tasks, report_dir / "backbones", relaxed)
    paths += figure
    L = ["## Backbones: claim (iii)", "",
         f"{len(backbones)} backbones in one results frame: {', '.join(backbones)}. A backbone's tickets on a task "
         f"count only where its dense model clears chance by more than {CLEAR_STDS:g} dense seed stds.", "",
         "### Dense model vs chance", "", to_markdown(dense_disp, index=False),
         f"### Highest relaxed-matching sparsity (own-task IMP ≥ {100 * relaxed:g}% of dense)", "",
         to_markdown(rel) if len(rel) else "no own-task IMP runs\n",
         "### Highest strictly matching sparsity (≥ dense − one dense std; needs ≥ 2 seeds)", "",
         to_markdown(strict) if len(strict) else "no own-task IMP runs\n",
         "### Claim (iii), checked", "", to_markdown(claims_frame(claims), index=False),
         f"![accuracy vs sparsity per backbone]({figure[0].name})", ""]
    return L, paths


def main(argv: list[str] | None = None) -> int:
    from reports.store import load_results

    p = argparse.ArgumentParser(prog="python -m reports.backbones", description=__doc__.splitlines()[0])
    p.add_argument("out", help="output directory holding the backbones' plans")
    p.add_argument("--plans", default="all", help="plan hashes, comma-separated, or 'all' (default)")
    p.add_argument("--relaxed", type=float, default=0.99)
    p.add_argument("--tasks", default="", help="task order (comma-separated; default: the store's)")
    a = p.parse_args(argv)
    res = load_results(a.out, plans=["all"] if a.plans == "all" else a.plans.split(","))
    report_dir = Path(a.out) / "report"
    lines, _ = write_backbone_section(res.frame, report_dir, [t for t in a.tasks.split(",") if t], a.relaxed)
    text = "\n".join(lines) if lines else "one backbone in the results: no comparison\n"
    (report_dir / "backbones.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
