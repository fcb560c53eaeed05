"""Tables, figures, paper comparisons and method comparisons, read from the results store only.

Public API: `build_report(out_dir, compare=None, config=None, plan=None, plans=None)`,
`load_results(out_dir, plan=None, plans=None)` (one plan's results object), `paper_figures(out_dir, paper)`,
`compare_method(out_dir, method)`, `collect_matrix(out_dir)`.

The package imports its modules on first use of a name (PEP 562), not here: reading results
(`reports.store`) must not pay for matplotlib and torch, which the report builders import
(`ticketbench.load_results`, issue 30). The modules themselves import at their tops as usual.
"""

from __future__ import annotations

import importlib

# name -> the module defining it
_EXPORTS = {"build_report": "reports.build", "paper_figures": "reports.figures", "compare_method": "reports.compare",
            "collect_matrix": "reports.store", "load_results": "reports.store"}


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'reports' has no attribute '{name}'")


__all__ = list(_EXPORTS)
