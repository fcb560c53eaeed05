"""Third-party methods: the docs' template installed through a real `ticketbench.methods` entry point."""

import sys

import tickets
from tickets.registry import METHODS
from tickets.testing import toy_context


def test_docs_template_is_found_through_its_entry_point(tmp_path, monkeypatch):
    from test_tickets_methods import _plugin_source

    pkg = tmp_path / "my_pruning_ep"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "taylor.py").write_text(_plugin_source().replace('"taylor"', '"taylor_ep"'))
    # What `pip install` of the template writes: a dist-info with the entry point.
    info = tmp_path / "my_pruning_ep-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-pruning-ep\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text("[ticketbench.methods]\ntaylor_ep = my_pruning_ep.taylor:taylor\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(METHODS, "_entry_points_loaded", False)
    assert "my_pruning_ep.taylor" not in sys.modules
    assert "taylor_ep" in tickets.methods.names()
    ts = tickets.get_method("taylor_ep")(toy_context(), {"score_batches": 1})
    assert len(ts) == 4 and ts[0].metadata["method"] == "taylor_ep"
    from tickets.tools import describe_methods

    text = describe_methods()
    assert "taylor_ep" in text and "Molchanov" in text and "score_batches = 2" in text
