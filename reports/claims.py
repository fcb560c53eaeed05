"""The papers' claims, checked one by one against this run's numbers (never tuned to agree).

Every check states the paper's number, this run's number, the sparsities actually used (the
nearest ladder sparsity when the paper's is not on the ladder) and a verdict: holds / partly /
does not hold / not testable. Toyland numbers are not comparable in absolute terms; the checks
compare the shape of the claims.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pandas as pd

from reports.store import DENSE
from reports.tables import ladder, matching_sparsity, nearest, summarize, transfer_matrix
from reports.writers import fmt_num, fmt_sparsity

# The VL-LTH paper's pre-training-ticket transfer claim: sparsity → average % of dense.
VL_PRETRAIN_TRANSFER = {0.6: 98.0, 0.7: 96.0}
VL_RELAXED_RANGE = (0.5, 0.7)
VL_WORKABLE = {"vilt": 0.3, "other": 0.7}


@dataclass
class Claim:
    claim: str
    paper: str
    this_run: str
    verdict: str
    detail: str = ""


def _verdict(n_ok: int, n: int) -> str:
    if n == 0:
        return "not testable"
    return "holds" if n_ok == n else ("does not hold" if n_ok == 0 else "partly")


def _own_imp(m: pd.DataFrame) -> pd.DataFrame:
    return m[m["source"] == "imp:" + m["task"]]


def check_strict(df: pd.DataFrame, tasks: list[str], relaxed: float) -> Claim:
    m = _own_imp(matching_sparsity(df, tasks, relaxed))
    assessed = m[~m["note"].str.contains("not assessed|no dense")]
    if assessed.empty:
        return Claim("No IMP ticket strictly matches the dense model (within one std over seeds).",
                     "no strict match on any task", "not assessed: one seed per run" if len(m) else "no IMP runs",
                     "not testable", "strict matching needs ≥ 2 dense seeds (matrix.seeds ≥ 2)")
    matched = assessed[assessed["strict_sparsity"].notna()]
    run = ", ".join(f"{t}: {fmt_sparsity(s)}" for t, s in zip(matched["task"], matched["strict_sparsity"])) or "none"
    n_none = len(assessed) - len(matched)
    return Claim("No IMP ticket strictly matches the dense model (within one std over seeds).",
                 "no strict match on any task", f"strict matches on {len(matched)}/{len(assessed)} tasks ({run})",
                 _verdict(n_none, len(assessed)), "highest strictly matching sparsity of each task's own IMP ticket")


def check_relaxed(df: pd.DataFrame, tasks: list[str], relaxed: float) -> Claim:
    m = _own_imp(matching_sparsity(df, tasks, relaxed))
    lo, hi = VL_RELAXED_RANGE
    on_ladder = [s for s in ladder(df) if lo - 1e-9 <= s <= hi + 1e-9]
    if m.empty:
        return Claim("Relaxed IMP tickets (≥ 99% of dense) exist at 50–70% sparsity.", "50–70% on every task",
                     "no own-task IMP runs", "not testable")
    ok = m[m["relaxed_sparsity"] >= lo - 1e-9]
    per = ", ".join(f"{t}: {'none' if pd.isna(s) else fmt_sparsity(s)}" for t, s in zip(m["task"], m["relaxed_sparsity"]))
    detail = ("ladder sparsities within 50–70%: " + (", ".join(fmt_sparsity(s) for s in on_ladder) or "none")
              + f"; a task counts when its own IMP ticket keeps ≥ {100 * relaxed:g}% of dense at ≥ 50%")
    if not on_ladder and not any(s > hi for s in ladder(df)):
        return Claim("Relaxed IMP tickets (≥ 99% of dense) exist at 50–70% sparsity.", "50–70% on every task",
                     f"highest relaxed sparsity per task: {per}", "not testable", detail)
    return Claim("Relaxed IMP tickets (≥ 99% of dense) exist at 50–70% sparsity.", "50–70% on every task",
                 f"{len(ok)}/{len(m)} tasks; highest relaxed sparsity per task: {per}", _verdict(len(ok), len(m)), detail)


def pretrain_transfer(df: pd.DataFrame, tasks: list[str], backbone: str) -> list[dict]:
    """The pre-training ticket's average % of dense over target tasks at the ladder sparsities
    nearest to the paper's 60% and 70%."""
    out = []
    lad = ladder(df[df["backbone"] == backbone])
    for target, paper in VL_PRETRAIN_TRANSFER.items():
        s = nearest(lad, target)
        avg, n = np.nan, 0
        if s is not None:
            pct, _ = transfer_matrix(df, tasks, s, backbone)
            if "imp:pretrain" in pct.index:
                row = pct.loc["imp:pretrain"].drop("average")
                avg, n = float(row.mean(skipna=True)), int(row.notna().sum())
        out.append({"paper_sparsity": target, "paper_pct": paper, "sparsity": s, "pct_dense": avg, "targets": n})
    return out


