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
from reports import plots
from reports.claims import VL_PRETRAIN_TRANSFER, VL_RELAXED_RANGE, claims_frame, pretrain_transfer, vl_claims
from reports.claims_bert import BERT_MLM_TRANSFER_70, BERT_TABLE2, PAPER_NAMES, bert_claims
from reports.context import ReportContext, load_context, prune_stale
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

        rows.append({"task": task, "criterion": crit, "sparsity": sp, "dense": r["dense_mean"],
                     "imp": at(f"imp:{task}"), "random": at("random")})
    out = pd.DataFrame(rows, columns=["task", "criterion", "sparsity", "dense", "imp", "random"])
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
        _bars(axes[0, 1], ours["task"], ours["imp_minus_dense"].fillna(0), "#1f77b4",
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
               to_markdown(ours.assign(sparsity=ours["sparsity"].map(lambda x: "none" if pd.isna(x) else fmt_sparsity(x)))),
               "### Shape", "", to_markdown(shape.apply(lambda c: c.map(fmt_num))),
               f"![paper vs run](bert_paper_vs_run{sfx}.png)", ""]
    return md


def vl_paper(ctx: ReportContext) -> list[str]:
    rd, relaxed = ctx.report_dir, ctx.config.report.relaxed
    md = ["# Vision-and-language ticket figures for this run", "", f"> {CAVEAT}", ""]
    claims = vl_claims(ctx.df, ctx.tasks, relaxed)
    ctx.add(write_table(rd, "vl_claims", claims_frame(claims), caption="The VL-LTH claims: paper vs this run."))
    md += ["## Claims", "", to_markdown(claims_frame(claims))]
    summary = summarize(ctx.df)
    lo, hi = VL_RELAXED_RANGE
    for bb in ctx.backbones:
        sfx = ctx.suffix(bb)
        ctx.add(plots.accuracy_grid(summary, ctx.tasks, bb, rd / f"vl_accuracy_vs_sparsity{sfx}", relaxed))
        pt = pd.DataFrame(pretrain_transfer(ctx.df, ctx.tasks, bb))
        ctx.add(write_table(rd, f"vl_pretrain_transfer{sfx}", pt, pt.apply(lambda c: c.map(fmt_num)),
                            "Pre-training ticket: average % of dense over target tasks, paper vs this run "
                            "(nearest ladder sparsity)."))
        m = matching_sparsity(ctx.df[ctx.df["backbone"] == bb], ctx.tasks, relaxed)
        own = m[m["source"] == "imp:" + m["task"]]
        pre = m[m["source"] == "imp:pretrain"]
        rel = pd.DataFrame({"task": own["task"].to_numpy(), "own_imp_relaxed": own["relaxed_sparsity"].to_numpy()})
        rel = rel.merge(pre[["task", "relaxed_sparsity"]].rename(columns={"relaxed_sparsity": "pretrain_relaxed"}),
                        on="task", how="left")
        rel["paper_range"] = f"{fmt_sparsity(lo)}–{fmt_sparsity(hi)}"
        ctx.add(write_table(rd, f"vl_relaxed_sparsity{sfx}", rel, caption="Highest relaxed-matching sparsity per task."))

        # Figure: relaxed sparsity per task against the paper's band, and the pre-training
        # ticket's average transfer over the ladder against the paper's two points.
        fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2))
        x = np.arange(len(rel))
        a.axhspan(100 * lo, 100 * hi, color="#ffd54f", alpha=0.4, label="paper: 50–70%")
        a.bar(x - 0.2, 100 * rel["own_imp_relaxed"].fillna(0), 0.4, color="#1f77b4", label="IMP, own task")
        a.bar(x + 0.2, 100 * rel["pretrain_relaxed"].fillna(0), 0.4, color="#d62728", label="IMP, pre-training")
        a.set_xticks(x, rel["task"], rotation=30, ha="right")
        a.set_ylim(0, 100)
        a.set_ylabel(f"highest sparsity ≥ {100 * relaxed:g}% of dense (%)")
        a.set_title("Relaxed tickets (0 = none)")
        a.legend(loc="upper center", bbox_to_anchor=(0.5, -0.25), ncol=3, frameon=False)
        avg = []
        for sp in ctx.sparsities:
            pct, _ = transfer_matrix(ctx.df, ctx.tasks, sp, bb)
            avg.append(float(pct.loc["imp:pretrain", "average"]) if "imp:pretrain" in pct.index else np.nan)
        b.plot([100 * s for s in ctx.sparsities], avg, "s-", color="#d62728", lw=2, label="this run")
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
               to_markdown(rel.apply(lambda c: c.map(lambda v: "none" if pd.isna(v) else (fmt_sparsity(v) if isinstance(v, float) else v))))]
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
