"""The report's tables, computed from the matrix DataFrame and the tickets.

Conventions: sparsities are fractions (0.7), values are the task's headline metric in points
(0–100), `pct_dense` is the mean over seeds of value / dense value (same seed) in percent.
"""

from __future__ import annotations

import re
from itertools import combinations
from typing import Iterable

import numpy as np
import pandas as pd

from bench.core.layout import file_name
from reports.store import DENSE, task_facts
from reports.ticket_views import TicketView
from reports.writers import fmt_num, fmt_sparsity, mean_std

GROUP = ["backbone", "task", "metric", "source", "sparsity"]
SUMMARY_COLUMNS = GROUP + ["n_seeds", "mean", "std", "pct_dense", "pct_dense_std", "dense_mean", "dense_std",
                           "pct_above_chance"]
TWO_STREAM = re.compile(r"(^|\.)(r_layers|x_layers)\.")


# ---------------------------------------------------------------------------------------------
# Orders

def task_order(df: pd.DataFrame, preferred: Iterable[str] = ()) -> list[str]:
    """Tasks in the config's order, then any other task in the store alphabetically."""
    present = set(df["task"])
    first = [t for t in preferred if t in present]
    return first + sorted(present - set(first))


def source_order(sources: Iterable[str], tasks: list[str]) -> list[str]:
    """IMP tickets of the target tasks in task order, the pre-training ticket, other IMP tickets,
    one-shot sources, baselines, controls, the rest alphabetically; dense first."""
    sources = set(sources)

    def key(s: str):
        method, _, st = s.partition(":")
        if s == DENSE:
            return (0, 0, s)
        if method == "imp":
            if st in tasks:
                return (1, tasks.index(st), s)
            return (2 if st == "pretrain" else 3, 0, s)
        rank = {"omp": 4, "pretrained_magnitude": 5, "random": 6, "reinit": 7, "shuffle": 8}.get(method, 9)
        return (rank, 0, s)

    return sorted(sources, key=key)


def ladder(df: pd.DataFrame, wanted: Iterable[float] = ()) -> list[float]:
    """The sparsities to tabulate: the configured ones present in the store, else all non-zero."""
    present = sorted(s for s in set(df["sparsity"]) if s > 0)
    wanted = [round(float(s), 4) for s in wanted]
    chosen = [s for s in present if s in wanted] if wanted else present
    return chosen or present


def nearest(sparsities: list[float], target: float) -> float | None:
    """The ladder sparsity closest to `target` (ties → the lower one). For figures only: the claims
    never stand one sparsity in for another."""
    if not sparsities:
        return None
    return min(sorted(sparsities), key=lambda s: abs(s - target))


# ---------------------------------------------------------------------------------------------
# Accuracy versus sparsity

def chance_levels(df: pd.DataFrame) -> dict:
    """task → chance level: the one the runs recorded (measured on their own data, e.g. toyland's
    manifest), else the task registry's nominal one, else NaN."""
    out = {}
    for (task, metric), g in df.groupby(["task", "metric"], sort=False):
        recorded = g["chance"].dropna() if "chance" in g else pd.Series(dtype=float)
        nominal = task_facts(task, metric).chance
        out[task] = float(recorded.iloc[0]) if len(recorded) else (np.nan if nominal is None else float(nominal))
    return out


