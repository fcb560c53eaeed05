"""The report's figures (matplotlib, Agg backend), each saved as PNG and PDF."""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402

from bench.core.errors import DataError  # noqa: E402
from bench.core.io import atomic_write_bytes  # noqa: E402
from reports.store import DENSE  # noqa: E402
from reports.tables import source_order  # noqa: E402

plt.rcParams.update({"font.size": 11, "axes.titlesize": 12, "axes.labelsize": 11, "legend.fontsize": 10,
                     "xtick.labelsize": 10, "ytick.labelsize": 10})

_COLOURS = {"imp_own": "#1f77b4", "imp:pretrain": "#d62728", "omp": "#2ca02c", "pretrained_magnitude": "#9467bd",
            "random": "#7f7f7f", "reinit": "#ff7f0e", "shuffle": "#8c564b"}
_EXTRA = ["#e377c2", "#bcbd22", "#17becf", "#393b79", "#637939"]


def save(fig, stem: Path) -> list[Path]:
    """Write `<stem>.png` and `<stem>.pdf` atomically and close the figure."""
    paths = []
    if ".." in Path(stem).parts:  # names carry labels from the store (a backbone): never a way out
        raise DataError(f"{stem}: a figure name leads out of its folder ('..'); refusing to write it")
    for ext in ("png", "pdf"):
        buf = io.BytesIO()
        fig.savefig(buf, format=ext, dpi=130 if ext == "png" else None, bbox_inches="tight")
        paths.append(atomic_write_bytes(stem.with_suffix(f".{ext}"), buf.getvalue()))
    plt.close(fig)
    return paths


def _style(source: str, task: str, extra: dict) -> dict:
    """Line style of a source in the panel of `task`: own-task IMP ticket bold blue, other tasks'
    IMP tickets thin grey (one legend entry), the pre-training ticket red, baselines their colours."""
    method, _, st = source.partition(":")
    if method == "imp" and st == task:
        return dict(color=_COLOURS["imp_own"], lw=2.4, marker="o", label="IMP, own task", zorder=5)
    if source == "imp:pretrain":
        return dict(color=_COLOURS["imp:pretrain"], lw=2.0, marker="s", label="IMP, pre-training", zorder=4)
    if method == "imp":
        return dict(color="#b0b0b0", lw=1.0, marker=None, label="IMP, other source tasks", zorder=2)
    if method in _COLOURS:
        return dict(color=_COLOURS[method], lw=1.6, marker="^" if method in ("reinit", "shuffle") else "D",
                    ls="--" if method == "random" else "-", label=source, zorder=3)
    colour = extra.setdefault(source, _EXTRA[len(extra) % len(_EXTRA)])
    return dict(color=colour, lw=1.8, marker="v", label=source, zorder=3)


def _wrap(text: str, width: int = 46, lines: int = 4) -> str:
    import textwrap

    out = textwrap.wrap(text, width)
    return "\n".join(out[:lines]) + (" …" if len(out) > lines else "")


