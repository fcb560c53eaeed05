"""The world writer: image ids, rendering + both feature layouts per image, text files, vocabulary."""

from __future__ import annotations

import json
import zlib
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
