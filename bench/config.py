"""Hyperparameters as frozen dataclasses; YAML presets fill them, `--set section.key=value` overrides.

Stage identities are computed from the *effective* settings by the plan (`bench.plan`), the one
place results are keyed.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import yaml

from bench.core.errors import ConfigError
from bench.core.hparams import coerce_value, hp
from bench.core.io import MAX_CONFIG_BYTES, load_yaml, read_text_bounded
from bench.core.registry import suggest
from bench.core.settings import TrainSettings
from bench.core.validate import (
    BOOL,
    DEVICE,
    EXECUTORS,
    FRACTION,
    HPARAM,
    MIX,
    MIX_OR_EMPTY,
    NAME,
    NON_NEGATIVE,
    NON_NEGATIVE_INT,
    POSITIVE,
    POSITIVE_INT,
    REGEX,
    SPARSITY,
    TEXT,
    int_at_least,
    matches,
    nonempty,
    number_in,
    one_of,
    validate,
)

CONFIG_DIR = Path(__file__).resolve().parent / "configs"  # package data: travels in the wheel
DEFAULT_CONFIG = "toyland"


# The pipeline's stages in order; each has its config section. Here, not in bench.pipeline, so that the
# command line can name them (and print its help) without importing torch.
STAGES = ("world", "pretrain", "find", "matrix", "report")
# Assumptions of the cost estimate (bench/cost.py): here for the same reason.
PEAK_TFLOPS = 989.0  # H100 SXM, dense bf16 (no sparsity), NVIDIA's datasheet
MFU = 0.4


@dataclass(frozen=True)
class WorldConfig:
    """Where the data comes from: toyland (generated) or a real data root."""

    source: str = hp("toyland", "'toyland' generates the miniature world; 'real' reads data_root",
                     check=one_of("toyland", "real"))
    scale: str = hp("default", "toyland scale: smoke, default, study (dev splits of thousands) or large",
                    check=one_of("smoke", "default", "study", "large"))
    seed: int = hp(0, "toyland generator seed", check=NON_NEGATIVE_INT)
    data_root: str = hp("", "root of real datasets (used when source is 'real')", check=TEXT)
    features: str = hp("", "root of the image releases for real data: UNITER's img_db/, LXMERT's data/ (the "
                           "*_imgfeat folders) or the pictures' root; or one store for every task (default: "
                           "data_root/features/<kind>, data_root/images for pixels); docs/DATA.md",
                           check=TEXT)
    images: tuple = hp((), "image sources as SOURCE=PATH[|KEY_TEMPLATE], a source repeated for several parts "
                           "(e.g. coco=/d/img_db/coco_train2014); sources: coco, vg, nlvr2, flickr30k, vcr, "
                           "refcoco; unnamed ones follow the release layouts under `features`",
                           check=matches(r"^[A-Za-z0-9_]+=.+", "SOURCE=PATH[|KEY_TEMPLATE]"))
    task_images: tuple = hp((), "TASK=SOURCE overrides of the task -> image source map (vqa, pretrain: coco; "
                                "refcoco_plus: refcoco; gqa: vg; nlvr2: nlvr2; snli_ve, retrieval: flickr30k; vcr: vcr)",
                                check=matches(r"^[A-Za-z0-9_]+=[A-Za-z0-9_]+$", "TASK=SOURCE"))
    cache_mb: int = hp(2048, "bound of each image store's decoded-item cache, MB per process",
                       check=NON_NEGATIVE_INT)
    conf_th: float = hp(0.2, "UNITER img_db: keep boxes with confidence above this (-1: the first max_bb)",
                        check=number_in(-1.0, 1.0))
    min_bb: int = hp(10, "UNITER img_db: at least this many boxes", check=NON_NEGATIVE_INT)
    max_bb: int = hp(100, "UNITER img_db: at most this many boxes", check=POSITIVE_INT)


@dataclass(frozen=True)
class BackboneConfig:
    """Which pre-trained model the tickets live in."""

    preset: str = hp("toy-uniter", "backbone preset (see `ticketbench presets`)", check=NAME)
    checkpoint: str = hp("", "local path (or hub id when online) of pre-trained weights for real presets",
                         check=TEXT)
    tokenizer: str = hp("", "local tokenizer directory (empty = the preset's own: the world's vocabulary for toy "
                            "presets, the checkpoint's or package's, bert-base-cased for uniter-base); its content "
                            "hash is part of θ0's key", check=TEXT)
    device: str = hp("auto", "auto, cpu, cuda or cuda:N", check=DEVICE)


@dataclass(frozen=True)
class PretrainConfig(TrainSettings):
    """Pre-training of toy presets on the world's captions (real presets use their checkpoint); its
    optimisation fields are `TrainSettings`' (steps count both phases; each phase warms up on its own)."""

    steps: int = hp(2500, "optimizer steps of the two phases (a pixel backbone's tagging phase adds "
                              "tag_fraction × steps)", check=POSITIVE_INT)
    lr: float = hp(1e-3, "peak learning rate", check=POSITIVE)
    objectives: str = hp("itm:2,mlm:1,mrm:1", "objective mix as name:ratio; one objective per batch, drawn by ratio "
                                                 "as UNITER does (mrm only for region backbones)", check=MIX)
    first_objectives: str = hp("itm:1", "mix of a first phase run before `objectives` (same syntax)",
                               check=MIX_OR_EMPTY)
    first_fraction: float = hp(0.6, "fraction of `steps` spent on the first phase (0 = the mix only); ITM "
                                    "alone first, because in the mix MLM/MRM keep ITM at chance (docs/ARCHITECTURE.md)",
                                    check=FRACTION)
    tag_fraction: float = hp(0.8, "pixel backbones: steps of image tagging (objective tag) before the phases, as a "
                                  "fraction of `steps` and added to them — the toy stand-in for ViLT's ViT initialisation "
                                  "(region backbones read detector features instead; docs/ARCHITECTURE.md, toy-vilt); 0 = none",
                                  check=NON_NEGATIVE)
    mask_prob: float = hp(0.15, "MLM / MRM masking probability",
                          check=number_in(0.0, 1.0, lo_open=True, hi_open=True))
    seed: int = hp(0, "pre-training seed", check=NON_NEGATIVE_INT)


