"""`--paper vl|bert`: the papers' figures and tables for this run, side by side with the papers'
known numbers (../shared/REFERENCE.md). Toyland numbers are not comparable in absolute terms;
the side-by-side tables compare the *shape* of each claim (gaps to dense, orderings).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from bench.config import Config
from bench.core.errors import ConfigError
from bench.core.io import atomic_write_text
from reports import plots, stats
from reports.claims import (
    VL_PRETRAIN_TRANSFER,
    VL_RELAXED_RANGE,
    claim_tasks,
    claims_frame,
    pretrain_transfer,
    relaxed_cells,
    vl_claims,
)
from reports.claims_bert import BERT_MLM_TRANSFER_70, BERT_TABLE2, PAPER_NAMES, bert_claims
from reports.context import ReportContext, load_context, prune_stale
from reports.figure_data import figure_tables, match_label, write_figure_tables
from reports.store import DENSE
from reports.tables import matching_sparsity, nearest, summarize, transfer_matrix
from reports.writers import fmt_num, fmt_sparsity, sparsity_tag, to_markdown, write_table

PAPERS = ("vl", "bert")

CAVEAT = ("Toyland numbers are not comparable to the paper's in absolute terms (different data, models and "
          "tasks); compare the shape: gaps to dense, IMP vs random, where tickets stop matching.")


def _table2_this_run(ctx: ReportContext, bb: str) -> pd.DataFrame:
    """BERT Table 2 for this run: per task the highest matching sparsity of its own IMP ticket
    (strict when assessable, else relaxed — the `criterion` column says which), with dense, IMP
    and random at that sparsity."""
    d = ctx.df[ctx.df["backbone"] == bb]
    m = matching_sparsity(d, ctx.tasks, ctx.config.report.relaxed)
    s = summarize(d)
    rows = []
    for task in ctx.tasks:
        own = m[(m["task"] == task) & (m["source"] == f"imp:{task}")]
        if own.empty:
            continue
        r = own.iloc[0]
        assessed = "not assessed" not in r["note"] and "no dense" not in r["note"]
        sp, crit = (r["strict_sparsity"], "strict") if assessed else (r["relaxed_sparsity"], "relaxed (1 seed)")

        def at(source, task=task, sp=sp):
            v = s[(s["task"] == task) & (s["source"] == source) & (s["sparsity"] == sp)]["mean"]
            return float(v.iloc[0]) if len(v) and not pd.isna(sp) else np.nan

        top = s[(s["task"] == task) & (s["source"] == f"imp:{task}")]["sparsity"].max()
        rows.append({"task": task, "criterion": crit, "sparsity": sp, "dense": r["dense_mean"],
                     "imp": at(f"imp:{task}"), "random": at("random"),
                     # a match at the highest tested sparsity bounds the highest match from below only
                     "censored": bool(not pd.isna(sp) and abs(sp - top) < 1e-9)})
    out = pd.DataFrame(rows, columns=["task", "criterion", "sparsity", "dense", "imp", "random", "censored"])
    out["imp_minus_dense"] = out["imp"] - out["dense"]
    out["random_minus_dense"] = out["random"] - out["dense"]
    # The paper's row for the same task beside this run's (task by task; NaN for a task the paper has not).
    paper = out["task"].map(lambda t: BERT_TABLE2.get(t, (np.nan,) * 4))
    out["paper_sparsity"] = paper.map(lambda v: v[0])
    out["paper_imp_minus_dense"] = paper.map(lambda v: round(v[2] - v[1], 2))
    return out


def _mlm_row_this_run(ctx: ReportContext, bb: str) -> tuple[float | None, pd.DataFrame]:
    """The pre-training (MLM-analogue) ticket at the ladder sparsity nearest 70%, minus dense."""
    sp = nearest(ctx.sparsities, 0.7)
    if sp is None:
        return None, pd.DataFrame(columns=["task", "pretrain_minus_dense"])
    s = summarize(ctx.df[ctx.df["backbone"] == bb])
    pre = s[(s["source"] == "imp:pretrain") & (s["sparsity"] == sp)]
    rows = [{"task": r.task, "pretrain_minus_dense": r.mean - r.dense_mean} for r in pre.itertuples()]
    out = pd.DataFrame(rows, columns=["task", "pretrain_minus_dense"])
    order = {t: i for i, t in enumerate(ctx.tasks)}
    return sp, out.sort_values("task", key=lambda c: c.map(order)).reset_index(drop=True)


def _bars(ax, labels, values, colour, title, ylabel):
    x = np.arange(len(labels))
    bars = ax.bar(x, values, color=colour)
    ax.bar_label(bars, fmt="%+.1f", fontsize=8, padding=2)  # zero-height bars stay readable
    ax.use_sticky_edges = False  # bars stick the axis to 0 otherwise, hiding the labels
    ax.margins(y=0.15)
    ax.axhline(0, color="black", lw=1)
    ax.set_xticks(x, labels, rotation=40, ha="right")
    ax.set_title(title)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)


def _table2_side_by_side(ours: pd.DataFrame) -> pd.DataFrame:
    """Per Table 2 task: the paper's sparsity and gaps beside this run's (NaN where the run lacks the task)."""
    run = ours.set_index("task")
    rows = []
    for k, (sp, dense, imp, rnd) in BERT_TABLE2.items():  # keyed by this suite's task names
        r = run.loc[k] if k in run.index else None
        rows.append({"task": PAPER_NAMES[k], "paper_sparsity": sp, "paper_imp_minus_dense": round(imp - dense, 2),
                     "paper_random_minus_dense": round(rnd - dense, 2),
                     "run_task": k if r is not None else "", "run_sparsity": r["sparsity"] if r is not None else np.nan,
                     "run_censored": bool(r["censored"]) if r is not None else False,
                     "run_imp_minus_dense": r["imp_minus_dense"] if r is not None else np.nan,
                     "run_random_minus_dense": r["random_minus_dense"] if r is not None else np.nan})
    return pd.DataFrame(rows)


def _side_by_side_display(t: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "task": t["task"], "paper: sparsity": t["paper_sparsity"].map(fmt_sparsity),
        "this run: sparsity": [("–" if not k else match_label(s, c)) for k, s, c in
                               zip(t["run_task"], t["run_sparsity"], t["run_censored"])],
        "paper: IMP − dense": t["paper_imp_minus_dense"].map(fmt_num),
        "this run: IMP − dense": t["run_imp_minus_dense"].map(fmt_num),
        "paper: random − dense": t["paper_random_minus_dense"].map(fmt_num),
        "this run: random − dense": t["run_random_minus_dense"].map(fmt_num),
    })


def bert_paper(ctx: ReportContext) -> list[str]:
    rd = ctx.report_dir
    paper = pd.DataFrame([{"task": PAPER_NAMES[t], "sparsity": fmt_sparsity(v[0]), "dense": v[1], "imp": v[2], "random": v[3],
                           "imp_minus_dense": round(v[2] - v[1], 2), "random_minus_dense": round(v[3] - v[1], 2)}
                          for t, v in BERT_TABLE2.items()])
    ctx.add(write_table(rd, "bert_table2_paper", paper, caption="Chen et al. 2020, Table 2 (the paper's numbers)."))
    paper_mlm = pd.DataFrame({"task": [PAPER_NAMES[t] for t in BERT_MLM_TRANSFER_70], "mlm_minus_dense": list(BERT_MLM_TRANSFER_70.values())})
    ctx.add(write_table(rd, "bert_mlm_transfer_paper", paper_mlm, caption="Chen et al. 2020: MLM ticket at 70%, minus dense."))
    md = ["# BERT-tickets figures for this run", "", f"> {CAVEAT}", ""]
    claims = claims_frame(bert_claims(ctx.df, ctx.tasks, ctx.convergence))
    ctx.add(write_table(rd, "bert_claims", claims, caption="The BERT-tickets claims: paper vs this run."))
    md += ["## Claims", "", to_markdown(claims[["claim", "paper", "this_run", "verdict", "reason"]]), ""]
    for bb in ctx.backbones:
        sfx = ctx.suffix(bb)
        ours = _table2_this_run(ctx, bb)
        ctx.add(write_table(rd, f"bert_table2_this_run{sfx}", ours,
                            caption=f"This run ({bb}): Table 2 analogue (own-task IMP ticket)."))
        side = _table2_side_by_side(ours)
        ctx.add(write_table(rd, f"bert_table2_side_by_side{sfx}", side, _side_by_side_display(side),
                            caption=f"Table 2 per task: the paper's numbers beside this run's ({bb}); '≥': the match is "
                            "at the highest tested sparsity, a bound, not the highest match."))
        sp, mlm = _mlm_row_this_run(ctx, bb)
        ctx.add(write_table(rd, f"bert_mlm_transfer_this_run{sfx}", mlm,
                            caption=f"This run ({bb}): pre-training ticket at {fmt_sparsity(sp) if sp else '–'} minus dense."))
        shape = pd.DataFrame([
            {"quantity": "mean IMP − dense at the matching sparsity (points)", "paper": paper["imp_minus_dense"].mean(),
             "this_run": ours["imp_minus_dense"].mean()},
            {"quantity": "mean random − dense at that sparsity (points)", "paper": paper["random_minus_dense"].mean(),
             "this_run": ours["random_minus_dense"].mean()},
            {"quantity": "tasks where IMP > random", "paper": f"{int((paper['imp'] > paper['random']).sum())}/{len(paper)}",
             "this_run": f"{int((ours['imp'] > ours['random']).sum())}/{int(ours[['imp', 'random']].notna().all(axis=1).sum())}"},
            {"quantity": f"mean pre-training/MLM ticket − dense at 70% (this run: {fmt_sparsity(sp) if sp else '–'})",
             "paper": float(np.mean(list(BERT_MLM_TRANSFER_70.values()))),
             "this_run": mlm["pretrain_minus_dense"].mean() if len(mlm) else np.nan},
        ])
        ctx.add(write_table(rd, f"bert_shape{sfx}", shape, shape.apply(lambda c: c.map(fmt_num)),
                            caption="Shape of the BERT-tickets claims: paper vs this run."))
        fig, axes = plt.subplots(2, 2, figsize=(12, 8.5))
        _bars(axes[0, 0], paper["task"], paper["imp_minus_dense"], "#1f77b4", "Paper: IMP − dense (Table 2)", "points")
        # A match at the highest tested sparsity is a bound: its tick says so.
        _bars(axes[0, 1], [f"{t} (≥ top)" if c else t for t, c in zip(ours["task"], ours["censored"])],
              ours["imp_minus_dense"].fillna(0), "#1f77b4",
              f"This run ({bb}): IMP − dense, highest matching sp.", "points")
        _bars(axes[1, 0], paper_mlm["task"], paper_mlm["mlm_minus_dense"], "#d62728", "Paper: MLM ticket (70%) − dense",
              "points")
        _bars(axes[1, 1], mlm["task"], mlm["pretrain_minus_dense"], "#d62728",
              f"This run: pre-training ticket ({fmt_sparsity(sp) if sp else '–'}) − dense", "points")
        for ax, t in zip(axes[0], (paper, ours)):
            for i, v in enumerate(t["random_minus_dense"]):
                if not pd.isna(v):
                    ax.plot(i, v, "v", color="#7f7f7f", ms=7, label="random − dense" if i == 0 else None)
            ax.legend(loc="lower left", fontsize=9)
            ax.margins(y=0.15)
            ax.autoscale_view()
        fig.suptitle("BERT-tickets claims: paper (left) vs this run (right) — shapes, not absolute values")
        fig.tight_layout()
        ctx.add(plots.save(fig, rd / f"bert_paper_vs_run{sfx}"))
        md += [f"## {bb}", "", "### Table 2: paper", "", to_markdown(paper), "### Table 2: this run", "",
               to_markdown(ours.assign(sparsity=[match_label(x, c) for x, c in zip(ours["sparsity"], ours["censored"])])),
               "### Table 2 per task: paper beside this run", "", to_markdown(_side_by_side_display(side)),
               "### Shape", "", to_markdown(shape.apply(lambda c: c.map(fmt_num))),
               f"![paper vs run](bert_paper_vs_run{sfx}.png)", ""]
    return md


def _relaxed_per_task(ctx: ReportContext, bb: str, matches: pd.DataFrame) -> pd.DataFrame:
    """Per task: the paper's relaxed range beside this run's highest clearly relaxed sparsity of the own-task
    and the pre-training ticket (`match_table`'s rule: CI clears the criterion; censored at the top)."""
    lo, hi = VL_RELAXED_RANGE
    m = matches[matches["backbone"] == bb]
    noise = stats.seed_noise(ctx.df)
    d = ctx.df[ctx.df["backbone"] == bb]
    # The pre-training ticket under relaxed_cells' own rule: its runs relabelled as each task's own ticket.
    pre = pd.concat([d[d["source"] == DENSE], d[d["source"] == "imp:pretrain"].assign(
        source=lambda x: "imp:" + x["task"])]) if len(d) else d
    pc = relaxed_cells(pre, list(m["task"]), ctx.config.report.relaxed, noise)
    rows = []
    for r in m.itertuples():
        c = pc[pc["task"] == r.task]
        top = float(c["sparsity"].max()) if len(c) else float("nan")
        hit = c[c["clear_match"]]
        p_sp = float(hit["sparsity"].max()) if len(hit) else float("nan")
        rows.append({"task": r.task, "paper_lo": lo, "paper_hi": hi, "counted": r.counts,
                     "own_imp_relaxed": r.relaxed_clear, "own_imp_censored": r.relaxed_censored,
                     "pretrain_relaxed": p_sp, "pretrain_censored": bool(len(hit)) and abs(p_sp - top) < 1e-9,
                     "highest_tested": r.highest_tested, "outcome": r.relaxed_outcome, "why": r.why})
    return pd.DataFrame(rows, columns=["task", "paper_lo", "paper_hi", "counted", "own_imp_relaxed", "own_imp_censored",
                                       "pretrain_relaxed", "pretrain_censored", "highest_tested", "outcome", "why"])


def _relaxed_display(rel: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "task": rel["task"], "paper": [f"{fmt_sparsity(a)}–{fmt_sparsity(b)}" for a, b in zip(rel["paper_lo"], rel["paper_hi"])],
        "counted": rel["counted"].map({True: "yes", False: "no"}),
        "own-task IMP": [match_label(s, c) for s, c in zip(rel["own_imp_relaxed"], rel["own_imp_censored"])],
        "pre-training IMP": [match_label(s, c) for s, c in zip(rel["pretrain_relaxed"], rel["pretrain_censored"])],
        "outcome": rel["outcome"], "why": rel["why"],
    })


