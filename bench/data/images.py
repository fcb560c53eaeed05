"""Image inputs: region-feature stores (UNITER npz / LMDB, LXMERT TSV) and a pixel store (ViLT).

`open_image_store(kind, path)` returns a store with `get(image_id)`, `ids()` and `feat_dim`.
Region stores return `RegionFeatures` (features [n, D], boxes [n, 4] normalised x1y1x2y2,
positions [n, 7] for UNITER or [n, 4] for LXMERT); the pixel store returns `PixelInput`
(pixel_values [3, H, W], pixel_mask [H, W]). Every item is decoded once and cached in memory, so
epochs after the first never touch the disk (toyland worlds hold a few thousand small images).
"""

from __future__ import annotations

import base64
import csv
import io
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from bench.core.errors import DataError

# LXMERT's TSV has no header; these are its 10 columns in order.
LXMERT_FIELDS = ("img_id", "img_h", "img_w", "objects_id", "objects_conf", "attrs_id", "attrs_conf",
                 "num_boxes", "boxes", "features")


@dataclass
class RegionFeatures:
    """Region features of one image (float32 tensors)."""

    features: torch.Tensor  # [n, D]
    boxes: torch.Tensor  # [n, 4] normalised x1, y1, x2, y2
    positions: torch.Tensor  # [n, 7] (x1, y1, x2, y2, w, h, w*h) or [n, 4] (x1, y1, x2, y2)


@dataclass
class PixelInput:
    """One preprocessed image: pixel_values [3, H, W] float32, pixel_mask [H, W] int64 (1 = real pixel)."""

    pixel_values: torch.Tensor
    pixel_mask: torch.Tensor


class _CachedStore:
    """Decode-once cache around `_read(image_id)`; a missing id is a one-line DataError."""

    kind = ""
    what = "region features"

    def __init__(self, path: Path):
        self.path = path
        self._cache: dict[str, Any] = {}

    def get(self, image_id: str) -> Any:
        """The decoded input of `image_id` (cached after the first read)."""
        item = self._cache.get(image_id)
        if item is None:
            if image_id not in self:
                raise DataError(f"image {image_id} has no {self.what} in {self.path}")
            item = self._cache[image_id] = self._read(image_id)
        return item

    def __contains__(self, image_id: object) -> bool:
        raise NotImplementedError

    def _read(self, image_id: str) -> Any:
        raise NotImplementedError

    def ids(self) -> list[str]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.ids())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


def _region_arrays(arrays: Any, source: str) -> RegionFeatures:
    """UNITER arrays (features, norm_bb [, conf]) -> RegionFeatures with 7-d positions."""
    missing = [k for k in ("features", "norm_bb") if k not in arrays]
    if missing:
        raise DataError(f"{source}: missing array '{missing[0]}' (expected 'features', 'norm_bb', 'conf'; found {sorted(arrays)})")
    feats = np.asarray(arrays["features"], dtype=np.float32)
    norm_bb = np.asarray(arrays["norm_bb"], dtype=np.float32)
    if feats.ndim != 2 or norm_bb.shape != (feats.shape[0], 7):
        raise DataError(f"{source}: expected features [n, D] and norm_bb [n, 7], found {feats.shape} and {norm_bb.shape}")
    return RegionFeatures(torch.from_numpy(feats), torch.from_numpy(norm_bb[:, :4].copy()), torch.from_numpy(norm_bb))


class UniterNpzStore(_CachedStore):
    """UNITER layout: one `<image_id>.npz` per image with features [n, D], norm_bb [n, 7], conf [n]."""

    kind = "uniter"

    def __init__(self, path: Path):
        super().__init__(path)
        if not path.is_dir():
            raise DataError(f"{path}: region-feature directory not found (UNITER layout: <image_id>.npz files)")
        self._ids: list[str] | None = None
        self._feat_dim: int | None = None

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._cache or (self.path / f"{image_id}.npz").is_file()

    def ids(self) -> list[str]:
        if self._ids is None:
            self._ids = sorted(p.stem for p in self.path.glob("*.npz"))
        return self._ids

    def _read(self, image_id: str) -> RegionFeatures:
        path = self.path / f"{image_id}.npz"
        try:
            with np.load(path, allow_pickle=False) as arrays:
                return _region_arrays(arrays, str(path))
        except (ValueError, OSError) as e:
            raise DataError(f"{path}: not a readable npz archive ({e})") from None

    @property
    def feat_dim(self) -> int:
        if self._feat_dim is None:
            ids = self.ids()
            if not ids:
                raise DataError(f"{self.path}: no .npz region features found")
            self._feat_dim = int(self.get(ids[0]).features.shape[1])
        return self._feat_dim


class UniterLmdbStore(UniterNpzStore):
    """UNITER features packed in an LMDB env: key = image id, value = the bytes of its npz archive.

    Needs the optional `lmdb` package.
    """

    def __init__(self, path: Path):
        try:
            import lmdb
        except ImportError:
            raise DataError(f"{path}: reading an LMDB feature store needs the 'lmdb' package (pip install lmdb)") from None
        _CachedStore.__init__(self, path)
        self._env = lmdb.open(str(path), readonly=True, lock=False, readahead=False, subdir=path.is_dir())
        self._ids = None
        self._feat_dim = None

    def __contains__(self, image_id: object) -> bool:
        if image_id in self._cache:
            return True
        with self._env.begin() as txn:
            return txn.get(str(image_id).encode()) is not None

    def ids(self) -> list[str]:
        if self._ids is None:
            with self._env.begin() as txn:
                self._ids = sorted(k.decode() for k, _ in txn.cursor())
        return self._ids

    def _read(self, image_id: str) -> RegionFeatures:
        with self._env.begin() as txn:
            data = txn.get(image_id.encode())
        with np.load(io.BytesIO(data), allow_pickle=False) as arrays:
            return _region_arrays(arrays, f"{self.path}[{image_id}]")


