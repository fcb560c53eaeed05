"""Image inputs: region-feature stores (UNITER npz / img_db LMDB, LXMERT TSV) and a pixel store (ViLT).

`open_image_store(kind, path)` returns a store with `get(key)`, `key in store`, `ids()` and
`feat_dim`. Region stores return `RegionFeatures` (features [n, D] in the release's dtype — fp16
for UNITER's img_db, widened when the batch is built — boxes [n, 4] normalised x1y1x2y2,
positions [n, 7] for UNITER or [n, 4] for LXMERT); the pixel store returns `PixelInput`
(pixel_values [3, H, W], pixel_mask [H, W]).

Memory: nothing is decoded at open. Items are read on demand and kept in a least-recently-used
cache bounded in MB (`cache_mb`), so a full-size release costs what its cache is allowed, per
process; the toyland world (a few MB) fits and is read from disk once.

The keys are the release's own (`coco_train2014_000000262148.npz`, `COCO_val2014_000000262148`,
`<stem>` of a picture); mapping a task's image ids to them, per image source, is
`bench.data.sources`'s job.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from bench.core.errors import DataError
from bench.core.registry import suggest

# LXMERT's TSV has no header; these are its 10 columns in order.
LXMERT_FIELDS = ("img_id", "img_h", "img_w", "objects_id", "objects_conf", "attrs_id", "attrs_conf",
                 "num_boxes", "boxes", "features")
DEFAULT_CACHE_MB = 2048
PIXEL_EXTS = (".png", ".jpg", ".jpeg")


@dataclass
class RegionFeatures:
    """Region features of one image."""

    features: torch.Tensor  # [n, D] float32 or float16 (as stored)
    boxes: torch.Tensor  # [n, 4] float32, normalised x1, y1, x2, y2
    positions: torch.Tensor  # [n, 7] (x1, y1, x2, y2, w, h, w*h) or [n, 4] (x1, y1, x2, y2), float32
    # [n, C] the detector's class distribution per region (UNITER's img_db `soft_labels`, C = 1,601 for
    # the Visual Genome detector): the target of MRC-kl; None where the release has none
    soft_labels: torch.Tensor | None = None

    @property
    def nbytes(self) -> int:
        parts = (self.features, self.boxes, self.positions, self.soft_labels)
        return sum(t.element_size() * t.nelement() for t in parts if t is not None)


@dataclass
class PixelInput:
    """One preprocessed image: pixel_values [3, H, W] float32, pixel_mask [H, W] int64 (1 = real pixel)."""

    pixel_values: torch.Tensor
    pixel_mask: torch.Tensor

    @property
    def nbytes(self) -> int:
        return sum(t.element_size() * t.nelement() for t in (self.pixel_values, self.pixel_mask))


@dataclass(frozen=True)
class BoxPolicy:
    """UNITER's box selection: keep the boxes with confidence > conf_th, at least min_bb and at
    most max_bb of them, in stored order (UNITER's `compute_num_bb`). conf_th < 0 keeps max_bb."""

    conf_th: float = 0.2
    min_bb: int = 10
    max_bb: int = 100

    def count(self, conf: np.ndarray | None, n: int) -> int:
        if self.conf_th < 0:
            return min(n, self.max_bb)
        if conf is None:
            return n
        return int(min(n, self.max_bb, max(self.min_bb, int((np.asarray(conf) > self.conf_th).sum()))))


class LRUCache:
    """Least-recently-used cache bounded by the summed `nbytes` of its values."""

    def __init__(self, max_mb: float):
        self.max_bytes = int(max_mb * 2**20)
        self.bytes = 0
        self._items: OrderedDict[str, Any] = OrderedDict()

    def get(self, key: str) -> Any:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def put(self, key: str, item: Any) -> None:
        size = int(getattr(item, "nbytes", 0))
        if size > self.max_bytes:
            return  # larger than the whole cache: serve it uncached
        old = self._items.pop(key, None)
        if old is not None:
            self.bytes -= int(getattr(old, "nbytes", 0))
        self._items[key] = item
        self.bytes += size
        while self.bytes > self.max_bytes:
            _, evicted = self._items.popitem(last=False)
            self.bytes -= int(getattr(evicted, "nbytes", 0))

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items


class _CachedStore:
    """Bounded cache around `_read(key)`; a missing key is a one-line DataError."""

    kind = ""
    what = "region features"

    def __init__(self, path: Path, cache_mb: float = DEFAULT_CACHE_MB):
        self.path = path
        self.cache = LRUCache(cache_mb)

    def get(self, key: str) -> Any:
        """The decoded input of `key` (from the cache when it is there)."""
        item = self.cache.get(key)
        if item is None:
            if key not in self:
                raise DataError(f"image {key} has no {self.what} in {self.path}")
            item = self._read(key)
            self.cache.put(key, item)
        return item

    def __contains__(self, key: object) -> bool:
        raise NotImplementedError

    def _read(self, key: str) -> Any:
        raise NotImplementedError

    def ids(self) -> list[str]:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.ids())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


