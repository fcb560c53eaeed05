"""The `Plan`: everything a config asks for, derived once, immutable, with one hashing policy.

world → pretrain → find → matrix → report all take the plan; nothing below it calls back into the
stages. Every key hashes the settings that differ from their defaults and `KEY_SCHEMA`
(`bench.core.identity`: a new field at its default re-keys nothing; a deliberately changed default
bumps the schema):
- `theta0_key`  — world, backbone and pre-training settings (+ toyland's format version); `theta0_id(corpus)`,
  θ0's folder, adds the pre-training corpus's content digest when θ0 is pre-trained here;
- `search_id(search, theta0_hash, data)` — θ0's content, the digest of the data the search reads, the method
  and its hyperparameters, the ladder, the source's training settings, the base search (derived tickets are
  branches of their base ticket);
- a run id (`bench.runner.pairs.PairSpec.run_id`) — the pair's effective settings, ticket, θ0 content and the
  digest of the task's data;
Data digests (`bench.runner.study.Study.data_digest`) hash the loaded examples, so a fixed loader or
annotation file is a new id, never a stale cache hit; the plan itself reads no data.
- `hash` — the plan itself: every setting that changes a number (not where or how fast it runs).
`ticketbench plan CONFIG` prints it.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from dataclasses import dataclass

from bench.backbones import PRESETS, tokenizer_identity
from bench.backbones.memory import fit_recipe, text_cap
from bench.config import Config, to_dict
from bench.core.errors import ConfigError, TicketbenchError
from bench.core.identity import KEY_SCHEMA, dataclass_identity, non_default
from bench.core.io import short_hash
from bench.core.registry import suggest
from bench.core.settings import TrainSettings
from bench.core.source import DENSE, OBJECTIVES, PIXEL_OBJECTIVES, PRETRAIN, REGION_OBJECTIVES, Source
from bench.data import textworld
from bench.data.toyland import world as toyland
from bench.tasks import TASKS
from tickets import get_method
from tickets.magnitude import check_sparsity
from tickets.patterns import UNSTRUCTURED, parse_pattern, pattern_sparsity

# Settings that change where or how fast a plan runs, never its numbers: left out of the plan's hash and of
# every run id. `threads` too: on a GPU it changes nothing, and on CPU the last bits of a reduction at most.
EXECUTION_FIELDS = {"matrix": ("executor", "workers", "ray_address", "gpus_per_run", "checkpoint_minutes", "threads"),
                    "backbone": ("device",), "world": ("cache_mb",), "finetune": ("loader_workers",)}


# The adaptive settings change no number while adaptive seeds are off: left out of every key then.
ADAPTIVE_FIELDS = ("adaptive_max_seeds", "adaptive_thresholds", "adaptive_sigma", "adaptive_alpha")


@functools.cache
def _default_sections() -> dict:
    return to_dict(Config())


def key_settings(cfg: Config, section: str) -> dict:
    """What a config section adds to a key: its settings that differ from the defaults
    (`bench.core.identity`: a new field at its default re-keys nothing), less the fields that never
    change a number."""
    skip = set(EXECUTION_FIELDS.get(section, ()))
    values = to_dict(cfg)[section]
    if section == "matrix" and not values.get("adaptive"):
        skip |= set(ADAPTIVE_FIELDS)
    changed = non_default(values, _default_sections()[section])
    return {k: v for k, v in changed.items() if k not in skip}


def parse_objectives(spec: str, image_input: str, where: str = "pretrain.objectives") -> tuple:
    """'itm:2,mlm:1' → (('itm', 2.0), ('mlm', 1.0)); MRM and MRC are dropped for pixel backbones (no regions),
    TAG for region backbones (their detector already names what the regions show)."""
    out = []
    for part in spec.split(","):
        name, _, weight = part.strip().partition(":")
        if name not in OBJECTIVES:
            raise ConfigError(f"{where}: unknown objective '{name}'{suggest(name, list(OBJECTIVES))}")
        try:
            w = float(weight or 1.0)
        except ValueError:
            raise ConfigError(f"{where}: objective '{name}' has ratio {weight!r}, expected a number") from None
        if not w > 0:
            raise ConfigError(f"{where}: objective '{name}' has ratio {w}, expected > 0")
        if name in REGION_OBJECTIVES and image_input != "regions":
            continue  # masked region modelling needs region features
        if name in PIXEL_OBJECTIVES and image_input != "pixels":
            continue
        if image_input == "none" and name != "mlm":
            continue  # a text-only backbone (the BERT study) pre-trains with MLM alone
        out.append((name, w))
    if not out:
        raise ConfigError(f"{where}: no objective left for a {image_input} backbone")
    return tuple(out)


@dataclass(frozen=True)
class Phase:
    """One pre-training phase: an objective mix (one objective per batch, drawn by ratio) and its steps."""

    objectives: tuple  # ((name, ratio), ...)
    steps: int


@dataclass(frozen=True)
class Search:
    """One ticket search: a source, the sparsities it yields, and what the method declared it needs."""

    source: Source
    sparsities: tuple
    hparams: tuple  # ((field, value), ...) effective, after the method's defaults
    trains: bool
    base: Source | None  # the base ticket's source (derived tickets are branches of it)
    search_seed: int = 0  # the search replicate (find.seeds): its RNG seed is `Plan.search_seed` + this

    @property
    def hparams_dict(self) -> dict:
        return dict(self.hparams)


# The convergence reference trains dense for this many times the recipe's steps.
CONVERGENCE_FACTOR = 2


@dataclass(frozen=True)
class Cell:
    """One fine-tuning run asked for by the plan (its ticket is resolved when the matrix runs).
    `steps_factor` > 1 marks the dense convergence reference: the recipe's steps times that."""

    source: Source
    sparsity: float
    task: str
    seed: int
    steps_factor: int = 1
    search_seed: int = 0  # the search replicate whose ticket this cell fine-tunes (find.seeds; dense: 0)


