"""The tables behind the figures (`report/figure_*.csv`), computed with the verdicts' own functions
(`reports.claims`), so a figure never shows what the claims table does not say:

- which tasks count (`task_status`): a task whose dense model is not clearly above chance, or not
  counted against dense (dense not converged, the sanity gate), is marked in every figure, never drawn
  like the others;
- the curves (`curve_table`): per task and source the mean over every run of a cell with its seed band
  (± one std over fine-tuning seeds and search replicates together), dense at 0 % with its own band;
- the matches (`match_table`): per task the own-task IMP ticket's highest *clearly* relaxed / strict
  matching sparsity (its 95 % CI clears the criterion, `relaxed_cells` / `strict_cells`) and the task's
  relaxed outcome (`relaxed_outcome`, what claim (i)'s verdict is made of). A match at the highest tested
  sparsity is `censored`: the ladder ends there, so the highest matching sparsity is unknown (≥ it), and
  figures draw it as a bound, never as a match.
"""

from __future__ import annotations

import math

import pandas as pd

from reports import claims as cl
from reports import stats
from reports.store import DENSE
from reports.tables import source_order
from reports.writers import write_table

STATUS_COLUMNS = ["backbone", "task", "counts", "relative", "why"]
CURVE_COLUMNS = ["backbone", "task", "metric", "source", "sparsity", "runs", "seeds", "searches", "mean", "std", "band_lo",
                 "band_hi", "counts", "why"]
MATCH_COLUMNS = ["backbone", "task", "counts", "highest_tested", "relaxed_clear", "relaxed_censored",
                 "strict_clear", "strict_censored", "relaxed_outcome", "why"]


