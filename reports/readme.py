"""`<out>/report/README.md`: setup, dense vs chance, key tables, figures, the papers' claims checked."""

from __future__ import annotations

import pandas as pd

from bench.core.io import atomic_write_text
from reports.claims import claims_frame
from reports.compare import verdict
from reports.context import ReportContext
from reports.store import DENSE, run_facts
from reports.tables import matching_display
from reports.writers import fmt_num, fmt_sparsity, sparsity_tag, to_markdown


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
    missing_sp = [s for s in cfg.matrix.sparsities if round(float(s), 4) not in present]
    if missing_sp:
        out.append("ladder sparsities without runs: " + ", ".join(fmt_sparsity(s) for s in missing_sp))
    if df["seed"].nunique() < 2:
        out.append("one seed per run: no std, strict matching not assessed, --compare uses a stated tolerance")
    if not ctx.tickets:
        out.append("no ticket files under tickets/: ticket overlap and per-layer sparsity are not reported")
    failed = df.attrs.get("failed", 0)
    if failed:
        out.append(f"{failed} failed run(s) left out: " + ", ".join(df.attrs.get("failed_runs", [])[:10]))
    return out


def _setup(ctx: ReportContext) -> list[str]:
    facts = run_facts(ctx.out)
    cfg, df = ctx.config, ctx.df
    w = cfg.world
    world = (f"toyland (scale {w.scale}, seed {w.seed})" if w.source == "toyland"
             else f"real data at {w.data_root or '?'}")
    versions = "; ".join(f"{k} {', '.join(v)}" for k, v in facts["versions"].items()) or "not recorded"
    lines = [
        f"- backbone: {', '.join(ctx.backbones)} (config preset `{cfg.backbone.preset}`)",
        f"- world / data: {world}",
        f"- seeds: {', '.join(str(s) for s in sorted(set(df['seed'])))} (fine-tuning)",
        f"- sparsities: {', '.join(fmt_sparsity(s) for s in sorted(set(df['sparsity']) - {0.0}))}",
        f"- tasks: {', '.join(ctx.tasks)}",
        f"- sources: {df['source'].nunique()} ({', '.join(sorted(set(df['source'])))})",
        f"- runs: {facts['done']} done, {facts['failed']} failed",
        f"- fine-tuning wall time (sum over runs): {_duration(facts['fine_tune_wall_s'])}",
        f"- device: {', '.join(facts['devices']) or 'not recorded'}",
        f"- versions: {versions}",
    ]
    timings = ctx.out / "timings.json"
    if timings.exists():  # the runner's whole-pipeline timings, when it wrote them
        from bench.core.errors import DataError
        from bench.core.io import read_json

        try:
            t = read_json(timings)
        except DataError:
            t = {}
        if isinstance(t, dict) and isinstance(t.get("last_total_s"), (int, float)):
            stages = ", ".join(f"{k} {_duration(v)}" for k, v in t.items()
                               if k not in ("last_total_s", "threads") and isinstance(v, (int, float)))
            lines.append(f"- pipeline wall time (last run): {_duration(t['last_total_s'])}" + (f" ({stages})" if stages else ""))
    if facts["failed_reasons"]:
        lines.append("- failure reasons: " + "; ".join(facts["failed_reasons"][:5]))
    return lines


def _img(path_stem: str, alt: str) -> str:
    return f"![{alt}]({path_stem}.png)  \n[PDF]({path_stem}.pdf)"


