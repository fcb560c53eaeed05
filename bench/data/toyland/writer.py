"""The world writer: image ids, rendering + both feature layouts per image, text files, vocabulary."""

from __future__ import annotations

import json
import zlib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Hashable

import numpy as np

from bench.data.toyland import features as F
from bench.data.toyland.language import tokenize
from bench.data.toyland.render import png_bytes, render
from bench.data.toyland.scene import IMAGE_SIZE, Scene


@dataclass(frozen=True)
class ImageInfo:
    """A written image: its scene, region boxes (pixels), and the region index of each scene object."""

    scene: Scene
    boxes: np.ndarray
    object_regions: tuple[int, ...]

    @property
    def image_id(self) -> str:
        return self.scene.image_id


class WorldWriter:
    """Writes files under `root` (a partial directory renamed into place by generate_world)."""

    def __init__(self, root: Path, seed: int):
        self.root = Path(root)
        self.seed = seed
        self.words: set[str] = set()
        self.images: dict[str, ImageInfo] = {}
        self._tsv: list[str] = []
        self._next_id = 100000
        (self.root / "images").mkdir(parents=True, exist_ok=True)
        (self.root / "features" / "uniter").mkdir(parents=True, exist_ok=True)

    def rng(self, *stream: Hashable) -> np.random.Generator:
        """An independent random stream per purpose, stable across runs and Python hash seeds."""
        keys = [zlib.crc32(str(s).encode()) for s in stream]
        return np.random.default_rng([self.seed, *keys])

    def new_id(self) -> str:
        """COCO-style integer image ids, written as decimal strings in file names."""
        self._next_id += 1
        return str(self._next_id)

    def add(self, scene: Scene) -> ImageInfo:
        """Render `scene`, write its PNG and its region features in both layouts."""
        rng = self.rng("image", scene.image_id)
        pixels = render(scene, rng)
        boxes, conf, obj_regions = F.region_boxes(scene, rng)
        feats = F.extract(pixels, boxes)
        iid = scene.image_id
        (self.root / "images" / f"{iid}.png").write_bytes(png_bytes(pixels))
        (self.root / "features" / "uniter" / f"{iid}.npz").write_bytes(
            F.uniter_npz(feats, boxes, conf, IMAGE_SIZE, IMAGE_SIZE))
        self._tsv.append(F.lxmert_row(iid, IMAGE_SIZE, IMAGE_SIZE, boxes, feats, conf))
        info = ImageInfo(scene, boxes, tuple(obj_regions))
        self.images[iid] = info
        return info

    def text(self, *texts: str) -> None:
        for t in texts:
            self.words.update(tokenize(t))

    def write_bytes(self, rel: str, data: bytes) -> None:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    def write_json(self, rel: str, obj: Any) -> None:
        self.write_bytes(rel, json.dumps(obj, separators=(",", ":")).encode())

    def write_jsonl(self, rel: str, rows: list[dict]) -> None:
        self.write_bytes(rel, "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows).encode())

    def finish(self) -> None:
        """Write the files that collect over the whole world (LXMERT TSV, vocabulary)."""
        self.write_bytes("features/lxmert/features.tsv", "".join(self._tsv).encode())
        self.write_bytes("vocab.txt", "".join(w + "\n" for w in sorted(self.words)).encode())


@dataclass(frozen=True)
class Cand:
    """A candidate example: `key` names its template, `label` its answer, `item` the payload."""

    key: tuple
    label: str
    item: Any


class Balancer:
    """Greedy answer balancing: per image pick a template uniformly, then its least-used answer.

    Balancing answers *within each template* is what keeps a text-only model near chance."""

    def __init__(self, rng: np.random.Generator, global_labels: bool = False):
        self.rng = rng
        self.counts: Counter = Counter()
        self.global_labels = global_labels  # also balance labels over all templates (SNLI-VE)
        self.label_counts: Counter = Counter()

    def _pick_global(self, cands: list[Cand]) -> Cand:
        """Jointly balance labels overall and within each template: the (template, label) pair with
        the lowest (uses of the label) + (its excess over the template's least-used label) wins."""
        all_labels = sorted({lab for _, lab in self.counts} | {c.label for c in cands})

        def score(key, label):
            floor = min(self.counts[key, lab] for lab in all_labels)
            return self.label_counts[label] + self.counts[key, label] - floor

        pairs = sorted({(c.key, c.label) for c in cands}, key=repr)
        scores = [score(k, lab) for k, lab in pairs]
        best = [p for p, sc in zip(pairs, scores) if sc == min(scores)]
        key, label = best[int(self.rng.integers(len(best)))]
        pool = [c for c in cands if c.key == key and c.label == label]
        return pool[int(self.rng.integers(len(pool)))]

    def pick(self, cands: list[Cand]) -> Cand | None:
        if not cands:
            return None
        if self.global_labels:
            c = self._pick_global(cands)
            self.counts[c.key, c.label] += 1
            self.label_counts[c.label] += 1
            return c
        keys = sorted({c.key for c in cands}, key=repr)
        key = keys[int(self.rng.integers(len(keys)))]
        group = [c for c in cands if c.key == key]
        labels = sorted({c.label for c in group})
        low = min(self.counts[key, lab] for lab in labels)
        best = [lab for lab in labels if self.counts[key, lab] == low]
        label = best[int(self.rng.integers(len(best)))]
        pool = [c for c in group if c.label == label]
        c = pool[int(self.rng.integers(len(pool)))]
        self.counts[key, label] += 1
        return c

    def pick_many(self, cands: list[Cand], n: int, distinct=lambda c: c.item) -> list[Cand]:
        """Up to n picks with distinct payload keys (e.g. no question asked twice about one image)."""
        out, seen = [], set()
        for _ in range(n):
            c = self.pick([c for c in cands if repr(distinct(c)) not in seen])
            if c is None:
                break
            seen.add(repr(distinct(c)))
            out.append(c)
        return out
