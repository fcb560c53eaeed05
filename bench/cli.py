"""The `ticketbench` command: one subcommand per pipeline stage, plus ticket, task and preset tools.

Errors caused by input are printed as one line (`ticketbench: error: ...`) with a non-zero exit;
`--debug` shows the traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from pathlib import Path

import yaml

# Only light modules here: `--help`, a bad argument or config and `tasks` answer without importing
# torch (seconds); each command imports what it runs.
from bench.config import MFU, PEAK_TFLOPS, STAGES, Config, FindConfig, describe_config, load_config, to_dict
from bench.core.errors import ConfigError, DataError, TicketbenchError
from bench.core.layout import Layout
from bench.core.pipes import refuse_distributed_launch, stdout_closed


def _fmt(text: str) -> str:
    return textwrap.dedent(text).strip() + "\n"


def _add_config_args(p: argparse.ArgumentParser, subset: bool = True) -> None:
    p.add_argument("config", nargs="?", default=None,
                   help="YAML config path or preset name (bench/configs/; default: toyland)")
    p.add_argument("--out", default=None, help="output directory (default: runs/<config name>/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE",
                   help="override any config field, e.g. --set finetune.steps=50 (repeatable)")
    if subset:
        # Shorthand for overrides: each flag is exactly `--set matrix.<field>=VALUE`.
        for flag, field, help_text in SHORTHANDS:
            p.add_argument(flag, dest=field, action=_Override, default=argparse.SUPPRESS, metavar="VALUE",
                           help=f"{help_text} (= --set matrix.{field}=VALUE)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


SHORTHANDS = (
    ("--sources", "sources", "comma-separated source subset, e.g. imp:vqa,random"),
    ("--tasks", "tasks", "comma-separated target-task subset, e.g. vqa,gqa"),
    ("--sparsities", "sparsities", "comma-separated subset of the ladder, e.g. 0.5,0.7"),
    ("--seeds", "seeds", "number of fine-tuning seeds per pair"),
    ("--executor", "executor", "local processes or ray"),
    ("--workers", "workers", "local worker processes"),
    ("--ray-address", "ray_address", "Ray cluster address (default: start a local one)"),
)


class _Override(argparse.Action):
    """Appends `matrix.<dest>=VALUE` to --set, in command-line order."""

    def __call__(self, parser, namespace, values, option_string=None):
        overrides = list(getattr(namespace, "overrides", None) or [])
        namespace.overrides = overrides + [f"matrix.{self.dest}={values}"]


def build_parser() -> argparse.ArgumentParser:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(
        prog="ticketbench", formatter_class=fmt,
        description=_fmt("""
            Lottery-ticket transfer benchmarks for vision-and-language transformers.

            The pipeline: world -> pretrain -> find -> matrix -> report. `ticketbench run` runs every
            stage in order on the embedded default (toyland, toy-uniter), skipping stages whose output
            exists, so re-running resumes after any interruption.
        """),
        epilog=_fmt("""
            examples:
              ticketbench run                         # the embedded default, results in runs/toyland/
              ticketbench run smoke --out /tmp/smoke  # the whole pipeline in under a minute (CI)
              ticketbench report runs/toyland         # rebuild tables and figures from the store
              ticketbench tickets ls runs/toyland     # the tickets a run found
        """),
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("run", formatter_class=fmt, help="run every stage in order (resumable)",
                       description=_fmt("""
            Run world, pretrain, find, matrix and report in order. Each stage is content-addressed by
            its config hash and skipped when its output exists; finished fine-tuning runs are never
            recomputed, so re-running after an interruption resumes.
        """), epilog=_fmt("""
            examples:
              ticketbench run                                    # the toyland config -> runs/toyland/
              ticketbench run smoke --out /tmp/s                 # small and fast
              ticketbench run --tasks vqa,gqa --sparsities 0.5 --seeds 3
              ticketbench run --only matrix --executor ray --ray-address auto
        """))
    _add_config_args(p)
    p.add_argument("--only", choices=STAGES, default=None, help="run one stage only")
    p.set_defaults(func=_cmd_pipeline)

    p = sub.add_parser("plan", formatter_class=fmt, help="print the plan a config makes (nothing runs)",
                       description=_fmt("""
            Print the plan built from CONFIG: the ladder, the pre-training phases, every ticket search
            (with what its method needs), the fine-tuning runs per source and the stage keys. The plan's
            hash names its results: `ticketbench report OUT --plan HASH`. Then its cost, per task and in
            total: searches, runs, optimizer steps, tokens, FLOPs and GPU-hours at a stated MFU and peak
            (bench/cost.py says what is counted), and with --gpus the wall-clock days on that many GPUs
            (the find stage's critical path included). --budget GPU_H prints the design that fits: which
            cells get how many seeds and which of the papers' claims it can still test (--full also the
            configured design). Then, per claim, the smallest difference the design can resolve and whether
            the claim is testable (bench/power.py), from the seed noise measured in a store under --out when
            there is one, else a stated assumed noise. Needs neither the data nor the checkpoint.
        """), epilog="examples:\n  ticketbench plan\n  ticketbench plan smoke --tasks vqa --seeds 3\n"
                     "  ticketbench plan bench/configs/paper-uniter.yaml --mfu 0.3 --peak-tflops 989\n"
                     "  ticketbench plan paper-uniter --gpus 8 --budget 100 --full\n")
    _add_config_args(p)
    p.add_argument("--mfu", type=float, default=MFU, help=f"model FLOPs utilisation assumed (default {MFU})")
    p.add_argument("--peak-tflops", type=float, default=PEAK_TFLOPS,
                   help=f"peak dense TFLOP/s of one GPU (default {PEAK_TFLOPS:g}: H100 SXM, bf16)")
    p.add_argument("--regions", type=int, default=None,
                   help="region tokens an image for region backbones (default: 36 for LXMERT, 50 otherwise)")
    p.add_argument("--gpus", type=int, default=None, help="print the wall-clock on this many GPUs")
    p.add_argument("--budget", type=float, default=None, metavar="GPU_H",
                   help="print the design that fits this many GPU-hours (and --days on --gpus)")
    p.add_argument("--days", type=float, default=3.0, help="with --budget: wall-clock limit in days (default 3)")
    p.add_argument("--full", action="store_true", help="with --budget: also print the configured design")
    p.set_defaults(func=_cmd_plan)

    p = sub.add_parser("gpu-check", formatter_class=fmt, help="one full-size step of every paper recipe on a GPU",
                       description=_fmt("""
            Run one training step of every paper recipe (paper-uniter, paper-lxmert, paper-vilt; each task)
            at full size on the GPU: bf16, fused AdamW, the memory-efficient attention kernel where the
            backbone can use it, pinned host copies; random weights, no data or checkpoint needed. Prints
            peak memory, step time, host time and MFU per recipe against the plan's memory and time models
            and fails on a mismatch. --out OUT writes OUT/gpu-check.json, whose measured MFUs
            `ticketbench plan --out OUT` then uses. --dry-run runs everything but CUDA on the CPU (one
            example a recipe, float32), checking the saved activations against the memory model.
        """), epilog="examples:\n  ticketbench gpu-check --out runs/paper-uniter\n"
                     "  ticketbench gpu-check --dry-run --families uniter --tasks nlvr2\n")
    p.add_argument("--families", default="uniter,lxmert,vilt", help="paper configs to check (comma-separated)")
    p.add_argument("--tasks", default="", help="only these tasks (comma-separated; default every task)")
    p.add_argument("--out", default=None, help="write OUT/gpu-check.json (the measured MFU for `plan --out OUT`)")
    p.add_argument("--dry-run", action="store_true", help="no GPU: everything but CUDA, on the CPU")
    p.add_argument("--mfu", type=float, default=MFU, help=f"the MFU the plan assumes (default {MFU})")
    p.add_argument("--peak-tflops", type=float, default=PEAK_TFLOPS,
                   help=f"peak dense TFLOP/s of the GPU (default {PEAK_TFLOPS:g}: H100 SXM, bf16)")
    p.set_defaults(func=_cmd_gpu_check)

    p = sub.add_parser("recipes", formatter_class=fmt, help="the fine-tuning recipes per task and backbone family",
                       description=_fmt("""
            Print the fine-tuning recipe of every task per backbone family (bench/tasks/tasks.yaml):
            steps, batch (examples or tokens per micro-batch), gradient accumulation, effective batch per
            optimizer step, lr, head lr multiplier, warm-up, weight decay, text length, loss, and the
            source of the numbers (the authors' released config or the paper).
        """), epilog="examples:\n  ticketbench recipes --family uniter\n  ticketbench recipes --task vqa\n")
    p.add_argument("--family", default=None,
                   help="one backbone family (toy, minilm, uniter, lxmert, vilt) or a preset with a recipe of its own (toy-vilt)")
    p.add_argument("--task", default=None, help="one task")
    p.set_defaults(func=_cmd_recipes)

    for stage, what, example in (
        ("pretrain", "pre-train a toy backbone on the world's captions (MLM+ITM+MRM) -> θ0",
         "ticketbench pretrain smoke --out /tmp/s"),
        ("find", "search tickets: IMP per source task and on the pre-training mix, plus one-shot sources",
         "ticketbench find --sources imp:vqa,imp:pretrain --out runs/toyland"),
        ("matrix", "fine-tune θ0⊙m for every source ticket x sparsity x target task x seed",
         "ticketbench matrix --tasks vqa --workers 2"),
    ):
        p = sub.add_parser(stage, formatter_class=fmt, help=what,
                           description=_fmt(f"""
                {what[0].upper() + what[1:]}.
                Earlier stages run first when their output is missing.
            """), epilog=f"example:\n  {example}\n")
        _add_config_args(p)
        p.set_defaults(func=_cmd_pipeline)

    p = sub.add_parser("world", formatter_class=fmt, help="generate toyland, or show a world",
                       description=_fmt("""
            Generate toyland: a seeded miniature world that writes all seven tasks and a caption corpus
            in the real datasets' file formats (VQA v2 JSON, GQA, NLVR2 jsonl, SNLI-VE, RefCOCO+ refs +
            instances, Flickr30k Karpathy JSON, VCR jsonl) with region features in the UNITER (npz) and
            LXMERT (TSV) layouts. The same seed gives byte-identical files.
        """), epilog=_fmt("""
            examples:
              ticketbench world --out /tmp/world --scale smoke
              ticketbench world --show /tmp/world     # counts, chance levels, contact sheet PNG
        """))
    p.add_argument("--out", default=None, help="directory to write the world into")
    p.add_argument("--seed", type=int, default=0, help="generator seed")
    p.add_argument("--scale", choices=("smoke", "default", "study", "large"), default="default", help="world size")
    p.add_argument("--show", metavar="DIR", default=None,
                   help="print counts and chance levels of a world and write DIR/contact_sheet.png")
    p.set_defaults(func=_cmd_world)

    p = sub.add_parser("report", formatter_class=fmt, help="rebuild tables and figures from a results store",
                       description=_fmt("""
            Rebuild every table (CSV, Markdown, LaTeX) and figure (PNG, PDF) under OUT_DIR/report/
            from the results store alone. Never trains. With --compare METHOD, rank a registered pruning
            method against imp, omp, pretrained_magnitude and random on every task and sparsity.
        """), epilog=_fmt("""
            examples:
              ticketbench report runs/toyland
              ticketbench report runs/toyland --compare snip
        """))
    p.add_argument("out_dir", help="output directory of a run")
    p.add_argument("--compare", metavar="METHOD", default=None, help="compare this method with the baselines")
    p.add_argument("--plan", metavar="HASH", default=None,
                   help="report this plan (default: the last plan run in OUT_DIR; `ticketbench plan` prints hashes)")
    p.add_argument("--plans", metavar="H1,H2|all", default=None,
                   help="mix several plans in one report; the plan becomes part of every row's label")
    p.add_argument("--snapshot", metavar="DIR", default=None,
                   help="also copy the headline tables with their commit, plan and machine to DIR "
                        "(e.g. docs/results/toyland: the numbers the docs cite)")
    p.add_argument("--readme", metavar="FILE", default=None,
                   help="with --snapshot: rewrite FILE's <!-- results:NAME:begin/end --> block from DIR")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser("plans", formatter_class=fmt, help="list the plans stored in an output directory",
                       description="One line per plan run into OUT_DIR (oldest first): its hash, config name, "
                                   "when it was written, cells, distinct runs and how many are done; * marks the "
                                   "last plan run (what `report` reads by default; `report --plan HASH` reads another).",
                       epilog="examples:\n  ticketbench plans runs/toyland\n")
    p.add_argument("out_dir", help="output directory of a run")
    p.set_defaults(func=_cmd_plans)

    p = sub.add_parser("compare", formatter_class=fmt, help="leaderboard of pruning methods against a baseline",
                       description=_fmt("""
            Rank pruning methods against a baseline (default imp), like against like: a method's ticket
            from task T is paired with the baseline's ticket from T on the same target task, sparsity and
            seed. Per method: AUC of the accuracy-sparsity curve per task, highest matching and relaxed
            sparsity, mean paired difference with a bootstrap 95% CI, win/tie/loss with ties set by the
            measured seed noise ("not testable" with one seed), and the search's cost. Writes tables,
            a figure and a README to OUT_DIR/report/compare-<methods>-vs-<baseline>/. Never trains.
        """), epilog=_fmt("""
            examples:
              ticketbench compare runs/methods --methods snip,grasp,synflow
              ticketbench compare runs/methods --methods movement --baseline omp
        """))
    p.add_argument("out_dir", help="output directory of a run")
    p.add_argument("--methods", required=True, help="comma-separated methods to rank, e.g. snip,grasp")
    p.add_argument("--baseline", default="imp", help="the method every other is paired with (default imp)")
    p.add_argument("--plan", metavar="HASH", default=None,
                   help="compare within this plan (default: the last plan run in OUT_DIR)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("methods", formatter_class=fmt, help="list the pruning methods (built-in and plugins)",
                       description="List every registered pruning method with its hyperparameters, defaults, "
                                   "help and citation (plugins through the ticketbench.methods entry points, "
                                   "or modules named with --plugins as in find.plugins).",
                       epilog="examples:\n  ticketbench methods\n  ticketbench methods --plugins my_pruning.taylor\n")
    p.add_argument("--plugins", default=None, help="comma-separated modules to import first (as find.plugins)")
    p.set_defaults(func=_cmd_methods)

    p = sub.add_parser("data", formatter_class=fmt, help="check a config's data files and image features",
                       description=_fmt("""
            `data check CONFIG`: read every task's train and evaluation split as the run would, look up a
            sample of their image ids in the image stores (UNITER img_db / npz, LXMERT TSV, picture trees),
            and print a table per (task, split): examples, images found and missing, feature width and box
            counts. Exit 1 when anything is missing. Trains nothing, writes nothing.
            `data resize SRC DST`: write ViLT's pictures resized once (uint8 .npy, the same numbers), so a
            run loads them instead of decoding and resampling every picture each epoch; point
            world.features / world.images at DST.
        """), epilog="examples:\n  ticketbench data check paper-uniter --set world.data_root=/data/vl\n"
                     "  ticketbench data check smoke --out runs/smoke --tasks vqa,gqa\n"
                     "  ticketbench data resize /data/coco/images /fast/coco-384 --workers 16\n")
    dsub = p.add_subparsers(dest="data_command", metavar="ACTION")
    d = dsub.add_parser("check", help="check every split and image source of a config")
    _add_config_args(d, subset=False)
    d.add_argument("--tasks", default=None, help="comma-separated tasks (default: the config's)")
    d.add_argument("--sample", type=int, default=200, help="image ids looked up per split (0 = all)")
    d = dsub.add_parser("resize", help="write a picture tree resized as ViLT reads it (uint8 .npy)")
    d.add_argument("src", help="picture tree (.png/.jpg, any sub-folders)")
    d.add_argument("dst", help="output folder (resumes: pictures already written are kept)")
    d.add_argument("--shorter", type=int, default=384, help="shorter side: the preset's image_size (vilt-b32: 384)")
    d.add_argument("--workers", type=int, default=1, help="processes resizing in parallel")
    p.set_defaults(func=_cmd_data, data_command=None)

    p = sub.add_parser("figures", formatter_class=fmt, help="write the papers' figures and tables",
                       description=_fmt("""
            Write the figures and tables the papers show, with the papers' known numbers beside this run's
            (--paper vl: Gan et al. 2022, vision-and-language tickets; --paper bert: Chen et al. 2020).
        """), epilog="example:\n  ticketbench figures runs/toyland --paper vl\n")
    p.add_argument("out_dir", help="output directory of a run")
    p.add_argument("--paper", choices=("vl", "bert"), default="vl", help="which paper's figures")
    p.set_defaults(func=_cmd_figures)

    p = sub.add_parser("tickets", formatter_class=fmt, help="list, show and compare ticket files",
                       description="Inspect tickets: ls a store, show one ticket, diff two (Jaccard overlap).",
                       epilog=_fmt("""
            examples:
              ticketbench tickets ls runs/toyland
              ticketbench tickets show runs/toyland/tickets/<hash>/imp__vqa/sparsity-0.50.safetensors
              ticketbench tickets diff A.safetensors B.safetensors
        """))
    p.set_defaults(func=_cmd_tickets, tickets_command=None)
    tsub = p.add_subparsers(dest="tickets_command", metavar="ACTION")
    t = tsub.add_parser("ls", help="table of the tickets in a store or run directory")
    t.add_argument("path")
    t = tsub.add_parser("show", help="metadata and per-tensor sparsity of one ticket")
    t.add_argument("path")
    t = tsub.add_parser("diff", help="overlap of kept weights of two tickets of one backbone")
    t.add_argument("a")
    t.add_argument("b")
    t = tsub.add_parser("export", help="write θ0 ⊙ m as a transformers model folder (save_pretrained; a structured "
                                       "ticket as the physically smaller model)")
    t.add_argument("path")
    t.add_argument("--out", required=True, help="new folder for the model (AutoModel.from_pretrained(OUT))")
    t.add_argument("--theta0", default=None, help="θ0 directory (default: found in the ticket's run)")

    sub.add_parser("tasks", help="list the task registry (metric, head, splits, expected files)",
                   description="List the registered tasks: headline metric, head, splits, files, chance level.",
                   epilog="example:\n  ticketbench tasks\n", formatter_class=fmt,
                   ).set_defaults(func=_cmd_tasks)
    sub.add_parser("presets", help="list backbone presets (parameters, weights source)",
                   description="List the backbone presets with parameter counts and where weights come from.",
                   epilog="example:\n  ticketbench presets\n", formatter_class=fmt,
                   ).set_defaults(func=_cmd_presets)
    p = sub.add_parser("config", help="print the effective config, or every field with its help",
                       description="Print the effective config of CONFIG with overrides, or --fields.",
                       epilog="examples:\n  ticketbench config smoke --set finetune.steps=10\n"
                              "  ticketbench config --fields\n", formatter_class=fmt)
    _add_config_args(p, subset=False)
    p.add_argument("--fields", action="store_true", help="list every config field with default and help")
    p.set_defaults(func=_cmd_config)
    parser.set_defaults(func=_cmd_help(parser))
    return parser


def _cmd_pipeline(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)  # a bad config or --set answers before torch loads
    from bench.pipeline import run_pipeline
    from bench.plan import build_plan

    plan = build_plan(cfg)
    cmd = args.command
    stages = [args.only] if cmd == "run" and args.only else (list(STAGES) if cmd == "run" else [cmd])
    run_pipeline(plan, out=args.out, stages=stages, upto=(cmd != "run"), quiet=args.quiet)
    return 0


def _cmd_plan(args: argparse.Namespace) -> int:
    cfg = load_config(args.config, args.overrides)
    from bench.cost import (
        design_for_budget,
        estimate,
        full_design,
        host_ratio_model,
        measured_mfu,
        memory_lines,
        run_timings,
    )
    from bench.plan import build_plan
    from bench.power import describe_power

    plan = build_plan(cfg)
    print(plan.describe())
    print()
    world = Layout(args.out).world if args.out else None  # toyland: its splits give the evaluation sizes
    kw = dict(mfu=args.mfu, peak_tflops=args.peak_tflops, regions=args.regions, world=world,
              measured=measured_mfu(args.out, cfg.backbone.preset))
    timings = run_timings(args.out, plan, estimate(plan, **kw))  # the store's first real GPU steps win
    kw["measured"] = {**kw["measured"], **{t: m.mfu for t, m in timings.items()}}
    est = estimate(plan, **kw)
    print(est.describe(gpus=args.gpus))
    if args.budget is not None:
        gpus = args.gpus or 1
        if args.full:
            print()
            print(full_design(plan, gpus, **kw).describe())
        print()
        print(design_for_budget(plan, args.budget, gpus, max_days=args.days, **kw).describe())
    print()
    print(host_ratio_model(plan, est, timings))
    print(memory_lines(plan))
    print()
    print(describe_power(plan, _store_noise(Path(args.out) if args.out else Layout.default(cfg.name))))
    return 0


def _store_noise(out: Path) -> dict:
    """Seed noise measured in an existing store under `out` (its last plan), else {} (the plan assumes it)."""
    if not Layout(out).runs.is_dir():
        return {}
    from reports.seeds import measured_noise
    from reports.store import load_results

    try:
        return measured_noise(load_results(out).frame)
    except TicketbenchError:  # an empty or partial store: nothing measured
        return {}


def _cmd_gpu_check(args: argparse.Namespace) -> int:
    families = [f for f in args.families.split(",") if f]
    unknown = [f for f in families if f not in ("uniter", "lxmert", "vilt")]
    if unknown:
        raise ConfigError(f"--families: expected uniter, lxmert or vilt, found '{unknown[0]}'")
    from bench.runner.gpu_check import gpu_check

    gpu_check(families, tasks=[t for t in args.tasks.split(",") if t], out=args.out, dry_run=args.dry_run,
              mfu=args.mfu, peak_tflops=args.peak_tflops)
    return 0


def _cmd_recipes(args: argparse.Namespace) -> int:
    from bench.tasks.base import describe_recipes

    print(describe_recipes(family=args.family, task=args.task))
    return 0


def _cmd_world(args: argparse.Namespace) -> int:
    from bench.data.toyland import generate_world, show_world

    if args.show:
        print(show_world(args.show, Path(args.show) / "contact_sheet.png"))
        return 0
    if not args.out:
        raise TicketbenchError("world: give --out DIR to generate, or --show DIR to inspect")
    if args.seed < 0:
        raise TicketbenchError(f"world --seed: expected an integer ≥ 0, found {args.seed}")
    generate_world(args.out, seed=args.seed, scale=args.scale)
    print(f"world written to {args.out}")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from reports import build_report

    plans = [p.strip() for p in args.plans.split(",") if p.strip()] if args.plans else None
    if args.readme and not args.snapshot:
        raise TicketbenchError("--readme needs --snapshot DIR (the README's block is rendered from the snapshot)")
    path = build_report(args.out_dir, compare=args.compare, plan=args.plan, plans=plans)
    if not args.quiet:
        print(f"report written to {path}")
    if args.snapshot:
        from reports.snapshot import snapshot, sync_readme

        folder = snapshot(args.out_dir, args.snapshot)
        if args.readme:
            sync_readme(args.readme, folder)
        if not args.quiet:
            print(f"snapshot written to {folder}" + (f"; {args.readme} updated" if args.readme else ""))
    return 0


def _cmd_plans(args: argparse.Namespace) -> int:
    from bench.runner.results import plans_table

    rows = plans_table(args.out_dir)
    if not rows:
        raise DataError(f"{args.out_dir}: no plan manifests under plans/ (run `ticketbench run` first)")
    for r in rows:
        print(f"{'*' if r['last'] else ' '} {r['plan']}  {r['name']:<20} {r['written']}  {r['cells']:>5} cells  "
              f"{r['done']:>5}/{r['runs']} runs done")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from reports.leaderboard import write_leaderboard

    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    path = write_leaderboard(args.out_dir, methods, args.baseline, plan=args.plan)
    if not args.quiet:
        print((path / "README.md").read_text().split("![", 1)[0].rstrip())
        print(f"\nleaderboard written to {path}")
    return 0


def _cmd_methods(args: argparse.Namespace) -> int:
    from bench.plan import load_plugins
    from tickets import tools

    plugins = tuple(m.strip() for m in (args.plugins or "").split(",") if m.strip())
    load_plugins(Config(find=FindConfig(plugins=plugins)))
    print(tools.describe_methods())
    return 0


def _cmd_data(args: argparse.Namespace) -> int:
    from bench.backbones import PRESETS, tokenizer_identity
    from bench.data.check import check_data, format_check

    if args.data_command == "resize":
        from bench.data.images import resize_pictures

        n = resize_pictures(args.src, args.dst, shorter=args.shorter, workers=args.workers)
        print(f"{n} picture(s) resized to a shorter side of {args.shorter} in {args.dst}")
        return 0
    if args.data_command != "check":
        raise TicketbenchError("data: give an action: check or resize")
    cfg = load_config(args.config, args.overrides)
    if cfg.backbone.tokenizer:
        tokenizer_identity(cfg.backbone.tokenizer)  # the tokenizer directory exists before any check runs
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()] if args.tasks else None
    rows = check_data(cfg, PRESETS.get(cfg.backbone.preset), out=args.out, sample=args.sample, tasks=tasks)
    print(format_check(rows))
    return 0 if all(r.ok for r in rows) else 1


def _cmd_figures(args: argparse.Namespace) -> int:
    from reports import paper_figures

    print(f"figures written to {paper_figures(args.out_dir, args.paper)}")
    return 0


def _cmd_tickets(args: argparse.Namespace) -> int:
    from bench.backbones.export import export_ticket
    from tickets import tools

    actions = {"ls": lambda: tools.ls(args.path), "show": lambda: tools.show(args.path),
               "diff": lambda: tools.diff(args.a, args.b),
               "export": lambda: f"θ0 ⊙ m written to {export_ticket(args.path, args.out, args.theta0)} (transformers folder)"}
    if args.tickets_command not in actions:
        raise TicketbenchError("tickets: give an action: ls, show, diff or export")
    print(actions[args.tickets_command]())
    return 0


def _cmd_tasks(_: argparse.Namespace) -> int:
    from bench.tasks import describe_tasks

    print(describe_tasks())
    return 0


def _cmd_presets(_: argparse.Namespace) -> int:
    from bench.backbones import describe_presets

    print(describe_presets())
    return 0


def _cmd_config(args: argparse.Namespace) -> int:
    if args.fields:
        print(describe_config())
    else:
        print(yaml.safe_dump(to_dict(load_config(args.config, args.overrides)), sort_keys=False))
    return 0


def _cmd_help(parser: argparse.ArgumentParser):
    def run(_: argparse.Namespace) -> int:
        parser.print_help()
        return 0

    return run


def _tolerant_output() -> None:
    """Output with θ, ≥ or → must not fail on a terminal or pipe that cannot encode them
    (PYTHONIOENCODING=ascii, LANG=C): such characters are written as escapes instead."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure") and (getattr(stream, "encoding", "") or "").lower().replace("-", "") != "utf8":
            stream.reconfigure(errors="backslashreplace")