@dataclass(frozen=True)
class FindConfig:
    """Ticket search: IMP per source plus the one-shot sources, at every sparsity of the ladder."""

    sources: tuple = hp(
        ("vqa", "gqa", "nlvr2", "snli_ve", "refcoco_plus", "retrieval", "vcr", "pretrain"),
        "source tasks for IMP ('pretrain' = the pre-training objective mix)", check=NAME,
    )
    one_shot: tuple = hp(("omp:vqa", "pretrained_magnitude"), "one-shot sources method[:task]", check=NAME)
    sparsities: tuple = hp((0.3, 0.5, 0.7, 0.9), "the ladder: sparsities every ticket is found at (the matrix "
                                                 "evaluates these or a subset; IMP's rounds follow it)",
                                                 check=nonempty(SPARSITY))
    hparams: tuple = hp((), "method hyperparameters as method.field=value (YAML: a mapping method -> "
                            "{field: value}), e.g. imp.mode=of_original (`ticketbench methods` lists them)",
                            check=HPARAM)
    rewind_step: int = hp(0, "rewind to θ0 (0) or to step k of fine-tuning (late rewinding)",
                          check=NON_NEGATIVE_INT)
    steps: Optional[int] = hp(None, "fine-tuning steps per IMP round (None = the task's fine-tuning steps)",
                              check=POSITIVE_INT)
    adv_steps: Optional[int] = hp(None, "adversarial ascent steps while searching (None = as in fine-tuning, "
                                        "finetune.adv_steps; 0 = standard training)", check=NON_NEGATIVE_INT)
    pattern: str = hp("unstructured", "sparsity pattern of every ticket: unstructured, or N:M along the input "
                                      "dimension (e.g. 2:4: N kept of every M; the ladder must then be 1 - N/M)",
                                      check=matches(r"unstructured|\d+:\d+", "unstructured or N:M (e.g. 2:4)", full=True))
    include: tuple = hp((), "extra prunable-parameter regex patterns (added to the backbone's default set)",
                        check=REGEX)
    exclude: tuple = hp((), "regex patterns removed from the prunable set", check=REGEX)
    plugins: tuple = hp((), "Python modules to import first; they register new pruning methods", check=NAME)
    seed: int = hp(0, "search seed", check=NON_NEGATIVE_INT)
    seeds: int = hp(1, "search replicates: every ticket search (IMP trajectory, random mask, any method's draw) "
                       "is repeated with search seeds seed, seed + 1, …; controls branch from their own replicate's "
                       "base ticket. Each ticket is then fine-tuned with matrix.seeds (fine-tuning seeds)",
                       check=POSITIVE_INT)

    def method_hparams(self, method: str) -> dict[str, Any]:
        """{field: value} given for `method` in `hparams` (the method fills in the rest)."""
        out = {}
        for item in self.hparams:
            key, _, value = str(item).partition("=")
            name, _, fld = key.strip().partition(".")
            if name == method:
                out[fld.strip()] = load_yaml(value, f"find.hparams {key.strip()}")
        return out


