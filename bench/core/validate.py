"""Value checks of a whole config, run once when it is built (YAML, `--set`) and on the CLI's subset
options, so that a bad value fails in one line *before* any stage starts (never as a traceback, a
hang, or "failed" records after hours of training).

`bench.core.hparams.coerce_value` gives every field its type; each field declares what the type
cannot say — ranges, list elements, enumerations, syntax — with itself (`hp(default, help,
check=POSITIVE_INT)`, the `Check`s below), and `validate` runs every field's check. A recipe's fields
in `tasks.yaml` take `TrainSettings`' checks (`field_check`). Names that need a registry (tasks,
presets, pruning methods) are checked by the pipeline before it writes anything.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable, NamedTuple

from bench.core.errors import ConfigError, DataError, TicketbenchError
from bench.core.io import safe_name
from bench.core.source import OBJECTIVES, Source

EXECUTORS = ("local", "ray")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")


def _fail(where: str, key: str, value: Any, expected: str) -> ConfigError:
    return ConfigError(f"{where}: {key}: expected {expected}, found {value!r}")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class Check(NamedTuple):
    """The check of one field, declared with it (`hp(default, help, check=...)`): `ok(value)` and what was
    expected, in words; a tuple field is checked element by element, `nonempty` ones hold at least one
    element and `length` ones exactly that many."""

    ok: Callable[[Any], bool]
    expected: str
    nonempty: bool = False
    length: int | None = None


def nonempty(check: Check) -> Check:
    return check._replace(nonempty=True)


def length(check: Check, n: int) -> Check:
    return check._replace(length=n)


def int_at_least(lo: int) -> Check:
    return Check(lambda v: _is_int(v) and v >= lo, f"an integer ≥ {lo}")


def number_in(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Check:
    def ok(v: Any) -> bool:
        return _is_num(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)

    return Check(ok, f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}")


def number_at_least(lo: float, open_: bool = False) -> Check:
    return Check(lambda v: _is_num(v) and (v > lo if open_ else v >= lo), f"a finite number {'>' if open_ else '≥'} {lo:g}")


def one_of(*choices: str) -> Check:
    return Check(lambda v: v in choices, "one of " + ", ".join(choices))


def matches(pattern: str, expected: str, full: bool = False) -> Check:
    """A string that `pattern` matches at its start (`full`: the whole string, surrounding spaces aside)."""
    rx = re.compile(pattern)
    return Check(lambda v: isinstance(v, str) and bool(rx.fullmatch(v.strip()) if full else rx.match(v)), expected)


NON_NEGATIVE_INT = int_at_least(0)
POSITIVE_INT = int_at_least(1)
FRACTION = Check(number_in(0.0, 1.0).ok, "a fraction in [0, 1]")
POSITIVE = number_at_least(0.0, open_=True)
NON_NEGATIVE = number_at_least(0.0)
# Sparsities are keyed and reported at 4 decimals: 0.9999999 would become a 100 % ticket and 1e-9 a 0 % one.
SPARSITY = Check(lambda v: _is_num(v) and (v == 0 or 1e-4 <= v <= 0.9999),
                 "a number in [0, 1): 0, or 0.0001 to 0.9999 (sparsities are kept to 4 decimals)")
NAME = Check(lambda v: isinstance(v, str) and bool(v.strip()), "a non-empty name")
TEXT = Check(lambda v: isinstance(v, str), "a string")
BOOL = Check(lambda v: isinstance(v, bool), "true or false")
BETAS = length(number_in(0.0, 1.0, hi_open=True), 2)
DEVICE = Check(lambda v: isinstance(v, str) and bool(_DEVICE.match(v)), "auto, cpu, mps, cuda or cuda:N")


def _regex(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        re.compile(v)
    except re.error:
        return False
    return True


REGEX = Check(_regex, "a valid regular expression")


def _mix(spec: Any, allow_empty: bool) -> bool:
    """`name[:ratio],...` with known objective names and positive ratios."""
    if not isinstance(spec, str):
        return False
    if not spec.strip():
        return allow_empty
    for part in spec.split(","):
        name, _, weight = part.strip().partition(":")
        if name not in OBJECTIVES:
            return False
        if weight:
            try:
                w = float(weight)
            except ValueError:
                return False
            if not (math.isfinite(w) and w > 0):
                return False
    return True


HPARAM = matches(r"^[A-Za-z0-9_]+\.[A-Za-z0-9_]+=", "method.field=value")
MIX = Check(lambda v: _mix(v, False), f"an objective mix name[:ratio],... of {', '.join(OBJECTIVES)} with ratios > 0")
MIX_OR_EMPTY = Check(lambda v: _mix(v, True), MIX.expected + " (or empty)")


def check_name(name: Any, where: str = "config") -> str:
    """A config name becomes a directory (`runs/<name>`): one path component, never `..` or hidden."""
    if (not isinstance(name, str) or not name.strip() or "/" in name or "\\" in name or "\0" in name
            or name.startswith(".")):
        raise _fail(where, "name", name, "one directory name (no '/', not starting with '.')")
    return name


def field_check(cls: type, name: str) -> Check | None:
    """The check declared with field `name` of dataclass `cls` (None: it has none)."""
    import dataclasses

    return next((f.metadata.get("check") for f in dataclasses.fields(cls) if f.name == name), None)


def check_value(key: str, value: Any, check: Check, where: str = "config", optional: bool = False) -> None:
    """Check one field (list elements included); a ConfigError names `where`, the key, the value and
    what was expected. `optional` fields (default None: "the recipe's") also take None."""
    if optional and value is None:
        return
    if isinstance(value, tuple):
        if check.nonempty and not value:
            raise _fail(where, key, list(value), "at least one value")
        if check.length is not None and len(value) != check.length:
            raise _fail(where, key, list(value), f"{check.length} values")
        for element in value:
            if not check.ok(element):
                raise ConfigError(f"{where}: {key}: element {element!r} of {list(value)!r}: expected {check.expected}")
        if len(set(value)) != len(value) and check.length is None:
            raise _fail(where, key, list(value), "no repeated values")
    elif not check.ok(value):
        raise _fail(where, key, value, check.expected)


def validate(cfg, where: str = "config"):
    """Check every field of a `bench.config.Config`; return it unchanged (so it can wrap a return)."""
    import dataclasses

    check_name(cfg.name, where)
    for section in dataclasses.fields(cfg):
        if section.name == "name":
            continue
        sec = getattr(cfg, section.name)
        for f in dataclasses.fields(sec):
            check = f.metadata.get("check")
            if check is None:  # a field declared without a check: tests/test_bad_inputs.py fails
                continue
            check_value(f"{section.name}.{f.name}", getattr(sec, f.name), check, where, optional=f.default is None)
    if cfg.world.source == "real" and not cfg.world.data_root:
        raise ConfigError(f"{where}: world.source is 'real' but world.data_root is empty; set it to the "
                          "root of the real datasets")
    return cfg


# ---- files read back from a store ---------------------------------------------------------------
# Everything a store holds may have been damaged, edited by hand or written by another version: each
# file is read bounded (bench.core.io) and checked here, field by field, so that a bad one is one line
# naming the file, the field, what was expected and what to do — never a traceback further on.
_RECORD_MAPPINGS = ("env", "timings", "metrics", "config")
_RECORD_TEXT = ("metric", "reason", "method", "source_task", "split", "run_id")
RECORD_HINT = "delete that run's folder and re-run `ticketbench matrix` to recompute it"
MANIFEST_HINT = "re-run `ticketbench matrix` with the plan's config to rewrite it, or delete it"
TIMINGS_HINT = "delete it (the next run writes a new one)"
WORLD_HINT = "delete the world folder and re-run (toyland writes it again)"


def _stored(path, key: str, value: Any, expected: str, hint: str) -> DataError:
    shown = repr(value)
    if len(shown) > 80:
        shown = shown[:77] + "..."
    return DataError(f"{path}: field '{key}': expected {expected}, found {shown}; {hint}")


def _int(v: Any) -> bool:
    return _is_int(v) and abs(v) < 2**63


# Headline metrics that are correlations (× 100): GLUE's CoLA (Matthews) and STS-B (Pearson / Spearman)
# go below zero when a model does worse than chance.
SIGNED_METRICS = frozenset({"matthews", "pearson", "spearman"})


def check_record(path, rec: dict) -> dict:
    """A run record read back from disk: fields that become file names (backbone, task) must stay
    inside the output folder, fields read as mappings must be mappings, text fields text, numbers
    finite numbers of their range (the headline value is a score in [0, 100]). One-line DataError
    naming the file, the field and the value."""
    if not isinstance(rec, dict):
        raise DataError(f"{path}: expected a JSON object, found {type(rec).__name__}; {RECORD_HINT}")
    for key in ("backbone", "task"):
        try:
            safe_name(str(rec.get(key)), f"{key}")
        except Exception:  # safe_name speaks the base error type; records speak DataError
            raise DataError(f"{path}: field '{key}' {rec.get(key)!r} is not a plain name "
                            "(letters, digits and _.:+=- only; no '/' or '..')") from None
    if rec.get("source") is not None:
        try:
            Source.parse(str(rec["source"]))
        except TicketbenchError as e:
            raise DataError(f"{path}: field 'source': {e}") from None
    for key in _RECORD_MAPPINGS:
        if key in rec and rec[key] is not None and not isinstance(rec[key], dict):
            raise DataError(f"{path}: field '{key}' must be a JSON object, found {rec[key]!r}")
    for key in _RECORD_TEXT:
        if rec.get(key) is not None and not isinstance(rec[key], str):
            raise _stored(path, key, rec[key], "a string", RECORD_HINT)
    if rec.get("steps_factor") is not None and not (_int(rec["steps_factor"]) and rec["steps_factor"] >= 1):
        raise _stored(path, "steps_factor", rec["steps_factor"], "an integer ≥ 1", RECORD_HINT)
    for key in ("seed", "eval_examples"):
        if rec.get(key) is not None and not _int(rec[key]):
            raise _stored(path, key, rec[key], "an integer", RECORD_HINT)
    value = rec.get("value")
    if _is_num(value) and rec.get("metric") in SIGNED_METRICS:
        if not -100.0 <= value <= 100.0:
            raise _stored(path, "value", value, f"a {rec['metric']} correlation × 100, in [-100, 100]", RECORD_HINT)
    elif _is_num(value) and not 0.0 <= value <= 100.0:
        raise _stored(path, "value", value, "a score in [0, 100]", RECORD_HINT)
    if _is_num(rec.get("sparsity")) and not 0.0 <= rec["sparsity"] < 1.0:
        raise _stored(path, "sparsity", rec["sparsity"], "a number in [0, 1)", RECORD_HINT)
    if _is_num(rec.get("chance")) and not 0.0 <= rec["chance"] <= 100.0:
        raise _stored(path, "chance", rec["chance"], "a number in [0, 100]", RECORD_HINT)
    metrics = rec.get("metrics")
    if isinstance(metrics, dict):
        for name, v in metrics.items():
            if v is not None and not (_is_num(v) and abs(v) <= 1e6):
                raise _stored(path, f"metrics.{name}", v, "a finite number", RECORD_HINT)
    env = rec.get("env")
    if isinstance(env, dict):
        for name, v in env.items():
            if v is not None and not isinstance(v, (str, int, float)):
                raise _stored(path, f"env.{name}", v, "a string", RECORD_HINT)
    return rec


def check_manifest(path, data: Any) -> dict:
    """A plan manifest (`plans/<hash>.json`): its runs, config, searches and cells, typed."""
    if not isinstance(data, dict):
        raise DataError(f"{path}: not a plan manifest (expected a JSON object, found {type(data).__name__}); "
                        f"{MANIFEST_HINT}")
    if not isinstance(data.get("runs"), list) or not isinstance(data.get("config"), dict):
        raise DataError(f"{path}: not a plan manifest (expected fields 'runs' and 'config'); {MANIFEST_HINT}")
    for i, run in enumerate(data["runs"]):
        if not isinstance(run, str):
            raise _stored(path, f"runs[{i}]", run, "a run id", MANIFEST_HINT)
    if not isinstance(data.get("plan", ""), str):
        raise _stored(path, "plan", data["plan"], "a plan hash", MANIFEST_HINT)
    if data.get("plan"):
        try:
            safe_name(data["plan"], "plan hash")
        except TicketbenchError:
            raise _stored(path, "plan", data["plan"], "a plan hash (a plain name)", MANIFEST_HINT) from None
    searches = data.get("searches", {})
    if not isinstance(searches, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                 for k, v in searches.items()):
        raise _stored(path, "searches", searches, "a mapping source -> ticket folder", MANIFEST_HINT)
    cells = data.get("cells")
    if cells is not None:
        if not isinstance(cells, list):
            raise _stored(path, "cells", cells, "a list of cells", MANIFEST_HINT)
        for i, c in enumerate(cells):
            where = f"cells[{i}]"
            if not isinstance(c, dict):
                raise _stored(path, where, c, "a JSON object", MANIFEST_HINT)
            for key in ("run", "source", "task"):
                if not isinstance(c.get(key), str):
                    raise _stored(path, f"{where}.{key}", c.get(key), "a string", MANIFEST_HINT)
            if not (_is_num(c.get("sparsity")) and 0.0 <= c["sparsity"] < 1.0):
                raise _stored(path, f"{where}.sparsity", c.get("sparsity"), "a number in [0, 1)", MANIFEST_HINT)
            if not _int(c.get("seed", 0)):
                raise _stored(path, f"{where}.seed", c.get("seed"), "an integer", MANIFEST_HINT)
            if not (_int(c.get("steps_factor", 1)) and c.get("steps_factor", 1) >= 1):
                raise _stored(path, f"{where}.steps_factor", c.get("steps_factor"), "an integer ≥ 1", MANIFEST_HINT)
            try:
                Source.parse(c["source"])
            except TicketbenchError as e:
                raise DataError(f"{path}: field '{where}.source': {e}; {MANIFEST_HINT}") from None
    return data


def check_timings(path, data: Any) -> dict:
    """`timings.json`: stage -> finite seconds, plus the device (text) and thread count."""
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object of stage timings, found {type(data).__name__}; "
                        f"{TIMINGS_HINT}")
    for key, v in data.items():
        if key == "device":
            ok, expected = isinstance(v, str), "a string"
        else:
            ok, expected = _is_num(v) and v >= 0, "a finite number ≥ 0"
        if not ok:
            raise _stored(path, key, v, expected, TIMINGS_HINT)
    return data


def check_world_manifest(path, data: Any) -> dict:
    """A toyland world's `MANIFEST.json`: version, seed, scale, counts and chance levels, typed."""
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object (a toyland world's manifest), found "
                        f"{type(data).__name__}; {WORLD_HINT}")
    for key, ok, expected in (("version", _int, "an integer"), ("seed", _int, "an integer"),
                              ("scale", lambda v: isinstance(v, str), "a string"),
                              ("counts", lambda v: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()),
                               "a mapping task -> {split: count}"),
                              ("chance", lambda v: isinstance(v, dict) and all(isinstance(x, dict) for x in v.values()),
                               "a mapping task -> {metric: value}")):
        if key in data and not ok(data[key]):
            raise _stored(path, key, data[key], expected, WORLD_HINT)
    return data