def _relaxed_bars(ax, rel: pd.DataFrame, relaxed: float) -> None:
    """Per task: the paper's range (shaded per task) beside this run's highest clearly relaxed sparsity;
    a censored one (the highest tested) is hatched and capped by '≥', an uncounted task greyed."""
    x = np.arange(len(rel))
    for i, r in enumerate(rel.itertuples()):
        ax.fill_between([i - 0.45, i + 0.45], 100 * r.paper_lo, 100 * r.paper_hi, color="#ffd54f", alpha=0.5, lw=0,
                        label="paper: 50–70% (every task)" if i == 0 else None)
        for dx, col, sp, cens, name in ((-0.2, "#1f77b4", r.own_imp_relaxed, r.own_imp_censored, "own task"),
                                        (0.2, "#d62728", r.pretrain_relaxed, r.pretrain_censored, "pre-training")):
            if pd.isna(sp):
                ax.text(i + dx, 2, "none", rotation=90, ha="center", va="bottom", fontsize=7, color="#555555")
                continue
            colour = col if r.counted else "#bdbdbd"
            ax.bar(i + dx, 100 * sp, 0.38, color=colour, hatch="//" if cens else None,
                   edgecolor="white" if cens else colour,
                   label=(f"IMP, {name}" if i == 0 else None) if r.counted else None)
            if cens:
                ax.text(i + dx, 100 * sp + 1.5, "≥", ha="center", va="bottom", fontsize=11, color=col)
    ax.set_xticks(x, [t if c else f"{t}\n(not counted)" for t, c in zip(rel["task"], rel["counted"])],
                  rotation=30, ha="right")
    ax.set_ylim(0, 105)
    ax.set_ylabel(f"highest sparsity clearly ≥ {100 * relaxed:g}% of dense (%)")
    ax.set_title("Relaxed tickets per task: paper vs this run (hatched ≥: highest tested, a bound)", fontsize=10)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=3, frameon=False)


