"""Values remembered against files' (size, mtime): a no-op re-run reads no data file (issue 30, item 10)."""

from __future__ import annotations

import json
import os

import pytest

from bench.core import statcache
from bench.core.statcache import StatCache, file_stamps


@pytest.fixture(autouse=True)
def _no_racy_window(monkeypatch):
    monkeypatch.setattr(statcache, "RACY_S", 0.0)  # files written by the test itself count as settled


def _age(path, seconds=10):
    t = os.stat(path).st_mtime - seconds
    os.utime(path, (t, t))


def test_computed_once_then_again_when_a_file_changes(tmp_path):
    data = tmp_path / "data.json"
    data.write_text("[1, 2]")
    calls = []

    def compute():
        calls.append(1)
        return f"digest-{len(calls)}"

    cache = tmp_path / "cache.json"
    assert StatCache(cache).get_or_compute({"task": "vqa"}, [data], compute) == "digest-1"
    assert StatCache(cache).get_or_compute({"task": "vqa"}, [data], compute) == "digest-1"  # a new process
    assert len(calls) == 1
    assert StatCache(cache).get_or_compute({"task": "gqa"}, [data], compute) == "digest-2"  # other inputs
    data.write_text("[1, 2, 3]")
    assert StatCache(cache).get_or_compute({"task": "vqa"}, [data], compute) == "digest-3"
    os.utime(data, ns=(1, 1))  # same size, another mtime: a new key too
    assert StatCache(cache).get_or_compute({"task": "vqa"}, [data], compute) == "digest-4"


def test_a_folder_counts_every_file_below_it(tmp_path):
    (tmp_path / "store" / "a").mkdir(parents=True)
    (tmp_path / "store" / "a" / "1.npz").write_bytes(b"x")
    before = file_stamps([tmp_path / "store"])
    (tmp_path / "store" / "a" / "2.npz").write_bytes(b"y")
    assert len(file_stamps([tmp_path / "store"])) == len(before) + 1


def test_nothing_remembered_from_a_missing_or_just_written_file(tmp_path, monkeypatch):
    assert file_stamps([tmp_path / "gone.json"]) is None
    fresh = tmp_path / "fresh.json"
    fresh.write_text("{}")
    monkeypatch.setattr(statcache, "RACY_S", 60.0)
    assert file_stamps([fresh]) is None
    _age(fresh, 120)
    assert file_stamps([fresh]) is not None
    cache = tmp_path / "cache.json"
    fresh.write_text("{} ")
    assert StatCache(cache).get_or_compute("x", [fresh], lambda: "v") == "v"
    assert not cache.exists()  # computed, not remembered


def test_a_damaged_cache_is_only_a_lost_saving(tmp_path):
    data, cache = tmp_path / "data.json", tmp_path / "cache.json"
    data.write_text("[]")
    cache.write_text("{not json")
    assert StatCache(cache).get_or_compute("x", [data], lambda: "v") == "v"
    assert list(json.loads(cache.read_text()).values()) == ["v"]


def test_parameter_counts_are_remembered_against_the_architecture_code(tmp_path, monkeypatch):
    from bench.backbones import presets

    monkeypatch.setenv("TICKETBENCH_CACHE", str(tmp_path))
    n = presets.count_parameters("toy-uniter")
    assert n > 0 and list(json.loads((tmp_path / "parameters.json").read_text()).values()) == [n]

    def built(*a, **k):
        raise AssertionError("built the model again")

    monkeypatch.setattr(presets.torch, "device", built)
    assert presets.count_parameters("toy-uniter") == n  # read back: transformers' model code not needed