def _recipe_overrides(name: str, doc: str, extra: list) -> type:
    """A frozen section with one Optional field per `TrainSettings` field (None = "the task's recipe")
    plus `extra` fields: the recipe and its overrides are one type, never two lists kept in step."""
    hints = typing.get_type_hints(TrainSettings)
    overrides = [(f.name, Optional[hints[f.name]], hp(None, f"{f.metadata['help']} (None = the task's recipe)",
                                                      check=f.metadata["check"]))
                 for f in fields(TrainSettings) if f.name != "seed"]  # seeds come from matrix.seeds
    cls = dataclasses.make_dataclass(name, overrides + extra, frozen=True)
    cls.__doc__, cls.__module__ = doc, __name__
    return cls


FinetuneConfig = _recipe_overrides(
    "FinetuneConfig", "Fine-tuning of θ0 ⊙ m on a target task; fields left at None take the task's recipe.",
    [("eval_batch_size", int, hp(64, "examples per evaluation batch", check=POSITIVE_INT)),
     ("max_text_len", int, hp(40, "text tokens kept (longer texts are truncated)", check=int_at_least(3))),
     ("dev_limit", int, hp(0, "evaluate on at most this many dev examples (0 = all)",
                           check=NON_NEGATIVE_INT)),
     ("memory_gib", float, hp(70.0, "GPU memory a training micro-batch may use by the activation model "
                                    "(bench/backbones/memory.py): a recipe's micro-batch over it is split, the "
                                    "step's examples kept by gradient accumulation (0 = never split; 70 leaves an "
                                    "80 GB card room for the CUDA context and fragmentation)",
                                    check=NON_NEGATIVE)),
     ("loader_workers", int, hp(0, "DataLoader worker processes preparing batches (tokenising, collating) for "
                                   "training and evaluation; 0 = in the training process (also where workers "
                                   "cannot be started, e.g. a daemonic process; logged). The numbers do not depend on it", check=NON_NEGATIVE_INT))],
)


