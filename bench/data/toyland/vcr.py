"""VCR (`<split>.jsonl` + `metadata/<image_id>.json`): questions whose object references are tags
(integer lists indexing `objects` and the metadata boxes), 4 answer and 4 rationale choices.

Object class names are the shapes, so questions ask what the class does not tell: the colour of a
tagged object, or how many others share it. Rationales are statements relating the tagged object
to another (position, colour, size); exactly one of the four is true in the image. Choices are
shuffled, so the right index is uniform and the choice texts alone do not tell which is right.
"""

from __future__ import annotations

import numpy as np

from bench.data.toyland.scene import COLOUR_NAMES, RELATIONS, Scene
from bench.data.toyland.writer import ImageInfo, WorldWriter

SPLITS = {"train": "train", "val": "val"}
COUNT_WORDS = ("None", "One", "Two", "Three")


def _statements(scene: Scene, i: int) -> tuple[list[list], list[list]]:
    """(true, false) statements about object i relative to each other object j."""
    true, false = [], []
    x = scene.objects[i]
    for j, y in enumerate(scene.objects):
        if j == i:
            continue
        for rel, fn in RELATIONS.items():
            (true if fn(x, y) else false).append([[i], "is", *rel.split(), [j], "."])
        same = x.colour == y.colour
        (true if same else false).append([[i], "has", "the", "same", "color", "as", [j], "."])
        (false if same else true).append([[i], "and", [j], "have", "different", "colors", "."])
        bigger = x.size == "large" and y.size == "small"
        (true if bigger else false).append([[i], "is", "bigger", "than", [j], "."])
    return true, false


def _shuffle(rng, right: list, wrong: list) -> tuple[list, int]:
    choices = [right] + wrong
    order = rng.permutation(len(choices))
    return [choices[k] for k in order], int(np.argmax(order == 0))


def example(scene: Scene, rng: np.random.Generator) -> dict | None:
    i = int(rng.integers(len(scene.objects)))
    x = scene.objects[i]
    if rng.random() < 0.5:
        question = ["What", "color", "is", [i], "?"]
        wrong_colours = [c for c in COLOUR_NAMES if c != x.colour]
        picks = rng.permutation(len(wrong_colours))[:3]
        right = [[i], "is", x.colour, "."]
        wrong = [[[i], "is", wrong_colours[k], "."] for k in picks]
    else:
        question = ["How", "many", "other", "objects", "have", "the", "same", "color", "as", [i], "?"]
        n = sum(o.colour == x.colour for o in scene.objects) - 1
        if n >= len(COUNT_WORDS):
            return None
        right = [COUNT_WORDS[n], "."]
        wrong = [[c, "."] for k, c in enumerate(COUNT_WORDS) if k != n]
    true, false = _statements(scene, i)
    if not true or len(false) < 3:
        return None
    r_right = true[int(rng.integers(len(true)))]
    r_wrong = [false[k] for k in rng.permutation(len(false))[:3]]
    answers, a_label = _shuffle(rng, right, wrong)
    rationales, r_label = _shuffle(rng, r_right, r_wrong)
    return {"question": question, "answer_choices": answers, "answer_label": a_label,
            "rationale_choices": rationales, "rationale_label": r_label}


def write(w: WorldWriter, pools: dict[str, list[ImageInfo]], per_image: int) -> dict[str, int]:
    counts = {}
    for split, name in SPLITS.items():
        rng = w.rng("vcr", split)
        rows = []
        for info in pools[split]:
            scene, iid = info.scene, info.image_id
            objects = [o.shape for o in scene.objects]
            boxes = [[float(v) for v in o.box] + [1.0] for o in scene.objects]
            w.write_json(f"vcr/metadata/{iid}.json", {"boxes": boxes, "segms": [[] for _ in boxes],
                                                      "width": 64, "height": 64, "names": objects})
            for k in range(per_image):
                ex = example(scene, rng)
                if ex is None:
                    continue
                for toks in [ex["question"], *ex["answer_choices"], *ex["rationale_choices"]]:
                    w.text(*(t for t in toks if isinstance(t, str)))
                rows.append({"movie": "toyland", "objects": objects, "img_fn": f"{iid}.jpg",
                             "metadata_fn": f"metadata/{iid}.json", "img_id": f"{name}-{iid}",
                             "question_number": k, "annot_id": f"{name}-{len(rows)}", **ex})
        w.text(*[o for o in ("circle", "square", "triangle", "diamond")])
        w.write_jsonl(f"vcr/{name}.jsonl", rows)
        counts[split] = len(rows)
    return counts
