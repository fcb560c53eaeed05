"""RefCOCO+ (`refs(unc).p` pickle of plain dicts + COCO `instances.json`).

Every image holds a target and at least one distractor sharing its colour (testA and half of
train/val) or its shape (testB and the other half), so the expression must combine attributes or
use a relation to another object. Expressions never use absolute location words (no left/right/
top/bottom *of the image*); "left of the blue square" relates two objects.
"""

from __future__ import annotations

import pickle

import numpy as np

from bench.data.toyland.language import noun, the, tokenize
from bench.data.toyland.scene import (
    COLOUR_NAMES,
    RELATIONS,
    SHAPES,
    SIZE_NAMES,
    Scene,
    matches,
    sample_scene,
    unique_descriptions,
)
from bench.data.toyland.writer import ImageInfo, WorldWriter

SPLITS = ("train", "val", "testA", "testB")
ABSOLUTE_WORDS = ("top", "bottom", "leftmost", "rightmost", "corner", "middle", "center", "centre", "image")
REL_TARGET = ({}, {"shape": None}, {"colour": None})


def _scene(rng: np.random.Generator, image_id: str, share: str) -> Scene:
    t = (SHAPES[int(rng.integers(4))], COLOUR_NAMES[int(rng.integers(5))], SIZE_NAMES[int(rng.integers(2))])
    if share == "colour":
        other = [s for s in SHAPES if s != t[0]]
        d = (other[int(rng.integers(3))], t[1], SIZE_NAMES[int(rng.integers(2))])
    else:
        other = [c for c in COLOUR_NAMES if c != t[1]]
        d = (t[0], other[int(rng.integers(4))], SIZE_NAMES[int(rng.integers(2))])
    return sample_scene(rng, image_id, (3, 5), fixed=[t, d])


def expressions(scene: Scene, idx: int, rng: np.random.Generator) -> list[str]:
    """Up to two expressions naming object `idx`: one by attributes, one by a relation."""
    o = scene.objects[idx]
    out = []
    attr = [d for d in unique_descriptions(scene, o) if len(d) >= 2] or unique_descriptions(scene, o)
    if attr:
        out.append(noun(attr[int(rng.integers(len(attr)))]))
    rels = []
    for anchor in scene.objects:
        if anchor is o:
            continue
        for da in unique_descriptions(scene, anchor)[:1]:
            for rel, fn in RELATIONS.items():
                if not fn(o, anchor):
                    continue
                for p in REL_TARGET:
                    dt = {k: o.get(k) for k in p}
                    hits = [x for x in scene.objects if x is not anchor and matches(x, dt) and fn(x, anchor)]
                    if len(hits) == 1:
                        rels.append(f"{noun(dt)} {rel} {the(da)}")
    if rels:
        out.append(rels[int(rng.integers(len(rels)))])
    return out


def write(w: WorldWriter, images: dict[str, int], refs_per_image: int) -> tuple[dict[str, int], list[str]]:
    categories = [{"id": i + 1, "name": s, "supercategory": "shape"} for i, s in enumerate(SHAPES)]
    cat_id = {s: i + 1 for i, s in enumerate(SHAPES)}
    refs, coco_images, annotations, ids, counts = [], [], [], [], {}
    ann_id, ref_id, sent_id = 0, 0, 0
    for split in SPLITS:
        rng = w.rng("refcoco_plus", split)
        counts[split] = 0
        for n in range(images[split]):
            share = {"testA": "colour", "testB": "shape"}.get(split, ("colour", "shape")[n % 2])
            info: ImageInfo = w.add(_scene(rng, w.new_id(), share))
            ids.append(info.image_id)
            iid = int(info.image_id)
            coco_images.append({"id": iid, "width": 64, "height": 64, "file_name": f"{info.image_id}.jpg"})
            first_ann = ann_id + 1
            for o in info.scene.objects:
                ann_id += 1
                x1, y1, x2, y2 = o.box
                annotations.append({"id": ann_id, "image_id": iid, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                    "category_id": cat_id[o.shape], "area": (x2 - x1) * (y2 - y1), "iscrowd": 0,
                                    "segmentation": []})
            for idx in rng.permutation(len(info.scene.objects))[:refs_per_image]:
                sents = expressions(info.scene, int(idx), rng)
                if not sents:
                    continue
                ref_id += 1
                sentences = []
                for s in sents:
                    sent_id += 1
                    w.text(s)
                    sentences.append({"tokens": tokenize(s), "raw": s, "sent_id": sent_id, "sent": s})
                refs.append({"sent_ids": [x["sent_id"] for x in sentences], "file_name":
                             f"{info.image_id}_{first_ann + int(idx)}.jpg", "ann_id": first_ann + int(idx),
                             "ref_id": ref_id, "image_id": iid, "split": split, "sentences": sentences,
                             "category_id": cat_id[info.scene.objects[int(idx)].shape]})
                counts[split] += len(sentences)
    w.write_bytes("refcoco_plus/refs(unc).p", pickle.dumps(refs, protocol=4))
    w.write_json("refcoco_plus/instances.json", {"info": {"description": "toyland RefCOCO+-format instances"},
                                                 "images": coco_images, "annotations": annotations,
                                                 "categories": categories})
    return counts, ids