def summarize(df: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std over seeds per (backbone, task, metric, source, sparsity), with % of dense and
    the chance-normalised retention `pct_above_chance` = 100 (mean − chance) / (dense − chance): on
    a task whose dense model is barely above chance, % of dense is near 100 whatever the ticket."""
    if df.empty:  # e.g. the tickets of a plan that ran dense only: its empty aggregates would be strings
        return pd.DataFrame(columns=SUMMARY_COLUMNS)
    g = df.groupby(GROUP, sort=False)
    out = g.agg(
        n_seeds=("seed", "nunique"),
        mean=("value", "mean"),
        std=("value", "std"),
        pct_dense=("relative", "mean"),
        pct_dense_std=("relative", "std"),
    ).reset_index()
    out["pct_dense"] *= 100
    out["pct_dense_std"] *= 100
    dense = df[df["source"] == DENSE].groupby(["backbone", "task"])["value"].agg(["mean", "std"])
    dense.columns = ["dense_mean", "dense_std"]
    out = out.merge(dense, left_on=["backbone", "task"], right_index=True, how="left")
    chance = out["task"].map(chance_levels(df))
    margin = out["dense_mean"] - chance
    out["pct_above_chance"] = (100 * (out["mean"] - chance) / margin).where(margin > 0)
    return out[SUMMARY_COLUMNS]  # one column list for both paths, so the empty one cannot drift


def accuracy_vs_sparsity(df: pd.DataFrame, tasks: list[str]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(long table, display table): rows (backbone, task, source), columns sparsity,
    cells 'mean ± std (% of dense / chance-normalised %)'."""
    s = summarize(df)
    s["_t"] = s["task"].map({t: i for i, t in enumerate(tasks)})
    order = {src: i for i, src in enumerate(source_order(s["source"], tasks))}
    s["_s"] = s["source"].map(order)
    s = s.sort_values(["backbone", "_t", "_s", "sparsity"]).drop(columns=["_t", "_s"]).reset_index(drop=True)

    cells = s.assign(
        col=s["sparsity"].map(fmt_sparsity),
        cell=[f"{mean_std(m, sd)} ({fmt_num(p)}% / {fmt_num(c)}%)"
              for m, sd, p, c in zip(s["mean"], s["std"], s["pct_dense"], s["pct_above_chance"])],
    )
    cols = [fmt_sparsity(x) for x in sorted(set(s["sparsity"]))]
    disp = cells.pivot_table(index=["backbone", "task", "metric", "source"], columns="col", values="cell",
                             aggfunc="first", sort=False)
    disp = disp.reindex(columns=cols).fillna("–")
    disp.columns.name = None
    return s, disp


# ---------------------------------------------------------------------------------------------
# Transfer matrix

def transfer_matrix(df: pd.DataFrame, tasks: list[str], sparsity: float, backbone: str
                    ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(% of dense, absolute) at one sparsity: rows = source tickets, columns = target tasks,
    plus an 'average' column (mean over the targets that have a run)."""
    s = summarize(df[(df["backbone"] == backbone) & (df["sparsity"] == round(sparsity, 4))
                     & (df["source"] != DENSE)])
    if s.empty:
        return pd.DataFrame(), pd.DataFrame()
    rows = source_order(s["source"], tasks)
    cols = [t for t in tasks if t in set(s["task"])]
    pct = s.pivot_table(index="source", columns="task", values="pct_dense", aggfunc="first").reindex(index=rows, columns=cols)
    absolute = s.pivot_table(index="source", columns="task", values="mean", aggfunc="first").reindex(index=rows, columns=cols)
    pct["average"] = pct[cols].mean(axis=1, skipna=True)
    absolute["average"] = absolute[cols].mean(axis=1, skipna=True)
    for t in (pct, absolute):
        t.index.name, t.columns.name = "source", None
    return pct, absolute


# ---------------------------------------------------------------------------------------------
# Matching sparsity

def matching_sparsity(df: pd.DataFrame, tasks: list[str], relaxed: float = 0.99) -> pd.DataFrame:
    """Per (backbone, task, source): the highest sparsity that strictly matches the dense model
    (mean over seeds ≥ dense mean − one dense std; not assessed with one dense seed) and the
    highest that relaxed-matches (mean % of dense ≥ `relaxed`·100). NaN = no sparsity matches."""
    s = summarize(df)
    rows = []
    for (bb, task, metric), part in s[s["source"] != DENSE].groupby(["backbone", "task", "metric"], sort=False):
        dense = s[(s["backbone"] == bb) & (s["task"] == task) & (s["source"] == DENSE)]
        dense_n = int(dense["n_seeds"].iloc[0]) if len(dense) else 0
        d_mean = float(dense["mean"].iloc[0]) if len(dense) else np.nan
        d_std = float(dense["std"].iloc[0]) if dense_n > 1 else np.nan
        for source, sp in part.groupby("source", sort=False):
            if dense_n == 0:
                note = "no dense run"
                strict = np.nan
            elif dense_n == 1:
                note = "1 dense seed: std undefined, strict matching not assessed"
                strict = np.nan
            else:
                note = f"{dense_n} dense seeds"
                ok = sp[sp["mean"] >= d_mean - d_std]
                strict = ok["sparsity"].max() if len(ok) else np.nan
            ok_r = sp[sp["pct_dense"] >= 100 * relaxed - 1e-9]
            relaxed_s = ok_r["sparsity"].max() if len(ok_r) else np.nan
            at = ok_r[ok_r["sparsity"] == relaxed_s]["pct_dense"]
            rows.append({
                "backbone": bb, "task": task, "metric": metric, "source": source,
                "n_seeds": int(sp["n_seeds"].min()), "dense_mean": d_mean, "dense_std": d_std,
                "strict_sparsity": strict, "relaxed_sparsity": relaxed_s,
                "relaxed_pct_dense": float(at.iloc[0]) if len(at) else np.nan,
                "sparsities_tested": ", ".join(f"{100 * x:g}%" for x in sorted(sp["sparsity"])),
                "note": note,
            })
    out = pd.DataFrame(rows, columns=[
        "backbone", "task", "metric", "source", "n_seeds", "dense_mean", "dense_std", "strict_sparsity",
        "relaxed_sparsity", "relaxed_pct_dense", "sparsities_tested", "note"])
    if out.empty:
        return out
    out["_t"] = out["task"].map({t: i for i, t in enumerate(tasks)})
    out["_s"] = out["source"].map({x: i for i, x in enumerate(source_order(out["source"], tasks))})
    return out.sort_values(["backbone", "_t", "_s"]).drop(columns=["_t", "_s"]).reset_index(drop=True)


def matching_display(m: pd.DataFrame) -> pd.DataFrame:
    """The display form; rows with nothing assessed (strict n/a, relaxed none) are dropped — with
    one seed they were most of the table. The csv keeps every row."""
    def sp(x):
        return "none" if pd.isna(x) else fmt_sparsity(x)

    disp = pd.DataFrame({
        "backbone": m["backbone"], "task": m["task"], "source": m["source"], "seeds": m["n_seeds"],
        "strict (within 1 std)": [("n/a" if "not assessed" in n or "no dense" in n else sp(x))
                                  for x, n in zip(m["strict_sparsity"], m["note"])],
        "relaxed (≥ 99% dense)": m["relaxed_sparsity"].map(sp),
        "tested": m["sparsities_tested"], "note": m["note"],
    })
    empty = (disp["strict (within 1 std)"] == "n/a") & (disp["relaxed (≥ 99% dense)"] == "none")
    return disp[~empty].reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Tickets: overlap and per-layer sparsity

def ticket_overlap(tickets: list[TicketView]) -> pd.DataFrame:
    """Jaccard index of the kept weights of every pair of tickets of one backbone and sparsity,
    over the tensors both tickets mask (long form, both orders, diagonal = 1)."""
    rows = []
    groups: dict[tuple, list[TicketView]] = {}
    for t in tickets:
        groups.setdefault((t.backbone, t.sparsity), []).append(t)
    for (bb, sp), ts in sorted(groups.items()):
        for t in ts:
            rows.append({"backbone": bb, "sparsity": sp, "source_a": t.source, "source_b": t.source,
                         "jaccard": 1.0, "weights": sum(int(m.numel()) for m in t.masks.values())})
        for a, b in combinations(ts, 2):
            names = sorted(set(a.masks) & set(b.masks))
            inter = union = total = 0
            for n in names:
                ma, mb = a.masks[n].bool(), b.masks[n].bool()
                if ma.shape != mb.shape:
                    continue
                inter += int((ma & mb).sum())
                union += int((ma | mb).sum())
                total += int(ma.numel())
            j = inter / union if union else np.nan
            for x, y in ((a, b), (b, a)):
                rows.append({"backbone": bb, "sparsity": sp, "source_a": x.source, "source_b": y.source,
                             "jaccard": j, "weights": total})
    return pd.DataFrame(rows, columns=["backbone", "sparsity", "source_a", "source_b", "jaccard", "weights"])


def overlap_square(overlap: pd.DataFrame, backbone: str, sparsity: float, tasks: list[str]) -> pd.DataFrame:
    part = overlap[(overlap["backbone"] == backbone) & (overlap["sparsity"] == sparsity)]
    order = source_order(set(part["source_a"]), tasks)
    sq = part.pivot_table(index="source_a", columns="source_b", values="jaccard", aggfunc="first")
    sq = sq.reindex(index=order, columns=order)
    sq.index.name, sq.columns.name = "source", None
    return sq


def _natural(s: str) -> list:
    return [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s)]


_LAYER = re.compile(r"^(.*?(?:layers?|blocks?|h)\.\d+)\.")


def layer_of(name: str) -> str:
    """'encoder.layer.3.attention.self.query.weight' → 'encoder.layer.3'; else the module path."""
    m = _LAYER.match(name)
    if m:
        return m.group(1)
    return name.rsplit(".", 1)[0] if "." in name else name


def stream_of(name: str, two_stream: bool) -> str:
    """Stream of a parameter: for two-stream backbones (LXMERT) x_layers → cross-modal,
    r_layers / visual → vision, the language layers → text; single-stream backbones → single."""
    if not two_stream:
        return "single-stream"
    if re.search(r"(^|\.)x_layers\.", name):
        return "cross-modal"
    if re.search(r"(^|\.)r_layers\.|visn|visual", name):
        return "vision"
    if re.search(r"(^|\.)(encoder\.)?layer\.\d+\.|embeddings", name):
        return "text"
    return "other"


def layer_sparsity(tickets: list[TicketView]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per layer, per stream) sparsity of every ticket: fraction of the layer's masked weights
    that are pruned. Layers are ordered naturally (layer.2 before layer.10)."""
    rows = []
    for t in tickets:
        two = any(TWO_STREAM.search(n) for n in t.masks)
        for name in sorted(t.masks, key=_natural):
            m = t.masks[name].bool()
            rows.append({"backbone": t.backbone, "source": t.source, "sparsity": t.sparsity,
                         "layer": layer_of(name), "stream": stream_of(name, two),
                         "numel": int(m.numel()), "kept": int(m.sum())})
    cols = ["backbone", "source", "sparsity"]
    if not rows:
        empty = pd.DataFrame(columns=cols + ["layer", "stream", "weights", "layer_sparsity"])
        return empty, empty.rename(columns={"layer_sparsity": "stream_sparsity"}).drop(columns=["layer"])
    d = pd.DataFrame(rows)
    per_layer = d.groupby(cols + ["layer", "stream"], sort=False)[["numel", "kept"]].sum().reset_index()
    per_layer["layer_sparsity"] = 1 - per_layer["kept"] / per_layer["numel"]
    per_layer = per_layer.rename(columns={"numel": "weights"}).drop(columns=["kept"])
    per_stream = d.groupby(cols + ["stream"], sort=False)[["numel", "kept"]].sum().reset_index()
    per_stream["stream_sparsity"] = 1 - per_stream["kept"] / per_stream["numel"]
    per_stream = per_stream.rename(columns={"numel": "weights"}).drop(columns=["kept"])
    return per_layer, per_stream


# Weight-matrix kinds of a transformer block, from the prunable parameter names of every backbone
# (bench/backbones/*.py `_prunable_prefixes`, pinned in tests/test_backbones_models.py): BERT-style
# UNITER and ViLT (`attention.self.query`, `attention.attention.query`, `intermediate.dense`,
# `output.dense`) and LXMERT's cross-modality layers (`visual_attention.att.query`,
# `lang_self_att.output.dense`, `lang_inter.dense`, `visn_output.dense`). First match wins: the
# attention output is tested before the FFN output, which shares its `output.dense` ending.
MATRIX_TYPES = (("Q", re.compile(r"\.query\.weight$")), ("K", re.compile(r"\.key\.weight$")),
                ("V", re.compile(r"\.value\.weight$")),
                ("attn out", re.compile(r"att(ention)?\.output\.dense\.weight$")),
                ("FFN in", re.compile(r"inter(mediate)?\.dense\.weight$")),
                ("FFN out", re.compile(r"output\.dense\.weight$")))
_SUBLAYER = re.compile(r"\.(?:(lang|visn)_|(visual_attention)\.)")


def matrix_type_of(name: str) -> str:
    """'encoder.layer.0.attention.self.query.weight' → 'Q'; 'other' for a weight of none of the kinds."""
    return next((kind for kind, pattern in MATRIX_TYPES if pattern.search(name)), "other")


def block_of(name: str) -> str:
    """The layer of a weight, with LXMERT's cross-modality layers split into their language, vision
    and cross-attention parts (`x_layers.0.lang`, `.visn`, `.cross`): each has its own Q…FFN out."""
    layer = layer_of(name)
    m = _SUBLAYER.search(name[len(layer):])
    return f"{layer}.{m.group(1) or 'cross'}" if m else layer


def matrix_type_sparsity(tickets: list[TicketView]) -> pd.DataFrame:
    """Per ticket, layer and matrix kind (Q / K / V / attention output / FFN in / FFN out): the fraction
    of its weights that are pruned. The per-layer table averages these, which can hide one kind pruned
    almost entirely (e.g. FFN out at 99.5 % in a 90 % ticket)."""
    cols = ["backbone", "source", "sparsity", "layer", "matrix", "weights", "matrix_sparsity"]
    rows = []
    kinds = {kind: i for i, (kind, _) in enumerate(MATRIX_TYPES)}
    for t in tickets:
        # Model order: layers naturally, then Q, K, V, attention out, FFN in, FFN out within each.
        for name in sorted(t.masks, key=lambda n: (_natural(block_of(n)), kinds.get(matrix_type_of(n), len(kinds)))):
            m = t.masks[name].bool()
            rows.append({"backbone": t.backbone, "source": t.source, "sparsity": t.sparsity, "layer": block_of(name),
                         "matrix": matrix_type_of(name), "weights": int(m.numel()), "kept": int(m.sum())})
    if not rows:
        return pd.DataFrame(columns=cols)
    d = pd.DataFrame(rows).groupby(cols[:5], sort=False)[["weights", "kept"]].sum().reset_index()
    d["matrix_sparsity"] = 1 - d["kept"] / d["weights"]
    return d[cols]


def type_figure(per_type: pd.DataFrame, backbone: str) -> str:
    """File stem of the per-matrix-type sparsity figure of one backbone (suffixed when there are several)."""
    return "matrix_type_sparsity" + (f"_{file_name(backbone)}" if per_type["backbone"].nunique() > 1 else "")
