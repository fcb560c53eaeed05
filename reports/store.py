"""Reading the results store: run records → `report/matrix.csv`, tickets, task facts.

Nothing here trains or writes anything but `report/matrix.csv`; every other module of `reports`
works from the DataFrame `collect_matrix` returns and from the ticket files.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from bench.core.errors import DataError
from bench.core.io import MAX_STORE_BYTES, atomic_write_text, read_json
from bench.core.layout import Layout
from bench.core.source import Source
from bench.core.validate import RECORD_HINT, check_record
from bench.runner.results import known_plans, read_manifest
from bench.tasks import TASKS

MATRIX_COLUMNS = [
    "backbone", "source", "method", "source_task", "sparsity", "task", "metric", "value", "seed",
    "dense_value", "relative", "run_id", "chance", "steps_factor", "eval_examples", "search_seed",
]
_REQUIRED = ("backbone", "source", "sparsity", "task", "seed", "metric", "value")
DENSE = "dense"
# Sparsities are stored as fractions; rounding keeps 0.7 and 0.7000000001 in one group.
SPARSITY_DECIMALS = 4


def matrix_path(out_dir: str | Path) -> Path:
    return Layout(out_dir).matrix


def split_source(source: str) -> tuple[str, str]:
    """'imp:vqa' → ('imp', 'vqa'); 'random' → ('random', '')."""
    src = Source.parse(source)
    return src.method, src.task


def _record_row(path: Path, rec: dict) -> dict:
    missing = [k for k in _REQUIRED if k not in rec or rec[k] is None]
    if missing:
        raise DataError(f"{path}: missing field '{missing[0]}' in a done run record")
    check_record(path, rec)  # names that become file names stay in the output folder; typed fields
    try:
        value = float(rec["value"])
        sparsity = round(float(rec["sparsity"]), SPARSITY_DECIMALS)
        seed = int(rec["seed"])
    except (TypeError, ValueError):
        raise DataError(
            f"{path}: value/sparsity/seed must be numbers, found "
            f"{rec['value']!r}/{rec['sparsity']!r}/{rec['seed']!r}"
        ) from None
    if not math.isfinite(value):
        raise DataError(f"{path}: field 'value' must be finite, found {rec['value']!r}")
    method, source_task = split_source(str(rec["source"]))
    return {
        "backbone": str(rec["backbone"]),
        "source": str(rec["source"]),
        "method": str(rec.get("method") or method),
        "source_task": str(rec.get("source_task") or source_task or ""),
        "sparsity": sparsity,
        "task": str(rec["task"]),
        "metric": str(rec["metric"]),
        "value": value,
        "seed": seed,
        "run_id": str(rec.get("run_id") or path.parent.name),
        "chance": float(rec["chance"]) if isinstance(rec.get("chance"), (int, float)) else float("nan"),
        "steps_factor": int(rec.get("steps_factor") or 1),
        "eval_examples": int(rec["eval_examples"]) if isinstance(rec.get("eval_examples"), int) else float("nan"),
        # The search replicate (find.seeds); records written before replicates existed are replicate 0.
        "search_seed": int(rec.get("search_seed") or 0),
    }


def _cell_rows(rows: dict, cells: list) -> list[dict]:
    """One row per cell of a plan manifest, from its run's row: cells whose tickets were identical
    share a run, and each is reported under its own source (and sparsity) label."""
    out = []
    for c in cells:
        row = rows.get(c.get("run"))
        if row is None:  # failed or pending: counted once per run by the caller
            continue
        method, source_task = split_source(str(c["source"]))
        out.append({**row, "source": str(c["source"]), "method": method, "source_task": source_task,
                    "sparsity": round(float(c["sparsity"]), SPARSITY_DECIMALS),
                    "search_seed": int(c.get("search_seed") or 0)})
    return out


def read_records(out_dir: str | Path, run_ids=None) -> tuple[list[dict], list[dict]]:
    """The run records under `<out>/runs/<id>/record.json` (all of them, or those of `run_ids`; a
    listed run without a record is still pending), split into (done, failed)."""
    done, failed = [], []
    if run_ids is None:
        paths = Layout(out_dir).records()
    else:
        paths = [p for p in map(Layout(out_dir).record, run_ids) if p.exists()]
    for path in paths:
        rec = check_record(path, read_json(path, MAX_STORE_BYTES))
        status = rec.get("status")
        if status == "done":
            done.append({**rec, "_path": path})
        elif status == "failed":
            failed.append({**rec, "_path": path})
        else:
            raise DataError(f"{path}: field 'status' must be 'done' or 'failed', found {status!r}")
    return done, failed


def _add_dense(df: pd.DataFrame) -> pd.DataFrame:
    """dense_value: the dense run (at the recipe's steps) of the same backbone, task and seed — or
    the mean over that task's dense seeds when dense has seeds the task's tickets lack
    (`matrix.dense_seeds`: one ticket seed is then judged against the best estimate of dense, not
    against one dense seed), or when the ticket's seed has no dense twin; else NaN."""
    reference = df["steps_factor"] == 1
    dense = df[(df["source"] == DENSE) & reference]
    same_seed = dense.groupby(["backbone", "task", "seed"])["value"].mean()
    any_seed = dense.groupby(["backbone", "task"])["value"].mean()
    dense_seeds = dense.groupby(["backbone", "task"])["seed"].agg(set)
    ticket_seeds = df[df["source"] != DENSE].groupby(["backbone", "task"])["seed"].agg(set)
    pooled = {k for k, s in dense_seeds.items() if k in ticket_seeds.index and s - ticket_seeds[k]}
    values = []
    for bb, task, seed, src, ref in zip(df["backbone"], df["task"], df["seed"], df["source"], reference):
        kt = (bb, task)
        use_mean = kt in pooled and not (src == DENSE and ref)  # a dense run is its own reference
        values.append(any_seed.get(kt, float("nan")) if use_mean else same_seed.get((bb, task, seed),
                                                                                  any_seed.get(kt, float("nan"))))
    df["dense_value"] = values
    df["relative"] = df["value"] / df["dense_value"]
    return df


def split_convergence(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the matrix, the dense convergence reference): rows at the recipe's steps, and the dense runs
    at a multiple of them (`steps_factor` > 1). Every table, claim and figure reads the first."""
    ref = df["steps_factor"] > 1 if "steps_factor" in df.columns else pd.Series(False, index=df.index)
    return df[~ref].reset_index(drop=True), df[ref].reset_index(drop=True)


def collect_matrix(out_dir: str | Path, run_ids=None, write: bool = True, plan: str | None = None,
                   cells: list | None = None) -> pd.DataFrame:
    """The matrix of done runs — all records, or those of `run_ids` (one plan's runs) — as a
    DataFrame; with `write`, also `<out>/report/matrix.csv`. With `plan`, a `plan` column names it.
    With `cells` (a plan manifest's), one row per cell: a run shared by identical tickets appears
    under each source. Dense runs at a multiple of the recipe's steps (the convergence reference)
    have `steps_factor` > 1 (`split_convergence`).

    Failed runs are left out; their count is in `df.attrs["failed"]` and their ids in
    `df.attrs["failed_runs"]`; listed runs without a record are counted in `df.attrs["pending"]`.
    An empty store (no done runs) yields an empty frame with the matrix columns; `build_report`
    turns that into a one-line error.
    """
    done, failed = read_records(out_dir, run_ids)
    rows = [_record_row(r["_path"], r) for r in done]
    metric_of: dict = {}
    for r, row in zip(done, rows):  # one headline metric per task: else every table would mix two scales
        first = metric_of.setdefault(row["task"], (row["metric"], r["_path"]))
        if first[0] != row["metric"]:
            raise DataError(f"{r['_path']}: field 'metric' {row['metric']!r}, but {first[1]} has {first[0]!r} for task "
                            f"{row['task']}; {RECORD_HINT}")
    if cells:
        rows = _cell_rows({r["run_id"]: r for r in rows}, cells)
    df = pd.DataFrame(rows, columns=[c for c in MATRIX_COLUMNS if c not in ("dense_value", "relative")])
    df = _add_dense(df)[MATRIX_COLUMNS]
    df = df.sort_values(["backbone", "task", "source", "sparsity", "steps_factor", "search_seed", "seed"], kind="stable").reset_index(drop=True)
    if plan is not None:
        df.insert(0, "plan", plan)
    if write:
        atomic_write_text(matrix_path(out_dir), df.to_csv(index=False))
    df.attrs["failed"] = len(failed)
    df.attrs["failed_runs"] = [str(r.get("run_id") or r["_path"].parent.name) for r in failed]
    df.attrs["pending"] = 0 if run_ids is None else len(run_ids) - len(done) - len(failed)
    return df


@dataclass
class Results:
    """One plan's results: the plan's hash and effective config, and one row per finished run.

    `frame` has the columns of `report/matrix.csv`; mixing plans (`plans=[...]`) adds a `plan`
    column, so runs of different setups are never averaged as if they were seeds."""

    plans: list[str]
    config: dict
    frame: pd.DataFrame
    searches: dict  # {source: ticket folder name under <out>/tickets/} of the (first) plan
    configs: dict = field(default_factory=dict)  # {plan hash: effective config} of every plan read
    failed: int = 0
    pending: int = 0
    seeds: list = field(default_factory=list)  # each cell's seeds and why it stopped (manifest `seeds`; one plan)

    def regimes(self) -> dict:
        """{row label: "adversarial" | "standard"} — the label is the backbone, or backbone@plan when
        plans are mixed — from each plan's fine-tuning settings (claim (iv) compares the two)."""
        out = {}
        for plan, cfg in self.configs.items():
            adv = (cfg.get("finetune") or {}).get("adv_steps") or 0
            rows = self.frame[self.frame["plan"] == plan] if "plan" in self.frame.columns else self.frame
            for bb in set(rows["backbone"]):
                label = f"{bb}@{plan}" if "plan" in self.frame.columns else bb
                out[label] = "adversarial" if adv else "standard"
        return out


def load_results(out_dir: str | Path, plan: str | None = None, plans: list[str] | None = None,
                 write: bool = False) -> Results:
    """The results of one plan (default: the last plan run in `out_dir`), or of several (`plans`,
    or `plans=["all"]` for every plan stored), as a `Results` object. A store written without plan
    manifests (older versions, synthetic stores) is read whole, as one unnamed plan."""
    out, layout = Path(out_dir), Layout(out_dir)
    if not plan and not plans and not layout.plans.is_dir():
        if not layout.runs.is_dir():
            raise DataError(f"{out}: no results here (expected {layout.runs}/; run `ticketbench run` first)")
        frame = collect_matrix(out, write=write)
        return Results([], {}, frame, {}, {}, frame.attrs["failed"], 0)
    if plans:
        chosen = known_plans(out) if plans == ["all"] else list(plans)
        if not chosen:
            raise DataError(f"{out}: no plan manifests under {Layout(out).plans}/ (--plans all found none); run "
                            "`ticketbench matrix` to write one, or report without --plans")
        manifests = [read_manifest(out, h) for h in chosen]
    else:
        manifests = [read_manifest(out, plan)]
    mixed = len(manifests) > 1
    frames, failed, pending = [], 0, 0
    for m in manifests:
        df = collect_matrix(out, m["runs"], write=False, plan=m["plan"] if mixed else None, cells=m.get("cells"))
        failed, pending = failed + df.attrs["failed"], pending + df.attrs["pending"]
        frames.append(df)
    # A plan with no finished run yet adds nothing but its pending count (an empty frame has no dtypes
    # and would turn the numeric columns of the others into strings).
    filled = [f for f in frames if len(f)] or frames[:1]
    frame = pd.concat(filled, ignore_index=True) if len(filled) > 1 else filled[0]
    if write:
        atomic_write_text(matrix_path(out), frame.to_csv(index=False))
    frame.attrs.update(failed=failed, pending=pending)
    return Results([m["plan"] for m in manifests], manifests[0]["config"], frame,
                   dict(manifests[0].get("searches") or {}), {m["plan"]: m["config"] for m in manifests},
                   failed, pending, [] if mixed else list(manifests[0].get("seeds") or []))


def run_facts(out_dir: str | Path) -> dict:
    """Setup facts for the README from the done records: devices, versions, wall time."""
    done, failed = read_records(out_dir)
    devices, versions, total = set(), {}, 0.0
    for r in done:
        env = r.get("env") or {}
        if env.get("device"):
            devices.add(str(env["device"]))
        for k in ("ticketbench", "torch", "transformers", "python"):
            if env.get(k):
                versions.setdefault(k, set()).add(str(env[k]))
        t = (r.get("timings") or {}).get("total_s")
        if isinstance(t, (int, float)) and math.isfinite(t):
            total += float(t)
    return {
        "devices": sorted(devices),
        "versions": {k: sorted(v) for k, v in versions.items()},
        "fine_tune_wall_s": total,
        "done": len(done),
        "failed": len(failed),
        "failed_reasons": sorted({str(r.get("reason", "?")).splitlines()[0] for r in failed}),
    }


# ---------------------------------------------------------------------------------------------
# Task facts

@dataclass(frozen=True)
class TaskFacts:
    name: str
    title: str
    headline: str
    chance: float | None


def task_facts(task: str, metric_fallback: str) -> TaskFacts:
    """Headline metric and chance level from `bench.tasks.TASKS` when the task is registered;
    otherwise the matrix's `metric` column and no chance level."""
    if task in TASKS:
        spec = TASKS.get(task)
        return TaskFacts(task, spec.title, spec.headline, float(spec.chance))
    return TaskFacts(task, task, metric_fallback, None)
