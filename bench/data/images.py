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
    """One image: pixel_values [3, H, W] — uint8 as resized (the stores: normalised on the device,
    `normalise_pixels`) or float32 already normalised — and pixel_mask [H, W] (1 = real pixel)."""

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


def image_size(item: Any) -> Any:
    """A decoded image's size in a sequence: regions (RegionFeatures) or (height, width) (PixelInput)."""
    if hasattr(item, "pixel_values"):
        return int(item.pixel_values.shape[-2]), int(item.pixel_values.shape[-1])
    return int(item.features.shape[0])


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
        self._sizes: dict[str, Any] = {}

    def get(self, key: str) -> Any:
        """The decoded input of `key` (from the cache when it is there)."""
        item = self.cache.get(key)
        if item is None:
            if key not in self:
                raise DataError(f"image {key} has no {self.what} in {self.path}")
            item = self._read(key)
            self.cache.put(key, item)
        return item

    def size(self, key: str) -> Any:
        """What `key`'s image adds to a sequence — its region count, or (height, width) of its picture after
        ViLT's resize — read without decoding the image where the store can (the token sampler costs every
        training example before the first step); memoised per store and process."""
        got = self._sizes.get(key)
        if got is None:
            if key not in self:
                raise DataError(f"image {key} has no {self.what} in {self.path}")
            got = self._sizes[key] = self._size(key)
        return got

    def _size(self, key: str) -> Any:
        return image_size(self.get(key))

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

    def _size(self, key: str) -> int:
        path = self._file(key)
        try:
            with np.load(path, allow_pickle=False) as arrays:  # a zip: only the small members are read
                if "norm_bb" not in arrays.files:
                    return super()._size(key)
                n = int(arrays["norm_bb"].shape[0])
                conf = arrays["conf"] if self.policy is not None and "conf" in arrays.files else None
        except Exception as e:  # noqa: BLE001 - a damaged zip raises BadZipFile, EOFError, KeyError, ...
            raise DataError(f"{path}: not a readable npz archive ({e})") from None
        return self.policy.count(conf, n) if self.policy is not None else n

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

    def _nbb(self) -> dict[str, int]:
        """UNITER's per-image box counts, `nbb_th{conf_th}_max{max_bb}_min{min_bb}.json` beside its LMDBs
        (UNITER's `DetectFeatLmdb` reads the same file), for the boxes this store keeps; {} without one."""
        if getattr(self, "_nbb_table", None) is None:
            table: dict[str, int] = {}
            m = _TH.match(self.db.name)
            policy = self.policy or (BoxPolicy(float(m.group(1)), int(m.group(3)), int(m.group(2))) if m else None)
            if policy is not None and policy.conf_th >= 0:
                name = f"nbb_th{policy.conf_th:g}_max{policy.max_bb}_min{policy.min_bb}.json"
                for where in (self.path / name, self.db.parent / name):
                    if where.is_file():
                        try:
                            raw = json.loads(where.read_text())
                            table = {str(k): int(v) for k, v in raw.items()}
                        except (ValueError, TypeError, AttributeError) as e:
                            raise DataError(f"{where}: expected a JSON object of image key -> box count ({e})") from None
                        break
            self._nbb_table = table
        return self._nbb_table

    def _size(self, key: str) -> int:
        table = self._nbb()
        n = table.get(key, table.get(f"{key}.npz"))
        return int(n) if n is not None else super(UniterNpzStore, self)._size(key)

    def _read(self, key: str) -> RegionFeatures:
        where = f"{self.db}[{key}]"
        value = self._value(key)
        if value is None:
            raise DataError(f"image {key} has no {self.what} in {self.db}")
        return region_arrays(decode_img_db_value(value, where), where, self.policy)


