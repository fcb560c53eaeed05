"""Image captions: the pre-training corpus (COCO-captions layout) and the Flickr30k retrieval task
(Karpathy `dataset_flickr30k.json`, 5 captions an image; its test split holds mirrored twins of half
its images — the same objects with every left/right relation reversed — as hard negatives)."""

from __future__ import annotations

import numpy as np

from bench.data.toyland.language import NUMBER_WORDS, a, sentence, tokenize
from bench.data.toyland.scene import RELATIONS, Scene, describe, mirrored, sample_scene
from bench.data.toyland.writer import ImageInfo, WorldWriter

PATTERNS = (("shape",), ("colour", "shape"), ("size", "colour", "shape"), ("size", "shape"))


def captions_for(scene: Scene, rng: np.random.Generator, n: int = 5) -> list[str]:
    """n distinct captions; the first two state spatial relations (what tells a mirrored twin apart)."""
    objs = scene.visible

    def d(o):
        return describe(o, PATTERNS[int(rng.integers(len(PATTERNS)))])

    rels, other = [], []
    horiz = ("left of", "right of")
    for _ in range(12):
        i, j = rng.choice(len(objs), size=2, replace=False)
        x, y = objs[int(i)], objs[int(j)]
        rel = horiz[not RELATIONS["left of"](x, y)] if rng.random() < 0.7 else \
            ("above", "below")[not RELATIONS["above"](x, y)]
        rels.append(f"{a(d(x))} is {rel} {a(d(y))}.")
    for _ in range(12):
        kind = int(rng.integers(3))
        if kind == 0:
            other.append(f"{NUMBER_WORDS[len(objs)]} shapes on a grey background.")
        elif kind == 1:
            o = objs[int(rng.integers(len(objs)))]
            other.append(f"a picture with {a(d(o))} and {NUMBER_WORDS[len(objs) - 1]} other "
                         f"{'shape' if len(objs) == 2 else 'shapes'}.")
        else:
            listed = [a(d(objs[int(k)])) for k in rng.permutation(len(objs))[:3]]
            other.append(", ".join(listed[:-1]) + " and " + listed[-1] + ".")
    out: list[str] = []
    for pool, want in ((rels, 2), (other + rels, n)):
        for c in pool:
            if len(out) >= want:
                break
            if sentence(c) not in out:
                out.append(sentence(c))
    while len(out) < n:  # tiny scenes may not offer n distinct sentences
        out.append(out[len(out) % 2])
    return out


def write_retrieval(w: WorldWriter, train: list[ImageInfo], n_eval: int) -> tuple[dict[str, int], list[str]]:
    rng = w.rng("retrieval")
    entries: list[tuple[ImageInfo, str]] = [(i, "train") for i in train]
    ids = []
    for _ in range(n_eval):
        info = w.add(sample_scene(rng, w.new_id(), (2, 4)))
        entries.append((info, "val"))
    for _ in range(n_eval // 2):
        info = w.add(sample_scene(rng, w.new_id(), (2, 4)))
        twin = w.add(mirrored(info.scene, w.new_id()))
        entries += [(info, "test"), (twin, "test")]
    images, counts, sentid = [], {"train": 0, "val": 0, "test": 0}, 0
    for imgid, (info, split) in enumerate(entries):
        if split != "train":
            ids.append(info.image_id)
        sents = []
        for c in captions_for(info.scene, rng):
            w.text(c)
            sents.append({"tokens": tokenize(c), "raw": c, "imgid": imgid, "sentid": sentid})
            sentid += 1
        images.append({"sentids": [s["sentid"] for s in sents], "imgid": imgid, "sentences": sents,
                       "split": split, "filename": f"{info.image_id}.jpg"})
        counts[split] += 1
    w.write_json("flickr30k/dataset_flickr30k.json", {"images": images, "dataset": "flickr30k"})
    return counts, ids


def write_captions(w: WorldWriter, train: list[ImageInfo], n_val: int) -> tuple[dict[str, int], list[str]]:
    """COCO-captions files; val images are fresh, so no caption image is in any downstream eval split."""
    rng = w.rng("captions")
    val = [w.add(sample_scene(rng, w.new_id())) for _ in range(n_val)]
    counts, ann_id = {}, 0
    for split, pool in (("train", train), ("val", val)):
        images, anns = [], []
        for info in pool:
            iid = int(info.image_id)
            images.append({"id": iid, "width": 64, "height": 64, "file_name": f"{info.image_id}.jpg"})
            for c in captions_for(info.scene, rng):
                ann_id += 1
                w.text(c)
                anns.append({"image_id": iid, "id": ann_id, "caption": c})
        w.write_json(f"captions/captions_{split}.json", {"info": {"description": "toyland captions"},
                                                         "licenses": [], "images": images, "annotations": anns})
        counts[split] = len(anns)
    return counts, [i.image_id for i in val]