@dataclass(frozen=True)
class Plan:
    config: Config
    family: str
    image_input: str
    ladder: tuple
    phases: tuple  # (Phase, ...) of pre-training, in order
    imp_objectives: tuple  # the objective mix a `:pretrain` source trains on
    searches: tuple  # (Search, ...) bases before the searches derived from them
    cells: tuple  # (Cell, ...) in report order
    theta0_key: str
    hash: str

    # ---- settings ------------------------------------------------------------------------
    def finetune_settings(self, task: str, seed: int, steps_factor: int = 1) -> TrainSettings:
        """The task's recipe for the backbone (its preset's, else its family's) with the non-None
        `finetune` fields applied (steps × `steps_factor` for the convergence reference)."""
        spec, preset, ft = TASKS.get(task), self.config.backbone.preset, self.config.finetune
        s = spec.recipe(self.family, preset).override(ft, seed=seed)
        if ft.memory_gib:  # the micro-batch split to fit a GPU, the step's examples kept (bench/backbones/memory.py)
            text = text_cap(preset, spec.recipe_notes[spec.recipe_key(self.family, preset)].text_len, ft.max_text_len)
            s = fit_recipe(s, preset, spec, text, self.config.world.max_bb, ft.memory_gib)
        return s if steps_factor == 1 else s.override(steps=s.steps * steps_factor)

    def pretrain_settings(self, steps: int, seed: int) -> TrainSettings:
        """The pre-training section's settings for one phase (or one IMP round on the mix)."""
        return TrainSettings().override(self.config.pretrain, steps=steps, seed=seed)

    def search_settings(self, source: Source, search_seed: int = 0) -> TrainSettings | None:
        """Settings of one training call of a search on its source (None for training-free methods):
        the task's fine-tuning settings, or half the main pre-training phase for `:pretrain` (real backbones,
        which have no phases: half of `pretrain.steps`)."""
        if not self.search(source, search_seed).trains:
            return None
        f, seed = self.config.find, self.search_seed + search_seed
        if source.objective == PRETRAIN:
            # A checkpoint family has no pre-training phases here: half of pretrain.steps.
            main = self.phases[-1].steps if self.phases else self.config.pretrain.steps
            s = self.pretrain_settings(f.steps or max(main // 2, 1), seed)
        else:
            s = self.finetune_settings(source.objective, seed)
        adv = f.adv_steps if f.adv_steps is not None else self.config.finetune.adv_steps
        # A search keeps no eval split, so the robust evaluation never enters a search's identity.
        return s.override({"steps": f.steps, "adv_steps": adv}, adv_eval_steps=0)

    @property
    def tagging(self) -> bool:
        """Whether pre-training or a `:pretrain` search trains TAG (so the model needs its head)."""
        return any(n == "tag" for objectives in [*(p.objectives for p in self.phases), self.imp_objectives]
                   for n, _ in objectives)

    @property
    def search_seed(self) -> int:
        # Apart from every matrix seed, so a task's own ticket does not replay its search's data
        # order and head initialisation in the matrix (an edge no transferred ticket gets).
        return 10_000 + self.config.find.seed

    @property
    def dense_seeds(self) -> int:
        """Seeds of the dense model (and of its convergence reference): at least the tickets'."""
        return max(self.config.matrix.seeds, self.config.matrix.dense_seeds)

    # ---- searches ---------------------------------------------------------------------------
    def search(self, source: Source | str, search_seed: int = 0) -> Search:
        src = Source.parse(source)
        for s in self.searches:
            if s.source == src and s.search_seed == search_seed:
                return s
        raise ConfigError(f"source {src} is not searched by this plan; known: "
                          f"{', '.join(str(s.source) for s in self.searches)}")

    def theta0_id(self, corpus: str | None) -> str:
        """θ0's folder under `pretrain/`: `theta0_key`, plus the corpus digest when the plan pre-trains θ0
        (`phases`; pass None otherwise — a checkpoint's θ0 reads no data, so its folder keeps its name)."""
        if bool(self.phases) != (corpus is not None):
            raise TicketbenchError(f"θ0 of {self.config.backbone.preset}: a corpus digest is needed exactly when "
                                   f"θ0 is pre-trained here ({len(self.phases)} phase(s), digest {corpus!r})")
        return short_hash([self.theta0_key, corpus]) if corpus else self.theta0_key

    def search_id(self, search: Search, theta0_hash: str, data: str) -> str:
        """Content address of a search's tickets: adding a method never re-runs the others. `data` is the
        digest of its source objective's data (`Study.data_digest`): a derived search's base reads the same."""
        # A derived ticket is a branch of its own replicate's base ticket.
        base = self.search_id(self.search(search.base, search.search_seed), theta0_hash, data) if search.base else None
        settings = self.search_settings(search.source, search.search_seed)
        f = self.config.find
        defaults = dataclasses.asdict(get_method(search.source.method).make_hparams())
        return short_hash({
            "schema": KEY_SCHEMA, "theta0": theta0_hash, "data": data, "source": str(search.source),
            "sparsities": list(search.sparsities), "base": base,
            "hparams": [list(kv) for kv in search.hparams if kv[0] not in defaults or defaults[kv[0]] != kv[1]],
            "settings": dataclass_identity(settings) if settings else None,
            "objectives": [list(o) for o in self.imp_objectives] if search.source.objective == PRETRAIN else None,
            "seed": self.search_seed + search.search_seed, "rewind_step": f.rewind_step,
            "include": list(f.include), "exclude": list(f.exclude),
            "world": key_settings(self.config, "world"), "max_text_len": self.config.finetune.max_text_len,
            # only when N:M: unstructured searches keep the ids they had before patterns existed
            **({"pattern": f.pattern} if f.pattern != UNSTRUCTURED else {}),
        })

    # ---- display ----------------------------------------------------------------------------
    def describe(self) -> str:
        c = self.config
        claims = c.matrix.claim_tasks
        lines = [f"plan {self.hash}  ({c.name}: {c.backbone.preset}, {c.world.source} data)",
                 f"ladder: {', '.join(f'{s:.0%}' for s in self.ladder)}",
                 f"θ0 (key {self.theta0_key}{' + corpus digest' if self.phases else ''}): " + (" → ".join(
                     f"{'+'.join(f'{n}:{w:g}' for n, w in p.objectives)} × {p.steps} steps" for p in self.phases)
                     or "the preset's checkpoint"),
                 f"searches ({len(self.searches)}"
                 f"{f': {c.find.seeds} search replicates each' if c.find.seeds > 1 and not claims else ''}"
                 f"{f': {c.find.seeds} search replicates of the sources the claims read' if c.find.seeds > 1 and claims else ''}):"]
        for s in self.searches:
            if s.search_seed:
                continue  # replicates repeat replicate 0's line
            hp = ", ".join(f"{k}={v}" for k, v in s.hparams)
            lines.append(f"  {str(s.source):<24} at {', '.join(f'{x:.0%}' for x in s.sparsities)}"
                         f"{'' if s.trains else '  (no training)'}{f'  branch of {s.base}' if s.base else ''}"
                         f"{f'  [{hp}]' if hp else ''}")
        by_source: dict = {}
        for cell in self.cells:
            key = str(cell.source) + (f" ({cell.steps_factor}× steps)" if cell.steps_factor != 1 else "")
            by_source[key] = by_source.get(key, 0) + 1
        dense = f", dense {self.dense_seeds}" if self.dense_seeds != c.matrix.seeds else ""
        reps = f" × {c.find.seeds} search replicates" if c.find.seeds > 1 and not claims else ""
        lines.append(f"fine-tuning runs: {len(self.cells)} ({len(c.matrix.tasks)} tasks × {c.matrix.seeds} seed(s){reps}"
                     f"{dense}{'; dense also at ' + str(CONVERGENCE_FACTOR) + '× steps: convergence check' if c.matrix.convergence_check else ''})")
        lines += [f"  {k:<24} {v}" for k, v in by_source.items()]
        if claims:
            at = c.matrix.claim_sparsities or c.matrix.sparsities or self.ladder
            lines.append(f"claims decided on {', '.join(claims)} (matrix.claim_tasks): own-task IMP, imp:pretrain and "
                         f"{', '.join(c.matrix.baselines) or 'no baseline'} at {', '.join(f'{x:.0%}' for x in sorted(at))} "
                         f"× {c.find.seeds} search replicate(s) × {c.matrix.seeds} seed(s); the rest of the matrix "
                         "reads replicate 0")
        m = c.matrix
        if m.adaptive:
            lines.append(f"adaptive seeds: the runs above are the first wave; a cell gets another seed while its "
                         f"confidence sequence (α {m.adaptive_alpha:g}, σ ≤ {m.adaptive_sigma:g}) straddles "
                         f"{', '.join(f'{t:g}' for t in m.adaptive_thresholds)} % of dense, up to "
                         f"{m.adaptive_max_seeds} seeds")
        return "\n".join(lines)


def _with_mrc_head(objectives: tuple, preset) -> tuple:
    """MRC-kl needs a region classifier over the detector's classes: only presets whose checkpoints
    have one (`region_classes`, e.g. UNITER's 1,601) can train it; toy worlds have no soft labels."""
    if any(name == "mrc" for name, _ in objectives) and not preset.config.get("region_classes"):
        raise ConfigError(f"pretrain.objectives: 'mrc' (MRC-kl) needs a region classifier and soft-label features; "
                          f"preset '{preset.name}' has none (use mrm)")
    return objectives


def _objective_phases(cfg: Config, image_input: str) -> tuple:
    p = cfg.pretrain
    if not 0.0 <= p.first_fraction <= 1.0:
        raise ConfigError(f"pretrain.first_fraction: expected a fraction in [0, 1], found {p.first_fraction}")
    first = int(round(p.first_fraction * p.steps)) if p.first_objectives else 0
    tag = int(round(p.tag_fraction * p.steps)) if image_input == "pixels" else 0
    phases = []
    if tag > 0:  # the stand-in for ViLT's ViT initialisation, before the V+L phases
        phases.append(Phase((("tag", 1.0),), tag))
    if first > 0:
        phases.append(Phase(parse_objectives(p.first_objectives, image_input, "pretrain.first_objectives"), first))
    if p.steps - first > 0:
        phases.append(Phase(parse_objectives(p.objectives, image_input), p.steps - first))
    return tuple(phases)


def _sparsities(values, where: str) -> tuple:
    try:
        return tuple(sorted({round(check_sparsity(float(s), where), 6) for s in values}))
    except (TypeError, ValueError):
        raise ConfigError(f"{where}: expected numbers in [0, 1), found {list(values)!r}") from None


def _search(cfg: Config, source: Source, sparsities: tuple) -> Search:
    method = get_method(source.method)
    hparams = method.make_hparams(cfg.find.method_hparams(method.name))
    base = Source(method.base, source.objective) if method.base else None
    return Search(source, method.target_sparsities(hparams, sparsities),
                  tuple((f.name, getattr(hparams, f.name)) for f in dataclasses.fields(hparams)), method.trains, base)


def _check_pattern(cfg: Config, ladder, chosen, controls_at, sources) -> None:
    """An N:M `find.pattern` has one sparsity (1 − N/M) and needs methods whose tickets can follow it."""
    if parse_pattern(cfg.find.pattern) is None:
        return
    s = pattern_sparsity(cfg.find.pattern)
    off = [x for x in (*ladder, *chosen, *controls_at) if abs(x - s) > 1e-9]
    if off:
        raise ConfigError(f"find.pattern={cfg.find.pattern} has sparsity {s:g}, but find.sparsities / "
                          f"matrix.control_sparsities hold {off[0]:g}: set --set find.sparsities={s:g}")
    for src in sources:
        if not src.is_dense and not get_method(src.method).patterns:
            raise ConfigError(f"find.pattern={cfg.find.pattern}: method '{src.method}' ({src}) cannot make N:M "
                              "tickets (`ticketbench methods` lists the ones that can); drop it from the sources")


def load_plugins(cfg: Config) -> None:
    """Import the modules named in `find.plugins` (they register pruning methods by decorator)."""
    for name in cfg.find.plugins:
        try:
            importlib.import_module(name)
        except TicketbenchError as e:  # e.g. it registers a name that is taken
            raise TicketbenchError(f"find.plugins: '{name}': {e}") from None
        except (Exception, SystemExit) as e:  # noqa: BLE001 - a plugin's own error (SyntaxError, sys.exit, ...)
            why = str(e).splitlines()[0] if str(e) else ""
            raise TicketbenchError(f"find.plugins: cannot import '{name}': {type(e).__name__}: {why}") from None


# Sizes no study can run: refused (saying the number) instead of planned for hours or in all memory.
MAX_CELLS = 100_000
MAX_SEARCH_TICKETS = 1_000


def _refuse_unrunnable(cfg: Config, every: list, controls: list, chosen: tuple, controls_at: tuple,
                       dense_seeds: int, claim_runs: int = 0) -> None:
    per_task = sum(dense_seeds if src.is_dense else cfg.matrix.seeds * len(controls_at if src in controls else chosen)
                   for src in every)
    if cfg.matrix.convergence_check and DENSE in every:
        per_task += dense_seeds
    n = per_task * len(cfg.matrix.tasks) + claim_runs * cfg.matrix.seeds
    if n > MAX_CELLS:
        raise ConfigError(f"matrix: this plan would make {n} fine-tuning runs ({len(cfg.matrix.tasks)} task(s), "
                          f"matrix.seeds={cfg.matrix.seeds}, matrix.dense_seeds={cfg.matrix.dense_seeds}), more than "
                          f"the {MAX_CELLS} a plan may have; use fewer seeds, sparsities, sources or tasks")


def build_plan(cfg: Config) -> Plan:
    """The plan of a config; every name is checked here, before anything runs or is written."""
    load_plugins(cfg)  # plugins register the methods that sources name
    preset = PRESETS.get(cfg.backbone.preset)
    image_input = preset.image_input
    for t in cfg.matrix.tasks:
        TASKS.get(t)
    ladder = _sparsities(cfg.find.sparsities, "find.sparsities")
    if not ladder:
        raise ConfigError("find.sparsities: the ladder is empty")
    chosen = _sparsities(cfg.matrix.sparsities, "matrix.sparsities") or ladder
    controls_at = _sparsities(cfg.matrix.control_sparsities, "matrix.control_sparsities")
    claim_at = _sparsities(cfg.matrix.claim_sparsities, "matrix.claim_sparsities") or chosen
    for where, values in (("matrix.sparsities", chosen), ("matrix.control_sparsities", controls_at),
                          ("matrix.claim_sparsities", claim_at)):
        off = [s for s in values if s not in ladder]
        if off:
            raise ConfigError(f"{where}: {off[0]} is not on the ticket ladder find.sparsities={list(ladder)}; add it "
                              f"there (--set find.sparsities=...) and `ticketbench find` finds its tickets")
    claim_tasks = tuple(cfg.matrix.claim_tasks)
    off = [t for t in claim_tasks if t not in cfg.matrix.tasks]
    if off:
        raise ConfigError(f"matrix.claim_tasks: '{off[0]}' is not a target task (matrix.tasks: "
                          f"{', '.join(cfg.matrix.tasks)}); the claims are decided on target tasks")
    if cfg.matrix.seeds < 1:
        raise ConfigError(f"matrix.seeds: expected at least 1, found {cfg.matrix.seeds}")
    if cfg.matrix.adaptive and cfg.matrix.adaptive_max_seeds < cfg.matrix.seeds:
        raise ConfigError(f"matrix.adaptive_max_seeds: the cap ({cfg.matrix.adaptive_max_seeds}) is below the first "
                          f"wave's matrix.seeds={cfg.matrix.seeds}; expected at least {cfg.matrix.seeds}")

    # Sources, in report order: IMP per source task, one-shot, baselines, controls, dense.
    for t in cfg.find.sources:
        if t != PRETRAIN:
            TASKS.get(t)
    listed = ([Source("imp", t) for t in cfg.find.sources] + [Source.parse(s) for s in cfg.find.one_shot]
              + [Source.parse(s) for s in cfg.matrix.baselines])
    for s in cfg.find.one_shot:
        # IMP's sources are find.sources; `imp` here would search the pre-training mix a second time, unnamed.
        if Source.parse(s).method == "imp":
            raise ConfigError(f"find.one_shot: '{s}' is IMP, which find.sources lists (e.g. pretrain, vqa); "
                              "one-shot sources are other methods (omp:vqa, pretrained_magnitude, …)")
    seen: set = set()
    for s in listed:
        if s in seen:
            raise ConfigError(f"source '{s}' is listed twice (find.sources, find.one_shot, matrix.baselines); "
                              "list each source once")
        seen.add(s)
    controls = [Source.parse(s) for s in cfg.matrix.controls]
    baselines = [Source.parse(s) for s in cfg.matrix.baselines]
    every = list(dict.fromkeys(listed + controls + [DENSE]))
    if cfg.matrix.sources:
        wanted = [Source.parse(s) for s in cfg.matrix.sources]
        for w in wanted:
            if w not in every:
                names = [str(s) for s in every]
                raise ConfigError(f"matrix.sources: unknown source '{w}'{suggest(str(w), names)}; this config has: "
                                  f"{', '.join(names)}")
        every = [s for s in every if s in wanted]

    # Every (backbone, task) pair is one the backbone can do, before any search has run (ViLT: no RefCOCO+).
    for where, task in ([("matrix.tasks", t) for t in cfg.matrix.tasks]
                        + [(f"source {s}", s.objective) for s in every if s.objective not in (None, PRETRAIN)]):
        why = TASKS.get(task).unsupported(image_input)
        if why:
            raise ConfigError(f"{where}: backbone {preset.name} cannot do {task}: {why}; drop it from matrix.tasks, "
                              "find.sources and find.one_shot")

    # Every method named in find.hparams exists and takes those fields and values, even if unused here.
    for item in cfg.find.hparams:
        name = str(item).partition(".")[0]
        get_method(name).make_hparams(cfg.find.method_hparams(name))

    _check_pattern(cfg, ladder, chosen, controls_at, every)
    searches: dict[Source, Search] = {}

    def add(source: Source, sparsities: tuple) -> None:
        if source in searches or source.is_dense:
            return
        search = _search(cfg, source, sparsities)
        if len(search.sparsities) > MAX_SEARCH_TICKETS:
            raise ConfigError(f"{source}: its search would make {len(search.sparsities)} tickets, more than the "
                              f"{MAX_SEARCH_TICKETS} a search may have; check find.hparams.{source.method}")
        if search.base:
            add(search.base, ladder)  # a base ticket exists at every ladder sparsity
        searches[source] = search

    def claim_sources(task: str) -> list[Source]:
        """The sources a claim compares on `task`: its own IMP ticket, the pre-training ticket, the baselines."""
        return [s for s in every if s in (Source("imp", task), Source("imp", PRETRAIN)) or s in baselines]

    claim_read = {s for t in claim_tasks for s in claim_sources(t)}
    for src in every:
        reach = ladder
        if claim_tasks and src not in claim_read and src not in controls:
            # Read by the broad matrix only: the search goes as far as the sparsities it fine-tunes.
            reach = tuple(x for x in ladder if x <= max(chosen) + 1e-9)
        add(src, controls_at if src in controls else reach)

    # With claim tasks, only the searches their claims read are repeated (and the bases those branch from).
    replicated = claim_read if claim_tasks else set(searches)
    replicated |= {searches[s].base for s in replicated if s in searches and searches[s].base}
    # Each search once per replicate (find.seeds), replicate 0 first: bases before derived searches.
    ordered = tuple(sorted((dataclasses.replace(s, search_seed=r) for r in range(cfg.find.seeds)
                            for s in searches.values() if r == 0 or s.source in replicated),
                           key=lambda s: s.base is not None))

    for src in every:
        search = searches.get(src)
        wanted = controls_at if src in controls else chosen
        if src in claim_read:
            wanted = tuple(sorted(set(wanted) | set(claim_at)))
        missing = [x for x in wanted if search and x not in search.sparsities]
        if missing:
            raise ConfigError(
                f"{src} with {', '.join(f'{k}={v}' for k, v in search.hparams)} yields tickets at "
                f"{', '.join(f'{x:g}' for x in search.sparsities)}, not at {missing[0]:g} on the ladder: set "
                f"find.sparsities to sparsities it yields, or find.hparams.{src.method}.mode=ladder")

    cells = []
    dense_seeds = max(cfg.matrix.seeds, cfg.matrix.dense_seeds)
    _refuse_unrunnable(cfg, every, controls, chosen, controls_at, dense_seeds,
                       len(claim_tasks) * (2 + len(baselines)) * len(claim_at) * cfg.find.seeds)
    for task in cfg.matrix.tasks:
        first = len(cells)
        for seed in range(dense_seeds):
            for src in every:
                if seed >= cfg.matrix.seeds and not src.is_dense:
                    continue  # the dense model's extra seeds: its spread is every verdict's yardstick
                sparsities = (0.0,) if src.is_dense else (controls_at if src in controls else chosen)
                # dense has no search to repeat; with claim tasks, the broad matrix reads replicate 0 only
                for r in range(1 if src.is_dense or claim_tasks else cfg.find.seeds):
                    cells += [Cell(src, s, task, seed, search_seed=r) for s in sparsities]
        if task in claim_tasks:  # the powered core: every replicate of the claims' sources at claim_sparsities
            have = set(cells[first:])
            cells += [c for seed in range(cfg.matrix.seeds) for src in claim_sources(task)
                      for r in range(cfg.find.seeds) for s in claim_at
                      if (c := Cell(src, s, task, seed, search_seed=r)) not in have]
        if cfg.matrix.convergence_check and DENSE in every:
            # As many seeds as dense: the check compares two means, and a noisier 2× mean would flag
            # seed noise as under-training.
            cells += [Cell(DENSE, 0.0, task, seed, CONVERGENCE_FACTOR) for seed in range(dense_seeds)]

    full = to_dict(cfg)
    # A text-only backbone's toyland is the text world (bench.data.textworld), with its own format version.
    world = ((textworld.VERSION if image_input == "none" else toyland.VERSION)
             if cfg.world.source == "toyland" else None)
    # The preset's architecture too: a changed toy preset is a new θ0, never a stale one.
    # The tokenizer by content, not only by path: a vocabulary changed in place is a new θ0.
    tokenizer = tokenizer_identity(cfg.backbone.tokenizer) if cfg.backbone.tokenizer else None
    theta0_key = short_hash([KEY_SCHEMA, key_settings(cfg, "world"), key_settings(cfg, "backbone"),
                             key_settings(cfg, "pretrain"),
                             {"toyland_version": world, "preset": preset.config, "tokenizer": tokenizer}])
    numbers = {k: s for k in full if k not in ("name", "report") and (s := key_settings(cfg, k))}
    phases = tuple(Phase(_with_mrc_head(ph.objectives, preset), ph.steps)
                   for ph in (_objective_phases(cfg, image_input) if preset.family == "toy" else ()))
    return Plan(
        config=cfg, family=preset.family, image_input=image_input, ladder=ladder, phases=phases,
        imp_objectives=_with_mrc_head(parse_objectives(cfg.pretrain.objectives, image_input), preset), searches=ordered,
        cells=tuple(cells), theta0_key=theta0_key,
        hash=short_hash([KEY_SCHEMA, numbers, {"toyland_version": world, "theta0": theta0_key}]),
    )
