"""The leaderboard's columns for issue 29: each method's pattern, calibration samples and peak memory
beside its search cost (read from the searches' `search.json`)."""

import json
import math

from test_reports_compare_leaderboard import _store

from reports.leaderboard import leaderboard, search_costs, search_facts, with_search_facts
from reports.store import collect_matrix


def test_pattern_calibration_samples_and_peak_memory_columns(tmp_path):
    store = _store(tmp_path)
    (store / "tickets" / "h1" / "mine__vqa" / "search.json").write_text(json.dumps(
        {"seconds": 2.5, "pattern": "2:4",
         "cost": {"train_steps": 0, "calib_samples": 128, "calib_calls": 2, "peak_rss_mb": 512.5}}))
    df = collect_matrix(store)
    sources = sorted(set(df["source"]))
    lb = leaderboard(df, ["mine", "flow"], "imp", costs=search_costs(store, sources))
    s = with_search_facts(lb.summary, search_facts(store, sources)).set_index("method")
    assert s.loc["mine", "pattern"] == "2:4" and s.loc["mine", "calib_samples"] == 128
    assert s.loc["mine", "peak_rss_mb"] == 512.5
    # searches recorded before patterns and memory were: unstructured, memory unknown, no calibration
    assert s.loc["flow", "pattern"] == "unstructured" and math.isnan(s.loc["flow", "peak_rss_mb"])
    assert s.loc["flow", "calib_samples"] == 0 and s.loc["imp", "pattern"] == "unstructured"
