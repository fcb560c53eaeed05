"""Value checks of a whole config, run once when it is built (YAML, `--set`) and on the CLI's subset
options, so that a bad value fails in one line *before* any stage starts (never as a traceback, a
hang, or "failed" records after hours of training).

`bench.core.hparams.coerce_value` gives every field its type; this module checks what the type
cannot: ranges, list elements, enumerations and syntax. Names that need a registry (tasks,
presets, pruning methods) are checked by the pipeline before it writes anything.
"""

from __future__ import annotations

import math
import re
from typing import Any, Callable

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


# Checks of one value: (predicate, what was expected).
def int_at_least(lo: int) -> tuple[Callable[[Any], bool], str]:
    return (lambda v: _is_int(v) and v >= lo), f"an integer ≥ {lo}"


def number_in(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False):
    def ok(v: Any) -> bool:
        return _is_num(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)

    return ok, f"a number in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"


def number_at_least(lo: float, open_: bool = False):
    return (lambda v: _is_num(v) and (v > lo if open_ else v >= lo)), f"a finite number {'>' if open_ else '≥'} {lo:g}"


def one_of(*choices: str):
    return (lambda v: v in choices), "one of " + ", ".join(choices)


NON_NEGATIVE_INT = int_at_least(0)
POSITIVE_INT = int_at_least(1)
FRACTION = number_in(0.0, 1.0)[0], "a fraction in [0, 1]"
SPARSITY = number_in(0.0, 1.0, hi_open=True)
NAME = (lambda v: isinstance(v, str) and bool(v.strip())), "a non-empty name"
TEXT = (lambda v: isinstance(v, str)), "a string"
BOOL = (lambda v: isinstance(v, bool)), "true or false"