def region_arrays(arrays: Any, source: str, policy: BoxPolicy | None = None) -> RegionFeatures:
    """UNITER arrays (features, norm_bb 6- or 7-d [, conf]) -> RegionFeatures with 7-d positions.

    UNITER stores norm_bb as [x1, y1, x2, y2, w, h] and appends the area w*h when it loads a
    box (data.py `_get_img_feat`); a 7-d norm_bb already has it. `policy` selects the boxes.
    """
    missing = [k for k in ("features", "norm_bb") if k not in arrays]
    if missing:
        raise DataError(f"{source}: missing array '{missing[0]}' (expected 'features', 'norm_bb', 'conf'; found {sorted(arrays)})")
    feats = np.asarray(arrays["features"])
    norm_bb = np.asarray(arrays["norm_bb"], dtype=np.float32)
    if feats.dtype not in (np.float16, np.float32):
        feats = feats.astype(np.float32)
    if feats.ndim != 2 or norm_bb.ndim != 2 or norm_bb.shape[0] != feats.shape[0] or norm_bb.shape[1] not in (6, 7):
        raise DataError(f"{source}: expected features [n, D] and norm_bb [n, 6 or 7], "
                        f"found {feats.shape} and {norm_bb.shape}")
    soft = np.asarray(arrays["soft_labels"]) if "soft_labels" in arrays else None
    if soft is not None and (soft.ndim != 2 or soft.shape[0] != feats.shape[0]):
        raise DataError(f"{source}: expected soft_labels [n, classes] with n = {feats.shape[0]} regions, found {soft.shape}")
    if policy is not None:
        conf = arrays["conf"] if "conf" in arrays else None
        n = policy.count(conf, feats.shape[0])
        feats, norm_bb = feats[:n], norm_bb[:n]
        soft = soft[:n] if soft is not None else None
    if norm_bb.shape[1] == 6:
        norm_bb = np.concatenate([norm_bb, norm_bb[:, 4:5] * norm_bb[:, 5:6]], axis=1)
    # own, writable memory: decoded msgpack/LMDB buffers are read-only (torch warns) and a slice
    # would keep the whole decoded value alive
    feats = np.array(feats, copy=True, order="C")
    soft_t = torch.from_numpy(np.array(soft, dtype=np.float16, copy=True)) if soft is not None else None
    return RegionFeatures(torch.from_numpy(feats), torch.from_numpy(norm_bb[:, :4].copy()), torch.from_numpy(norm_bb),
                          soft_t)


def _region_dim(store: Any) -> int:
    ids = store.ids()
    if not ids:
        raise DataError(f"{store.path}: no region features found")
    return int(store.get(ids[0]).features.shape[1])


