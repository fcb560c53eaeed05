"""`<out>/report/README.md`: the verdicts first (the papers' claims checked, with reasons), then
setup, dense vs chance and the key tables; long tables and figures are linked, not inlined."""

from __future__ import annotations

import pandas as pd

from bench.core.errors import DataError
from bench.core.io import MAX_STORE_BYTES, atomic_write_text, read_json
from bench.core.layout import Layout, file_name
from bench.core.validate import check_timings
from reports.backbones import write_backbone_section
from reports.claims import RULES, claim_tasks, claims_frame
from reports.compare import verdict
from reports.context import ReportContext
from reports.store import DENSE, run_facts
from reports.tables import matching_display, type_figure
from reports.writers import fmt_num, fmt_sparsity, md_text, sparsity_tag, to_markdown


def _duration(s: float) -> str:
    h, rem = divmod(int(round(s)), 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else f"{m}m {sec:02d}s"


def gaps(ctx: ReportContext) -> list[str]:
    """What the store lacks compared with the config (the report is partial where these apply)."""
    df, cfg, out = ctx.df, ctx.config, []
    missing_tasks = [t for t in cfg.matrix.tasks if t not in set(df["task"])]
    if missing_tasks:
        out.append("target tasks without any finished run: " + ", ".join(missing_tasks))
    no_dense = sorted(set(df["task"]) - set(df[df["source"] == DENSE]["task"]))
    if no_dense:
        out.append("tasks without a dense run (no % of dense): " + ", ".join(no_dense))
    present = set(df["sparsity"])
    wanted = cfg.matrix.sparsities or cfg.find.sparsities  # an empty matrix subset = the whole ladder
    missing_sp = [s for s in wanted if round(float(s), 4) not in present]
    if missing_sp:
        out.append("ladder sparsities without runs: " + ", ".join(fmt_sparsity(s) for s in missing_sp))
    dense_seeds = df[df["source"] == DENSE]["seed"].nunique()
    if df["seed"].nunique() < 2:
        out.append("one seed per run: no seed noise, so every claim is not testable and strict matching is "
                   "not assessed")
    elif df[df["source"] != DENSE]["seed"].nunique() < 2 <= dense_seeds:
        out.append(f"tickets have one seed (dense {dense_seeds}): the chance rule uses dense's seeds, but every claim "
                   "on tickets needs an interval from two runs per cell or more (one seed: no interval), and strict "
                   "matching three ticket searches (`find.seeds`)")
    if not ctx.tickets:
        out.append("no ticket files under tickets/: ticket overlap and per-layer sparsity are not reported")
    failed = df.attrs.get("failed", 0)
    if failed:
        out.append(f"{failed} failed run(s) left out: " + ", ".join(map(md_text, df.attrs.get("failed_runs", [])[:10])))
    return out


def _setup(ctx: ReportContext) -> list[str]:
    facts = run_facts(ctx.out)
    cfg, df = ctx.config, ctx.df
    w = cfg.world
    world = (f"toyland (scale {w.scale}, seed {w.seed})" if w.source == "toyland"
             else f"real data at {md_text(w.data_root or '?')}")
    # Text from records (devices, versions, reasons) is shown as written: escaped (reports.writers.md_text).
    versions = "; ".join(f"{k} {', '.join(map(md_text, v))}" for k, v in facts["versions"].items()) or "not recorded"
    lines = [
        f"- backbone: {', '.join(ctx.backbones)} (config preset `{cfg.backbone.preset}`)",
        f"- world / data: {world}",
        f"- seeds: {', '.join(str(s) for s in sorted(set(df['seed'])))} (fine-tuning)",
        f"- sparsities: {', '.join(fmt_sparsity(s) for s in sorted(set(df['sparsity']) - {0.0}))}",
        f"- tasks: {', '.join(ctx.tasks)}",
        f"- sources: {df['source'].nunique()} ({', '.join(sorted(set(df['source'])))})",
        f"- runs: {facts['done']} done, {facts['failed']} failed"
        + (f", {df.attrs['pending']} pending (listed in a plan, no record yet: not in any table)"
           if df.attrs.get("pending") else ""),
        f"- fine-tuning wall time (sum over runs): {_duration(facts['fine_tune_wall_s'])}",
        f"- device: {', '.join(map(md_text, facts['devices'])) or 'not recorded'}",
        f"- versions: {versions}",
    ]
    timings = Layout(ctx.out).timings
    if timings.exists():  # the runner's whole-pipeline timings, when it wrote them
        try:
            t = check_timings(timings, read_json(timings, MAX_STORE_BYTES))
        except DataError:  # damaged bookkeeping: the README leaves the line out
            t = {}
        if isinstance(t, dict) and isinstance(t.get("last_total_s"), (int, float)):
            stages = ", ".join(f"{k} {_duration(v)}" for k, v in t.items()
                               if k not in ("last_total_s", "threads") and isinstance(v, (int, float)))
            lines.append(f"- pipeline wall time (last run): {_duration(t['last_total_s'])}" + (f" ({stages})" if stages else ""))
    if facts["failed_reasons"]:
        lines.append("- failure reasons: " + "; ".join(map(md_text, facts["failed_reasons"][:5])))
    return lines


def _img(path_stem: str, alt: str) -> str:
    return f"![{alt}]({path_stem}.png)  \n[PDF]({path_stem}.pdf)"


def headline_sparsity(sparsities) -> float | None:
    """The sparsity the README shows first: the pre-training claim's 70 %, else its 60 %, else the
    middle of the ladder (read from the runs)."""
    sp = sorted(sparsities)
    for s in (0.7, 0.6):
        if any(abs(x - s) < 1e-6 for x in sp):
            return next(x for x in sp if abs(x - s) < 1e-6)
    return sp[len(sp) // 2] if sp else None


def _matching_brief(m: pd.DataFrame, backbones: list[str]) -> pd.DataFrame:
    """Per task: its own IMP ticket's strict and relaxed sparsities; rows with nothing assessed are
    dropped (every source is in the linked table)."""
    if m.empty:
        return m
    own = m[(m["source"] == "imp:" + m["task"]).to_numpy()]
    disp = matching_display(own).drop(columns=["note", "tested", "source"])
    return disp if len(backbones) > 1 else disp.drop(columns=["backbone"])


def dense_reference(dvc: pd.DataFrame, conv: pd.DataFrame) -> list[str]:
    """The first screen's line on the yardstick: dense seeds, which tasks clear chance, which are converged."""
    if dvc.empty:
        return ["**Dense reference:** no dense runs in the store: nothing is measured against dense.", ""]
    out = []
    for bb in dict.fromkeys(dvc["backbone"]):
        d, c = dvc[dvc["backbone"] == bb], conv[conv["backbone"] == bb]
        seeds = sorted(set(d["seeds"]))
        tag = f" ({bb})" if dvc["backbone"].nunique() > 1 else ""
        no = d[d["learns"] != "yes"]["task"].tolist()
        line = (f"**Dense reference{tag}:** {'/'.join(map(str, seeds))} seed(s) per task; clearly above chance on "
                f"{len(d) - len(no)}/{len(d)} tasks" + (f" (not: {', '.join(no)})" if no else "") + "; ")
        if c.empty or (c["converged"] == "not checked").all():
            line += "convergence not checked (`matrix.convergence_check` off)."
        else:
            bad = c[c["converged"] == "no"]
            unknown = c[c["converged"].isin(["unknown", "not checked"])]["task"].tolist()
            factor = int(c["steps_factor"].dropna().iloc[0])
            line += (f"converged on {int((c['converged'] == 'yes').sum())}/{len(c)} tasks ({factor}× the recipe's "
                     "steps gains less than one dense seed std)")
            if len(bad):
                line += "; **not converged:** " + ", ".join(
                    f"{r.task} ({r.gain:+.1f} points, std {r.dense_std:.1f})" for r in bad.itertuples())
            if unknown:
                line += f"; unknown: {', '.join(unknown)}"
            line += "."
        out += [line, ""]
    return out


def _verdicts(claims) -> str:
    f = claims_frame(claims)
    return to_markdown(pd.DataFrame({"claim": f["claim"], "paper": f["paper"], "this run": f["this_run"],
                                     "verdict": f["verdict"].map(lambda v: f"**{md_text(v)}**"), "reason": f["reason"]}),
                       index=False, markup=("verdict",))


def _comparisons(cmp: pd.DataFrame) -> str:
    return to_markdown(pd.DataFrame({"A": cmp["a"], "B": cmp["b"], "A − B (points)": cmp["summary"],
                                     "outcome": cmp["outcome"], "why": cmp["reason"]}), index=False)


def write_readme(ctx: ReportContext, t: dict, cmp, method: str | None) -> None:
    """Write README.md (verdicts first, then the key tables; long tables are linked) and register
    it with the context's written files."""
    relaxed = ctx.config.report.relaxed
    L = ["# ticketbench report", "",
         "Lottery-ticket transfer for vision-and-language transformers, generated from the results store "
         "alone by `ticketbench report` (every number comes from `matrix.csv`).", ""]
    if ctx.config.world.source == "toyland":
        L += ["> **toyland** numbers: a miniature synthetic world and tiny models, not comparable to the papers' "
              "numbers in absolute terms; the claims below compare their *shape*.", ""]
    L += dense_reference(t["dense"], t.get("convergence", pd.DataFrame()))
    L += ["## Verdicts", "",
          "holds / fails / **not testable** unless the numbers can carry the claim. " + t.get("rules", RULES), ""]
    if ctx.config.matrix.claim_tasks:  # the pre-registered core; the transfer matrix below covers every task
        L += [f"The claims are decided on {', '.join(claim_tasks(ctx))} (`matrix.claim_tasks`, fixed in the config "
              "before any run), where the claims' sources have every search replicate; the transfer tables cover "
              f"all {len(ctx.tasks)} target tasks.", ""]
    L += [_verdicts(t["claims"])]
    cmp_t = t.get("comparisons")
    if cmp_t is not None and not cmp_t.empty:
        L += ["### Paired comparisons (over task, sparsity, search, seed; tasks clearly above chance)", ""]
        if (cmp_t["outcome"] == "not testable").all() and cmp_t["reason"].nunique() == 1:
            L += [f"Not testable: {cmp_t['reason'].iloc[0]}.", ""]  # one line, not a table of dashes
        else:
            L += [_comparisons(cmp_t)]
    g = gaps(ctx)
    if g:
        L += ["## Partial report: what is missing", ""] + [f"- {x}" for x in g] + [""]
    L += ["## Setup", ""] + _setup(ctx) + [""]

    L += ["## Dense model vs chance", ""]
    d = t["dense"]
    if d.empty:
        L += ["No dense runs in the store.", ""]
    else:
        conv = t.get("convergence", pd.DataFrame())
        if not conv.empty:
            d = d.merge(conv[["backbone", "task", "long_mean", "steps_factor", "converged"]], on=["backbone", "task"],
                        how="left")
        disp = pd.DataFrame({
            "backbone": d["backbone"], "task": d["task"], "metric": d["metric"],
            "dense": [f"{fmt_num(m)} ± {fmt_num(s)}" if pd.notna(s) else fmt_num(m) for m, s in zip(d["dense_mean"], d["dense_std"])],
            "seeds": d["seeds"],
            "chance": d["chance"].map(lambda c: fmt_num(c) if pd.notna(c) else "unknown"),
            "dense − chance": d["above_chance"].map(lambda c: f"{c:+.1f}" if pd.notna(c) else "–"),
            "seed noise": d["seed_noise"].map(fmt_num),
            "dev-set SE": d["dev_se"].map(fmt_num),
            "clearly above chance": d["learns"],
        })
        if "converged" in d and (d["converged"] != "not checked").any():
            disp["longer (× steps)"] = [f"{fmt_num(m)} ({f:g}×)" if pd.notna(m) else "–"
                                        for m, f in zip(d["long_mean"], d["steps_factor"])]
            disp["converged"] = d["converged"]
        L += [to_markdown(disp, index=False),
              "Convergence: [dense_convergence.md](dense_convergence.md) (dense at more steps, mean over seeds).", ""]

    L += ["## Matching sparsity", "",
          f"Each task's own IMP ticket; strict = mean within one dense std, relaxed = ≥ {100 * relaxed:g}% "
          "of dense (point estimates; the verdicts above add the noise). Every source: "
          "[matching_sparsity.md](matching_sparsity.md).", ""]
    brief = _matching_brief(t["matching"], ctx.backbones)
    L += [to_markdown(brief, index=False) if not brief.empty else "Nothing assessed.\n"]
    if len(ctx.backbones) > 1:  # several backbones (or plans): claim (iii)'s comparison
        lines, paths = write_backbone_section(ctx.df, ctx.report_dir, ctx.tasks, ctx.config.report.relaxed)
        ctx.add(paths)
        L += lines

    sp = headline_sparsity({s for (_, s) in t["transfer"]})
    L += ["## Transfer", ""]
    for (bb, s), _ in t["transfer"].items():
        if s != sp:
            continue
        tag = f"{sparsity_tag(s)}{ctx.suffix(bb)}"
        L += [f"At {fmt_sparsity(s)} sparsity — {bb} (% of dense): table [transfer_matrix_{tag}.md](transfer_matrix_{tag}.md), "
              f"absolute [transfer_matrix_{tag}_abs.md](transfer_matrix_{tag}_abs.md).", "",
              _img(f"transfer_heatmap_{tag}", f"transfer at {fmt_sparsity(s)}"), ""]
    others = [(bb, s) for (bb, s) in t["transfer"] if s != sp]
    if others:
        L += ["Other sparsities: " + ", ".join(
            f"[{fmt_sparsity(s)}{' ' + bb if len(ctx.backbones) > 1 else ''}](transfer_heatmap_{sparsity_tag(s)}{ctx.suffix(bb)}.png)"
            for bb, s in others), ""]

    L += ["## Accuracy vs sparsity", "", _img("accuracy_vs_sparsity" + ctx.suffix(ctx.backbones[0]), "accuracy vs sparsity"),
          "", "Table (mean ± std, % of dense): [accuracy_vs_sparsity.md](accuracy_vs_sparsity.md).", ""]

    L += ["## Tickets", ""]
    if t.get("tickets"):
        links = [f"[overlap at {fmt_sparsity(s)}{' ' + bb if len(ctx.backbones) > 1 else ''}]"
                 f"({name.replace('ticket_overlap', 'overlap_heatmap')}.png)" for (bb, s, name) in t["overlap_sq"]]
        layer = "layer_sparsity" + ("" if t["layers"]["backbone"].nunique() <= 1 else f"_{file_name(ctx.backbones[0])}")
        types = ", ".join(f"[{name}.png]({name}.png)" for name in (
            type_figure(t["types"], bb) for bb in sorted(set(t["types"]["backbone"]))))
        L += ["Overlap (Jaccard of kept weights): " + ", ".join(links) + ". Per-layer sparsity: "
              f"[{layer}.png]({layer}.png); per stream: [layer_sparsity_by_stream.md](layer_sparsity_by_stream.md); "
              f"per layer and matrix type (Q / K / V / attention out / FFN in / FFN out; a layer's average can hide "
              f"one matrix pruned almost entirely): {types}, table [matrix_type_sparsity.md](matrix_type_sparsity.md).", ""]
    else:
        L += ["No ticket files in the store.", ""]

    if method:
        full, summary = cmp
        L += [f"## Comparing `{method}`", "", verdict(summary, method), "",
              to_markdown(summary.apply(lambda c: c.map(lambda v: fmt_num(v, 2) if isinstance(v, float) else v))),
              f"Per cell: [compare_{method}.md](compare_{method}.md).", ""]
        if not full.empty:
            L += [_img(f"compare_{method}", f"compare {method}"), ""]

    L += ["Seeds per cell and why each stopped: [seeds.md](seeds.md).", ""]
    L += ["Files: every table in `.csv` (numbers), `.md` and `.tex`, every figure in `.png` and `.pdf`; `matrix.csv` "
          "holds every finished run, `claims.md` and `comparisons.md` the verdicts with their details.", ""]
    ctx.add([atomic_write_text(ctx.report_dir / "README.md", "\n".join(L))])
