"""The hostile-input sweep (tests/reliability_sweep.py): no case may hang, escape as a traceback, be silently
accepted, or change a file outside the output folder or a stored one. CI runs every third fast case; the
whole sweep (with the cases that build a report) runs under `-m slow` or as `python tests/reliability_sweep.py`."""

from __future__ import annotations

import pytest
from reliability_sweep import CASES, sweep, tally


def _check(results) -> None:
    bad = [(c.name, o, d) for c, o, d in results if o not in ("error", "ok")]
    assert not bad, "\n".join(f"{o}: {n}: {d}" for n, o, d in bad)


def test_the_sweep_holds_at_least_100_cases_of_every_kind():
    kinds = {c.kind for c in CASES}
    assert len(CASES) >= 100
    assert {"config", "set", "option", "env", "store", "ticket", "pickle", "plugin"} <= kinds
    assert len({c.name for c in CASES}) == len(CASES)


def test_a_sample_of_the_sweep(tmp_path):
    fast = [c for c in CASES if not c.slow][::3]
    results = sweep(fast, base=tmp_path)
    _check(results)
    assert tally(results).get("error", 0) >= len(fast) // 2


@pytest.mark.slow
def test_the_whole_sweep(tmp_path):
    _check(sweep(CASES, base=tmp_path))