class UniterNpzStore(_CachedStore):
    """UNITER npz folder: one `<key>.npz` per image with features [n, D], norm_bb [n, 6 or 7], conf [n].

    Keys may be given with or without the `.npz` suffix (UNITER's img_db keys carry it).
    `policy` (UNITER's conf_th / min_bb / max_bb) selects boxes; None keeps every box.
    """

    kind = "uniter"

    def __init__(self, path: Path, cache_mb: float = DEFAULT_CACHE_MB, policy: BoxPolicy | None = None):
        super().__init__(path, cache_mb)
        if not path.is_dir():
            raise DataError(f"{path}: region-feature directory not found (UNITER layout: <image_id>.npz files)")
        self.policy = policy
        self._ids: list[str] | None = None
        self._feat_dim: int | None = None

    def _file(self, key: str) -> Path:
        return self.path / (key if key.endswith(".npz") else f"{key}.npz")

    def __contains__(self, key: object) -> bool:
        return key in self.cache or self._file(str(key)).is_file()

    def ids(self) -> list[str]:
        if self._ids is None:
            self._ids = sorted(p.stem for p in self.path.glob("*.npz"))
        return self._ids

    def _read(self, key: str) -> RegionFeatures:
        path = self._file(key)
        try:
            with np.load(path, allow_pickle=False) as arrays:
                return region_arrays(arrays, str(path), self.policy)
        except DataError:
            raise
        except Exception as e:  # noqa: BLE001 - a damaged zip raises BadZipFile, EOFError, KeyError, ...
            raise DataError(f"{path}: not a readable npz archive ({e})") from None

    @property
    def feat_dim(self) -> int:
        if self._feat_dim is None:
            self._feat_dim = _region_dim(self)
        return self._feat_dim


# ---- UNITER img_db (LMDB of msgpack dicts) ---------------------------------------------------

_NBB = re.compile(r"^feat_numbb(\d+)(_compressed)?$")
_TH = re.compile(r"^feat_th([0-9.]+)_max(\d+)_min(\d+)(_compressed)?$")


def lmdb_dir(path: Path, policy: BoxPolicy) -> tuple[Path, BoxPolicy | None]:
    """The LMDB of a UNITER img_db folder and the box selection still to apply when reading it.

    UNITER's converter writes `<img_db>/<name>/feat_th{conf_th}_max{max_bb}_min{min_bb}/` (boxes
    already cut at conversion: keep them all), `feat_numbb{N}/` (fixed N boxes) or `all/` (every
    box: select at read time with `policy`), each optionally `_compressed` (npz values). `path`
    may be the img_db folder or the LMDB folder itself.
    """
    if (path / "data.mdb").is_file() or path.suffix == ".mdb":
        candidates = [path]
    else:
        th = f"feat_th{policy.conf_th}_max{policy.max_bb}_min{policy.min_bb}"
        preferred = [th, f"{th}_compressed", "all", "all_compressed"]
        subs = sorted(p for p in path.iterdir() if (p / "data.mdb").is_file()) if path.is_dir() else []
        candidates = sorted(subs, key=lambda p: preferred.index(p.name) if p.name in preferred else len(preferred))
    if not candidates:
        raise DataError(f"{path}: no LMDB found (expected data.mdb in it or in a feat_th*/feat_numbb*/all subfolder, "
                        "UNITER img_db layout)")
    db = candidates[0]
    name = db.name
    if m := _NBB.match(name):
        return db, BoxPolicy(conf_th=-1, max_bb=int(m.group(1)))
    if _TH.match(name):
        return db, None
    return db, policy


def _msgpack_array(obj: dict) -> Any:
    """msgpack object hook: decode msgpack_numpy's ndarray dicts ({nd, type, kind, shape, data}).

    Only plain numeric dtypes are accepted; object arrays (which msgpack_numpy would unpickle) are
    refused, so a value can never run code.
    """
    nd = obj.get(b"nd", obj.get("nd"))
    if nd is None:
        return obj
    get = lambda k: obj.get(k.encode(), obj.get(k))  # noqa: E731 - keys are bytes or str by version
    dtype_str = get("type")
    if isinstance(dtype_str, bytes):
        dtype_str = dtype_str.decode()
    kind = get("kind") or b""
    if not isinstance(dtype_str, str) or kind not in (b"", "") or np.dtype(dtype_str).kind not in "fiub":
        raise ValueError(f"unsupported array encoding (type {dtype_str!r}, kind {kind!r})")
    data = get("data")
    if nd is True:
        return np.frombuffer(data, dtype=np.dtype(dtype_str)).reshape(tuple(get("shape")))
    return np.frombuffer(data, dtype=np.dtype(dtype_str))[0]