def write_readme(ctx: ReportContext, t: dict, cmp, method: str | None) -> None:
    """Write README.md and register it with the context's written files."""
    L = ["# ticketbench report", "",
         "Lottery-ticket transfer for vision-and-language transformers. Generated from the results store "
         "alone by `ticketbench report`; every number below comes from `matrix.csv`.", ""]
    if ctx.config.world.source == "toyland":
        L += ["> These are **toyland** numbers: a miniature synthetic world and tiny models. They are not comparable "
              "to the papers' numbers in absolute terms; the claims below compare their *shape*.", ""]
    L += ["## Setup", ""] + _setup(ctx) + [""]
    g = gaps(ctx)
    if g:
        L += ["## Partial report: what is missing", ""] + [f"- {x}" for x in g] + [""]

    L += ["## Dense model vs chance", ""]
    d = t["dense"]
    if d.empty:
        L += ["No dense runs in the store.", ""]
    else:
        disp = pd.DataFrame({
            "backbone": d["backbone"], "task": d["task"], "metric": d["metric"],
            "dense": [f"{fmt_num(m)} ± {fmt_num(s)}" if pd.notna(s) else fmt_num(m) for m, s in zip(d["dense_mean"], d["dense_std"])],
            "chance": d["chance"].map(lambda c: fmt_num(c) if pd.notna(c) else "unknown"),
            "dense − chance": d["above_chance"].map(lambda c: f"{c:+.1f}" if pd.notna(c) else "–"),
        })
        L += [to_markdown(disp)]

    L += ["## The papers' claims, checked against this run", "",
          "Verdicts come from the numbers as they are (no tuning to agree).", ""]
    L += [to_markdown(claims_frame(t["claims"]))]

    L += ["## Accuracy vs sparsity", "", _img("accuracy_vs_sparsity" + ctx.suffix(ctx.backbones[0]), "accuracy vs sparsity"),
          "", "Full table: [accuracy_vs_sparsity.md](accuracy_vs_sparsity.md).", ""]
    L += ["## Matching sparsity", "", to_markdown(matching_display(t["matching"]))]

    L += ["## Transfer", ""]
    for (bb, sp), pct in t["transfer"].items():
        tag = f"{sparsity_tag(sp)}{ctx.suffix(bb)}"
        L += [f"### {fmt_sparsity(sp)} sparsity — {bb} (% of dense)", "",
              to_markdown(pct.apply(lambda c: c.map(fmt_num))),
              _img(f"transfer_heatmap_{tag}", f"transfer at {fmt_sparsity(sp)}"), "",
              f"Absolute values: [transfer_matrix_{tag}_abs.md](transfer_matrix_{tag}_abs.md).", ""]

    L += ["## Tickets", ""]
    if t.get("tickets"):
        for (bb, sp, name), _ in t["overlap_sq"].items():
            L += [f"### Overlap at {fmt_sparsity(sp)} — {bb}", "",
                  _img(name.replace("ticket_overlap", "overlap_heatmap"), "ticket overlap"), "",
                  f"Table: [{name}.md]({name}.md).", ""]
        streams = t["streams"]
        L += ["### Sparsity by stream (%)", "",
              to_markdown(streams.assign(stream_sparsity=100 * streams["stream_sparsity"]).apply(
                  lambda c: c.map(lambda v: fmt_num(v) if isinstance(v, float) else v))),
              _img("layer_sparsity" + ("" if t["layers"]["backbone"].nunique() <= 1 else f"_{ctx.backbones[0]}"),
                   "per-layer sparsity"), ""]
    else:
        L += ["No ticket files in the store.", ""]

    if method:
        full, summary = cmp
        L += [f"## Comparing `{method}`", "", verdict(summary, method), "",
              to_markdown(summary.apply(lambda c: c.map(lambda v: fmt_num(v, 2) if isinstance(v, float) else v))),
              f"Per cell: [compare_{method}.md](compare_{method}.md).", ""]
        if not full.empty:
            L += [_img(f"compare_{method}", f"compare {method}"), ""]

    L += ["## Files", "", "Every table is in `.csv` (numbers), `.md` and `.tex`; every figure in `.png` and `.pdf`. "
          "`matrix.csv` is the long table of every finished run.", ""]
    ctx.add([atomic_write_text(ctx.report_dir / "README.md", "\n".join(L))])