@dataclass(frozen=True)
class MatrixConfig:
    """The transfer matrix: every source ticket x sparsity x target task x seed."""

    tasks: tuple = hp(
        ("vqa", "gqa", "nlvr2", "snli_ve", "refcoco_plus", "retrieval", "vcr"), "target tasks",
        check=nonempty(NAME)
    )
    sources: tuple = hp((), "sources to fine-tune (empty = every source of the config; `--sources`)",
                        check=NAME)
    sparsities: tuple = hp((), "sparsities to fine-tune, a subset of find.sparsities (empty = the whole ladder)",
                           check=SPARSITY)
    seeds: int = hp(1, "fine-tuning seeds per pair", check=POSITIVE_INT)
    dense_seeds: int = hp(1, "seeds of the dense model per task: it gets max(seeds, dense_seeds), because its seed "
                             "spread is what every verdict is measured against (strict matching, above chance)",
                             check=POSITIVE_INT)
    adaptive: bool = hp(False, "adaptive seeds: matrix.seeds is the first wave; a cell then gets one more seed per wave "
                               "only while its anytime-valid confidence sequence (% of dense) straddles a threshold "
                               "of adaptive_thresholds, up to adaptive_max_seeds (docs/ARCHITECTURE.md, matrix stage)",
                               check=BOOL)
    adaptive_max_seeds: int = hp(8, "adaptive seeds: the cap of seeds per cell (dense alike)",
                                 check=POSITIVE_INT)
    adaptive_thresholds: tuple = hp((99.0,), "adaptive seeds: the % of dense the decisions compare a cell's mean "
                                             "with (99 = relaxed matching)", check=POSITIVE)
    adaptive_sigma: float = hp(3.0, "adaptive seeds: stated bound on one run's seed std, points (the sequence's "
                                    "coverage holds when the noise is at most this)", check=POSITIVE)
    adaptive_alpha: float = hp(0.05, "adaptive seeds: error level of each cell's confidence sequence, at any stopping time",
                               check=number_in(0.0, 1.0, lo_open=True, hi_open=True))
    convergence_check: bool = hp(False, "also fine-tune dense at twice each task's steps (dense seeds alike): "
                                        "the report says which tasks the recipe leaves under-trained",
                                        check=BOOL)
    claim_tasks: tuple = hp((), "tasks that decide the papers' claims (empty = every target task). When set, the "
                                "claims' sources on them — each task's own IMP ticket, imp:pretrain and the baselines — "
                                "get every search replicate (find.seeds) at claim_sparsities, while the rest of the "
                                "matrix fine-tunes replicate 0 only (a broad transfer matrix beside a powered core)",
                            check=NAME)
    claim_sparsities: tuple = hp((), "sparsities fine-tuned on the claim tasks (a subset of find.sparsities; empty = "
                                     "matrix.sparsities)", check=SPARSITY)
    baselines: tuple = hp(("random",), "baselines at every sparsity", check=NAME)
    controls: tuple = hp(("reinit:pretrain", "shuffle:pretrain"), "controls of an existing ticket",
                         check=NAME)
    control_sparsities: tuple = hp((0.5,), "sparsities at which controls run (on the ladder)", check=SPARSITY)
    executor: str = hp("local", "local or ray", check=one_of(*EXECUTORS))
    workers: int = hp(1, "local worker processes (0 = one per visible GPU, or 1 without GPUs)",
                      check=NON_NEGATIVE_INT)
    threads: int = hp(1, "intra-op CPU threads of each run, fixed so that a run's numbers do not depend on how "
                         "many workers share the machine (execution only: in no run id; the record's env says it)",
                         check=POSITIVE_INT)
    ray_address: str = hp("", "Ray cluster address ('' = start a local instance)", check=TEXT)
    gpus_per_run: float = hp(1.0, "GPUs each Ray task asks for (0.5: two runs share a GPU; ignored without GPUs)",
                             check=POSITIVE)
    checkpoint_minutes: float = hp(10.0, "a fine-tuning pair saves a checkpoint in its run folder every this many "
                                         "minutes and a rerun resumes from it (0 = off; fractions allowed)",
                                         check=NON_NEGATIVE)


@dataclass(frozen=True)
class ReportConfig:
    """Tables and figures."""

    transfer_sparsities: tuple = hp((), "sparsities of the transfer tables ('' = every ladder sparsity)",
                                    check=SPARSITY)
    relaxed: float = hp(0.99, "relaxed matching: fraction of dense accuracy",
                        check=number_in(0.0, 1.0, lo_open=True))
    tie_margin: float = hp(0.0, "--compare tie margin in points (0 = one std over seeds)", check=NON_NEGATIVE)


@dataclass(frozen=True)
class Config:
    """The whole study."""

    name: str = hp("toyland", "config name (default output directory runs/<name>)")
    world: WorldConfig = field(default_factory=WorldConfig)
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    find: FindConfig = field(default_factory=FindConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)  # type: ignore[valid-type]
    matrix: MatrixConfig = field(default_factory=MatrixConfig)
    report: ReportConfig = field(default_factory=ReportConfig)


SECTIONS = ["world", "backbone", "pretrain", "find", "finetune", "matrix", "report"]


def _section_type(name: str) -> type:
    return typing.get_type_hints(Config)[name]


def _coerce_field(cls: type, name: str, value: Any, where: str) -> Any:
    """A YAML / --set value as the type of field `name` of section `cls`; an Optional field (default
    None, "the recipe's") also takes None / null / none."""
    default = {f.name: f.default for f in fields(cls)}[name]
    if default is None:
        if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "null")):
            return None
        inner = [t for t in typing.get_args(typing.get_type_hints(cls)[name]) if t is not type(None)][0]
        default = inner()
    if cls is FindConfig and name == "hparams" and isinstance(value, dict):
        # YAML form {method: {field: value}} → ("method.field=value", ...), sorted for a stable hash.
        if not all(isinstance(v, dict) for v in value.values()):
            raise ConfigError(f"{where}: expected a mapping method -> {{field: value}}, found {value!r}")
        value = [f"{m}.{k}={yaml.safe_dump(v, default_flow_style=True).strip().removesuffix('...').strip()}"
                 for m, kv in value.items() for k, v in kv.items()]
        return tuple(sorted(value))
    return coerce_value(value, default, where)


def _all_keys() -> list[str]:
    keys = ["name"]
    for s in SECTIONS:
        keys += [f"{s}.{f.name}" for f in fields(_section_type(s))]
    return keys


