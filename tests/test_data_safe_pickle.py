"""The restricted unpickler admits plain data only and never runs a payload."""

from __future__ import annotations

import collections
import pickle

import pytest

from bench.core.errors import DataError
from bench.core.safe_pickle import safe_load, safe_loads


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_plain_data_roundtrips(protocol):
    obj = [{"ref_id": 1, "sentences": [{"sent": "é", "tokens": ["a"]}], "box": (1.5, None, True)}, 2**70]
    assert safe_loads(pickle.dumps(obj, protocol=protocol)) == obj


def test_sets_and_bytes_need_protocol_4():
    # Older protocols encode sets and bytes through a global (builtins.set, _codecs.encode): refused.
    obj = [{1, 2}, frozenset({3}), b"x"]
    assert safe_loads(pickle.dumps(obj, protocol=4)) == obj
    with pytest.raises(DataError, match="refused to unpickle global"):
        safe_loads(pickle.dumps(obj, protocol=2))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_os_system_payload_refused_and_not_run(tmp_path, protocol):
    marker = tmp_path / "PWNED"
    path = tmp_path / "refs(unc).p"
    path.write_bytes(pickle.dumps({"refs": [_Payload(marker)]}, protocol=protocol))
    with pytest.raises(DataError) as e:
        safe_load(path)
    msg = str(e.value)
    assert "\n" not in msg and str(path) in msg and "refused to unpickle global" in msg
    assert ("posix.system" in msg) or ("os.system" in msg) or ("nt.system" in msg)
    assert not marker.exists()


def test_any_class_refused():
    with pytest.raises(DataError, match="collections.OrderedDict"):
        safe_loads(pickle.dumps(collections.OrderedDict(a=1)))


def test_garbage_and_missing_file(tmp_path):
    with pytest.raises(DataError, match="not a valid data pickle"):
        safe_loads(b"\x80\x04garbage", "x.p")
    with pytest.raises(DataError, match="nope.p: pickle not found"):
        safe_load(tmp_path / "nope.p")
