"""Security promises: no pickle of untrusted data, safe YAML, names that cannot escape the output dir."""

import re
from pathlib import Path

import pytest

from bench.core.errors import TicketbenchError
from bench.core.io import safe_name

ROOT = Path(__file__).resolve().parent.parent
CODE = [p for d in ("bench", "tickets", "reports") for p in (ROOT / d).rglob("*.py")]


def _hits(pattern: str, allow=lambda line: False) -> list[str]:
    rx = re.compile(pattern)
    out = []
    for path in CODE:
        for i, line in enumerate(path.read_text().splitlines(), 1):
            if rx.search(line) and not allow(line):
                out.append(f"{path.relative_to(ROOT)}:{i}: {line.strip()}")
    return out


def test_no_plain_pickle_loads():
    # The only unpickling is bench/core/safe_pickle.py's restricted Unpickler (find_class refuses globals).
    assert _hits(r"pickle\.loads?\(|cPickle|dill\.load|joblib\.load") == []


def test_torch_load_always_weights_only():
    assert _hits(r"torch\.load\(", allow=lambda line: "weights_only=True" in line) == []


def test_yaml_always_safe():
    # The one yaml.load is bench.core.io.load_yaml's, with PyYAML's SafeLoader made stricter (no aliases).
    import yaml

    from bench.core.io import _StrictLoader

    assert issubclass(_StrictLoader, yaml.SafeLoader)
    assert _hits(r"yaml\.(load|unsafe_load|full_load)\(", allow=lambda line: "Loader=_StrictLoader" in line) == []


@pytest.mark.parametrize("name", ["../x", "a/b", "/etc/passwd", "..", "x/../../y", ""])
def test_names_from_configs_cannot_escape(name):
    with pytest.raises(TicketbenchError):
        safe_name(name)


def test_source_named_outside_the_store_is_refused():
    from tickets import parse_source

    with pytest.raises(TicketbenchError):
        parse_source("imp:../../x")