def vl_paper(ctx: ReportContext) -> list[str]:
    rd, relaxed = ctx.report_dir, ctx.config.report.relaxed
    md = ["# Vision-and-language ticket figures for this run", "", f"> {CAVEAT}", ""]
    claims = vl_claims(ctx.df, claim_tasks(ctx), relaxed)
    ctx.add(write_table(rd, "vl_claims", claims_frame(claims), caption="The VL-LTH claims: paper vs this run."))
    md += ["## Claims", "", to_markdown(claims_frame(claims))]
    lo, hi = VL_RELAXED_RANGE
    status, curves, matches = figure_tables(ctx.df, ctx.tasks, ctx.convergence, relaxed)
    write_figure_tables(ctx, (status, curves, matches), prefix="vl_figure")
    for bb in ctx.backbones:
        sfx = ctx.suffix(bb)
        ctx.add(plots.accuracy_grid(curves, matches, ctx.tasks, bb, rd / f"vl_accuracy_vs_sparsity{sfx}", relaxed))
        pt = pd.DataFrame(pretrain_transfer(ctx.df, ctx.tasks, bb))
        ctx.add(write_table(rd, f"vl_pretrain_transfer{sfx}", pt, pt.apply(lambda c: c.map(fmt_num)),
                            "Pre-training ticket: average % of dense over target tasks, paper vs this run "
                            "(nearest ladder sparsity)."))
        rel = _relaxed_per_task(ctx, bb, matches)
        ctx.add(write_table(rd, f"vl_relaxed_sparsity{sfx}", rel, _relaxed_display(rel),
                            caption="Per task: the paper's relaxed range beside this run's highest clearly relaxed "
                            "sparsity (95% CI; '≥' at the highest tested sparsity: a bound, not a match), own-task "
                            "and pre-training ticket, and the relaxed outcome claim (i) is made of."))

        # Figure: relaxed sparsity per task against the paper's band, and the pre-training
        # ticket's average transfer over the ladder against the paper's two points.
        fig, (a, b) = plt.subplots(1, 2, figsize=(13, 4.6))
        _relaxed_bars(a, rel, relaxed)
        avg = []
        for sp in ctx.sparsities:
            pct, _ = transfer_matrix(ctx.df, ctx.tasks, sp, bb)
            avg.append(float(pct.loc["imp:pretrain", "average"]) if "imp:pretrain" in pct.index else np.nan)
        curve = pd.DataFrame({"sparsity": [0.0, *ctx.sparsities], "avg_pct_dense": [100.0, *avg]})
        ctx.add(write_table(rd, f"vl_pretrain_transfer_curve{sfx}", curve,
                            caption="The pre-training ticket's average % of dense over target tasks per ladder sparsity "
                            "(the figure's right panel; dense at 0%)."))
        # Dense is 100 % of itself at 0 %: the curve starts there.
        b.plot(100 * curve["sparsity"], curve["avg_pct_dense"], "s-", color="#d62728", lw=2, label="this run")
        b.plot([100 * s for s in VL_PRETRAIN_TRANSFER], list(VL_PRETRAIN_TRANSFER.values()), "k*", ms=14,
               label="paper (UNITER)")
        b.axhline(100 * relaxed, color="black", ls=":", lw=1, label=f"{100 * relaxed:g}% of dense")
        b.set_xlabel("sparsity (%)")
        b.set_ylabel("average % of dense over target tasks")
        b.set_title("Pre-training ticket transfer")
        b.grid(alpha=0.3)
        b.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=3, frameon=False)
        fig.suptitle(f"VL-LTH claims — {bb}")
        fig.tight_layout()
        ctx.add(plots.save(fig, rd / f"vl_claims{sfx}"))
        md += [f"## {bb}", "", f"![accuracy vs sparsity](vl_accuracy_vs_sparsity{sfx}.png)", "",
               f"![claims](vl_claims{sfx}.png)", "", "### Pre-training ticket transfer", "",
               to_markdown(pt.apply(lambda c: c.map(fmt_num))), "### Relaxed sparsity", "",
               to_markdown(_relaxed_display(rel))]
        s70 = nearest(ctx.sparsities, 0.7)
        if s70 is not None:
            pct, _ = transfer_matrix(ctx.df, ctx.tasks, s70, bb)
            if not pct.empty:
                stem = f"vl_transfer_{sparsity_tag(s70)}{sfx}"
                ctx.add(plots.heatmap(pct, rd / stem, f"Transfer at {fmt_sparsity(s70)} (nearest 70%) — {bb}",
                                      "% of dense accuracy", center=100.0, average_col="average"))
                md += [f"![transfer]({stem}.png)", ""]
    return md


def paper_figures(out_dir: str | Path, paper: str, config: Config | None = None) -> Path:
    """Write `<out>/report/paper-<paper>/` (tables, figures, README.md); returns that directory."""
    if paper not in PAPERS:
        raise ConfigError(f"unknown paper '{paper}': expected one of {', '.join(PAPERS)}")
    ctx = load_context(out_dir, config, subdir=f"paper-{paper}")
    md = vl_paper(ctx) if paper == "vl" else bert_paper(ctx)
    ctx.add([atomic_write_text(ctx.report_dir / "README.md", "\n".join(md) + "\n")])
    prune_stale(ctx, ".paper-files.json")
    return ctx.report_dir
