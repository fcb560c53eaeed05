"""The papers' claims, checked one by one against this run's numbers (never tuned to agree).

Every check gives a verdict — holds / fails / not testable — and the reason, with numbers. The rules
are fixed here before any run is read (pre-registered) and printed with the report (`RULES`):

- **Intervals**: one family for everything (`reports.stats`): a stratified two-stage cluster
  bootstrap within task (ticket search replicates, then fine-tuning seeds), floored at the task's
  seed noise, 95 % t-interval; "% of dense" carries the dense mean's own error. Nothing rests on
  one seed: with one run per cell there is no interval and the check is not testable.
- **Both directions**: a threshold claim ("keeps ≥ θ % of dense") *holds* iff its CI's lower bound
  is at least θ − `TOLERANCE_PTS`, *fails* iff its upper bound is below θ − `TOLERANCE_PTS`, and is
  not testable otherwise (the reason gives the interval and the threshold). The tolerance is half a
  point of % of dense: the papers state retention in whole percent, so a stated 98 % covers 97.5.
- **Eligible tasks**: a task counts only when dense's 95 % interval lies above chance — its mean's
  standard error from dense's own seeds plus the evaluation set's sampling error at chance
  (`dev_set_error`), never the spread of other sources.
- **Dense-relative claims** (strict, relaxed, pre-training transfer, claims iii and iv) also need, per
  task, dense converged (`convergence`: "yes"; else "not testable: dense not converged") and the
  sanity gate: random pruning at ≥ 50 % sparsity clearly below dense (its retention's upper bound
  under 100 %), else any mask would pass.
- **Strict matching** (claim i) per task over the paper's range `VL_STRICT_RANGE`, with
  ≥ `STRICT_MIN_SEARCHES` ticket searches per cell: the strict threshold is dense − one dense std (in
  % of dense); reported as the highest clearly matching sparsity with its interval.
- A sparsity the paper names must be on the ladder (no nearest-neighbour stand-in).
- **A versus B** (IMP vs random) uses paired differences over (task, sparsity, search, seed) and
  `reports.stats.classify` (tie margin: half the task's seed noise): win → holds, loss or tie →
  fails, inconclusive → not testable.

Toyland numbers are not comparable with the papers' in absolute terms; the checks compare the
shape of the claims. The sparsities come from the data (the ladder of the runs in the store).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import pandas as pd

from reports import stats
from reports.store import DENSE, task_facts
from reports.tables import chance_levels
from reports.writers import fmt_num, fmt_sparsity, write_table

HOLDS, FAILS, NOT_TESTABLE = "holds", "fails", "not testable"
# Points of % of dense a threshold claim may miss by and still hold (the papers round to whole %).
TOLERANCE_PTS = 0.5
# Strict matching needs this many ticket search replicates per cell (`find.seeds`): the claim is about
# tickets, so one mask fine-tuned many times is one ticket.
STRICT_MIN_SEARCHES = 3
# The sparsities the papers' IMP curves cover (10 % of the original weights per round, up to 90 %).
VL_STRICT_RANGE = (0.1, 0.9)
# The sanity gate: random pruning at or above this sparsity must be clearly below dense.
SANITY_SPARSITY = 0.5
# The VL-LTH paper's pre-training-ticket transfer claim: sparsity → average % of dense.
VL_PRETRAIN_TRANSFER = {0.6: 98.0, 0.7: 96.0}
VL_RELAXED_RANGE = (0.5, 0.7)
VL_WORKABLE = {"vilt": 0.3, "other": 0.7}
# VL-LTH uses the same baseline but its per-task numbers are not available: BERT tickets' are quoted.
BERT_IMP_VS_RANDOM = "IMP > random on all 11 tasks (BERT tickets, Table 2; MNLI at 70%: 82.6 vs 67.5)"
CLAIM_COLUMNS = ["claim", "paper", "this_run", "verdict", "reason", "detail"]
CHANCE_RULE = "dense's 95% CI lies above chance (dense's own seed noise and the dev set's sampling error at chance)"
RULES = (f"Pre-registered rules (`reports/claims.py`): a task counts when {CHANCE_RULE}; a claim against dense "
         f"also needs dense converged on the task and random pruning at ≥ {100 * SANITY_SPARSITY:g}% clearly below "
         f"dense; a threshold claim (≥ θ% of dense) holds iff its 95% CI's lower bound ≥ θ − {TOLERANCE_PTS:g}, fails "
         f"iff its upper bound < θ − {TOLERANCE_PTS:g}, else not testable; strict matching is judged per task over "
         f"{100 * VL_STRICT_RANGE[0]:g}–{100 * VL_STRICT_RANGE[1]:g}% with ≥ {STRICT_MIN_SEARCHES} ticket searches; "
         "A-vs-B uses paired differences with a tie margin of half the task's seed noise. Intervals: stratified "
         "cluster bootstrap within task (searches, then seeds), floored at the seed noise, dense's error "
         "propagated into % of dense (`reports/stats.py`); one seed gives no interval.")


@dataclass
class Claim:
    claim: str
    paper: str
    this_run: str
    verdict: str
    reason: str = ""
    detail: str = ""


def claims_frame(claims: list[Claim]) -> pd.DataFrame:
    return pd.DataFrame([asdict(c) for c in claims], columns=CLAIM_COLUMNS)


def _on(values, s: float) -> bool:
    return any(abs(float(v) - s) < 1e-6 for v in values)


def _seeds(df: pd.DataFrame) -> int:
    return int(df["seed"].nunique()) if len(df) else 0


def threshold_verdict(est: stats.Estimate, threshold: float, tolerance: float = TOLERANCE_PTS) -> str:
    """holds / fails / not testable of "the true value is ≥ threshold" (module docstring)."""
    if not est.has_ci:
        return NOT_TESTABLE
    if est.lo >= threshold - tolerance:
        return HOLDS
    if est.hi < threshold - tolerance:
        return FAILS
    return NOT_TESTABLE


def _vs(est: stats.Estimate, threshold: float) -> str:
    """'97.1% [95% CI 96.0, 98.2] vs 97.5' — an interval beside the threshold it is judged against."""
    return f"{est.text(unit='%')} vs {fmt_num(threshold - TOLERANCE_PTS)}"


# ---------------------------------------------------------------------------------------------
# Dense versus chance: which tasks can carry a claim

def dev_set_error(chance: float | None, n_examples: float) -> float:
    """Standard error (points) of a score measured on `n_examples` evaluation examples by a model at
    chance: 100·sqrt(c(1 − c)/n), c = chance / 100 — binomial for accuracies, an upper bound for
    scores in [0, 100] with mean c (VQA's soft score, recall averages). NaN when either is unknown."""
    if chance is None or math.isnan(chance) or not n_examples > 0:
        return math.nan
    c = min(max(chance / 100.0, 0.0), 1.0)
    return 100.0 * math.sqrt(c * (1.0 - c) / n_examples)


def dense_vs_chance(df: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """Dense score (mean ± std over seeds) against the task's chance level: `seed_noise` = dense's
    own seed std, `dev_se` = the evaluation set's sampling error at chance (`dev_set_error`; the
    seeds share the evaluation set, so it does not average out), `noise` = the standard error of
    the dense mean against chance (both combined), `lo` its 95 % lower bound and `learns` = yes when
    `lo` is above chance (no: not; unknown with one seed or no chance level)."""
    rows = []
    d = df[df["source"] == DENSE]
    for (bb, task, metric), g in d.groupby(["backbone", "task", "metric"], sort=False):
        f = task_facts(task, metric)
        # The chance level the run recorded (measured on its own data, e.g. toyland's manifest) wins
        # over the registry's nominal one.
        recorded = g["chance"].dropna() if "chance" in g else pd.Series(dtype=float)
        chance = float(recorded.iloc[0]) if len(recorded) else f.chance
        seed_sd = float(g["value"].std(ddof=1)) if len(g) >= 2 else math.nan
        n_eval = g["eval_examples"].dropna() if "eval_examples" in g else pd.Series(dtype=float)
        dev_se = dev_set_error(chance, float(n_eval.min())) if len(n_eval) else math.nan
        est = stats.estimate(g)  # dense is one search: resampled over its seeds
        if not math.isnan(dev_se) and len(g) >= 2:  # the dev set's error is shared by every seed
            seeds = est if est.has_ci else stats.Estimate(est.mean, 0.0, 1e9)  # seeds that agree exactly
            est = stats.combine([(1.0, seeds), (1.0, stats.Estimate(0.0, dev_se, 1e9))])
        above = est.mean - chance if chance is not None else math.nan
        if math.isnan(above) or not est.has_ci:
            learns = "unknown"  # no chance level, or one seed: no interval to judge "clearly" by
        else:
            learns = "yes" if est.lo > chance else "no"
        rows.append({"backbone": bb, "task": task, "metric": f.headline, "dense_mean": est.mean,
                     "dense_std": g["value"].std(), "seeds": g["seed"].nunique(), "chance": chance,
                     "above_chance": above, "seed_noise": seed_sd, "dev_se": dev_se, "noise": est.se,
                     "lo": est.lo, "learns": learns})
    out = pd.DataFrame(rows, columns=["backbone", "task", "metric", "dense_mean", "dense_std", "seeds", "chance",
                                      "above_chance", "seed_noise", "dev_se", "noise", "lo", "learns"])
    out["_t"] = out["task"].map({t: i for i, t in enumerate(tasks)})
    return out.sort_values(["backbone", "_t"]).drop(columns="_t").reset_index(drop=True)


def convergence(df: pd.DataFrame, reference: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """Per (backbone, task): is dense trained to convergence by the recipe? `reference` holds the dense
    runs at `steps_factor` × the recipe's steps (`matrix.convergence_check`). Converged when the longer
    runs improve the dense mean by less than one dense seed std (or not at all): "yes" / "no"; "unknown" with one
    dense seed (no std); "not checked" without reference runs."""
    rows = []
    d = df[df["source"] == DENSE]
    ref = reference[reference["source"] == DENSE] if len(reference) else reference
    for (bb, task), g in d.groupby(["backbone", "task"], sort=False):
        r = ref[(ref["backbone"] == bb) & (ref["task"] == task)] if len(ref) else ref
        mean, std = float(g["value"].mean()), float(g["value"].std()) if len(g) > 1 else math.nan
        long = float(r["value"].mean()) if len(r) else math.nan
        gain = long - mean
        if not len(r):
            verdict = "not checked"
        elif math.isnan(std):
            verdict = "unknown"
        else:
            verdict = "yes" if gain < std or gain <= 1e-9 else "no"  # no gain at all: converged, even at std 0
        rows.append({"backbone": bb, "task": task, "dense_mean": mean, "dense_std": std, "seeds": int(g["seed"].nunique()),
                     "steps_factor": int(r["steps_factor"].iloc[0]) if len(r) else math.nan,
                     "long_mean": long, "long_seeds": int(r["seed"].nunique()) if len(r) else 0,
                     "gain": gain, "converged": verdict})
    out = pd.DataFrame(rows, columns=["backbone", "task", "dense_mean", "dense_std", "seeds", "steps_factor",
                                      "long_mean", "long_seeds", "gain", "converged"])
    out["_t"] = out["task"].map({t: i for i, t in enumerate(tasks)})
    return out.sort_values(["backbone", "_t"]).drop(columns="_t").reset_index(drop=True)


def unconverged(conv: pd.DataFrame, backbone: str, tasks: list[str]) -> str:
    """'vqa (+4.2 at 2× steps > std 2.9), …' for the given tasks whose dense model is not converged."""
    c = conv[(conv["backbone"] == backbone) & conv["task"].isin(tasks) & (conv["converged"] == "no")]
    return ", ".join(f"{r.task} ({r.gain:+.1f} at {r.steps_factor:g}× steps > std {r.dense_std:.1f})"
                     for r in c.itertuples())


def eligible_tasks(dvc: pd.DataFrame, backbone: str, tasks: list[str]) -> tuple[list[str], str]:
    """(tasks whose dense model is clearly above chance, a sentence naming the others)."""
    d = dvc[dvc["backbone"] == backbone].set_index("task")
    ok, why = [], []
    for t in tasks:
        if t not in d.index:
            why.append(f"{t}: no dense run")
            continue
        r = d.loc[t]
        if r["learns"] == "yes":
            ok.append(t)
        elif r["learns"] == "unknown":
            why.append(f"{t}: {'chance unknown' if pd.isna(r['above_chance']) else 'one seed, no std' if r['seeds'] < 2 else 'seeds agree exactly, no interval'}")
        else:
            why.append(f"{t}: dense − chance {r['above_chance']:+.1f}, 95% lower bound {fmt_num(r['lo'] - r['chance'])} "
                       f"(SE {fmt_num(r['noise'])}: seed noise and dev-set SE)")
    return ok, ("not clearly above chance — " + "; ".join(why)) if why else ""


def sanity_gate(df: pd.DataFrame, backbone: str, tasks: list[str], noise: pd.DataFrame) -> dict[str, str]:
    """Per task: "" when random pruning at ≥ `SANITY_SPARSITY` (mean over those ladder sparsities)
    keeps clearly less than dense (its % of dense's upper bound < 100), else why not (with numbers)."""
    out = {}
    for t in tasks:
        r = df[(df["source"] == "random") & (df["backbone"] == backbone) & (df["task"] == t)
               & (df["sparsity"] >= SANITY_SPARSITY - 1e-6)]
        if r.empty:
            out[t] = f"no random pruning at ≥ {fmt_sparsity(SANITY_SPARSITY)} to show that sparsity costs accuracy"
            continue
        est = stats.ratio(stats.estimate(r, cell="sparsity", floor_sd=stats.noise_of(noise, backbone, t)),
                          stats.dense_estimate(df, backbone, t, noise))
        if not est.has_ci:
            out[t] = f"random pruning {est.text(unit='% of dense')}"
        elif est.hi >= 100.0:
            out[t] = f"random pruning at ≥ {fmt_sparsity(SANITY_SPARSITY)} is not clearly below dense: {est.text(unit='%')}"
        else:
            out[t] = ""
    return out


def relative_tasks(df: pd.DataFrame, backbone: str, ok: list[str], conv: pd.DataFrame,
                   noise: pd.DataFrame) -> tuple[list[str], str]:
    """(the chance-eligible tasks a dense-relative claim may use, why the others may not): dense
    converged there (`convergence` "yes") and the sanity gate passed."""
    c = conv[conv["backbone"] == backbone].set_index("task")["converged"] if len(conv) else pd.Series(dtype=str)
    gate = sanity_gate(df, backbone, ok, noise)
    keep, why = [], {}
    for t in ok:
        state = c.get(t, "not checked")
        if state != "yes":
            why[t] = {"no": "dense not converged", "unknown": "dense convergence unknown (one dense seed)"}.get(
                state, "dense convergence not checked: matrix.convergence_check")
        elif gate[t]:
            why[t] = gate[t]
        else:
            keep.append(t)
    return keep, _grouped(why)


def _untestable(claim: str, paper: str, reason: str, this_run: str = "–", detail: str = "") -> Claim:
    return Claim(claim, paper, this_run, NOT_TESTABLE, reason, detail)


# ---------------------------------------------------------------------------------------------
# Relaxed and strict matching of each task's own IMP ticket

def retention_cells(df: pd.DataFrame, tasks: list[str], noise: pd.DataFrame, source_of=lambda t: "imp:" + t
                    ) -> pd.DataFrame:
    """Per (backbone, task, sparsity) of `source_of(task)`: % of dense with its 95 % CI (dense's own
    error propagated), seeds and searches behind it."""
    rows = []
    d = df[df["task"].isin(tasks)]
    want = {t: source_of(t) for t in tasks}
    part = d[d["source"].to_numpy() == d["task"].map(want).to_numpy()]
    dense = {k: g for k, g in d[d["source"] == DENSE].groupby(["backbone", "task"], sort=False)}
    for (bb, task), g in part.groupby(["backbone", "task"], sort=True):
        floor = stats.noise_of(noise, bb, task)
        den = stats.estimate(dense[(bb, task)], floor_sd=floor) if (bb, task) in dense else stats.NO_RUNS
        for sp, h in g.groupby("sparsity", sort=True):
            est = stats.ratio(stats.estimate(h, floor_sd=floor), den)
            rows.append({"backbone": bb, "task": task, "sparsity": sp, "seeds": int(h["seed"].nunique()),
                         "searches": est.searches, "pct_dense": est.mean, "lo": est.lo, "hi": est.hi,
                         "dense_mean": den.mean, "est": est})
    return pd.DataFrame(rows, columns=["backbone", "task", "sparsity", "seeds", "searches", "pct_dense", "lo", "hi",
                                       "dense_mean", "est"])


def relaxed_cells(df: pd.DataFrame, tasks: list[str], relaxed: float, noise: pd.DataFrame) -> pd.DataFrame:
    """`retention_cells` of each task's own IMP ticket against the relaxed criterion θ = 100 × `relaxed`:
    `match` = the point estimate reaches θ − tolerance (descriptive: the paper's point rule);
    `clear_match` / `clear_miss` = the CI's lower bound is ≥ / upper bound is < θ − tolerance."""
    c = retention_cells(df, tasks, noise)
    thr = 100 * relaxed - TOLERANCE_PTS
    c["threshold"] = 100 * relaxed
    c["match"] = c["pct_dense"] >= thr
    c["clear_match"] = c["lo"] >= thr
    c["clear_miss"] = c["hi"] < thr
    return c


def relaxed_outcome(cells: pd.DataFrame, lo: float = VL_RELAXED_RANGE[0], hi: float = VL_RELAXED_RANGE[1]
                    ) -> tuple[str, float, str]:
    """One task's relaxed claim from its `relaxed_cells`: (holds / fails / unresolved, highest
    sparsity whose mean reaches the criterion (NaN: none), why). Holds when a sparsity in [lo, hi]
    clearly reaches it and every ladder sparsity above hi clearly misses it; fails when one above hi
    clearly reaches it or every one in [lo, hi] clearly misses it."""
    c = cells.sort_values("sparsity")
    best = c[c["match"]]["sparsity"].max() if c["match"].any() else math.nan
    inside = c[(c["sparsity"] >= lo - 1e-9) & (c["sparsity"] <= hi + 1e-9)]
    above = c[c["sparsity"] > hi + 1e-9]
    if above["clear_match"].any():
        r = above[above["clear_match"]].iloc[-1]
        return FAILS, best, f"clearly relaxed at {fmt_sparsity(r.sparsity)}, above {fmt_sparsity(hi)}: {_vs(r.est, r.threshold)}"
    if len(inside) and inside["clear_miss"].all():
        return FAILS, best, (f"clearly below the criterion at every sparsity in {fmt_sparsity(lo)}–{fmt_sparsity(hi)}: "
                             + ", ".join(f"{fmt_sparsity(r.sparsity)} {_vs(r.est, r.threshold)}" for r in inside.itertuples()))
    if inside["clear_match"].any() and above["clear_miss"].all():
        return HOLDS, best, ""
    unclear = above[~above["clear_miss"]]
    if not inside["clear_match"].any():
        unclear = pd.concat([inside, unclear])
    return "unresolved", best, "within noise of the criterion at " + ", ".join(
        f"{fmt_sparsity(r.sparsity)}: {_vs(r.est, r.threshold)}" for r in unclear.itertuples())


def _grouped(why_by_task: dict) -> str:
    """'vqa, gqa (why A); nlvr2 (why B)': tasks sharing a reason are named together."""
    groups: dict = {}
    for task, why in why_by_task.items():
        groups.setdefault(why, []).append(task)
    return "; ".join(f"{', '.join(ts)} ({why})" for why, ts in groups.items())


def check_relaxed(df: pd.DataFrame, tasks: list[str], relaxed: float, noise: pd.DataFrame) -> Claim:
    lo, hi = VL_RELAXED_RANGE
    claim = f"Relaxed IMP tickets (≥ {100 * relaxed:g}% of dense) exist up to 50–70% sparsity and not beyond."
    paper = "highest relaxed sparsity in 50–70% (UNITER, LXMERT)"
    cells = relaxed_cells(df, tasks, relaxed, noise)
    if cells.empty:
        return _untestable(claim, paper, "no own-task IMP runs on a task that counts")
    per, results = [], {}
    for task in [t for t in tasks if t in set(cells["task"])]:
        results[task] = relaxed_outcome(cells[cells["task"] == task])
        v, best, why = results[task]
        per.append(f"{task}: {'none' if math.isnan(best) else fmt_sparsity(best)}")
    at_least = sum(not math.isnan(b) and b >= lo - 1e-9 for _, b, _ in results.values())
    run = (f"highest relaxed sparsity per task: {', '.join(per)}; at least 50%: {at_least}/{len(results)} tasks")
    lad = sorted(set(cells["sparsity"]))
    if not any(lo - 1e-9 <= s <= hi + 1e-9 for s in lad) or not any(s > hi + 1e-9 for s in lad):
        return _untestable(claim, paper, "the ladder needs a sparsity in 50–70% and one above 70% "
                           f"(ladder: {', '.join(fmt_sparsity(s) for s in lad)})", run)
    if not any(e.has_ci for e in cells["est"]):
        return _untestable(claim, paper, f"{stats.ONE_SEED}: cannot tell a miss of the criterion from seed noise", run)
    fails = _grouped({t: why for t, (v, _, why) in results.items() if v == FAILS})
    unres = _grouped({t: why for t, (v, _, why) in results.items() if v == "unresolved"})
    if fails:
        return Claim(claim, paper, run, FAILS, fails)
    if unres:
        return Claim(claim, paper, run, NOT_TESTABLE, unres)
    nxt = min(s for s in lad if s > hi + 1e-9)
    # The ladder's resolution bounds the claim: with 80% missing, "not above 70%" means "not at 90%".
    return Claim(claim, paper, run, HOLDS, f"all {len(results)} tasks: clearly relaxed in 50–70%, clearly not at "
                 f"{fmt_sparsity(nxt)} (the next ladder sparsity)")


def strict_cells(df: pd.DataFrame, tasks: list[str], noise: pd.DataFrame) -> pd.DataFrame:
    """`retention_cells` of each task's own IMP ticket over `VL_STRICT_RANGE`, against the strict
    threshold θ = 100 × (1 − dense std / dense mean) (the paper's "within one dense std", in % of
    dense): `clear_match` / `clear_miss` as in `relaxed_cells`."""
    c = retention_cells(df, tasks, noise)
    c = c[(c["sparsity"] >= VL_STRICT_RANGE[0] - 1e-9) & (c["sparsity"] <= VL_STRICT_RANGE[1] + 1e-9)].copy()
    sd = [stats.noise_of(noise, bb, t, "dense_std") for bb, t in zip(c["backbone"], c["task"])]
    c["threshold"] = 100 * (1 - pd.Series(sd, index=c.index, dtype=float) / c["dense_mean"])
    c["clear_match"] = c["lo"] >= c["threshold"] - TOLERANCE_PTS
    c["clear_miss"] = c["hi"] < c["threshold"] - TOLERANCE_PTS
    return c


def check_strict(df: pd.DataFrame, tasks: list[str], noise: pd.DataFrame | None = None) -> Claim:
    """Claim (i), per task over the paper's range: fails when some own-task IMP ticket clearly
    matches dense strictly (CI lower bound ≥ dense − one dense std, in % of dense, minus the
    tolerance), holds when every one in range clearly does not; needs `STRICT_MIN_SEARCHES` ticket
    searches per cell (the claim is about tickets, not one mask's fine-tuning seeds)."""
    noise = stats.seed_noise(df) if noise is None else noise
    claim = "No IMP ticket strictly matches the dense model (mean within one dense std over seeds)."
    paper = "no strict match on any task"
    c = strict_cells(df, tasks, noise)
    if c.empty:
        return _untestable(claim, paper, f"no own-task IMP runs in {fmt_sparsity(VL_STRICT_RANGE[0])}–"
                           f"{fmt_sparsity(VL_STRICT_RANGE[1])} on a task that counts")
    if _seeds(df[df["source"] == DENSE]) < 2:
        return _untestable(claim, paper, "one dense seed: the dense std (the matching margin) is undefined")
    per, clear, open_ = [], [], []
    for task in [t for t in tasks if t in set(c["task"])]:
        g = c[c["task"] == task]
        m = g[g["clear_match"]]
        if len(m):
            r = m.iloc[-1]
            per.append(f"{task}: up to {fmt_sparsity(r.sparsity)} ({_vs(r.est, r.threshold)})")
            clear.append(task)
        else:
            per.append(f"{task}: none")
            open_ += [f"{task} {fmt_sparsity(r.sparsity)}: {_vs(r.est, r.threshold)}"
                      for r in g[~g["clear_miss"]].itertuples()]
    searches = int(c["searches"].min())
    run = f"highest clearly strict-matching sparsity per task: {', '.join(per)} ({searches} ticket search(es) per cell)"
    if searches < STRICT_MIN_SEARCHES:
        return _untestable(claim, paper, f"{searches} ticket search(es) per cell: strict matching needs ≥ "
                           f"{STRICT_MIN_SEARCHES} (find.seeds)", run)
    if clear:
        return Claim(claim, paper, run, FAILS, f"own-task IMP tickets clearly match dense strictly on {', '.join(clear)}")
    if open_:
        return Claim(claim, paper, run, NOT_TESTABLE, "within noise of the strict threshold at " + "; ".join(open_))
    return Claim(claim, paper, run, HOLDS, "every own-task IMP ticket in range is clearly below dense − one dense std")


# ---------------------------------------------------------------------------------------------
# Pre-training ticket transfer

def pretrain_transfer(df: pd.DataFrame, tasks: list[str], backbone: str) -> list[dict]:
    """The pre-training ticket's average % of dense over target tasks at the paper's 60% and 70%;
    NaN where that sparsity is not on this run's ladder (no nearest-neighbour stand-in)."""
    d = df[(df["backbone"] == backbone) & (df["source"] == "imp:pretrain") & df["task"].isin(tasks)]
    out = []
    for target, paper in VL_PRETRAIN_TRANSFER.items():
        at = d[(d["sparsity"] - target).abs() < 1e-6]
        per_task = 100 * at.groupby("task")["relative"].mean()
        out.append({"paper_sparsity": target, "paper_pct": paper, "sparsity": target if len(at) else math.nan,
                    "pct_dense": float(per_task.mean()) if len(per_task) else math.nan, "targets": len(per_task)})
    return out


def _retention(df: pd.DataFrame, source: str, sparsity: float, noise: pd.DataFrame) -> tuple[stats.Estimate, float]:
    """(the mean over tasks of one source's % of dense at one sparsity, each task's dense error
    propagated; the mean over tasks of the chance-normalised retention 100 (mean − chance) /
    (dense − chance), a point estimate: near chance, % of dense flatters any ticket)."""
    at = df[(df["source"] == source) & ((df["sparsity"] - sparsity).abs() < 1e-6)]
    dense = {k: g for k, g in df[df["source"] == DENSE].groupby(["backbone", "task"], sort=False)}
    chance = chance_levels(df) if len(at) else {}
    per, normalised = [], []
    for (bb, t), g in at.groupby(["backbone", "task"], sort=False):
        floor = stats.noise_of(noise, bb, t)
        d = stats.estimate(dense[(bb, t)], floor_sd=floor) if (bb, t) in dense else stats.NO_RUNS
        per.append(stats.ratio(stats.estimate(g, floor_sd=floor), d))
        c = chance.get(t, math.nan)
        if d.mean - c > 0:
            normalised.append(100 * (g["value"].mean() - c) / (d.mean - c))
    return stats.over_tasks(per), (sum(normalised) / len(normalised) if normalised else math.nan)


def check_pretrain_transfer(df: pd.DataFrame, tasks: list[str], sparsity: float, noise: pd.DataFrame) -> Claim:
    paper_pct = VL_PRETRAIN_TRANSFER[sparsity]
    claim = f"Pre-training IMP tickets at {fmt_sparsity(sparsity)} keep ≥ {paper_pct:g}% of dense on average over tasks."
    paper = f"{paper_pct:g}% at {fmt_sparsity(sparsity)} (UNITER)"
    d = df[df["task"].isin(tasks)]
    if not _on(d["sparsity"], sparsity):
        lad = sorted(s for s in set(df["sparsity"]) if s > 0)
        return _untestable(claim, paper, f"{fmt_sparsity(sparsity)} is not on this run's ladder "
                           f"({', '.join(fmt_sparsity(s) for s in lad)})")
    est, normalised = _retention(d, "imp:pretrain", sparsity, noise)
    if math.isnan(est.mean):
        return _untestable(claim, paper, f"no imp:pretrain runs at {fmt_sparsity(sparsity)} on a task that counts")
    n = d[(d["source"] == "imp:pretrain") & ((d["sparsity"] - sparsity).abs() < 1e-6)]["task"].nunique()
    run = f"{est.text(unit='% of dense')} over {n} task(s)"
    run += f" (chance-normalised {fmt_num(normalised)}%)"
    if not est.has_ci:
        return _untestable(claim, paper, f"{stats.ONE_SEED}", run)
    rnd, _ = _retention(d, "random", sparsity, noise)
    if not math.isnan(rnd.mean):
        run += f"; random pruning {rnd.text(unit='%')}"
    bar = paper_pct - TOLERANCE_PTS
    v = threshold_verdict(est, paper_pct)
    if v == FAILS:
        return Claim(claim, paper, run, FAILS, f"the CI's upper bound {fmt_num(est.hi)} < {fmt_num(bar)} "
                     f"({paper_pct:g} − tolerance {TOLERANCE_PTS:g})")
    if v == NOT_TESTABLE:
        return Claim(claim, paper, run, NOT_TESTABLE, f"the CI [{fmt_num(est.lo)}, {fmt_num(est.hi)}] straddles "
                     f"{fmt_num(bar)} ({paper_pct:g} − tolerance {TOLERANCE_PTS:g})")
    if math.isnan(rnd.mean):
        return Claim(claim, paper, run, NOT_TESTABLE,
                     f"no random-pruning runs at {fmt_sparsity(sparsity)}: nothing shows this sparsity costs accuracy")
    if not rnd.has_ci or rnd.hi >= bar:
        return Claim(claim, paper, run, NOT_TESTABLE, f"random pruning is not clearly below {fmt_num(bar)}% either "
                     f"({rnd.text(unit='%')}): at this scale the sparsity costs too little to test a ticket")
    return Claim(claim, paper, run, HOLDS, f"the CI's lower bound {fmt_num(est.lo)} ≥ {fmt_num(bar)} "
                 f"({paper_pct:g} − tolerance {TOLERANCE_PTS:g}) while random pruning is clearly below")


# ---------------------------------------------------------------------------------------------
# Paired comparisons

def _cells(df: pd.DataFrame, source_of_task) -> pd.DataFrame:
    """Rows (backbone, task, sparsity, seed, value) of the source `source_of_task(task)` per task."""
    want = {t: source_of_task(t) for t in df["task"].unique()}
    mask = df["source"].to_numpy() == df["task"].map(want).to_numpy()
    return stats.with_search(df[mask & (df["source"] != DENSE).to_numpy()])[stats.PAIR_KEYS + ["value"]]


def _transferred(df: pd.DataFrame) -> pd.DataFrame:
    """Per (backbone, task, sparsity, seed): the mean over the other tasks' IMP tickets."""
    imp = df[(df["method"] == "imp") & (df["source_task"] != df["task"]) & (df["source_task"] != "pretrain")]
    return stats.with_search(imp).groupby(stats.PAIR_KEYS, as_index=False)["value"].mean()


def comparisons(df: pd.DataFrame, tasks: list[str], noise: pd.DataFrame) -> pd.DataFrame:
    """The A-versus-B statements the papers make, paired over (task, sparsity, seed) on the tasks
    that learn: own-task IMP vs random, vs the pre-training ticket, vs other tasks' tickets."""
    d = df[df["task"].isin(tasks)]
    own = _cells(d, lambda t: "imp:" + t)
    pre = _cells(d, lambda t: "imp:pretrain")
    specs = [("own-task IMP", "random", own, _cells(d, lambda t: "random")),
             ("own-task IMP", "imp:pretrain", own, pre),
             ("own-task IMP", "other tasks' IMP (mean)", own, _transferred(d)),
             ("imp:pretrain", "random", pre, _cells(d, lambda t: "random"))]
    rows = []
    for a, b, fa, fb in specs:
        p = stats.compare_paired(stats.paired(fa, fb), noise)
        rows.append({"a": a, "b": b, **p.as_dict(), "summary": p.text()})
    return pd.DataFrame(rows, columns=["a", "b", "cells", "seeds", "mean", "lo", "hi", "margin", "outcome", "reason",
                                       "summary"])


def check_imp_vs_random(df: pd.DataFrame, tasks: list[str], noise: pd.DataFrame) -> Claim:
    claim = "IMP tickets beat random pruning at the same sparsity (paired over task, sparsity, seed)."
    d = df[df["task"].isin(tasks)]
    diffs = stats.paired(_cells(d, lambda t: "imp:" + t), _cells(d, lambda t: "random"))
    p = stats.compare_paired(diffs, noise)
    run = "IMP − random: " + p.text()
    by_task = {t: o for (_, t), o in p.per_task.items()}
    per_task = "per task: " + ", ".join(f"{t} {by_task[t]}" for t in tasks if t in by_task)
    if p.outcome == "win":
        return Claim(claim, BERT_IMP_VS_RANDOM, run, HOLDS, "the whole CI is above the tie margin", per_task)
    if p.outcome in ("loss", "tie"):
        return Claim(claim, BERT_IMP_VS_RANDOM, run, FAILS,
                     "the whole CI is below −margin" if p.outcome == "loss" else "the whole CI is within the tie margin",
                     per_task)
    reason = p.reason or "the CI straddles the tie margin: not separable from seed noise"
    return Claim(claim, BERT_IMP_VS_RANDOM, run, NOT_TESTABLE, reason, per_task)


def check_vilt(df: pd.DataFrame, tasks_by_bb: dict, relaxed: float, noise: pd.DataFrame) -> Claim:
    """Claim (iii) b, task by task on the tasks every backbone counts: ViLT's relaxed sparsity is *lower*
    where it clearly misses the criterion at a sparsity at which every region backbone clearly meets it,
    *not lower* where it clearly meets it at a sparsity at least as high as any region backbone's highest
    match, and within seed noise otherwise — point estimates of "the highest matching sparsity" differ by
    a ladder step on noise alone. Holds when lower on every task, fails when not lower on every task."""
    claim = "ViLT's highest workable sparsity is lower than UNITER's / LXMERT's."
    paper = (f"ViLT ~{fmt_sparsity(VL_WORKABLE['vilt'])} vs ~{fmt_sparsity(VL_WORKABLE['other'])} "
             "for UNITER and LXMERT")
    vilt = [bb for bb in tasks_by_bb if "vilt" in bb.lower()]
    other = [bb for bb in tasks_by_bb if "vilt" not in bb.lower()]
    common = [t for t in next(iter(tasks_by_bb.values()), []) if all(t in ts for ts in tasks_by_bb.values())]
    cells = {bb: relaxed_cells(df[df["backbone"] == bb], common, relaxed, noise) for bb in tasks_by_bb}
    per, outcomes = [], []
    for t in common:
        o = [cells[bb][cells[bb]["task"] == t].set_index("sparsity") for bb in other]
        for vb in vilt:
            v = cells[vb][cells[vb]["task"] == t].set_index("sparsity")
            if v.empty or any(x.empty for x in o):
                continue
            lower = any(v.loc[s, "clear_miss"] and all(s in x.index and x.loc[s, "clear_match"] for x in o)
                        for s in v.index)
            v_clear = v.index[v["clear_match"]].max() if v["clear_match"].any() else math.nan
            o_best = max((x.index[x["match"]].max() for x in o if x["match"].any()), default=math.nan)
            not_lower = not math.isnan(v_clear) and (math.isnan(o_best) or v_clear >= o_best - 1e-9)
            outcome = "lower" if lower else "not lower" if not_lower else "within noise"
            outcomes.append(outcome)
            v_best = v.index[v["match"]].max() if v["match"].any() else math.nan
            per.append(f"{t}: {vb} {'none' if math.isnan(v_best) else fmt_sparsity(v_best)} vs "
                       f"{'none' if math.isnan(o_best) else fmt_sparsity(o_best)} ({outcome})")
    run = "highest relaxed sparsity, ViLT vs the region backbones' best: " + "; ".join(per) if per else "–"
    if not outcomes:
        return _untestable(claim, paper, "needs ViLT and a region-feature backbone in one store, with own-task IMP "
                           "runs on a task every one of them learns", run)
    if all(x == "lower" for x in outcomes):
        return Claim(claim, paper, run, HOLDS, "ViLT clearly misses the criterion where the others clearly meet it")
    if all(x == "not lower" for x in outcomes):
        return Claim(claim, paper, run, FAILS, "ViLT clearly meets the criterion as high as the others")
    return _untestable(claim, paper, "lower on some tasks and not on others, or within seed noise: "
                       + "; ".join(per), run)


def check_adversarial(df: pd.DataFrame, tasks_by_bb: dict, relaxed: float, noise: pd.DataFrame,
                      regimes: dict) -> Claim:
    """Claim (iv): relaxed tickets still exist when tickets are searched and fine-tuned adversarially,
    and how they compare with the standard plan's at the same sparsities (paired over task, sparsity, seed)."""
    claim = "LTH remains relevant with adversarial training (tickets found and fine-tuned adversarially)."
    paper = "VL-LTH: relaxed winning tickets also found with adversarial (VILLA-style) training"
    adv = [bb for bb, r in regimes.items() if r == "adversarial" and bb in tasks_by_bb]
    std = [bb for bb, r in regimes.items() if r == "standard" and bb in tasks_by_bb]
    if not adv:
        return _untestable(claim, paper, "needs a plan fine-tuned adversarially (finetune.adv_steps > 0) in this "
                           "report: run it into the same output folder and report with --plans all")
    results, notes = [], []
    for bb in adv:
        c = check_relaxed(df[df["backbone"] == bb], tasks_by_bb[bb], relaxed, noise)
        results.append(c.verdict)
        notes.append(f"{bb}: {c.this_run}")
        for other in std:
            own = df["source"] == "imp:" + df["task"]
            a = df[(df["backbone"] == bb) & own]
            b = df[(df["backbone"] == other) & own].assign(backbone=bb)  # pair on (task, sparsity, seed)
            p = stats.compare_paired(stats.paired(a, b), noise)
            notes.append(f"own-task IMP, adversarial − standard ({other}): {p.outcome}, {p.text()}")
    run = "; ".join(notes)
    if all(v == HOLDS for v in results):
        return Claim(claim, paper, run, HOLDS, "the relaxed-ticket claim holds under the adversarial regime")
    if any(v == FAILS for v in results):
        return Claim(claim, paper, run, FAILS, "the relaxed-ticket claim fails under the adversarial regime")
    return _untestable(claim, paper, "the relaxed-ticket check is not testable under the adversarial regime", run)


# ---------------------------------------------------------------------------------------------

def vl_claims(df: pd.DataFrame, tasks: list[str], relaxed: float = 0.99, regimes: dict | None = None,
              reference: pd.DataFrame | None = None) -> list[Claim]:
    """The VL-LTH claims plus IMP-above-random, per backbone when the store has several; each on the
    tasks whose dense model is clearly above chance, and the claims measured against dense only on
    those where dense is converged (`reference`: the dense runs at more steps) and random pruning at
    ≥ 50 % is clearly below dense (`relative_tasks`)."""
    backbones = sorted(set(df["backbone"]))
    noise = stats.seed_noise(df)
    dvc = dense_vs_chance(df, tasks)
    conv = convergence(df, reference if reference is not None else pd.DataFrame(), tasks)
    claims, by_bb = [], {}
    for bb in backbones:
        d = df[df["backbone"] == bb]
        ok, excluded = eligible_tasks(dvc, bb, tasks)
        rel, not_rel = relative_tasks(d, bb, ok, conv, noise)
        by_bb[bb] = rel
        tag = f"[{bb}] " if len(backbones) > 1 else ""
        relative = [check_strict(d, rel, noise), check_relaxed(d, rel, relaxed, noise),
                    *[check_pretrain_transfer(d, rel, s, noise) for s in VL_PRETRAIN_TRANSFER]]
        made = [*relative, check_imp_vs_random(d, ok, noise)]
        if not ok:  # the checks saw no task; say why once, the same way for every claim
            why = ("one seed per run: no seed noise to measure anything against (run ≥ 3 seeds)" if _seeds(d) < 2
                   else "no task's dense model is clearly above chance (table 'Dense model vs chance')")
            for c in made:
                c.this_run, c.verdict, c.reason, c.detail = "–", NOT_TESTABLE, why, excluded
        else:
            for c in made:
                c.detail = "; ".join(x for x in (c.detail, f"tasks counted: {', '.join(rel if any(c is r for r in relative) else ok) or 'none'}",
                                                 excluded) if x)
            for c in relative:
                if not_rel:
                    c.detail = "; ".join(x for x in (c.detail, f"not counted against dense: {not_rel}") if x)
                if not rel:  # every counted task fails a precondition of % of dense
                    c.this_run, c.verdict, c.reason = "–", NOT_TESTABLE, not_rel
        for c in made:
            c.claim = tag + c.claim
            claims.append(c)
    claims.append(check_vilt(df, by_bb, relaxed, noise))
    claims.append(check_adversarial(df, by_bb, relaxed, noise, regimes or {}))
    return claims


def all_comparisons(df: pd.DataFrame, tasks: list[str]) -> pd.DataFrame:
    """`comparisons` per backbone, on the tasks whose dense model is clearly above chance."""
    noise, dvc = stats.seed_noise(df), dense_vs_chance(df, tasks)
    parts = []
    for bb in sorted(set(df["backbone"])):
        ok, _ = eligible_tasks(dvc, bb, tasks)
        c = comparisons(df[df["backbone"] == bb], ok, noise)
        if not ok:
            c["outcome"] = NOT_TESTABLE
            c["reason"] = ("one seed per run: no seed noise" if _seeds(df[df["backbone"] == bb]) < 2
                           else "no task's dense model is clearly above chance")
            c["summary"] = "–"
        parts.append(c.assign(backbone=bb))
    if not parts:
        return pd.DataFrame()
    out = pd.concat(parts, ignore_index=True)
    return out[["backbone"] + [c for c in out.columns if c != "backbone"]]


def claim_tasks(ctx) -> list[str]:
    """The tasks that decide the claims: the config's `matrix.claim_tasks` (pre-registered with the plan,
    chosen before any ticket runs), else every target task of the report."""
    chosen = set(ctx.config.matrix.claim_tasks)
    return [t for t in ctx.tasks if t in chosen] or list(ctx.tasks)


def verdict_tables(ctx) -> dict:
    """The report's hook: write `claims` and `comparisons` (csv, md, tex) for a `ReportContext`
    and return {"claims": [Claim], "comparisons": DataFrame} for the README."""
    claims = vl_claims(ctx.df, claim_tasks(ctx), ctx.config.report.relaxed, ctx.regimes, ctx.convergence)
    cmp = all_comparisons(ctx.df, ctx.tasks)
    ctx.add(write_table(ctx.report_dir, "claims", claims_frame(claims),
                        caption="The papers' claims: verdict (holds / fails / not testable) and reason."))
    ctx.add(write_table(ctx.report_dir, "comparisons", cmp,
                        caption="Paired differences A − B over (task, sparsity, seed), 95% CI, outcome."))
    return {"claims": claims, "comparisons": cmp}
