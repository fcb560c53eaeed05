"""The BERT-tickets claims (Chen et al., NeurIPS 2020), checked by the rules of `reports.claims`.

The same pre-registered rules as the VL claims (`reports.claims` docstring): one interval family
(`reports.stats`), eligible tasks (dense's 95 % CI above chance), dense-relative claims only where dense
converged and random pruning at ≥ 50 % is clearly below dense, a sparsity the paper names only when it is
on the ladder, A-versus-B as paired differences with a tie margin of half the seed noise. What is
particular to this study:

- **Table 2** (matching subnetworks): per task, the own-task IMP ticket at the sparsity Table 2 gives
  for that task, against the strict threshold (dense − one dense std, in % of dense: Chen et al.'s
  "within one standard deviation"). The claim is existential — IMP *finds* a matching subnetwork — so
  one search whose ticket clearly matches shows it, while a clear miss says that IMP finds none only
  with ≥ `STRICT_MIN_SEARCHES` searches (one mask may be an unlucky draw); a single search's clear miss
  is not testable, and says so.
- **IMP above random re-initialisation**: every `reinit:X` control paired with `imp:X` (same mask,
  the pre-trained weights against a fresh draw) over (task, sparsity, search, seed).
- **MLM tickets transfer universally, task tickets less** (the transfer table): the pre-training
  (MLM) ticket on each task paired with the mean of the other tasks' IMP tickets transferred there.
"""

from __future__ import annotations

import pandas as pd

from bench.tasks import TASKS
from reports import stats
from reports.claims import (
    FAILS,
    HOLDS,
    NOT_TESTABLE,
    STRICT_MIN_SEARCHES,
    TOLERANCE_PTS,
    Claim,
    _cells,
    _transferred,
    _untestable,
    _vs,
    all_comparisons,
    check_imp_vs_random,
    claims_frame,
    convergence,
    dense_vs_chance,
    eligible_tasks,
    relative_tasks,
    strict_cells,
)
from reports.writers import fmt_sparsity, write_table

# Chen et al. 2020, Table 2: task (this suite's name) → (sparsity, dense, IMP ticket, random pruning).
BERT_TABLE2 = {
    "mnli": (0.7, 82.4, 82.6, 67.5), "qqp": (0.9, 90.2, 90.0, 76.3), "stsb": (0.5, 88.4, 88.2, 21.0),
    "wnli": (0.9, 54.9, 54.9, 53.5), "qnli": (0.7, 89.1, 88.9, 61.9), "mrpc": (0.5, 85.2, 84.9, 69.6),
    "rte": (0.6, 66.2, 66.0, 56.0), "sst2": (0.6, 92.1, 91.9, 83.1), "cola": (0.5, 54.5, 53.8, 9.6),
    "squad": (0.4, 88.1, 87.7, 31.8), "text_mlm": (0.7, 63.5, 63.2, 32.3),
}
# Chen et al. 2020: the MLM ticket at 70 % transferred to each task, minus dense (points).
BERT_MLM_TRANSFER_70 = {
    "mnli": 0.20, "qqp": -0.16, "stsb": -0.97, "wnli": 0.12, "qnli": 0.30, "mrpc": -3.65, "rte": -6.35,
    "sst2": -0.19, "cola": -7.36, "squad": -2.29, "text_mlm": -0.34,
}
# The paper's spelling of each task, for the side-by-side figures.
PAPER_NAMES = {"mnli": "MNLI", "qqp": "QQP", "stsb": "STS-B", "wnli": "WNLI", "qnli": "QNLI", "mrpc": "MRPC",
               "rte": "RTE", "sst2": "SST-2", "cola": "CoLA", "squad": "SQuAD", "text_mlm": "MLM"}
RULES = ("BERT-tickets rules (`reports/claims_bert.py`), on top of the suite's: a task counts when dense's 95% CI "
         "lies above chance; Table 2 is checked per task at the paper's sparsity when it is on the ladder, against "
         "dense − one dense std (in % of dense, tolerance "
         f"{TOLERANCE_PTS:g}), on tasks where dense converged and random pruning at ≥ 50% is clearly below dense: "
         "one search whose CI clears the bar shows a matching ticket exists, a clear miss needs "
         f"≥ {STRICT_MIN_SEARCHES} ticket searches; IMP vs random pruning, IMP vs random re-initialisation and the "
         "MLM ticket vs other tasks' tickets are paired differences over (task, sparsity, search, seed) with a tie "
         "margin of half the task's seed noise (win → holds; loss or tie → fails; else not testable). Intervals: "
         "stratified cluster bootstrap within task, floored at the seed noise (`reports/stats.py`); one seed gives "
         "no interval.")