def check_pretrain_transfer(df: pd.DataFrame, tasks: list[str], backbone: str) -> Claim:
    rows = pretrain_transfer(df, tasks, backbone)
    have = [r for r in rows if not np.isnan(r["pct_dense"])]
    paper = "; ".join(f"{fmt_sparsity(r['paper_sparsity'])}: {r['paper_pct']:g}%" for r in rows)
    if not have:
        return Claim("Pre-training tickets transfer to all tasks (average % of dense).", paper,
                     "no imp:pretrain runs", "not testable")
    run = "; ".join(
        f"{fmt_sparsity(r['paper_sparsity'])} → ladder {fmt_sparsity(r['sparsity'])}: {fmt_num(r['pct_dense'])}% over {r['targets']} tasks"
        for r in have)
    ok = sum(r["pct_dense"] >= r["paper_pct"] for r in have)
    return Claim("Pre-training tickets transfer to all tasks (average % of dense).", paper, run,
                 _verdict(ok, len(have)), "nearest ladder sparsity used where 60%/70% is not on the ladder; "
                 "holds = average at least the paper's percentage")


def check_imp_vs_random(df: pd.DataFrame, tasks: list[str]) -> Claim:
    s = summarize(df)
    imp = s[s["source"] == "imp:" + s["task"]]
    rnd = s[s["source"] == "random"]
    both = imp.merge(rnd, on=["backbone", "task", "sparsity"], suffixes=("", "_rnd"))
    if both.empty:
        return Claim("IMP tickets beat random pruning at the same sparsity.", "IMP ≫ random (e.g. BERT MNLI 70%: 82.6 vs 67.5)",
                     "no (task, sparsity) with both an own-task IMP ticket and random", "not testable")
    above = both[both["mean"] > both["mean_rnd"]]
    gap = (both["mean"] - both["mean_rnd"]).mean()
    worst = both.loc[(both["mean"] - both["mean_rnd"]).idxmin()]
    return Claim("IMP tickets beat random pruning at the same sparsity.", "IMP ≫ random (e.g. BERT MNLI 70%: 82.6 vs 67.5)",
                 f"IMP above random in {len(above)}/{len(both)} (task, sparsity) cells; mean gap {gap:+.2f} points",
                 _verdict(len(above), len(both)),
                 f"smallest gap: {worst['task']} at {fmt_sparsity(worst['sparsity'])} "
                 f"({worst['mean'] - worst['mean_rnd']:+.2f} points)")


def check_vilt(df: pd.DataFrame, tasks: list[str], relaxed: float) -> Claim:
    m = _own_imp(matching_sparsity(df, tasks, relaxed))
    per_bb = {}
    for bb, g in m.groupby("backbone"):
        per_bb[bb] = float(g["relaxed_sparsity"].fillna(0.0).median())
    paper = "ViLT ~30% vs ~70% for UNITER and LXMERT"
    run = "; ".join(f"{bb}: median highest relaxed sparsity {fmt_sparsity(v)}" for bb, v in per_bb.items()) or "no IMP runs"
    vilt = [v for bb, v in per_bb.items() if "vilt" in bb.lower()]
    other = [v for bb, v in per_bb.items() if "vilt" not in bb.lower()]
    if not vilt or not other:
        return Claim("ViLT's highest workable sparsity is lower than UNITER's / LXMERT's.", paper, run,
                     "not testable", "needs ViLT and a region-feature backbone in one results store")
    return Claim("ViLT's highest workable sparsity is lower than UNITER's / LXMERT's.", paper, run,
                 "holds" if max(vilt) < min(other) else "does not hold")


def vl_claims(df: pd.DataFrame, tasks: list[str], relaxed: float = 0.99) -> list[Claim]:
    """The VL-LTH claims plus IMP-above-random, per backbone when the store has several."""
    backbones = sorted(set(df["backbone"]))
    claims = []
    for bb in backbones:
        d = df[df["backbone"] == bb]
        tag = f"[{bb}] " if len(backbones) > 1 else ""
        for c in (check_strict(d, tasks, relaxed), check_relaxed(d, tasks, relaxed),
                  check_pretrain_transfer(d, tasks, bb), check_imp_vs_random(d, tasks)):
            c.claim = tag + c.claim
            claims.append(c)
    claims.append(check_vilt(df, tasks, relaxed))
    return claims


def claims_frame(claims: list[Claim]) -> pd.DataFrame:
    return pd.DataFrame([asdict(c) for c in claims], columns=["claim", "paper", "this_run", "verdict", "detail"])


def dense_vs_chance(df: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """Dense score (mean ± std over seeds) against the task's chance level."""
    from reports.store import task_facts

    rows = []
    d = df[df["source"] == DENSE]
    for (bb, task, metric), g in d.groupby(["backbone", "task", "metric"], sort=False):
        f = task_facts(task, metric)
        # The chance level the run recorded (measured on its own data, e.g. toyland's manifest) wins
        # over the registry's nominal one.
        recorded = g["chance"].dropna() if "chance" in g else pd.Series(dtype=float)
        chance = float(recorded.iloc[0]) if len(recorded) else f.chance
        rows.append({"backbone": bb, "task": task, "metric": f.headline, "dense_mean": g["value"].mean(),
                     "dense_std": g["value"].std(), "seeds": g["seed"].nunique(), "chance": chance,
                     "above_chance": (g["value"].mean() - chance) if chance is not None else np.nan})
    out = pd.DataFrame(rows, columns=["backbone", "task", "metric", "dense_mean", "dense_std", "seeds", "chance",
                                      "above_chance"])
    out["_t"] = out["task"].map({t: i for i, t in enumerate(tasks)})
    return out.sort_values(["backbone", "_t"]).drop(columns="_t").reset_index(drop=True)
