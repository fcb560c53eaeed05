"""Tables, figures, paper comparisons and method comparisons, read from the results store only.

Public API: `build_report(out_dir, compare=None, config=None, plan=None, plans=None)`,
`load_results(out_dir, plan=None, plans=None)` (one plan's results object), `paper_figures(out_dir, paper)`,
`compare_method(out_dir, method)`, `collect_matrix(out_dir)`.

Each name is imported when first used: reading results (`reports.store`) imports neither torch nor
matplotlib, so `ticketbench.load_results` stays light; building figures imports them.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from reports.build import build_report
    from reports.figures import paper_figures
    from reports.store import collect_matrix, load_results

_EXPORTS = {"build_report": "reports.build", "paper_figures": "reports.figures",
            "collect_matrix": "reports.store", "load_results": "reports.store"}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'reports' has no attribute '{name}'")


def compare_method(out_dir: str | Path, method: str, config=None) -> pd.DataFrame:
    """Rank `method` against imp, omp, pretrained_magnitude and random for every task and
    sparsity (difference in points, win / tie / loss); reads the store and writes only report/matrix.csv."""
    from reports.compare import compare_frame
    from reports.context import load_context

    ctx = load_context(out_dir, config)
    return compare_frame(ctx.df, method, ctx.config.report.tie_margin)


__all__ = ["build_report", "paper_figures", "compare_method", "collect_matrix", "load_results"]