def accuracy_grid(curves: pd.DataFrame, matches: pd.DataFrame, tasks: list[str], backbone: str, stem: Path,
                  relaxed: float = 0.99) -> list[Path]:
    """One panel per task over the whole ladder (`reports.figure_data`): dense at 0 % with its seed band
    and dotted level, every source's mean from dense at 0 % with a ± std band (fine-tuning seeds and
    search replicates) for IMP, random and the controls, the relaxed-match region (≥ `relaxed` of dense,
    shaded), and the own-task IMP ticket's highest *clearly* relaxed match (star) — at the highest tested
    sparsity only a bound (▷ '≥'), never a match. A task the claims do not count is greyed, its curves
    thin and its reason printed in the panel."""
    s = curves[curves["backbone"] == backbone]
    m = matches[matches["backbone"] == backbone].set_index("task")
    tasks = [t for t in tasks if t in set(s["task"])]
    n = max(len(tasks), 1)
    ncols = min(4, n)
    nrows = math.ceil(n / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.3 * ncols, 3.6 * nrows), squeeze=False)
    handles: dict[str, object] = {}
    extra: dict = {}
    for ax, task in zip(axes.flat, tasks):
        t = s[s["task"] == task]
        counts = bool(t["counts"].iloc[0])
        dense = t[t["source"] == DENSE]
        d = float(dense["mean"].iloc[0]) if len(dense) else math.nan
        if len(dense):
            lo, hi = float(dense["band_lo"].iloc[0]), float(dense["band_hi"].iloc[0])
            band = ax.axhspan(relaxed * d, d, color="#ffd54f", alpha=0.35 if counts else 0.15, zorder=0)
            handles.setdefault(f"≥ {100 * relaxed:g}% of dense", band)
            ax.axhspan(lo, hi, color="#000000", alpha=0.08, lw=0, zorder=0)
            ax.axhline(d, color="black", ls=":", lw=1.2, zorder=1)
            pt = ax.errorbar([0.0], [d], yerr=[[d - lo], [hi - d]], fmt="o", color="black", ms=5, capsize=3, zorder=6)
            handles.setdefault("dense (0%) ± std", pt)
        for source in source_order(set(t["source"]) - {DENSE}, tasks):
            g = t[t["source"] == source].sort_values("sparsity")
            x, y = 100 * g["sparsity"].to_numpy(), g["mean"].to_numpy()
            blo, bhi = g["band_lo"].to_numpy(), g["band_hi"].to_numpy()
            if len(dense):  # a ticket at 0 % sparsity is the dense model: every curve starts there
                x, y = np.r_[0.0, x], np.r_[d, y]
                blo, bhi = np.r_[float(dense["band_lo"].iloc[0]), blo], np.r_[float(dense["band_hi"].iloc[0]), bhi]
            st = _style(source, task, extra)
            label = st.pop("label")
            if not counts:  # drawn, but not like the tasks that count
                st.update(color="#9e9e9e", lw=min(st["lw"], 1.2), alpha=0.8)
            (ln,) = ax.plot(x, y, ms=4, label=label, **st)
            if counts and st["lw"] > 1.2 and np.any(bhi > blo):
                ax.fill_between(x, blo, bhi, color=st["color"], alpha=0.15, lw=0)
            handles.setdefault(label, ln)
        ladder = sorted(set(100 * t["sparsity"]))
        ax.set_xticks(ladder, [f"{v:g}" for v in ladder], fontsize=8 if len(ladder) > 7 else 10)
        own = t[t["source"] == f"imp:{task}"]
        if counts and task in m.index and len(own):
            r = m.loc[task]
            sp = r["relaxed_clear"]
            if not pd.isna(sp):
                yv = float(own[(own["sparsity"] - sp).abs() < 1e-9]["mean"].iloc[0])
                if r["relaxed_censored"]:
                    mk = ax.plot([100 * sp], [yv], ">", ms=11, mfc="white", mec=_COLOURS["imp_own"], mew=2, zorder=7)[0]
                    ax.annotate("≥", (100 * sp, yv), textcoords="offset points", xytext=(-14, 6), fontsize=11,
                                color=_COLOURS["imp_own"])
                    handles.setdefault("matches at the highest tested sparsity: a bound, not a match", mk)
                else:
                    mk = ax.plot([100 * sp], [yv], "*", ms=14, color="#ffb300", mec="black", zorder=7)[0]
                    handles.setdefault("highest clearly relaxed match (95% CI)", mk)
        title = task
        if not counts:
            ax.set_facecolor("#f2f2f2")
            title += " — not counted"
            ax.text(0.02, 0.03, _wrap(str(t["why"].iloc[0])), transform=ax.transAxes, fontsize=7.5, va="bottom",
                    color="#b71c1c", bbox=dict(boxstyle="round", fc="white", ec="#b71c1c", alpha=0.85), zorder=8)
        ax.set_title(title, color="black" if counts else "#b71c1c")
        ax.set_xlabel("sparsity (%)")
        ax.set_ylabel(f"{t['metric'].iloc[0]} (%)")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks):]:
        ax.set_visible(False)
    fig.suptitle(f"Headline metric vs sparsity — {backbone} (mean; bands ± std over fine-tuning seeds and "
                 "search replicates)", y=1.0)
    fig.tight_layout()
    fig.legend(list(handles.values()), list(handles.keys()), loc="upper center",
               bbox_to_anchor=(0.5, 0.0), ncol=min(4, max(len(handles), 1)), frameon=False)
    return save(fig, stem)


