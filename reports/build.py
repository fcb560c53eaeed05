"""`build_report`: every table and figure under `<out>/report/`, from the store alone."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from bench.config import Config, to_dict
from bench.core.io import file_hash, safe_name, short_hash
from bench.core.layout import REPORT_FILES, Layout, file_name
from bench.tasks.base import DECLARATIONS
from reports import claims_bert, plots
from reports.claims import convergence, dense_vs_chance, verdict_tables
from reports.compare import compare_frame, compare_summary
from reports.context import ReportContext, load_context, prune_stale, reused_figures
from reports.figure_data import figure_tables, write_figure_tables
from reports.readme import write_readme
from reports.seeds import replicate_spread, seeds_display, seeds_table, sigma_check
from reports.tables import (
    accuracy_vs_sparsity,
    layer_sparsity,
    matching_display,
    matching_sparsity,
    matrix_type_sparsity,
    overlap_square,
    summarize,
    ticket_overlap,
    transfer_matrix,
    type_figure,
)
from reports.writers import fmt_num, fmt_sparsity, sparsity_tag, write_table


def _fmt_frame(df: pd.DataFrame, digits: int = 1) -> pd.DataFrame:
    return df.apply(lambda col: col.map(lambda v: fmt_num(v, digits)))


def build_tables(ctx: ReportContext) -> dict:
    """Write the tables; return what the figures and README need."""
    rd, cfg = ctx.report_dir, ctx.config
    out: dict = {"transfer": {}, "overlap_sq": {}}
    long, disp = accuracy_vs_sparsity(ctx.df, ctx.tasks)
    ctx.add(write_table(rd, "accuracy_vs_sparsity", long, disp,
                        "Headline metric per task, source and sparsity: mean ± std over seeds (% of dense / "
                        "chance-normalised %: (value − chance) / (dense − chance))."))
    out["summary"] = summarize(ctx.df)
    for bb in ctx.backbones:
        for sp in ctx.sparsities:
            pct, absolute = transfer_matrix(ctx.df, ctx.tasks, sp, bb)
            if pct.empty:
                continue
            name = f"transfer_matrix_{sparsity_tag(sp)}{ctx.suffix(bb)}"
            ctx.add(write_table(rd, name, pct, _fmt_frame(pct),
                                f"Transfer at {fmt_sparsity(sp)} sparsity ({bb}): % of dense per target task."))
            ctx.add(write_table(rd, name + "_abs", absolute, _fmt_frame(absolute),
                                f"Transfer at {fmt_sparsity(sp)} sparsity ({bb}): headline metric (points)."))
            out["transfer"][(bb, sp)] = pct
    m = matching_sparsity(ctx.df, ctx.tasks, cfg.report.relaxed)
    out["matching"] = m
    ctx.add(write_table(rd, "matching_sparsity", m, matching_display(m),
                        "Highest matching sparsity: strict = within one std of dense over seeds; "
                        f"relaxed = ≥ {100 * cfg.report.relaxed:g}% of dense."))
    dvc = dense_vs_chance(ctx.df, ctx.tasks)
    out["dense"] = dvc
    ctx.add(write_table(rd, "dense_vs_chance", dvc, _fmt_frame(dvc.set_index(["backbone", "task", "metric"]))))
    conv = convergence(ctx.df, ctx.convergence, ctx.tasks)
    out["convergence"] = conv
    ints = ["seeds", "steps_factor", "long_seeds"]
    conv_disp = _fmt_frame(conv.drop(columns=ints).set_index(["backbone", "task", "converged"]))
    for c in ints:
        conv_disp[c] = conv[c].map(lambda v: "–" if pd.isna(v) else f"{v:g}").to_numpy()
    ctx.add(write_table(rd, "dense_convergence", conv, conv_disp,
                        "Dense at the recipe's steps and at steps_factor × them (mean over seeds); converged when "
                        "the gain is below one dense seed std."))
    # claims.* and comparisons.*: the BERT-tickets claims for a text study, the VL-LTH ones otherwise
    out.update((claims_bert.verdict_tables if claims_bert.is_text_study(ctx.tasks) else verdict_tables)(ctx))
    # The figures' own tables, made with the verdicts' functions (reports/figure_data.py).
    out["figure"] = figure_tables(ctx.df, ctx.tasks, ctx.convergence, cfg.report.relaxed)
    write_figure_tables(ctx, out["figure"])
    seeds = seeds_table(ctx.df, ctx.seeds)
    out["seeds"] = seeds
    ctx.add(write_table(rd, "seeds", seeds, seeds_display(seeds),
                        "Fine-tuning seeds per cell (search_seed: the search replicate) and why it stopped: fixed "
                        "(matrix.seeds), decided (its anytime-valid interval, % of dense, cleared every threshold), "
                        "cap (matrix.adaptive_max_seeds), cells settled (dense)." + sigma_check(ctx.df, cfg.matrix)))
    spread = replicate_spread(ctx.df)
    if not spread.empty:  # search replicates (find.seeds): how much the mask itself moves a score
        disp = _fmt_frame(spread.set_index(["backbone", "source", "sparsity", "task"]), 2)
        disp[["replicates", "seeds"]] = spread[["replicates", "seeds"]].astype(int).astype(str).to_numpy()
        ctx.add(write_table(rd, "replicates", spread, disp,
                            "Mask-to-mask (std of the search replicates' means) beside fine-tuning variance (seed std "
                            "pooled within replicates), points."))

    tickets = ctx.tickets
    out["tickets"] = len(tickets)
    if tickets:
        ov = ticket_overlap(tickets)
        ctx.add(write_table(rd, "ticket_overlap", ov))
        for (bb, sp), _ in ov.groupby(["backbone", "sparsity"]):
            sq = overlap_square(ov, bb, sp, ctx.tasks)
            name = f"ticket_overlap_{sparsity_tag(sp)}" + (f"_{file_name(bb)}" if ov["backbone"].nunique() > 1 else "")
            ctx.add(write_table(rd, name, sq, _fmt_frame(sq, 2), f"Jaccard of kept weights at {fmt_sparsity(sp)} ({bb})."))
            out["overlap_sq"][(bb, sp, name)] = sq
        per_layer, per_stream = layer_sparsity(tickets)
        out["layers"], out["streams"] = per_layer, per_stream
        ctx.add(write_table(rd, "layer_sparsity", per_layer))
        stream_disp = per_stream.pivot_table(index=["backbone", "source", "sparsity"], columns="stream",
                                             values="stream_sparsity", aggfunc="first") * 100
        stream_disp.columns.name = None
        ctx.add(write_table(rd, "layer_sparsity_by_stream", per_stream, _fmt_frame(stream_disp),
                            "Sparsity (%) of each ticket per stream."))
        per_type = matrix_type_sparsity(tickets)
        out["types"] = per_type
        type_disp = per_type.pivot_table(index=["backbone", "source", "sparsity", "layer"], columns="matrix",
                                         values="matrix_sparsity", aggfunc="first", sort=False) * 100
        type_disp.columns.name = None
        ctx.add(write_table(rd, "matrix_type_sparsity", per_type, _fmt_frame(type_disp),
                            "Sparsity (%) of each ticket per layer and matrix type."))
    return out


def figures_key(ctx: ReportContext) -> str:
    """Everything `build_figures` draws from: the results, the config, the tickets (by size and mtime),
    the task declarations and the code drawing them (every module of `reports`, matplotlib's version).
    The same key means the same figures, so a rebuild of an unchanged store reuses them."""
    tickets = [(str(v.path), v.path.stat().st_size, v.path.stat().st_mtime_ns) for v in ctx.tickets]
    code = [file_hash(p) for p in sorted(Path(__file__).parent.glob("*.py"))] + [file_hash(DECLARATIONS)]
    return short_hash([ctx.df.to_csv(), ctx.convergence.to_csv(), to_dict(ctx.config), ctx.tasks, ctx.backbones,
                       ctx.sparsities, tickets, code, plots.matplotlib.__version__], n=16)


def build_figures(ctx: ReportContext, t: dict) -> None:
    rd = ctx.report_dir
    for bb in ctx.backbones:
        _, curves, matches = t["figure"]
        ctx.add(plots.accuracy_grid(curves, matches, ctx.tasks, bb, rd / f"accuracy_vs_sparsity{ctx.suffix(bb)}",
                                    ctx.config.report.relaxed))
    status = t["figure"][0]
    for (bb, sp), pct in t["transfer"].items():
        # Target tasks the claims do not count against dense are named so in the figure, not drawn like the others.
        out = set(status[(status["backbone"] == bb) & ~status["relative"].astype(bool)]["task"])
        shown = pct.rename(columns={c: f"{c} (not counted)" for c in pct.columns if c in out})
        ctx.add(plots.heatmap(shown, rd / f"transfer_heatmap_{sparsity_tag(sp)}{ctx.suffix(bb)}",
                              f"Transfer at {fmt_sparsity(sp)} sparsity — {bb}", "% of dense accuracy",
                              center=100.0, average_col="average"))
    for (bb, sp, name), sq in t["overlap_sq"].items():
        ctx.add(plots.heatmap(sq, rd / name.replace("ticket_overlap", "overlap_heatmap"),
                              f"Ticket overlap at {fmt_sparsity(sp)} sparsity — {bb}", "Jaccard (kept weights)",
                              fmt="{:.2f}", cmap="viridis", vmin=0.0, vmax=1.0))
    if t.get("tickets"):
        for bb in sorted(set(t["layers"]["backbone"])):
            stem = rd / ("layer_sparsity" + (f"_{file_name(bb)}" if t["layers"]["backbone"].nunique() > 1 else ""))
            ctx.add(plots.layer_profile(t["layers"], bb, stem))
        for bb in sorted(set(t["types"]["backbone"])):
            ctx.add(plots.matrix_type_profile(t["types"], bb, rd / type_figure(t["types"], bb), ctx.tasks))


def build_compare(ctx: ReportContext, method: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The `--compare METHOD` table (per cell and summary) and figure."""
    cmp = compare_frame(ctx.df, method, ctx.config.report.tie_margin, ctx.convergence)
    summary = compare_summary(cmp)
    rd = ctx.report_dir
    disp = cmp.assign(sparsity=cmp["sparsity"].map(fmt_sparsity))
    ctx.add(write_table(rd, f"compare_{method}", cmp, _fmt_frame(disp.drop(columns=["reference_source"]), 2),
                        f"'{method}' minus the like reference ticket (points) with its 95% CI; win / loss when the CI "
                        "clears ± the margin, tie when inside it (reports/compare.py, the rule `ticketbench compare` uses)."))
    ctx.add(write_table(rd, f"compare_{method}_summary", summary, _fmt_frame(summary, 2)))
    if not cmp.empty:
        ctx.add(plots.compare_plot(cmp, method, rd / f"compare_{method}", ctx.tasks))
    return cmp, summary


def build_report(out_dir: str | Path, compare: str | None = None, config: Config | None = None,
                 plan: str | None = None, plans: list[str] | None = None) -> Path:
    """Rebuild every table and figure under `<out>/report/` from the results store alone.

    Idempotent: the same store gives the same files, and files of an earlier build that this one
    does not produce are removed. An empty store raises a one-line DataError; a partial store
    (missing tasks, sparsities, dense runs, seeds or tickets) gives a partial report whose README
    lists what is missing. Returns the report directory.
    """
    if compare:
        safe_name(compare, "method")
    Layout(out_dir).report_inputs.unlink(missing_ok=True)  # the pipeline marks its own builds (reports/fresh.py)
    ctx = load_context(out_dir, config, plan=plan, plans=plans)
    tables = build_tables(ctx)
    key = figures_key(ctx)
    figures = reused_figures(ctx, REPORT_FILES, key)
    if figures is None:
        start = len(ctx.written)
        build_figures(ctx, tables)
        figures = ctx.written[start:]
    else:
        ctx.add(figures)
    cmp = build_compare(ctx, compare) if compare else None
    ctx.add([ctx.report_dir / "matrix.csv"])
    write_readme(ctx, tables, cmp, compare)
    prune_stale(ctx, REPORT_FILES, (key, figures))
    return ctx.report_dir