def main(argv: list[str] | None = None) -> int:
    # No network at runtime: hub lookups fail at once instead of retrying for a minute on a machine
    # without network (an explicit HF_HUB_OFFLINE=0 still allows hub ids).
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ.setdefault(var, "1")
    argv = list(sys.argv[1:] if argv is None else argv)
    # --debug is accepted anywhere on the line, before or after the subcommand.
    debug = "--debug" in argv or os.environ.get("TICKETBENCH_DEBUG") == "1"
    argv = [a for a in argv if a != "--debug"]
    _tolerant_output()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        refuse_distributed_launch()  # every command: under torchrun each rank would repeat it
        if isinstance(getattr(args, "out", None), str) and not args.out.strip():
            # '' is falsy: it would silently mean the default folder (runs/<name>/ or none).
            raise TicketbenchError(f"--out: expected a directory, found {args.out!r}")
        return args.func(args)
    except TicketbenchError as e:
        if debug:
            raise
        print(f"ticketbench: error: {e}", file=sys.stderr)
        return e.exit_code
    except BrokenPipeError:  # `ticketbench ... | head`: the reader has what it wanted
        return stdout_closed()
    except KeyboardInterrupt:
        print("ticketbench: interrupted; re-run the same command to resume", file=sys.stderr)
        return 130
    except OSError as e:
        if debug:
            raise
        # Disk full, read-only output directory, permission denied: one line, stored results untouched.
        where = f" ({e.filename})" if getattr(e, "filename", None) else ""
        print(f"ticketbench: error: {e.strerror or e}{where}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