def heatmap(square: pd.DataFrame, stem: Path, title: str, cbar_label: str, center: float | None = None,
            fmt: str = "{:.0f}", cmap: str = "RdBu", vmin: float | None = None, vmax: float | None = None,
            average_col: str | None = None) -> list[Path]:
    """An annotated heatmap; `center` makes the colormap diverge around that value; missing cells
    are hatched grey with a dash."""
    data = square.to_numpy(dtype=float)
    rows, cols = list(square.index), [str(c) for c in square.columns]
    fig, ax = plt.subplots(figsize=(2.6 + 0.95 * len(cols), max(3.2, 1.2 + 0.5 * len(rows))))
    finite = data[np.isfinite(data)]
    lo = vmin if vmin is not None else (finite.min() if finite.size else 0.0)
    hi = vmax if vmax is not None else (finite.max() if finite.size else 1.0)
    if center is not None:
        span = max(abs(hi - center), abs(center - lo), 1e-6)
        norm = TwoSlopeNorm(vcenter=center, vmin=center - span, vmax=center + span)
    else:
        norm = plt.Normalize(lo, hi if hi > lo else lo + 1e-6)
    cm = plt.get_cmap(cmap).with_extremes(bad="#e0e0e0")
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cm, norm=norm, aspect="auto")
    for i in range(len(rows)):
        for j in range(len(cols)):
            v = data[i, j]
            if np.isfinite(v):
                r, g, b, _ = cm(norm(v))
                colour = "white" if (0.299 * r + 0.587 * g + 0.114 * b) < 0.5 else "black"
                ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=9, color=colour)
            else:
                ax.text(j, i, "–", ha="center", va="center", fontsize=9, color="#555555")
    if average_col in cols:
        ax.axvline(cols.index(average_col) - 0.5, color="black", lw=2)
    ax.set_xticks(range(len(cols)), cols, rotation=35, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label=cbar_label, fraction=0.05, pad=0.02)
    fig.tight_layout()
    return save(fig, stem)