def decode_img_db_value(value: bytes, where: str) -> dict:
    """One img_db value -> dict of arrays: msgpack (UNITER's default) or npz (`_compressed` dbs)."""
    if value[:2] == b"PK":  # a zip archive: np.savez of the compressed variant
        try:
            with np.load(io.BytesIO(value), allow_pickle=False) as arrays:
                return {k: arrays[k] for k in arrays.files}
        except Exception as e:  # noqa: BLE001 - a damaged zip raises BadZipFile, EOFError, KeyError, ...
            raise DataError(f"{where}: malformed npz value ({e})") from None
    msgpack = _optional("msgpack", where)
    try:
        obj = msgpack.unpackb(value, raw=False, object_hook=_msgpack_array, strict_map_key=False)
    except (ValueError, TypeError, msgpack.exceptions.ExtraData, msgpack.exceptions.FormatError,
            msgpack.exceptions.StackError) as e:
        raise DataError(f"{where}: malformed LMDB value (expected a msgpack dict of arrays: {e})") from None
    if not isinstance(obj, dict):
        raise DataError(f"{where}: malformed LMDB value (expected a msgpack dict of arrays 'features', 'norm_bb', "
                        f"'conf'; found {type(obj).__name__})")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


_ENVS: dict[str, tuple[int, Any]] = {}  # LMDB path -> (pid that opened it, environment)


def _optional(module: str, where: Any):
    try:
        return __import__(module)
    except ImportError:
        raise DataError(f"{where}: reading UNITER's img_db needs the '{module}' package "
                        "(pip install 'ticketbench[real]')") from None


def _lmdb_env(db: Path):
    """One read-only environment per LMDB and process. LMDB refuses to open an environment twice in
    a process, and one must not be used across fork(): a forked worker closes the inherited handle
    (read-only, lock-free: nothing shared is touched) and opens its own."""
    lmdb = _optional("lmdb", db)
    key = str(db.resolve())
    pid, env = _ENVS.get(key, (None, None))
    if env is None or pid != os.getpid():
        if env is not None:
            env.close()
        try:
            env = lmdb.open(str(db), readonly=True, lock=False, readahead=False, create=False,
                            subdir=db.is_dir(), max_readers=512)
        except lmdb.Error as e:
            raise DataError(f"{db}: not a readable LMDB ({e})") from None
        _ENVS[key] = (os.getpid(), env)
    return env


class UniterLmdbStore(UniterNpzStore):
    """UNITER's img_db: an LMDB whose values are msgpack dicts (fp16 `features`, 6-d `norm_bb`,
    `conf`, `soft_labels`) keyed `<name>.npz`, plus a `__keys__` entry listing them."""

    def __init__(self, path: Path, cache_mb: float = DEFAULT_CACHE_MB, policy: BoxPolicy | None = BoxPolicy()):
        _CachedStore.__init__(self, path, cache_mb)
        self.db, self.policy = lmdb_dir(path, policy or BoxPolicy(conf_th=-1, max_bb=10**9))
        self._ids = None
        self._feat_dim = None
        self._txn()  # fail at open, not at the first read

    def _txn(self):
        return _lmdb_env(self.db).begin(buffers=False)

    def _value(self, key: str) -> bytes | None:
        with self._txn() as txn:
            value = txn.get(key.encode())
            if value is None and not key.endswith(".npz"):
                value = txn.get(f"{key}.npz".encode())
        return value

    def __contains__(self, key: object) -> bool:
        if key in self.cache:
            return True
        with self._txn() as txn:
            return txn.get(str(key).encode()) is not None or txn.get(f"{key}.npz".encode()) is not None

    def ids(self) -> list[str]:
        if self._ids is None:
            with self._txn() as txn:
                listed = txn.get(b"__keys__")
                if listed is not None:  # UNITER's converter lists its keys: walking the db touches every value
                    try:
                        keys = json.loads(listed)
                    except ValueError:
                        raise DataError(f"{self.db}[__keys__]: expected a JSON list of keys") from None
                else:
                    keys = [k.decode() for k in txn.cursor().iternext(keys=True, values=False)]
            self._ids = sorted(str(k) for k in keys if k != "__keys__")
        return self._ids

    def _read(self, key: str) -> RegionFeatures:
        where = f"{self.db}[{key}]"
        value = self._value(key)
        if value is None:
            raise DataError(f"image {key} has no {self.what} in {self.db}")
        return region_arrays(decode_img_db_value(value, where), where, self.policy)


