"""`data check`: open every configured task's files and image source, resolve every sampled image id.

The first thing to run on real data: for each task and split (train and evaluation), load the
examples, take up to `sample` of them (spread over the split), look up each of their image ids in
the task's image source and report what was found. Nothing is written.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.core.errors import TicketbenchError
from bench.core.layout import Layout
from bench.data.sources import ImageSources
from bench.tasks import TASKS
from bench.tasks.files import task_dir


@dataclass
class CheckRow:
    task: str
    split: str
    examples: int = 0
    images: int = 0  # distinct image ids among the sampled examples
    found: int = 0
    missing: int = 0
    feat_dim: int | None = None
    boxes: tuple[int, int] | None = None  # min, max regions of the found images (region stores)
    source: str = ""
    first_missing: str = ""  # 'image <id>: <what was looked for>'
    error: str = ""  # a one-line error that stopped this row
    extra: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.error and not self.missing


def configured_tasks(cfg: Any) -> list[str]:
    """The matrix's tasks and the IMP source tasks ('pretrain' -> its caption corpus, 'itm')."""
    tasks = list(cfg.matrix.tasks)
    for src in cfg.find.sources:
        name = "itm" if src == "pretrain" else src
        if name not in tasks:
            tasks.append(name)
    return tasks


def data_root(cfg: Any, out: str | Path | None = None) -> Path:
    if cfg.world.source == "toyland":
        if out is None:
            raise TicketbenchError("data check on toyland needs the output directory holding world/")
        return Layout(out).world
    if not cfg.world.data_root:
        raise TicketbenchError("world.source is 'real' but world.data_root is empty")
    return Path(cfg.world.data_root)


def check_data(cfg: Any, preset: Any, out: str | Path | None = None, sample: int = 200,
               tasks: list[str] | None = None) -> list[CheckRow]:
    """One CheckRow per (task, split) of the config's tasks (train split and evaluation split); `sample`
    image ids per split are looked up (0 = every one).

    `preset` is the config's backbone preset (`PRESETS.get(cfg.backbone.preset)`: its image input,
    family and feature width), passed in because the backbones sit above this layer.
    """
    root = data_root(cfg, out)
    sources = ImageSources(cfg.world, root, preset.image_input, preset.family,
                           shorter=preset.config.get("image_size", 384))
    # the preset's input width (toy presets take the store's: None)
    want = preset.config.get("feat_dim") if preset.family != "toy" and preset.image_input == "regions" else None
    rows = []
    for task in tasks or configured_tasks(cfg):
        spec = TASKS.get(task)
        for split in spec.splits[:2]:
            row = _check_split(spec, split, root, sources, sample)
            if want is not None and row.feat_dim is not None and row.feat_dim != want and not row.error:
                row.error = (f"source '{row.source}' has {row.feat_dim}-d features, expected {want} "
                             f"(preset {cfg.backbone.preset})")
            rows.append(row)
    return rows


def _check_split(spec: Any, split: str, root: Path, sources: Any, sample: int) -> CheckRow:
    row = CheckRow(spec.name, split)
    try:
        row.source = sources.source_of(spec.name) if sources.real else "world"
        store = sources.for_task(spec.name)
        row.feat_dim = int(store.feat_dim)
        examples = spec.load(task_dir(spec, root), split)
    except TicketbenchError as e:
        row.error = str(e)
        return row
    row.examples = len(examples)
    chosen = examples if sample <= 0 else examples[::max(1, len(examples) // sample)][:sample]  # 0 = all
    ids = list(dict.fromkeys(i for ex in chosen for i in ex.image_ids))
    row.images = len(ids)
    counts = []
    for image_id in ids:
        try:
            item = store.get(image_id)
        except TicketbenchError as e:
            row.missing += 1
            row.first_missing = row.first_missing or str(e)
            continue
        row.found += 1
        if hasattr(item, "features"):
            counts.append(int(item.features.shape[0]))
            if int(item.features.shape[1]) != row.feat_dim:
                row.error = row.error or (f"image {image_id}: feature dimension {item.features.shape[1]}, "
                                          f"expected {row.feat_dim} (source {row.source})")
    row.boxes = (min(counts), max(counts)) if counts else None
    return row


def format_check(rows: list[CheckRow]) -> str:
    """A plain-text table, then the first problem of each failing row."""
    header = ("task", "split", "source", "examples", "images", "found", "missing", "feat dim", "boxes")
    body = []
    for r in rows:
        boxes = "" if r.boxes is None else (str(r.boxes[0]) if r.boxes[0] == r.boxes[1] else f"{r.boxes[0]}-{r.boxes[1]}")
        body.append((r.task, r.split, r.source, str(r.examples), str(r.images), str(r.found), str(r.missing),
                     "" if r.feat_dim is None else str(r.feat_dim), boxes))
    widths = [max(len(x[i]) for x in [header, *body]) for i in range(len(header))]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [fmt.format(*header), fmt.format(*("-" * w for w in widths)), *(fmt.format(*b) for b in body)]
    for r in rows:
        if r.error:
            lines.append(f"FAIL {r.task} {r.split}: {r.error}")
        elif r.missing:
            lines.append(f"FAIL {r.task} {r.split}: {r.missing} of {r.images} images missing; first: {r.first_missing}")
    checked = sum(r.images for r in rows)
    lines.append(f"{checked} image id(s) looked up in {len(rows)} split(s): {sum(r.found for r in rows)} found, "
                 f"{sum(r.missing for r in rows)} missing")
    return "\n".join(line.rstrip() for line in lines)
