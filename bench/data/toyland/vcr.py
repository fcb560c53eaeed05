"""VCR (`<split>.jsonl` + `metadata/<image_id>.json`): questions whose object references are tags
(integer lists indexing `objects` and the metadata boxes), 4 answer and 4 rationale choices.

Object class names are the shapes, so questions ask what the class does not tell: the colour of a
tagged object, how many others share it, or how many are above it; the tagged object is chosen so that answers are
balanced within each question type. Rationales are position statements relating the tagged object
to another; exactly one of the four is true in the image. Choices are shuffled, so the right index
is uniform and the choice texts alone do not tell which is right.
"""

from __future__ import annotations

import numpy as np

from bench.data.toyland.balance import Cand, TemplateBalancer
from bench.data.toyland.scene import COLOUR_NAMES, RELATIONS, Scene
from bench.data.toyland.writer import ImageInfo, WorldWriter

SPLITS = {"train": "train", "val": "val"}
COUNT_WORDS = ("None", "One", "Two", "Three")
SHARES = {"color": 0.4, "samecolor": 0.3, "above": 0.3}


def _statements(scene: Scene, i: int) -> tuple[list[list], list[list]]:
    """(true, false) position statements between object i and each other object j, in both orders.

    Only the four relations, whose truths are symmetric (for every pair, half of "x is left of /
    right of / above / below y" hold), so a rationale's words say nothing about whether it is
    right. Colour or size statements would leak: "have different colors" is mostly true and
    "the same color" mostly false."""
    true, false = [], []
    x = scene.objects[i]
    for j, y in enumerate(scene.objects):
        if j == i:
            continue
        for rel, fn in RELATIONS.items():
            for (p, q), holds in (((i, j), fn(x, y)), ((j, i), fn(y, x))):
                (true if holds else false).append([[p], "is", *rel.split(), [q], "."])
    return true, false


def _shuffle(rng, right: list, wrong: list) -> tuple[list, int]:
    choices = [right] + wrong
    order = rng.permutation(len(choices))
    return [choices[k] for k in order], int(np.argmax(order == 0))


def questions(scene: Scene) -> list[Cand]:
    """Every question about every object: its colour, how many others share it, how many are above it."""
    out = []
    for i, x in enumerate(scene.objects):
        out.append(Cand(("color",), x.colour, i))
        for kind, n in (("samecolor", sum(o.colour == x.colour for o in scene.objects) - 1),
                        ("above", sum(o.cy < x.cy for o in scene.objects))):
            if n < len(COUNT_WORDS):
                out.append(Cand((kind,), COUNT_WORDS[n], i))
    return out


def example(scene: Scene, q: Cand, rng: np.random.Generator) -> dict:
    """The VCR record for question `q` (picked by the balancer) with 4 answers and 4 rationales."""
    i = q.item
    if q.key == ("color",):
        question = ["What", "color", "is", [i], "?"]
        wrong_colours = [c for c in COLOUR_NAMES if c != q.label]
        right = [[i], "is", q.label, "."]
        wrong = [[[i], "is", wrong_colours[k], "."] for k in rng.permutation(len(wrong_colours))[:3]]
    else:
        question = (["How", "many", "other", "objects", "have", "the", "same", "color", "as", [i], "?"]
                    if q.key == ("samecolor",) else ["How", "many", "objects", "are", "above", [i], "?"])
        right = [q.label, "."]
        wrong = [[c, "."] for c in COUNT_WORDS if c != q.label]
    true, false = _statements(scene, i)
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
        bal = TemplateBalancer(rng, SHARES)
        rows = []
        for info in pools[split]:
            scene, iid = info.scene, info.image_id
            objects = [o.shape for o in scene.objects]
            boxes = [[float(v) for v in o.box] + [1.0] for o in scene.objects]
            w.write_json(f"vcr/metadata/{iid}.json", {"boxes": boxes, "segms": [[] for _ in boxes],
                                                      "width": 64, "height": 64, "names": objects})
            for k, q in enumerate(bal.pick_many(questions(scene), per_image)):
                ex = example(scene, q, rng)
                for toks in [ex["question"], *ex["answer_choices"], *ex["rationale_choices"]]:
                    w.text(*(t for t in toks if isinstance(t, str)))
                rows.append({"movie": "toyland", "objects": objects, "img_fn": f"{iid}.jpg",
                             "metadata_fn": f"metadata/{iid}.json", "img_id": f"{name}-{iid}",
                             "question_number": k, "annot_id": f"{name}-{len(rows)}", **ex})
        w.text(*[o for o in ("circle", "square", "triangle", "diamond")])
        w.write_jsonl(f"vcr/{name}.jsonl", rows)
        counts[split] = len(rows)
    return counts
