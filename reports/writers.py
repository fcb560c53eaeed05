"""Writing a table three ways (CSV for machines, Markdown and LaTeX for people), atomically."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

from bench.core.io import atomic_write_text
from bench.core.layout import file_name


def fmt_num(x, digits: int = 1) -> str:
    """A number for display; NaN / None as an en dash."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, (int, float)):
        return f"{x:.{digits}f}"
    return str(x)


def fmt_sparsity(s: float) -> str:
    """0.7 → '70%' (one decimal only when needed)."""
    pct = 100 * float(s)
    return f"{pct:.0f}%" if abs(pct - round(pct)) < 1e-6 else f"{pct:.1f}%"


def sparsity_tag(s: float) -> str:
    """0.7 → 's70' for file names (0.725 → 's72.5')."""
    return "s" + fmt_sparsity(s).rstrip("%")


def mean_std(mean: float, std: float, digits: int = 1) -> str:
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return fmt_num(mean, digits)
    return f"{fmt_num(mean, digits)} ± {fmt_num(std, digits)}"


# Text from a store (a record's reason, metric or device, a ticket's source, a config's path) reaches
# README.md and the tables: escaped, so that it is shown as written, never run as HTML or read as
# Markdown (links, images, emphasis, code, table cells) or LaTeX commands.
_MD = {c: "\\" + c for c in "\\`*_|~"} | {"<": "&lt;", ">": "&gt;", "&": "&amp;", "\n": " ", "\r": " "}
_TEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "_": r"\_", "#": r"\#", "$": r"\$", "{": r"\{",
        "}": r"\}", "^": r"\textasciicircum{}", "~": r"\textasciitilde{}", "<": r"\textless{}",
        ">": r"\textgreater{}", "±": r"$\pm$", "–": "--", "\n": " ", "\r": " "}


def md_text(s) -> str:
    """`s` as literal Markdown / HTML text (one line). Brackets stay (the report's own "[95% CI"), but a
    link or image cannot form: its `](` is broken."""
    return "".join(_MD.get(c, c) for c in str(s)).replace("](", "]\\(")


def to_markdown(df: pd.DataFrame, index: bool = True, markup: tuple = ()) -> str:
    """A GitHub-flavoured Markdown table (no `tabulate` dependency); every cell escaped (`md_text`) but
    those of the `markup` columns, which hold the report's own Markdown (never text from a store)."""
    d = df.reset_index() if index and not isinstance(df.index, pd.RangeIndex) else df
    cols = [md_text(c) for c in d.columns]
    own = {i for i, c in enumerate(d.columns) if c in markup}

    def cell(i: int, v) -> str:
        return str(v) if i in own else md_text(fmt_num(v, 2) if isinstance(v, float) else v)

    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in d.itertuples(index=False):
        lines.append("| " + " | ".join(cell(i, v) for i, v in enumerate(row)) + " |")
    return "\n".join(lines) + "\n"


def _latex_escape(s: str) -> str:
    """`s` as literal LaTeX text: one pass, so an escape's own braces are not escaped again."""
    return "".join(_TEX.get(c, c) for c in str(s))


def to_latex(df: pd.DataFrame, index: bool = True, caption: str = "") -> str:
    """A booktabs LaTeX tabular of the display frame (every cell escaped)."""
    d = df.reset_index() if index and not isinstance(df.index, pd.RangeIndex) else df
    cols = [_latex_escape(str(c)) for c in d.columns]

    def cell(v) -> str:
        return _latex_escape(fmt_num(v, 2) if isinstance(v, float) else str(v))

    out = []
    if caption:
        out.append(f"% {caption}")
    out += [r"\begin{tabular}{" + "l" * len(cols) + "}", r"\toprule", " & ".join(cols) + r" \\", r"\midrule"]
    out += [" & ".join(cell(v) for v in row) + r" \\" for row in d.itertuples(index=False)]
    out += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(out) + "\n"


def write_table(report_dir: Path, name: str, data: pd.DataFrame, display: pd.DataFrame | None = None,
                caption: str = "") -> dict[str, Path]:
    """`<name>.csv` (the raw numbers) and `<name>.md` / `<name>.tex` (the display form)."""
    display = data if display is None else display
    name = file_name(name)  # names carry labels from the store (a backbone): one plain file name, never a path
    paths = {
        "csv": atomic_write_text(report_dir / f"{name}.csv", data.to_csv(index=not isinstance(data.index, pd.RangeIndex))),
        "md": atomic_write_text(report_dir / f"{name}.md", (f"{caption}\n\n" if caption else "") + to_markdown(display)),
        "tex": atomic_write_text(report_dir / f"{name}.tex", to_latex(display, caption=caption)),
    }
    return paths