def is_text_study(tasks: list[str]) -> bool:
    """Whether a report's tasks are the BERT study's (text only: no image per example)."""
    return bool(tasks) and all(t in TASKS and TASKS.get(t).num_images == 0 for t in tasks)


def check_table2(df: pd.DataFrame, tasks: list[str], noise: pd.DataFrame) -> Claim:
    """Table 2, task by task at the paper's sparsity (module docstring): holds when every checked task's
    own ticket clearly matches, fails when one clearly misses with enough searches, else not testable."""
    claim = "IMP finds a matching subnetwork on every task at Table 2's sparsity (within one dense std)."
    named = ", ".join(f"{PAPER_NAMES[t]} {fmt_sparsity(v[0])}" for t, v in BERT_TABLE2.items() if t in tasks)
    paper = "Table 2: matching at 40–90%" + (f" ({named})" if named else "")
    cells = strict_cells(df, tasks, noise)
    per, matches, misses, open_, off = [], [], [], [], []
    for t in tasks:
        if t not in BERT_TABLE2:
            continue
        sp = BERT_TABLE2[t][0]
        g = cells[(cells["task"] == t) & ((cells["sparsity"] - sp).abs() < 1e-6)]
        if g.empty:
            off.append(f"{t} ({fmt_sparsity(sp)})")
            continue
        r = g.iloc[0]
        if not r.est.has_ci:
            open_.append(f"{t}: {r.est.text(unit='%')}")
            per.append(f"{t} {fmt_sparsity(sp)}: no interval")
        elif r.clear_match:
            matches.append(t)
            per.append(f"{t} {fmt_sparsity(sp)}: matches ({_vs(r.est, r.threshold)})")
        elif r.clear_miss:
            misses.append((t, int(r.searches)))
            per.append(f"{t} {fmt_sparsity(sp)}: misses ({_vs(r.est, r.threshold)})")
        else:
            open_.append(f"{t} {fmt_sparsity(sp)}: {_vs(r.est, r.threshold)}")
            per.append(f"{t} {fmt_sparsity(sp)}: within noise ({_vs(r.est, r.threshold)})")
    detail = f"Table 2's sparsity not on this run's ladder: {', '.join(off)}" if off else ""
    run = "own-task IMP vs dense − one dense std: " + "; ".join(per) if per else "–"
    if not per:
        return _untestable(claim, paper, "no task that counts has own-task IMP runs at its Table 2 sparsity"
                           + (f" ({detail})" if detail else ""), detail=detail)
    clear_fail = [t for t, s in misses if s >= STRICT_MIN_SEARCHES]
    if clear_fail:
        return Claim(claim, paper, run, FAILS, f"IMP's tickets clearly miss on {', '.join(clear_fail)} "
                     f"(≥ {STRICT_MIN_SEARCHES} searches)", detail)
    if not misses and not open_:
        return Claim(claim, paper, run, HOLDS, f"every checked task ({', '.join(matches)}) has a clearly matching "
                     "own-task ticket", detail)
    why = [f"{t}: one ticket clearly misses, but {s} search(es) do not show IMP finds none "
           f"(≥ {STRICT_MIN_SEARCHES}: find.seeds)" for t, s in misses] + [f"within noise at {x}" for x in open_]
    return Claim(claim, paper, run, NOT_TESTABLE, "; ".join(why), detail)


def _paired_claim(claim: str, paper: str, a: pd.DataFrame, b: pd.DataFrame, noise: pd.DataFrame,
                  tasks: list[str], label: str) -> Claim:
    """holds on a win of a − b, fails on a loss or a tie, else not testable (the suite's A-vs-B rule)."""
    p = stats.compare_paired(stats.paired(a, b), noise)
    run = f"{label}: " + p.text()
    by_task = {t: o for (_, t), o in p.per_task.items()}
    per_task = "per task: " + ", ".join(f"{t} {by_task[t]}" for t in tasks if t in by_task) if by_task else ""
    if p.outcome == "win":
        return Claim(claim, paper, run, HOLDS, "the whole CI is above the tie margin", per_task)
    if p.outcome in ("loss", "tie"):
        return Claim(claim, paper, run, FAILS, "the whole CI is below −margin" if p.outcome == "loss"
                     else "the whole CI is within the tie margin", per_task)
    return Claim(claim, paper, run, NOT_TESTABLE,
                 p.reason or "the CI straddles the tie margin: not separable from seed noise", per_task)