def _read_only_tensor(a: np.ndarray) -> torch.Tensor:
    """A tensor over a decoded, read-only buffer without copying it (LXMERT's 36 × 2048 float32 an image: a copy
    here was half of an LXMERT step's host time). Only read: the batch is collated into a tensor of its own."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        return torch.from_numpy(a)


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
        self._boxes: dict[str, bytes] = {}  # img_id -> its num_boxes field, read while indexing (the token costs)
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
                    fields = line.split(b"\t", 8)
                    self._index[fields[0].decode()] = (k, offset, lineno)
                    self._boxes[fields[0].decode()] = fields[7]
                offset += len(line)

    def __contains__(self, key: object) -> bool:
        return key in self._index

    def ids(self) -> list[str]:
        return sorted(self._index)

    def _size(self, key: str) -> int:
        try:
            return int(self._boxes[key])
        except ValueError:
            return super()._size(key)  # decoding names the malformed field

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
        return RegionFeatures(_read_only_tensor(feats), torch.from_numpy(norm), torch.from_numpy(norm.copy()))

    def __del__(self):
        for fh in getattr(self, "_handles", {}).values():
            fh.close()


# ---- ViLT pixels -------------------------------------------------------------------------------


RESIZED_MANIFEST = "RESIZED.json"  # marks a picture tree written by `resize_pictures`
VILT_MAX_RATIO = 1333 / 800  # ViLT's longer side is at most this times the shorter (its processor's 1333 / 800)


def vilt_resized(height: int, width: int, shorter: int, divisor: int = 32) -> tuple[int, int]:
    """(height, width) of a picture after ViLT's resize, as transformers' ViltImageProcessor computes it:
    shorter side to `shorter`, longer at most int(1333 / 800 × shorter), rounded, then down to multiples of 32."""
    longer = int(VILT_MAX_RATIO * shorter)
    scale = shorter / min(height, width)
    h, w = (shorter, scale * width) if height < width else (scale * height, shorter)
    if max(h, w) > longer:
        scale = longer / max(h, w)
        h, w = scale * h, scale * w
    return int(h + 0.5) // divisor * divisor, int(w + 0.5) // divisor * divisor


def resize_picture(path: Path, shorter: int) -> np.ndarray:
    """One picture decoded and resized as ViLT's processor does (PIL, bicubic): uint8 [3, H, W]."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            rgb = img.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise DataError(f"{path}: not a readable image ({e})") from None
    h, w = vilt_resized(rgb.height, rgb.width, shorter)
    return np.ascontiguousarray(np.asarray(rgb.resize((w, h), Image.BICUBIC)).transpose(2, 0, 1))


def pixel_input(chw: np.ndarray) -> PixelInput:
    """uint8 [3, H, W] -> PixelInput: normalising happens on the device (`normalise_pixels`), so the host
    prepares and copies a quarter of float32's bytes. Channels first and contiguous: a batch copies each
    picture in one block (a transposing copy per batch was 14 times slower)."""
    values = torch.from_numpy(np.ascontiguousarray(chw))
    return PixelInput(values, torch.ones(1, 1, dtype=torch.bool).expand(values.shape[1], values.shape[2]))


# ViLT's rescale (× 1/255 in float64, as transformers does) then normalise (mean = std = 0.5) in float32, per
# byte value: indexing this table gives the processor's pixel_values bit for bit, on any device.
_PIXEL_TABLE = ((torch.arange(256, dtype=torch.float64) * (1 / 255)).float() - 0.5) / 0.5


