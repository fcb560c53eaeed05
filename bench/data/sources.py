"""Image sources: which feature or picture files serve which task, each with its own id namespace.

A task's examples name images by the ids of its own dataset (VQA and RefCOCO+: COCO integers;
GQA: Visual Genome ids; NLVR2: `<identifier minus -k>-img0`; SNLI-VE and retrieval: Flickr30k
ids; VCR: the picture's file stem). COCO and Visual Genome ids are both bare integers and
overlap, so every task reads through an *image source* (coco, vg, nlvr2, flickr30k, vcr,
refcoco) whose parts are stores with a key template turning the dataset id into the release's
key — `coco_train2014_{id:012d}` in UNITER's img_db, `COCO_val2014_{id:012d}` in LXMERT's TSVs,
the file stem for pictures. Two sources never share a store, so ids cannot collide.

Config (`world:`): `images` entries `SOURCE=PATH[|TEMPLATE]` (a source may have several parts);
`task_images` entries `TASK=SOURCE`; sources not given follow the authors' release layouts under
`world.features` (UNITER's `img_db/`, LXMERT's `data/`, the pictures' root; see `LAYOUTS`).
toyland has one flat store with unique ids: every task reads it directly.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.core.errors import ConfigError, DataError
from bench.data.images import DEFAULT_CACHE_MB, BoxPolicy, is_lmdb, is_tsv, open_image_store

# task -> image source (the dataset whose pictures the task's ids name)
TASK_SOURCES = {
    "vqa": "coco", "pretrain": "coco", "mlm": "coco", "itm": "coco", "mrm": "coco", "mrc": "coco", "tag": "coco",
    "refcoco_plus": "refcoco", "gqa": "vg", "nlvr2": "nlvr2", "snli_ve": "flickr30k",
    "retrieval": "flickr30k", "vcr": "vcr",
}
SOURCES = ("coco", "vg", "nlvr2", "flickr30k", "vcr", "refcoco")

_COCO12 = "{id:012d}"
# The authors' release layouts: store kind -> source -> [(path under the root, key template)].
# UNITER: img_db folders (download_*.sh; keys as prepro.py / the data readers name them).
# LXMERT: data/<x>_imgfeat/*_obj36.tsv. Pixels: each dataset's archive unpacked under one root.
LAYOUTS: dict[str, dict[str, list[tuple[str, str]]]] = {
    "uniter": {
        "coco": [("coco_train2014", "coco_train2014_" + _COCO12 + ".npz"), ("coco_val2014", "coco_val2014_" + _COCO12 + ".npz")],
        "refcoco": [("re_coco_gt", "visual_grounding_coco_gt_" + _COCO12 + ".npz")],
        "vg": [("vg", "vg_" + _COCO12 + ".npz")],
        "nlvr2": [(f"nlvr2_{s}", "nlvr2_{id}.npz") for s in ("train", "dev", "test")],
        "flickr30k": [("flickr30k", "flickr30k_" + _COCO12 + ".npz")],
        "vcr": [(f"vcr_gt_{s}", f"vcr_gt_{s}_{{id}}.npz") for s in ("train", "val", "test")],
    },
    "lxmert": {
        "coco": [("mscoco_imgfeat/train2014_obj36.tsv", "COCO_train2014_" + _COCO12),
                 ("mscoco_imgfeat/val2014_obj36.tsv", "COCO_val2014_" + _COCO12)],
        "vg": [("vg_gqa_imgfeat/vg_gqa_obj36.tsv", "{id}"), ("vg_gqa_imgfeat/gqa_testdev_obj36.tsv", "{id}")],
        "nlvr2": [(f"nlvr2_imgfeat/{s}_obj36.tsv", "{id}") for s in ("train", "valid", "test")],
    },
    "pixels": {
        "coco": [("train2014", "COCO_train2014_" + _COCO12), ("val2014", "COCO_val2014_" + _COCO12)],
        "vg": [("images", "{id}")],
        # NLVR2's train.zip unpacks to images/train/<n>/ (as ViLT's write_nlvr2.py reads it); dev/, test1/ flat.
        "nlvr2": [("images/train", "{id}"), ("train", "{id}"), ("dev", "{id}"), ("test1", "{id}")],
        "flickr30k": [("flickr30k-images", "{id}")],
        "vcr": [("vcr1images", "{id}")],
    },
}
# RefCOCO+ pictures are COCO train2014's; only UNITER released separate (gt-box) features.
for _kind in ("lxmert", "pixels"):
    LAYOUTS[_kind]["refcoco"] = LAYOUTS[_kind]["coco"]


def render_key(template: str, image_id: str) -> str | None:
    """The release key of `image_id` under `template`; None when the id cannot have one (a
    zero-padded integer template and a non-integer id)."""
    try:
        return template.format(id=int(image_id) if _numeric(template) else image_id)
    except ValueError:
        return None


def _numeric(template: str) -> bool:
    return any(spec and spec[-1] == "d" for _, name, spec, _ in string.Formatter().parse(template) if name == "id")


def _template_regex(template: str) -> re.Pattern:
    """Inverse of render_key: a regex capturing the id from a key."""
    out = ""
    for literal, name, spec, _ in string.Formatter().parse(template):
        out += re.escape(literal)
        if name == "id":
            out += r"0*(\d+)" if spec and spec[-1] == "d" else r"(.+)"
    return re.compile(f"^{out}(?:\\.npz)?$")


def infer_template(path: Path, kind: str) -> str:
    """The key template of a part given without one: the release's, recognised by its file or
    folder name (e.g. `coco_val2014` -> `coco_val2014_{id:012d}`); else the id itself."""
    for parts in LAYOUTS.get(kind, {}).values():
        for rel, template in parts:
            if Path(rel).name == path.name:
                return template
    m = re.match(r"^(train|val|test)(20\d\d)", path.name)  # LXMERT / COCO names of other splits
    if m and kind in ("lxmert", "pixels"):
        return f"COCO_{m.group(1)}{m.group(2)}_" + _COCO12
    return "{id}"


@dataclass
class Part:
    store: Any
    template: str

    def key(self, image_id: str) -> str | None:
        return render_key(self.template, image_id)


class SourceStore:
    """The stores of one image source, read by dataset id: the first part holding the id's key wins."""

    def __init__(self, name: str, parts: list[Part]):
        self.name, self.parts = name, parts
        self.kind = parts[0].store.kind
        self.path = ", ".join(str(p.store.path) for p in parts)
        dims = {p.store.feat_dim for p in parts}
        if len(dims) > 1:
            raise DataError(f"image source '{name}': parts have different feature dimensions "
                            f"({', '.join(f'{p.store.path}: {p.store.feat_dim}' for p in parts)})")
        self.feat_dim = dims.pop()

    def locate(self, image_id: str) -> tuple[Part, str] | None:
        for part in self.parts:
            key = part.key(image_id)
            if key is not None and key in part.store:
                return part, key
        return None

    def keys_for(self, image_id: str) -> list[str]:
        return [k for k in (p.key(image_id) for p in self.parts) if k is not None]

    def __contains__(self, image_id: object) -> bool:
        return self.locate(str(image_id)) is not None

    def size(self, image_id: str) -> Any:
        """The image's size in a sequence without decoding it (the part store's `size`)."""
        found = self.locate(image_id)
        if found is None:
            return self.get(image_id)  # raises the one-line "not found"
        part, key = found
        return part.store.size(key)

    def get(self, image_id: str) -> Any:
        found = self.locate(image_id)
        if found is None:
            looked = "; ".join(f"{p.key(image_id)} in {p.store.path}" if p.key(image_id) is not None
                               else f"nothing in {p.store.path} (key {p.template} needs an integer id)" for p in self.parts)
            raise DataError(f"image {image_id} (source '{self.name}') not found: looked for {looked}")
        part, key = found
        return part.store.get(key)

    def ids(self) -> list[str]:
        out = []
        for p in self.parts:
            rx = _template_regex(p.template)
            out += [m.group(1) for m in map(rx.match, p.store.ids()) if m]
        return sorted(set(out))

    def __len__(self) -> int:
        return len(self.ids())

    def __repr__(self) -> str:
        return f"SourceStore({self.name!r}, {self.path!r})"