def _reinit_pairs(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(IMP cells, re-initialised cells) of every `reinit:X` control with its `imp:X`, one row per
    (task, sparsity, search, seed): the mean over the controls a run has."""
    a, b = [], []
    for src in sorted(s for s in df["source"].unique() if str(s).startswith("reinit:")):
        imp = "imp:" + src.split(":", 1)[1]
        pair = stats.paired(_cells(df, lambda t, s=imp: s), _cells(df, lambda t, s=src: s))
        a.append(pair.assign(value=pair["value_a"]))
        b.append(pair.assign(value=pair["value_b"]))
    if not a:
        return pd.DataFrame(columns=stats.PAIR_KEYS + ["value"]), pd.DataFrame(columns=stats.PAIR_KEYS + ["value"])
    mean = [pd.concat(x).groupby(stats.PAIR_KEYS, as_index=False)["value"].mean() for x in (a, b)]
    return mean[0], mean[1]


def check_imp_vs_reinit(df: pd.DataFrame, tasks: list[str], noise: pd.DataFrame) -> Claim:
    claim = "IMP tickets beat their random re-initialisation at the same sparsity (same mask, fresh weights)."
    paper = "Chen et al.: the pre-trained weights matter; re-initialised masks fall far below (Table 2's controls)"
    d = df[df["task"].isin(tasks)]
    a, b = _reinit_pairs(d)
    if a.empty:
        return _untestable(claim, paper, "no reinit control runs (matrix.controls: reinit:<source>) on a task "
                           "that counts")
    return _paired_claim(claim, paper, a, b, noise, tasks, "IMP − re-init")


def check_mlm_transfer(df: pd.DataFrame, tasks: list[str], noise: pd.DataFrame) -> Claim:
    claim = "MLM (pre-training) tickets transfer to every task better than other tasks' tickets do."
    paper = ("Chen et al.: the MLM ticket at 70% transfers universally (mean − dense "
             f"{sum(BERT_MLM_TRANSFER_70.values()) / len(BERT_MLM_TRANSFER_70):+.2f} points); task tickets "
             "transfer in a limited fashion")
    d = df[df["task"].isin(tasks)]
    pre, other = _cells(d, lambda t: "imp:pretrain"), _transferred(d)
    if pre.empty or other.empty:
        return _untestable(claim, paper, "needs imp:pretrain and at least two tasks' IMP tickets in the matrix "
                           "on tasks that count")
    return _paired_claim(claim, paper, pre, other, noise, tasks, "MLM ticket − other tasks' IMP (mean)")


def bert_claims(df: pd.DataFrame, tasks: list[str], reference: pd.DataFrame | None = None) -> list[Claim]:
    """The BERT-tickets claims per backbone: Table 2 on the tasks that count against dense (chance,
    convergence, sanity gate), the paired claims on the tasks clearly above chance."""
    backbones = sorted(set(df["backbone"]))
    noise = stats.seed_noise(df)
    dvc = dense_vs_chance(df, tasks)
    conv = convergence(df, reference if reference is not None else pd.DataFrame(), tasks)
    out = []
    for bb in backbones:
        d = df[df["backbone"] == bb]
        ok, excluded = eligible_tasks(dvc, bb, tasks)
        rel, not_rel = relative_tasks(d, bb, ok, conv, noise)
        table2 = check_table2(d, rel, noise)
        paired = [check_imp_vs_random(d, ok, noise), check_imp_vs_reinit(d, ok, noise), check_mlm_transfer(d, ok, noise)]
        if not ok:
            why = ("one seed per run: no seed noise to measure anything against (run ≥ 3 seeds)"
                   if d["seed"].nunique() < 2 else "no task's dense model is clearly above chance")
            for c in (table2, *paired):
                c.this_run, c.verdict, c.reason, c.detail = "–", NOT_TESTABLE, why, excluded
        else:
            table2.detail = "; ".join(x for x in (table2.detail, f"tasks counted: {', '.join(rel) or 'none'}",
                                                  f"not counted against dense: {not_rel}" if not_rel else "",
                                                  excluded) if x)
            if not rel:
                table2.this_run, table2.verdict, table2.reason = "–", NOT_TESTABLE, not_rel
            for c in paired:
                c.detail = "; ".join(x for x in (c.detail, f"tasks counted: {', '.join(ok)}", excluded) if x)
        tag = f"[{bb}] " if len(backbones) > 1 else ""
        for c in (table2, *paired):
            c.claim = tag + c.claim
            out.append(c)
    return out


def verdict_tables(ctx) -> dict:
    """The report's hook for a text study: `claims` and `comparisons` as `reports.claims.verdict_tables`
    writes them, with the BERT claims and their rules (for the README)."""
    claims = bert_claims(ctx.df, ctx.tasks, ctx.convergence)
    cmp = all_comparisons(ctx.df, ctx.tasks)
    ctx.add(write_table(ctx.report_dir, "claims", claims_frame(claims),
                        caption="The BERT-tickets claims: verdict (holds / fails / not testable) and reason."))
    ctx.add(write_table(ctx.report_dir, "comparisons", cmp,
                        caption="Paired differences A − B over (task, sparsity, seed), 95% CI, outcome."))
    return {"claims": claims, "comparisons": cmp, "rules": RULES}