def task_status(df: pd.DataFrame, tasks: list[str], reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (backbone, task): `counts` = dense is clearly above chance (the tasks every claim may use),
    `relative` = also counted against dense (converged, sanity gate: the strict / relaxed / transfer
    claims), `why` the verdict code's reason when either is false. Same functions as `vl_claims`."""
    noise = stats.seed_noise(df)
    dvc = cl.dense_vs_chance(df, tasks)
    conv = cl.convergence(df, reference if reference is not None else pd.DataFrame(), tasks)
    rows = []
    for bb in sorted(set(df["backbone"])):
        d = df[df["backbone"] == bb]
        present = [t for t in tasks if t in set(d["task"])]
        ok, _ = cl.eligible_tasks(dvc, bb, present)
        rel, _ = cl.relative_tasks(d, bb, ok, conv, noise)
        for t in present:
            if t not in ok:
                why = cl.eligible_tasks(dvc, bb, [t])[1].replace("not clearly above chance — ", "not clearly above chance: ")
                why = why.replace(f"{t}: ", "", 1)
            elif t not in rel:
                why = cl.relative_tasks(d, bb, [t], conv, noise)[1]
                why = why[len(t) + 2:-1] if why.startswith(f"{t} (") else why
            else:
                why = ""
            rows.append({"backbone": bb, "task": t, "counts": t in ok, "relative": t in rel, "why": why})
    return pd.DataFrame(rows, columns=STATUS_COLUMNS)


def curve_table(df: pd.DataFrame, tasks: list[str], status: pd.DataFrame) -> pd.DataFrame:
    """The points of the accuracy-vs-sparsity figure: per (backbone, task, source, sparsity) the mean
    over all runs and ± one std over them (fine-tuning seeds and search replicates: the whole spread a
    reader's rerun would see); dense at sparsity 0."""
    if df.empty:
        return pd.DataFrame(columns=CURVE_COLUMNS)
    keys = ["backbone", "task", "metric", "source", "sparsity"]
    g = stats.with_search(df).groupby(keys, sort=False)
    out = g.agg(runs=("value", "count"), mean=("value", "mean"), std=("value", "std"), seeds=("seed", "nunique"),
                searches=(stats.SEARCH, "nunique")).reset_index()
    out.loc[out["source"] == DENSE, "sparsity"] = 0.0
    sd = out["std"].fillna(0.0)
    out["band_lo"], out["band_hi"] = out["mean"] - sd, out["mean"] + sd
    st = status.set_index(["backbone", "task"])
    key = list(zip(out["backbone"], out["task"]))
    out["counts"] = [bool(st.loc[k, "relative"]) if k in st.index else False for k in key]
    out["why"] = [st.loc[k, "why"] if k in st.index else "no dense run" for k in key]
    out["_t"] = out["task"].map({t: i for i, t in enumerate(tasks)})
    out["_s"] = out["source"].map({s: i for i, s in enumerate(source_order(out["source"], tasks))})
    out = out.sort_values(["backbone", "_t", "_s", "sparsity"]).drop(columns=["_t", "_s"])
    return out[CURVE_COLUMNS].reset_index(drop=True)


def _highest(cells: pd.DataFrame, column: str, top: float) -> tuple[float, bool]:
    """(highest sparsity where `column` is true, whether that is the highest tested one)."""
    hit = cells[cells[column].astype(bool)]
    if hit.empty:
        return math.nan, False
    s = float(hit["sparsity"].max())
    return s, abs(s - top) < 1e-9


def match_table(df: pd.DataFrame, tasks: list[str], status: pd.DataFrame, relaxed: float = 0.99) -> pd.DataFrame:
    """Per (backbone, task): the own-task IMP ticket's highest clearly relaxed and clearly strict matching
    sparsity (NaN: none), each `censored` when it is the highest tested sparsity, and the task's relaxed
    outcome (holds / fails / unresolved, `relaxed_outcome`); tasks that do not count say why instead."""
    noise = stats.seed_noise(df)
    rows = []
    for r in status.itertuples():
        d = df[df["backbone"] == r.backbone]
        row = {"backbone": r.backbone, "task": r.task, "counts": bool(r.relative), "highest_tested": math.nan,
               "relaxed_clear": math.nan, "relaxed_censored": False, "strict_clear": math.nan,
               "strict_censored": False, "relaxed_outcome": "not counted", "why": r.why}
        rc = cl.relaxed_cells(d, [r.task], relaxed, noise)
        if not rc.empty:
            top = float(rc["sparsity"].max())
            row["highest_tested"] = top
            row["relaxed_clear"], row["relaxed_censored"] = _highest(rc, "clear_match", top)
            sc = cl.strict_cells(d, [r.task], noise)
            if not sc.empty:
                row["strict_clear"], row["strict_censored"] = _highest(sc, "clear_match", top)
            if r.relative:
                outcome, _, why = cl.relaxed_outcome(rc)
                row["relaxed_outcome"], row["why"] = outcome, why
        elif r.relative:
            row["relaxed_outcome"], row["why"] = "no runs", "no own-task IMP runs"
        rows.append(row)
    return pd.DataFrame(rows, columns=MATCH_COLUMNS)


def match_label(sparsity: float, censored: bool) -> str:
    """'70%', '≥ 90% (highest tested)' or 'none' — how figures and tables name a highest match."""
    if sparsity is None or (isinstance(sparsity, float) and math.isnan(sparsity)):
        return "none"
    return f"≥ {100 * sparsity:g}% (highest tested)" if censored else f"{100 * sparsity:g}%"


def figure_tables(df: pd.DataFrame, tasks: list[str], reference: pd.DataFrame | None,
                  relaxed: float) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """(task_status, curve_table, match_table) of one results frame."""
    status = task_status(df, tasks, reference)
    return status, curve_table(df, tasks, status), match_table(df, tasks, status, relaxed)


def matches_display(matches: pd.DataFrame) -> pd.DataFrame:
    """The match table for people: '≥ 90% (highest tested)' for a censored match."""
    return pd.DataFrame({
        "backbone": matches["backbone"], "task": matches["task"],
        "counted": matches["counts"].map({True: "yes", False: "no"}),
        "clearly relaxed up to": [match_label(s, c) for s, c in zip(matches["relaxed_clear"], matches["relaxed_censored"])],
        "clearly strict up to": [match_label(s, c) for s, c in zip(matches["strict_clear"], matches["strict_censored"])],
        "relaxed outcome": matches["relaxed_outcome"], "why": matches["why"],
    })


def write_figure_tables(ctx, tables: tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame],
                        prefix: str = "figure") -> None:
    """`<prefix>_accuracy_vs_sparsity` and `<prefix>_matches` (csv, md, tex) into the report."""
    _, curves, matches = tables
    ctx.add(write_table(ctx.report_dir, f"{prefix}_accuracy_vs_sparsity", curves,
                        caption="The points of the accuracy-vs-sparsity figure: mean and ± std band over every run of "
                        "a cell (fine-tuning seeds and search replicates), dense at 0%; `counts` = the task is counted "
                        "against dense by the claims (`why` otherwise)."))
    ctx.add(write_table(ctx.report_dir, f"{prefix}_matches", matches, matches_display(matches),
                        caption="The matches the figures mark: the own-task IMP ticket's highest sparsity whose 95% CI "
                        "clears the relaxed / strict criterion; at the highest tested sparsity a bound (≥), not a "
                        "match; the relaxed outcome is the one claim (i)'s verdict is made of."))
