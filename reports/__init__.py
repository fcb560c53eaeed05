"""Tables, figures, paper comparisons and method comparisons, read from the results store only.

Public API: `build_report(out_dir, compare=None, config=None, plan=None, plans=None)`,
`load_results(out_dir, plan=None, plans=None)` (one plan's results object), `paper_figures(out_dir, paper)`,
`compare_method(out_dir, method)`, `collect_matrix(out_dir)`.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from reports.build import build_report
from reports.compare import compare_frame
from reports.context import load_context
from reports.figures import paper_figures
from reports.store import collect_matrix, load_results


def compare_method(out_dir: str | Path, method: str, config=None) -> pd.DataFrame:
    """Rank `method` against imp, omp, pretrained_magnitude and random for every task and
    sparsity (difference in points, win / tie / loss); reads the store and writes only report/matrix.csv."""
    ctx = load_context(out_dir, config)
    return compare_frame(ctx.df, method, ctx.config.report.tie_margin)


__all__ = ["build_report", "paper_figures", "compare_method", "collect_matrix", "load_results"]