def normalise_pixels(values: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 pixels -> ViLT's float32 input (padding, where `mask` is 0, stays 0 as the processor pads);
    float input is returned as it is."""
    if values.dtype != torch.uint8:
        return values
    out = _PIXEL_TABLE.to(values.device)[values.long()]
    if mask is not None:
        out = out.masked_fill(~mask.bool().unsqueeze(1), 0.0)
    return out


class PixelStore(_CachedStore):
    """ViLT input: pictures under a folder tree, found by file stem, resized like ViltProcessor.

    `<root>/<key>.png|.jpg` is tried first; otherwise the tree is indexed once (stem -> path), so
    the datasets' own trees work as unpacked (COCO `train2014/`, NLVR2 `train/<dir>/`, VCR
    `vcr1images/<movie>/`). The shorter side becomes `shorter` (ViLT: 384) and the longer at most
    1333/800 of it, both rounded down to multiples of 32 (ViLT's patch size); items are uint8 [3, H, W],
    normalised (mean = std = 0.5) on the device. A single image has an all-ones pixel mask; batching pads
    and masks (the backbone's collate).

    A tree written by `resize_pictures` (a `RESIZED.json` at its root) holds every picture already resized,
    as uint8 `<key>.npy` [3, H, W]: a read is a file load, no decoding or resampling (the same numbers).
    """

    kind = "pixels"
    what = "image file"
    feat_dim = 3

    def __init__(self, path: Path, shorter: int = 384, cache_mb: float = DEFAULT_CACHE_MB):
        super().__init__(path, cache_mb)
        if not path.is_dir():
            raise DataError(f"{path}: image directory not found (expected <image_id>.png/.jpg files)")
        self.shorter = int(shorter)
        # a sub-folder of a resized tree is one too (an image source's part: <tree>/train2014)
        manifest = next((d / RESIZED_MANIFEST for d in (path, *path.parents) if (d / RESIZED_MANIFEST).is_file()), None)
        self.resized = manifest is not None
        if manifest is not None:
            try:
                made = json.loads(manifest.read_text())["shorter"]
            except (ValueError, KeyError, TypeError) as e:
                raise DataError(f"{manifest}: expected a JSON object with 'shorter' ({e})") from None
            if made != self.shorter:
                raise DataError(f"{path}: pictures were resized to a shorter side of {made}, this store reads "
                                f"{self.shorter} (resize them again with --shorter {self.shorter})")
        self._tree: dict[str, Path] | None = None

    def _index(self) -> dict[str, Path]:
        if self._tree is None:
            exts = (".npy",) if self.resized else PIXEL_EXTS
            tree: dict[str, Path] = {}
            for dirpath, _, names in os.walk(self.path):
                for name in names:
                    stem, ext = os.path.splitext(name)
                    if ext.lower() in exts:
                        tree.setdefault(stem, Path(dirpath) / name)
            self._tree = tree
        return self._tree

    def _file(self, key: str) -> Path | None:
        for ext in (".npy",) if self.resized else PIXEL_EXTS:
            p = self.path / f"{key}{ext}"
            if p.is_file():
                return p
        return self._index().get(key)

    def __contains__(self, key: object) -> bool:
        return key in self.cache or self._file(str(key)) is not None

    def ids(self) -> list[str]:
        return sorted(self._index())

    def _load(self, path: Path, mmap: bool = False) -> np.ndarray:
        try:
            rgb = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
        except (ValueError, OSError) as e:
            raise DataError(f"{path}: not a readable resized picture ({e})") from None
        if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[0] != 3:
            raise DataError(f"{path}: expected a uint8 picture [3, H, W], found {rgb.dtype} {rgb.shape}")
        return rgb

    def _size(self, key: str) -> tuple[int, int]:
        path = self._file(key)
        if self.resized:
            return tuple(int(x) for x in self._load(path, mmap=True).shape[1:])
        from PIL import Image, UnidentifiedImageError

        try:
            with Image.open(path) as img:  # the header only: nothing is decoded
                width, height = img.size
        except (UnidentifiedImageError, OSError) as e:
            raise DataError(f"{path}: not a readable image ({e})") from None
        return vilt_resized(height, width, self.shorter)

    def _read(self, key: str) -> PixelInput:
        path = self._file(key)
        return pixel_input(self._load(path) if self.resized else resize_picture(path, self.shorter))


def _resize_one(job: tuple[str, str, int]) -> None:
    src, dst, shorter = job
    Path(dst).parent.mkdir(parents=True, exist_ok=True)
    tmp = f"{dst}.{os.getpid()}.tmp.npy"
    np.save(tmp, resize_picture(Path(src), shorter))
    os.replace(tmp, dst)  # a killed resize leaves no half-written picture under its name


def resize_pictures(src: str | Path, dst: str | Path, shorter: int = 384, workers: int = 1) -> int:
    """Write every picture of the tree `src` to `dst` resized as ViLT reads it (uint8 `<stem>.npy` [3, H, W],
    the same sub-folders), and `RESIZED.json`; pictures already there are kept, so a stopped run resumes.
    `PixelStore(dst)` then reads each picture with one file load. Returns the number of pictures written."""
    src, dst = Path(src), Path(dst)
    store = PixelStore(src, shorter, cache_mb=0)
    if store.resized:
        raise DataError(f"{src}: already a resized picture tree ({RESIZED_MANIFEST})")
    jobs = []
    for stem, path in sorted(store._index().items()):
        out = dst / path.relative_to(src).parent / f"{stem}.npy"
        if not out.is_file():
            jobs.append((str(path), str(out), int(shorter)))
    dst.mkdir(parents=True, exist_ok=True)
    if workers > 1 and len(jobs) > 1:
        import multiprocessing

        with multiprocessing.get_context("spawn").Pool(workers) as pool:
            for _ in pool.imap_unordered(_resize_one, jobs, chunksize=16):
                pass
    else:
        for job in jobs:
            _resize_one(job)
    (dst / RESIZED_MANIFEST).write_text(json.dumps({"shorter": int(shorter), "format": "uint8 npy [3, H, W]",
                                                     "source": str(src)}) + "\n")
    return len(jobs)


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