# ---- LXMERT TSV --------------------------------------------------------------------------------


class LxmertTsvStore(_CachedStore):
    """LXMERT layout: TSV rows (no header) of its 10 fields; boxes and features base64 float32.

    `path` is one .tsv file or a directory of them (e.g. one per split). At open only a byte-offset
    index (img_id -> file, offset) is built, checking every row's field count; a row is decoded when
    asked for. Positions are the pixel boxes normalised by img_w / img_h (4-d).
    """

    kind = "lxmert"

    def __init__(self, path: Path, cache_mb: float = DEFAULT_CACHE_MB):
        super().__init__(path, cache_mb)
        self.files = sorted(path.glob("*.tsv")) if path.is_dir() else [path]
        if not self.files or not self.files[0].is_file():
            raise DataError(f"{path}: LXMERT feature TSV not found")
        self._index: dict[str, tuple[int, int, int]] = {}  # img_id -> (file index, byte offset, line number)
        for k, f in enumerate(self.files):
            self._index_file(k, f)
        self._handles: dict[int, Any] = {}
        self._pid = os.getpid()
        first = next(iter(self._index), None)
        self.feat_dim = int(self.get(first).features.shape[1]) if first is not None else 0

    def _index_file(self, k: int, f: Path) -> None:
        n_tabs = len(LXMERT_FIELDS) - 1
        offset = 0
        with open(f, "rb") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    tabs = line.count(b"\t")
                    if tabs != n_tabs:
                        raise DataError(f"{f}:{lineno}: expected {len(LXMERT_FIELDS)} tab-separated fields "
                                        f"({', '.join(LXMERT_FIELDS)}), found {tabs + 1}")
                    self._index[line[: line.index(b"\t")].decode()] = (k, offset, lineno)
                offset += len(line)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def ids(self) -> list[str]:
        return sorted(self._index)

    def _line(self, k: int, offset: int) -> bytes:
        if self._pid != os.getpid():  # file positions must not be shared across fork()
            self._handles, self._pid = {}, os.getpid()
        fh = self._handles.get(k)
        if fh is None:
            fh = self._handles[k] = open(self.files[k], "rb")  # noqa: SIM115 - kept open for reads
        fh.seek(offset)
        return fh.readline()

    def _read(self, key: str) -> RegionFeatures:
        k, offset, lineno = self._index[key]
        where = f"{self.files[k]}:{lineno}"
        rec = dict(zip(LXMERT_FIELDS, self._line(k, offset).rstrip(b"\r\n").split(b"\t")))
        try:
            n, h, w = int(rec["num_boxes"]), float(rec["img_h"]), float(rec["img_w"])
            boxes = np.frombuffer(base64.b64decode(rec["boxes"]), dtype=np.float32).reshape(n, 4)
            feats = np.frombuffer(base64.b64decode(rec["features"]), dtype=np.float32).reshape(n, -1)
        except ValueError as e:
            raise DataError(f"{where}: image {key}: malformed num_boxes/boxes/features ({e})") from None
        if w <= 0 or h <= 0:
            raise DataError(f"{where}: image {key}: expected positive img_w/img_h, found {w}x{h}")
        norm = (boxes / np.array([w, h, w, h], dtype=np.float32)).astype(np.float32)
        return RegionFeatures(torch.from_numpy(feats.copy()), torch.from_numpy(norm), torch.from_numpy(norm.copy()))

    def __del__(self):
        for fh in getattr(self, "_handles", {}).values():
            fh.close()