def _regex(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        re.compile(v)
    except re.error:
        return False
    return True


REGEX = _regex, "a valid regular expression"


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


HPARAM = ((lambda v: isinstance(v, str) and bool(re.match(r"^[A-Za-z0-9_]+\.[A-Za-z0-9_]+=", v))),
          "method.field=value")
MIX = (lambda v: _mix(v, False)), f"an objective mix name[:ratio],... of {', '.join(OBJECTIVES)} with ratios > 0"
MIX_OR_EMPTY = (lambda v: _mix(v, True)), MIX[1] + " (or empty)"

# Every field's check; a tuple field is checked element by element ("each ..."), `nonempty` lists
# must hold at least one element.
FIELDS: dict[str, tuple] = {
    "world.source": one_of("toyland", "real"),
    "world.scale": one_of("smoke", "default", "large"),
    "world.seed": NON_NEGATIVE_INT,
    "world.data_root": TEXT,
    "world.features": TEXT,
    "world.images": ((lambda v: isinstance(v, str) and bool(re.match(r"^[A-Za-z0-9_]+=.+", v))),
                     "SOURCE=PATH[|KEY_TEMPLATE]"),
    "world.task_images": ((lambda v: isinstance(v, str) and bool(re.match(r"^[A-Za-z0-9_]+=[A-Za-z0-9_]+$", v))),
                          "TASK=SOURCE"),
    "world.cache_mb": NON_NEGATIVE_INT,
    "world.conf_th": number_in(-1.0, 1.0),
    "world.min_bb": NON_NEGATIVE_INT,
    "world.max_bb": POSITIVE_INT,
    "backbone.preset": NAME,
    "backbone.checkpoint": TEXT,
    "backbone.tokenizer": TEXT,
    "backbone.device": ((lambda v: isinstance(v, str) and bool(_DEVICE.match(v))), "auto, cpu, mps, cuda or cuda:N"),
    "pretrain.steps": POSITIVE_INT,
    "pretrain.batch_size": POSITIVE_INT,
    "pretrain.batch_tokens": POSITIVE_INT,
    "pretrain.lr": number_at_least(0.0, open_=True),
    "pretrain.warmup": FRACTION,
    "pretrain.weight_decay": number_at_least(0.0),
    "pretrain.objectives": MIX,
    "pretrain.first_objectives": MIX_OR_EMPTY,
    "pretrain.first_fraction": FRACTION,
    "pretrain.tag_fraction": number_at_least(0.0),
    "pretrain.mask_prob": number_in(0.0, 1.0, lo_open=True, hi_open=True),
    "pretrain.seed": NON_NEGATIVE_INT,
    "pretrain.betas": number_in(0.0, 1.0, hi_open=True),
    "pretrain.grad_clip": number_at_least(0.0),
    "pretrain.grad_accum": POSITIVE_INT,
    "pretrain.head_lr_mult": number_at_least(0.0, open_=True),
    "pretrain.bf16": BOOL,
    "pretrain.adv_steps": NON_NEGATIVE_INT,
    "pretrain.adv_epsilon": number_at_least(0.0),
    "pretrain.adv_step_size": number_at_least(0.0),
    "find.sources": NAME,
    "find.one_shot": NAME,
    "find.sparsities": SPARSITY,
    "find.hparams": HPARAM,
    "find.rewind_step": NON_NEGATIVE_INT,
    "find.steps": POSITIVE_INT,
    "find.include": REGEX,
    "find.exclude": REGEX,
    "find.plugins": NAME,
    "find.seed": NON_NEGATIVE_INT,
    "find.adv_steps": NON_NEGATIVE_INT,
    # N < M is the plan's check (tickets.patterns.parse_pattern), with the ladder it implies
    "find.pattern": ((lambda v: isinstance(v, str) and bool(re.fullmatch(r"unstructured|\d+:\d+", v.strip()))),
                     "unstructured or N:M (e.g. 2:4)"),
    "finetune.steps": POSITIVE_INT,
    "finetune.batch_size": POSITIVE_INT,
    "finetune.batch_tokens": POSITIVE_INT,
    "finetune.lr": number_at_least(0.0, open_=True),
    "finetune.head_lr_mult": number_at_least(0.0, open_=True),
    "finetune.warmup": FRACTION,
    "finetune.weight_decay": number_at_least(0.0),
    "finetune.betas": number_in(0.0, 1.0, hi_open=True),
    "finetune.grad_clip": number_at_least(0.0),
    "finetune.grad_accum": POSITIVE_INT,
    "finetune.eval_batch_size": POSITIVE_INT,
    "finetune.max_text_len": int_at_least(3),
    "finetune.dev_limit": NON_NEGATIVE_INT,
    "finetune.loader_workers": NON_NEGATIVE_INT,
    "finetune.bf16": BOOL,
    "finetune.adv_steps": NON_NEGATIVE_INT,
    "finetune.adv_epsilon": number_at_least(0.0),
    "finetune.adv_step_size": number_at_least(0.0),
    "matrix.tasks": NAME,
    "matrix.sources": NAME,
    "matrix.sparsities": SPARSITY,
    "matrix.seeds": POSITIVE_INT,
    "matrix.dense_seeds": POSITIVE_INT,
    "matrix.convergence_check": BOOL,
    "matrix.baselines": NAME,
    "matrix.controls": NAME,
    "matrix.control_sparsities": SPARSITY,
    "matrix.executor": one_of(*EXECUTORS),
    "matrix.workers": NON_NEGATIVE_INT,  # 0 = one per visible GPU
    "matrix.gpus_per_run": number_at_least(0.0, open_=True),
    "matrix.threads": POSITIVE_INT,
    "matrix.ray_address": TEXT,
    "matrix.checkpoint_minutes": number_at_least(0.0),
    "report.transfer_sparsities": SPARSITY,
    "report.relaxed": number_in(0.0, 1.0, lo_open=True),
    "report.tie_margin": number_at_least(0.0),
}
NONEMPTY = {"matrix.tasks", "find.sparsities"}
LENGTH = {"finetune.betas": 2, "pretrain.betas": 2}


def check_name(name: Any, where: str = "config") -> str:
    """A config name becomes a directory (`runs/<name>`): one path component, never `..` or hidden."""
    if (not isinstance(name, str) or not name.strip() or "/" in name or "\\" in name or "\0" in name
            or name.startswith(".")):
        raise _fail(where, "name", name, "one directory name (no '/', not starting with '.')")
    return name


def check_value(key: str, value: Any, where: str = "config", optional: bool = False) -> None:
    """Check one field (list elements included); a ConfigError names `where`, the key, the value and
    what was expected. `optional` fields (default None: "the recipe's") also take None."""
    ok, expected = FIELDS[key]
    if optional and value is None:
        return
    if isinstance(value, tuple):
        if key in NONEMPTY and not value:
            raise _fail(where, key, list(value), "at least one value")
        if key in LENGTH and len(value) != LENGTH[key]:
            raise _fail(where, key, list(value), f"{LENGTH[key]} values")
        for element in value:
            if not ok(element):
                raise ConfigError(f"{where}: {key}: element {element!r} of {list(value)!r}: expected {expected}")
        if len(set(value)) != len(value) and key not in LENGTH:
            raise _fail(where, key, list(value), "no repeated values")
    elif not ok(value):
        raise _fail(where, key, value, expected)


def validate(cfg, where: str = "config"):
    """Check every field of a `bench.config.Config`; return it unchanged (so it can wrap a return)."""
    import dataclasses

    check_name(cfg.name, where)
    for section in dataclasses.fields(cfg):
        if section.name == "name":
            continue
        sec = getattr(cfg, section.name)
        for f in dataclasses.fields(sec):
            key = f"{section.name}.{f.name}"
            if key not in FIELDS:  # a new field without a check: tests/test_bad_inputs.py fails
                continue
            check_value(key, getattr(sec, f.name), where, optional=f.default is None)
    if cfg.world.source == "real" and not cfg.world.data_root:
        raise ConfigError(f"{where}: world.source is 'real' but world.data_root is empty; set it to the "
                          "root of the real datasets")
    return cfg


# ---- stored records ---------------------------------------------------------------------------
_RECORD_MAPPINGS = ("env", "timings", "metrics", "config")


def check_record(path, rec: dict) -> dict:
    """A run record read back from disk: fields that become file names (backbone, task) must stay
    inside the output folder, and fields read as mappings must be mappings. One-line DataError naming
    the file, the field and the value."""
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
    return rec
