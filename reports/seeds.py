"""Seeds per cell and why each stopped (`report/seeds.csv`): with adaptive seeds (`matrix.adaptive`) a
cell's seeds are a decision of the matrix stage, recorded in the plan's manifest (`seeds`); without, every
cell has `matrix.seeds` ("fixed")."""

from __future__ import annotations

import pandas as pd

from reports.writers import fmt_num, fmt_sparsity

KEYS = ["source", "sparsity", "task", "search_seed"]
COLUMNS = ["backbone", *KEYS, "seeds", "finished", "stopped", "ci_low", "ci_high"]


def seeds_table(df: pd.DataFrame, status: list | None) -> pd.DataFrame:
    """One row per cell of the matrix (backbone, source, sparsity, task, search replicate): the seeds it
    was given, how many finished, why it stopped, and — with adaptive seeds — its anytime-valid interval
    in % of dense when it stopped (dense: its own seeds; its interval is the cells')."""
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    d = df.assign(search_seed=df["search_seed"] if "search_seed" in df else 0)
    d["sparsity"] = d["sparsity"].astype(float).round(4)
    out = d.groupby(["backbone", *KEYS], sort=False)["seed"].nunique().rename("finished").reset_index()
    if status:
        s = pd.DataFrame(status)
        s["sparsity"] = s["sparsity"].astype(float).round(4)
        s["search_seed"] = s["search_seed"].astype(int)
        out = out.merge(s[[*KEYS, "seeds", "stopped", "ci_low", "ci_high"]], on=KEYS, how="left")
        out["seeds"] = out["seeds"].fillna(out["finished"]).astype(int)
        out["stopped"] = out["stopped"].fillna("fixed")
    else:
        out = out.assign(seeds=out["finished"], stopped="fixed", ci_low=float("nan"), ci_high=float("nan"))
    return out[COLUMNS]


def seeds_display(table: pd.DataFrame) -> pd.DataFrame:
    """The table for people: sparsities in %, the interval as one "[lo, hi] %" column."""
    return pd.DataFrame({
        **{k: table[k] for k in ("backbone", "source")}, "sparsity": table["sparsity"].map(fmt_sparsity),
        "task": table["task"], "search_seed": table["search_seed"], "seeds": table["seeds"],
        "finished": table["finished"], "stopped": table["stopped"],
        "interval (% of dense)": [f"[{fmt_num(lo)}, {fmt_num(hi)}]" if pd.notna(lo) else "–"
                                  for lo, hi in zip(table["ci_low"], table["ci_high"])],
    })


def measured_noise(df: pd.DataFrame) -> dict:
    """{task: (seed std, dense mean)} measured in a results frame for `bench.power` (`ticketbench plan`): the
    std pooled within cells (source, sparsity, search replicate; recipe steps only) over fine-tuning seeds,
    from the cells with at least two seeds; tasks without such a cell are left out (the plan assumes them)."""
    if df.empty:
        return {}
    d = df[df["steps_factor"] == 1] if "steps_factor" in df else df
    keys = [k for k in ("backbone", "source", "sparsity", "task", "search_seed") if k in d]
    g = d.groupby(keys)["value"].agg(["var", "count"]).reset_index()
    g = g[g["count"] >= 2]
    out = {}
    for task, t in g.groupby("task"):
        dof = (t["count"] - 1).sum()
        dense = d[(d["task"] == task) & (d["source"] == "dense")]["value"]
        out[str(task)] = (float((t["var"] * (t["count"] - 1)).sum() / dof) ** 0.5,
                          float(dense.mean()) if len(dense) else float("nan"))
    return out


def replicate_spread(df: pd.DataFrame) -> pd.DataFrame:
    """Mask-to-mask beside fine-tuning variance, per (backbone, source, sparsity, task) with ≥ 2 search
    replicates (`find.seeds`): `mask_std` is the std of the replicates' means (over their fine-tuning seeds),
    `finetune_std` the seed std pooled within replicates. Empty without replicates."""
    cols = ["backbone", "source", "sparsity", "task", "replicates", "seeds", "mean", "mask_std", "finetune_std"]
    if df.empty or "search_seed" not in df or df["search_seed"].nunique() < 2:
        return pd.DataFrame(columns=cols)
    rows = []
    for key, g in df[df["source"] != "dense"].groupby(["backbone", "source", "sparsity", "task"], sort=False):
        per = g.groupby("search_seed")["value"].agg(["mean", "var", "count"])
        if len(per) < 2:
            continue
        dof = (per["count"] - 1).sum()
        within = float(((per["var"].fillna(0) * (per["count"] - 1)).sum() / dof) ** 0.5) if dof else float("nan")
        rows.append([*key, len(per), int(per["count"].sum()), float(g["value"].mean()), float(per["mean"].std()),
                     within])
    return pd.DataFrame(rows, columns=cols)


def sigma_check(df: pd.DataFrame, matrix) -> str:
    """A sentence when adaptive seeds ran with a noise bound (`matrix.adaptive_sigma`) below the seed std measured
    afterwards: the sequences' coverage was computed for noise at most that bound, so their decisions are not
    covered at the stated level (rerun with a larger bound)."""
    if not getattr(matrix, "adaptive", False):
        return ""
    noise = {t: sd for t, (sd, _) in measured_noise(df).items() if sd > matrix.adaptive_sigma}
    if not noise:
        return ""
    worst = max(noise, key=noise.get)
    return (f" Warning: the measured seed std exceeds matrix.adaptive_sigma = {matrix.adaptive_sigma:g} on "
            f"{', '.join(sorted(noise))} (largest {noise[worst]:.2f} points, {worst}): the intervals assumed noise at "
            "most that bound, so their error level is not guaranteed; rerun with a larger bound.")