def layer_profile(per_layer: pd.DataFrame, backbone: str, stem: Path) -> list[Path]:
    """Per-layer sparsity of every ticket: one panel per source ticket, layers in model order on the x
    axis, one line per ticket sparsity (colour: the overall sparsity, dotted at its level) — as readable
    for a 2-layer toy as for a 12-layer model over a whole ladder; the stream of each layer is marked
    where there are several."""
    d = per_layer[per_layer["backbone"] == backbone]
    sps = sorted(set(d["sparsity"]))
    sources = source_order(set(d["source"]), [])
    layers = list(dict.fromkeys(d["layer"]))
    pos = {name: i for i, name in enumerate(layers)}
    width = max(3.8, 0.3 * len(layers) + 2.0)
    ncols = max(1, min(3, len(sources), int(16 // width)))
    nrows = math.ceil(len(sources) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(width * ncols, 3.3 * nrows + 0.6), squeeze=False,
                             sharey=True)
    cmap = plt.get_cmap("viridis")
    colour = {sp: cmap(0.9 * i / max(len(sps) - 1, 1)) for i, sp in enumerate(sps)}
    handles: dict[str, object] = {}
    # Drop the prefix all layers share ('lxmert.encoder.') so the ticks stay short.
    prefix = os.path.commonprefix(layers)
    prefix = prefix[: prefix.rfind(".") + 1] if len(layers) > 1 else ""
    streams = d.drop_duplicates("layer").set_index("layer")["stream"]
    for ax, source in zip(axes.flat, sources):
        part = d[d["source"] == source]
        for sp in sps:
            g = part[part["sparsity"] == sp]
            if g.empty:
                continue
            (ln,) = ax.plot([pos[x] for x in g["layer"]], 100 * g["layer_sparsity"], "o-", color=colour[sp], lw=1.3,
                            ms=4)
            ax.axhline(100 * sp, color=colour[sp], ls=":", lw=0.8, alpha=0.6)
            handles.setdefault(f"{100 * sp:g}%", ln)
        if streams.nunique() > 1:
            for i, name in enumerate(layers):
                if i == 0 or streams[name] != streams[layers[i - 1]]:
                    ax.axvline(i - 0.5, color="#999999", lw=0.8)
                    ax.text(i - 0.4, 1.02, streams[name], transform=ax.get_xaxis_transform(), fontsize=8)
        ticks = [x[len(prefix):] for x in layers]
        tilt = len(layers) > 4 and max(len(x) for x in ticks) > 3  # numbers stay upright
        ax.set_xticks(range(len(layers)), ticks, rotation=60 if tilt else 0, ha="right" if tilt else "center",
                      fontsize=8)
        ax.set_xlim(-0.5, len(layers) - 0.5)
        ax.set_ylim(0, 100)
        ax.set_title(source, pad=14 if streams.nunique() > 1 else 6)
        ax.grid(alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("layer sparsity (%)")
    for ax in list(axes.flat)[len(sources):]:
        ax.set_visible(False)
    if prefix:
        fig.supxlabel(f"layer (prefix {prefix.rstrip('.')})", fontsize=10)
    fig.suptitle(f"Per-layer sparsity of each ticket — {backbone} (colour: ticket sparsity; dotted: its level)")
    fig.tight_layout()
    fig.legend(list(handles.values()), list(handles.keys()), title="ticket sparsity", loc="center left",
               bbox_to_anchor=(1.0, 0.5), frameon=False)
    return save(fig, stem)


def compare_plot(cmp: pd.DataFrame, method: str, stem: Path, tasks: list[str] | None = None) -> list[Path]:
    """One panel per reference method: difference in points (method − reference) against sparsity,
    a line per task, error bars = the tie margin, zero line."""
    refs = list(dict.fromkeys(cmp["reference"]))
    fig, axes = plt.subplots(1, max(1, len(refs)), figsize=(4.4 * max(1, len(refs)), 3.6), squeeze=False, sharey=True)
    handles: dict[str, object] = {}
    tasks = [t for t in (tasks or []) if t in set(cmp["task"])] + sorted(set(cmp["task"]) - set(tasks or []))
    ticks = sorted(set(100 * cmp["sparsity"]))
    colours = plt.get_cmap("tab10")
    for ax, ref in zip(axes[0], refs):
        part = cmp[cmp["reference"] == ref]
        for k, task in enumerate(tasks):
            g = part[part["task"] == task].sort_values("sparsity")
            if g.empty:
                continue
            h = ax.errorbar(100 * g["sparsity"] + (k - len(tasks) / 2) * 0.4, g["diff"], yerr=g["margin"],
                            marker="o", ms=4, capsize=3, lw=1.4, color=colours(k % 10), label=task)
            handles.setdefault(task, h)
        ax.axhline(0, color="black", lw=1)
        wins, ties, losses = (int((part["outcome"] == o).sum()) for o in ("win", "tie", "loss"))
        ax.set_title(f"vs {ref}: {wins}W / {ties}T / {losses}L")
        ax.set_xticks(ticks, [f"{x:g}" for x in ticks])
        ax.set_xlabel("sparsity (%)")
        ax.grid(alpha=0.3)
    axes[0, 0].set_ylabel(f"{method} − reference (points)")
    fig.suptitle(f"'{method}' against the reference methods (error bars: tie margin)")
    fig.tight_layout()
    fig.legend(list(handles.values()), list(handles.keys()), loc="upper center", bbox_to_anchor=(0.5, 0.0),
               ncol=min(7, max(1, len(handles))), frameon=False)
    return save(fig, stem)


def matrix_type_profile(per_type: pd.DataFrame, backbone: str, stem: Path, tasks: list[str] | None = None) -> list[Path]:
    """Sparsity of each weight-matrix kind per layer: one heatmap per ticket sparsity, a row per
    source, a column per (layer, kind) — Q, K, V, attention output, FFN in, FFN out in model order."""
    d = per_type[per_type["backbone"] == backbone]
    sps = sorted(set(d["sparsity"]))
    columns = list(dict.fromkeys(zip(d["layer"], d["matrix"])))
    prefix = os.path.commonprefix([layer for layer, _ in columns])
    prefix = prefix[: prefix.rfind(".") + 1] if len({layer for layer, _ in columns}) > 1 else ""
    labels = [f"{layer[len(prefix):]} {kind}" for layer, kind in columns]
    sources = source_order(set(d["source"]), tasks or [])
    counts = [d[d["sparsity"] == sp]["source"].nunique() for sp in sps]
    fig, axes = plt.subplots(len(sps), 1, squeeze=False, gridspec_kw={"height_ratios": [n + 5 for n in counts]},
                             figsize=(max(7.0, 0.42 * len(columns) + 3), sum(0.3 * n + 1.6 for n in counts)))
    image = None
    for ax, sp in zip(axes[:, 0], sps):
        at = d[d["sparsity"] == sp]
        part = at.set_index(["source", "layer", "matrix"])["matrix_sparsity"]
        rows = [src for src in sources if src in set(at["source"])]  # controls exist at their sparsities only
        grid = np.array([[100 * part.get((src, layer, kind), np.nan) for layer, kind in columns] for src in rows])
        image = ax.imshow(grid, aspect="auto", cmap="magma_r", vmin=0, vmax=100)
        if len(columns) <= 40 and len(sources) <= 20:  # numbers only where they stay legible
            for (i, j), v in np.ndenumerate(grid):
                if not np.isnan(v):
                    # 99.5 must not print as 100: one decimal near the top
                    ax.text(j, i, f"{v:.1f}" if 99 <= v < 100 else f"{v:.0f}", ha="center", va="center", fontsize=7,
                            color="white" if v > 60 else "black")
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
        ax.set_xticks(range(len(columns)), labels, rotation=60, ha="right", fontsize=8)
        ax.set_title(f"ticket sparsity {100 * sp:g}%: % pruned per layer and matrix", fontsize=11)
    if prefix:
        axes[-1, 0].set_xlabel(f"layer (prefix {prefix.rstrip('.')}) and matrix")
    fig.suptitle(f"Sparsity per matrix type (Q / K / V / attention out / FFN in / FFN out) — {backbone}")
    fig.tight_layout()
    if image is not None:
        fig.colorbar(image, ax=axes[:, 0].tolist(), label="% pruned", shrink=0.8)
    return save(fig, stem)