def _unknown(key: str, where: str) -> ConfigError:
    return ConfigError(f"{where}: unknown key '{key}'{suggest(key, _all_keys())}")


def build_config(data: dict, where: str = "config") -> Config:
    """Build a Config from nested dict data, rejecting unknown keys with a suggestion."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping of sections, found {type(data).__name__}")
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if key == "name":
            kwargs["name"] = coerce_value(value, "", f"{where}: name")
            continue
        if key not in SECTIONS:
            raise _unknown(str(key), where)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: section '{key}' must be a mapping, found {value!r}")
        cls = _section_type(key)
        names = {f.name for f in fields(cls)}
        sec = {}
        for k, v in value.items():
            if k not in names:
                raise _unknown(f"{key}.{k}", where)
            sec[k] = _coerce_field(cls, k, v, f"{where}: {key}.{k}")
        kwargs[key] = cls(**sec)
    return validate(Config(**kwargs), where)


def resolve_config_path(name_or_path: str | None) -> Path:
    """A config given by path, or by preset name under configs/ (`smoke` → configs/smoke.yaml)."""
    if not name_or_path:
        name_or_path = DEFAULT_CONFIG
    p = Path(name_or_path)
    # A preset name may also name a directory in the working directory (e.g. an output dir `smoke/`).
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.exists():
            raise ConfigError(f"config file not found: {p}")
        return p
    candidate = CONFIG_DIR / f"{name_or_path}.yaml"
    if candidate.exists():
        return candidate
    known = sorted(c.stem for c in CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"unknown config '{name_or_path}'{suggest(name_or_path, known)}; known: {', '.join(known)}")


def load_config(name_or_path: str | None = None, overrides: list[str] | tuple = ()) -> Config:
    """Load a YAML preset (safe loader), then apply `section.key=value` overrides."""
    path = resolve_config_path(name_or_path)
    data = load_yaml(read_text_bounded(path, MAX_CONFIG_BYTES, "config file", ConfigError), str(path)) or {}
    if isinstance(data, dict):
        data.setdefault("name", path.stem)
    cfg = build_config(data, where=str(path))
    return apply_overrides(cfg, overrides)


def apply_overrides(cfg: Config, overrides: list[str] | tuple) -> Config:
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected section.key=value")
        key, value = item.split("=", 1)
        key = key.strip()
        if key == "name":
            cfg = dataclasses.replace(cfg, name=value)
            continue
        if "." not in key:
            raise _unknown(key, "--set")
        section, name = key.split(".", 1)
        if section not in SECTIONS:
            raise _unknown(key, "--set")
        sec = getattr(cfg, section)
        if section == "find" and name.startswith("hparams."):
            # --set find.hparams.imp.mode=of_original adds (or replaces) one method hyperparameter.
            target = name.removeprefix("hparams.")
            if target.count(".") != 1:
                raise ConfigError(f"--set {key}: expected find.hparams.<method>.<field>=value")
            kept = [h for h in sec.hparams if h.partition("=")[0].strip() != target]
            cfg = dataclasses.replace(cfg, find=dataclasses.replace(sec, hparams=tuple(sorted(kept + [f"{target}={value}"]))))
            continue
        defaults = {f.name: f.default for f in fields(sec)}
        if name not in defaults:
            raise _unknown(key, "--set")
        parsed = load_yaml(value, f"--set {key}") if not isinstance(defaults[name], (str, tuple)) else value
        new = _coerce_field(type(sec), name, parsed, f"--set {key}")
        cfg = dataclasses.replace(cfg, **{section: dataclasses.replace(sec, **{name: new})})
    return validate(cfg, "--set")


def to_dict(cfg: Config) -> dict:
    """Full effective config as plain data (for records)."""
    d = dataclasses.asdict(cfg)

    def untuple(x):
        if isinstance(x, dict):
            return {k: untuple(v) for k, v in x.items()}
        if isinstance(x, (list, tuple)):
            return [untuple(v) for v in x]
        return x

    return untuple(d)


def describe_config() -> str:
    """Every field with its default and help (for `ticketbench run --help-config`)."""
    lines = []
    for s in SECTIONS:
        cls = _section_type(s)
        lines.append(f"{s}:  {cls.__doc__.strip().splitlines()[0]}")
        for f in fields(cls):
            lines.append(f"  {s}.{f.name} = {f.default!r}  # {f.metadata.get('help', '')}")
    return "\n".join(lines)