# ---- ViLT pixels -------------------------------------------------------------------------------


class PixelStore(_CachedStore):
    """ViLT input: pictures under a folder tree, found by file stem, resized and normalised like
    ViltProcessor.

    `<root>/<key>.png|.jpg` is tried first; otherwise the tree is indexed once (stem -> path), so
    the datasets' own trees work as unpacked (COCO `train2014/`, NLVR2 `train/<dir>/`, VCR
    `vcr1images/<movie>/`). The shorter side becomes `shorter` (ViLT: 384) and the longer at most
    1333/800 of it, both rounded down to multiples of 32 (ViLT's patch size); mean = std = 0.5.
    A single image has an all-ones pixel mask; batching pads and masks (the backbone's collate).
    """

    kind = "pixels"
    what = "image file"
    feat_dim = 3

    def __init__(self, path: Path, shorter: int = 384, cache_mb: float = DEFAULT_CACHE_MB):
        super().__init__(path, cache_mb)
        if not path.is_dir():
            raise DataError(f"{path}: image directory not found (expected <image_id>.png/.jpg files)")
        self.shorter = int(shorter)
        self._processor = _vilt_processor(self.shorter)
        self._tree: dict[str, Path] | None = None

    def _index(self) -> dict[str, Path]:
        if self._tree is None:
            tree: dict[str, Path] = {}
            for dirpath, _, names in os.walk(self.path):
                for name in names:
                    stem, ext = os.path.splitext(name)
                    if ext.lower() in PIXEL_EXTS:
                        tree.setdefault(stem, Path(dirpath) / name)
            self._tree = tree
        return self._tree

    def _file(self, key: str) -> Path | None:
        for ext in PIXEL_EXTS:
            p = self.path / f"{key}{ext}"
            if p.is_file():
                return p
        return self._index().get(key)

    def __contains__(self, key: object) -> bool:
        return key in self.cache or self._file(str(key)) is not None

    def ids(self) -> list[str]:
        return sorted(self._index())

    def _read(self, key: str) -> PixelInput:
        from PIL import Image, UnidentifiedImageError

        path = self._file(key)
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


def is_lmdb(path: Path) -> bool:
    """An LMDB file or folder, or a UNITER img_db folder holding one (feat_th*/feat_numbb*/all)."""
    if (path / "data.mdb").is_file() or path.suffix == ".mdb":
        return True
    return path.is_dir() and any((p / "data.mdb").is_file() for p in path.iterdir() if p.is_dir())


def is_tsv(path: Path) -> bool:
    """An LXMERT TSV file or a folder of them."""
    return path.suffix == ".tsv" or (path.is_dir() and next(path.glob("*.tsv"), None) is not None)


def _uniter(path: Path, cache_mb: float = DEFAULT_CACHE_MB, policy: BoxPolicy | None = None, **_: Any):
    if is_lmdb(path):
        return UniterLmdbStore(path, cache_mb, policy or BoxPolicy())
    return UniterNpzStore(path, cache_mb, policy)


STORES: dict[str, Callable[..., Any]] = {
    "uniter": _uniter,
    "lxmert": lambda path, cache_mb=DEFAULT_CACHE_MB, **kw: LxmertTsvStore(path, cache_mb),
    "pixels": lambda path, shorter=384, cache_mb=DEFAULT_CACHE_MB, **kw: PixelStore(path, shorter, cache_mb),
}


def open_image_store(kind: str, path: str | Path, **options: Any):
    """Open an image store: kind 'uniter' (npz folder or img_db LMDB), 'lxmert' (TSV file or folder)
    or 'pixels' (picture tree).

    options: `cache_mb` (bound of the decoded-item cache), `shorter` (pixels: shorter side after
    resizing, default 384), `policy` (uniter: a BoxPolicy; img_db LMDBs default to UNITER's
    conf_th 0.2 / 10..100 boxes, npz folders keep every box unless given one).
    """
    if kind not in STORES:
        raise DataError(f"unknown image store kind '{kind}'{suggest(kind, list(STORES))}; known: {', '.join(STORES)}")
    return STORES[kind](Path(path), **options)