def parse_pairs(entries: tuple, what: str, key: str) -> list[tuple[str, str]]:
    """`("a=b", ...)` -> [(a, b)]; a malformed entry is a one-line ConfigError."""
    out = []
    for e in entries:
        if not isinstance(e, str) or "=" not in e:
            raise ConfigError(f"world.{key}: expected {what}, found {e!r}")
        name, value = e.split("=", 1)
        out.append((name.strip(), value.strip()))
    return out


class ImageSources:
    """Image stores of one config, opened lazily and shared by the tasks of one source.

    world       the WorldConfig (source, features, images, task_images, cache_mb, conf_th, ...)
    data_root   the data root (toyland's world/ or world.data_root)
    image_input 'regions' or 'pixels' (the backbone's); family 'uniter' / 'lxmert' / 'toy' / ...
    shorter     pixel stores: shorter side after resizing
    """

    def __init__(self, world: Any, data_root: Path, image_input: str, family: str, shorter: int = 384):
        self.world, self.data_root = world, Path(data_root)
        self.image_input, self.family, self.shorter = image_input, family, shorter
        self.cache_mb = float(getattr(world, "cache_mb", DEFAULT_CACHE_MB))
        self.policy = BoxPolicy(getattr(world, "conf_th", 0.2), getattr(world, "min_bb", 10),
                                getattr(world, "max_bb", 100))
        self.task_sources = dict(TASK_SOURCES)
        self.task_sources.update(parse_pairs(getattr(world, "task_images", ()), "TASK=SOURCE", "task_images"))
        self.configured: dict[str, list[tuple[Path, str | None]]] = {}
        for name, value in parse_pairs(getattr(world, "images", ()), "SOURCE=PATH[|TEMPLATE]", "images"):
            path, _, template = value.partition("|")
            self.configured.setdefault(name, []).append((Path(path), template or None))
        self._stores: dict[str, Any] = {}

    # ---- which store ----------------------------------------------------------------------
    @property
    def default_kind(self) -> str:
        if self.image_input == "pixels":
            return "pixels"
        if self.family in ("lxmert", "uniter"):
            return self.family
        features = Path(getattr(self.world, "features", "") or "")
        if self.real and str(features) not in ("", "."):
            # other presets (toy, minilm) on real data: the layout found under world.features
            lxmert = is_tsv(features) or any((features / rel).exists() for parts in LAYOUTS["lxmert"].values()
                                             for rel, _ in parts)
            return "lxmert" if lxmert else "uniter"
        return "uniter"  # as before for toyland: the toy presets read the npz features

    @property
    def root(self) -> Path:
        """Where the release layouts are looked for (world.features, else under the data root)."""
        if getattr(self.world, "features", ""):
            return Path(self.world.features)
        if self.image_input == "pixels":
            return self.data_root / "images"
        kind = self.default_kind
        flat = self.data_root / "features" / kind
        # toyland and the old single-file layout: features/lxmert/features.tsv
        return flat / "features.tsv" if kind == "lxmert" and (flat / "features.tsv").is_file() else flat

    def source_of(self, task: str) -> str:
        if task not in self.task_sources:
            raise ConfigError(f"task '{task}' has no image source: set world.task_images: {task}=SOURCE "
                              f"(sources: {', '.join(SOURCES)})")
        return self.task_sources[task]

    def kind_of(self, path: Path) -> str:
        if self.image_input == "pixels":
            return "pixels"
        if is_tsv(path):
            return "lxmert"
        return "uniter"

    def _open(self, kind: str, path: Path) -> Any:
        if not path.exists():
            raise DataError(f"{path}: image store not found ({kind})")
        if kind == "pixels":
            return open_image_store(kind, path, shorter=self.shorter, cache_mb=self.cache_mb)
        if kind == "uniter":
            return open_image_store(kind, path, cache_mb=self.cache_mb,
                                    policy=self.policy if (self.real and is_lmdb(path)) else None)
        return open_image_store(kind, path, cache_mb=self.cache_mb)

    @property
    def real(self) -> bool:
        return getattr(self.world, "source", "toyland") != "toyland"

    def flat_store(self) -> Any:
        """The one store of toyland (and of a `features` path that is a single store)."""
        if "__flat__" not in self._stores:
            path = self.root
            self._stores["__flat__"] = self._open(self.kind_of(path), path)
        return self._stores["__flat__"]

    def _parts(self, source: str) -> list[tuple[str, Path, str]]:
        if source in self.configured:
            return [(self.kind_of(p), p, t or infer_template(p, self.kind_of(p))) for p, t in self.configured[source]]
        kind, root = self.default_kind, self.root
        return [(kind, root / rel, t) for rel, t in LAYOUTS[kind].get(source, []) if (root / rel).exists()]

    def is_layout_root(self) -> bool:
        """Whether `root` holds any part of the release layouts (else it is one flat store)."""
        kind, root = self.default_kind, self.root
        return any((root / rel).exists() for parts in LAYOUTS[kind].values() for rel, _ in parts)

    def for_task(self, task: str) -> Any:
        """The store serving `task`'s image ids."""
        if not self.real:
            return self.flat_store()
        source = self.source_of(task)
        if source not in self._stores:
            parts = self._parts(source)
            if not parts:
                if source not in self.configured and not self.is_layout_root() and self.root.exists():
                    # A single store given as world.features (one namespace; the user's choice).
                    return self.flat_store()
                expected = [str(self.root / rel) for rel, _ in LAYOUTS[self.default_kind].get(source, [])]
                raise DataError(f"task {task}: image source '{source}' not found "
                                f"({'expected ' + ' or '.join(expected) if expected else 'no release layout for ' + self.default_kind}); "
                                f"set world.features to the release's root or world.images: {source}=PATH")
            self._stores[source] = SourceStore(source, [Part(self._open(k, p), t) for k, p, t in parts])
        return self._stores[source]