class LxmertTsvStore(_CachedStore):
    """LXMERT layout: TSV rows (no header) of its 10 fields; boxes and features base64 float32.

    `path` is one .tsv file or a directory of them (e.g. one per split). Rows are indexed at open
    and decoded on first use; positions are the pixel boxes normalised by img_w / img_h (4-d).
    """

    kind = "lxmert"

    def __init__(self, path: Path):
        super().__init__(path)
        files = sorted(path.glob("*.tsv")) if path.is_dir() else [path]
        if not files or not files[0].is_file():
            raise DataError(f"{path}: LXMERT feature TSV not found")
        csv.field_size_limit(sys.maxsize)
        self._rows: dict[str, tuple[str, int, dict]] = {}
        for f in files:
            with open(f, newline="", encoding="utf-8") as fh:
                for lineno, row in enumerate(csv.reader(fh, delimiter="\t"), 1):
                    if not row:
                        continue
                    if len(row) != len(LXMERT_FIELDS):
                        raise DataError(f"{f}:{lineno}: expected {len(LXMERT_FIELDS)} tab-separated fields "
                                        f"({', '.join(LXMERT_FIELDS)}), found {len(row)}")
                    rec = dict(zip(LXMERT_FIELDS, row))
                    self._rows[rec["img_id"]] = (str(f), lineno, rec)
        first = next(iter(self._rows), None)
        self.feat_dim = int(self.get(first).features.shape[1]) if first is not None else 0

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._rows

    def ids(self) -> list[str]:
        return sorted(self._rows)

    def _read(self, image_id: str) -> RegionFeatures:
        f, lineno, rec = self._rows[image_id]
        where = f"{f}:{lineno}"
        try:
            n, h, w = int(rec["num_boxes"]), float(rec["img_h"]), float(rec["img_w"])
            boxes = np.frombuffer(base64.b64decode(rec["boxes"]), dtype=np.float32).reshape(n, 4)
            feats = np.frombuffer(base64.b64decode(rec["features"]), dtype=np.float32).reshape(n, -1)
        except ValueError as e:
            raise DataError(f"{where}: image {image_id}: malformed num_boxes/boxes/features ({e})") from None
        if w <= 0 or h <= 0:
            raise DataError(f"{where}: image {image_id}: expected positive img_w/img_h, found {w}x{h}")
        norm = (boxes / np.array([w, h, w, h], dtype=np.float32)).astype(np.float32)
        return RegionFeatures(torch.from_numpy(feats.copy()), torch.from_numpy(norm), torch.from_numpy(norm.copy()))


class PixelStore(_CachedStore):
    """ViLT layout: `<image_id>.png` (or .jpg) files, resized and normalised like ViltProcessor.

    The shorter side becomes `shorter` (ViLT: 384) and the longer at most 1333/800 of it, both
    rounded down to multiples of 32 (ViLT's patch size); mean = std = 0.5. A single image has an
    all-ones pixel mask; batching pads and masks (see the backbone's collate).
    """

    kind = "pixels"
    what = "image file"
    feat_dim = 3

    def __init__(self, path: Path, shorter: int = 384):
        super().__init__(path)
        if not path.is_dir():
            raise DataError(f"{path}: image directory not found (expected <image_id>.png files)")
        self.shorter = int(shorter)
        self._processor = _vilt_processor(self.shorter)

    def _file(self, image_id: str) -> Path | None:
        for ext in (".png", ".jpg", ".jpeg"):
            p = self.path / f"{image_id}{ext}"
            if p.is_file():
                return p
        return None

    def __contains__(self, image_id: object) -> bool:
        return image_id in self._cache or self._file(str(image_id)) is not None

    def ids(self) -> list[str]:
        return sorted({p.stem for ext in ("png", "jpg", "jpeg") for p in self.path.glob(f"*.{ext}")})

    def _read(self, image_id: str) -> PixelInput:
        from PIL import Image, UnidentifiedImageError

        path = self._file(image_id)
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"{path}: not a readable image ({e})") from None
        out = self._processor(images=rgb, return_tensors="pt")
        return PixelInput(out["pixel_values"][0].float(), out["pixel_mask"][0].long())


def _vilt_processor(shorter: int):
    """transformers' ViLT image processor (its PIL backend when torchvision is absent)."""
    try:
        from transformers import ViltImageProcessorPil as Processor
    except ImportError:  # older transformers: one class
        from transformers import ViltImageProcessor as Processor
    return Processor(size={"shortest_edge": shorter}, size_divisor=32, do_pad=True)


STORES: dict[str, Callable[..., Any]] = {
    "uniter": lambda path, **kw: (UniterLmdbStore if _is_lmdb(path) else UniterNpzStore)(path),
    "lxmert": lambda path, **kw: LxmertTsvStore(path),
    "pixels": lambda path, shorter=384, **kw: PixelStore(path, shorter=shorter),
}


def _is_lmdb(path: Path) -> bool:
    return (path / "data.mdb").is_file() or path.suffix == ".mdb"


def open_image_store(kind: str, path: str | Path, **options: Any):
    """Open an image store: kind 'uniter' (npz dir or LMDB), 'lxmert' (TSV) or 'pixels' (PNG dir).

    options: `shorter` (pixels: shorter side after resizing, default 384).
    """
    if kind not in STORES:
        from bench.core.registry import suggest

        raise DataError(f"unknown image store kind '{kind}'{suggest(kind, list(STORES))}; known: {', '.join(STORES)}")
    return STORES[kind](Path(path), **options)
