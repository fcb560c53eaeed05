"""Tables, figures, paper comparisons and method comparisons, read from the results store only.

Public API: `build_report(out_dir, compare=None, config=None)`, `paper_figures(out_dir, paper)`,
`compare_method(out_dir, method)`, `collect_matrix(out_dir)`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reports.build import build_report
from reports.store import collect_matrix


def paper_figures(out_dir: str | Path, paper: str, config=None) -> Path:
    """Write the figures and tables of the VL-LTH ('vl') or BERT-tickets ('bert') paper for this
    run, side by side with the paper's known numbers, under `<out>/report/paper-<paper>/`."""
    from reports.figures import paper_figures as _paper_figures

    return _paper_figures(out_dir, paper, config)


def compare_method(out_dir: str | Path, method: str, config=None) -> pd.DataFrame:
    """Rank `method` against imp, omp, pretrained_magnitude and random for every task and
    sparsity (difference in points, win / tie / loss); reads the store and writes only report/matrix.csv."""
    from reports.compare import compare_frame
    from reports.context import load_context

    ctx = load_context(out_dir, config)
    return compare_frame(ctx.df, method, ctx.config.report.tie_margin)


__all__ = ["build_report", "paper_figures", "compare_method", "collect_matrix"]
