"""GQA balanced questions (dict question id -> record): relational queries, and/or, comparisons, choices."""

from __future__ import annotations

import numpy as np

from bench.data.toyland.balance import Cand, TemplateBalancer
from bench.data.toyland.language import a, noun, sentence, the
from bench.data.toyland.scene import (
    COLOUR_NAMES,
    RELATIONS,
    Scene,
    matches,
    random_description,
    unique_descriptions,
)
from bench.data.toyland.writer import ImageInfo, WorldWriter

SPLITS = {"train": "train", "val": "testdev"}
GQA_REL = {"left of": "to the left of", "right of": "to the right of", "above": "above", "below": "below"}
PARTIAL = ({}, {"shape": None}, {"colour": None})  # how the queried object itself is named
# Mix of detailed types. Answers are balanced within each type, so its majority baseline is
# 1/(number of answers); open queries (5 colours, 4 shapes) make up about two thirds, as in GQA,
# so the per-type language prior stays near 30%. 'choose' names both candidates: chance 1/2.
SHARES = {"relColor": 0.19, "relShape": 0.17, "queryColor": 0.16, "queryShape": 0.14, "existAnd": 0.07,
          "existOr": 0.07, "sameColor": 0.04, "sameShape": 0.04, "compareSize": 0.05, "chooseColor": 0.07}


def _yn(yes: bool) -> str:
    return "yes" if yes else "no"


def candidates(scene: Scene, rng: np.random.Generator) -> list[Cand]:
    """Candidate (question, answer, fullAnswer, types) about `scene`, keyed by template."""
    out = []
    vis = scene.visible

    def add(key, answer, question, full, structural, semantic, detailed):
        types = {"structural": structural, "semantic": semantic, "detailed": detailed}
        out.append(Cand((detailed, *key), answer, (sentence(question), sentence(full), types)))

    # relational query: "What color is the square to the left of the red circle?"
    for anchor in vis:
        for da in unique_descriptions(scene, anchor)[:1]:
            for rel, fn in RELATIONS.items():
                for t in vis:
                    if t is anchor or not fn(t, anchor):
                        continue
                    for attr, ask in (("colour", "color"), ("shape", "shape")):
                        for p in PARTIAL:
                            if attr in p:
                                continue
                            dt = {k: t.get(k) for k in p}
                            hits = [o for o in vis if o is not anchor and matches(o, dt) and fn(o, anchor)]
                            if len(hits) != 1:
                                continue
                            ans = t.get(attr)
                            add(("relQuery", attr), ans, f"what {ask} is {the(dt)} {GQA_REL[rel]} {the(da)}?",
                                f"the {noun(dt)} is {ans}.", "query", "rel", f"rel{ask.capitalize()}")
    # direct attribute query: "What color is the large circle?" (named without the asked attribute)
    for o in vis:
        for attr, ask in (("colour", "color"), ("shape", "shape")):
            for d in unique_descriptions(scene, o, exclude=(attr,)):
                ans = o.get(attr)
                add((tuple(d),), ans, f"what {ask} is {the(d)}?", f"{the(d)} is {ans}.", "query", "attr",
                    f"query{ask.capitalize()}")
    # logical and / or over two existence claims, named by shape or colour alone (each present about
    # half the time, so both answers stay available for every template)
    descs = [random_description(rng, (("shape",), ("colour",))) for _ in range(4)]
    descs += [{k: o.get(k)} for o in vis for k in ("shape", "colour") if rng.random() < 0.3]
    for i in range(len(descs)):
        for j in range(len(descs)):
            d1, d2 = descs[i], descs[j]
            if i == j or d1 == d2:
                continue
            e1, e2 = any(matches(o, d1) for o in vis), any(matches(o, d2) for o in vis)
            shape = (tuple(d1), tuple(d2))
            add(("and", shape), _yn(e1 and e2), f"is there both {a(d1)} and {a(d2)}?",
                f"{_yn(e1 and e2)}, there {'are' if e1 and e2 else 'are not'} both {a(d1)} and {a(d2)}.",
                "logical", "obj", "existAnd")
            add(("or", shape), _yn(e1 or e2), f"is there {a(d1)} or {a(d2)}?",
                f"{_yn(e1 or e2)}, there {'is' if e1 or e2 else 'is no'} {noun(d1)} or {noun(d2)}.",
                "logical", "obj", "existOr")
    # comparisons and choices between uniquely named objects
    # the compared attribute never appears in the names, or the question would give its answer away
    def name(o, without):
        ds = unique_descriptions(scene, o, exclude=(without,))
        return ds[0] if ds else None

    for x in vis:
        for y in vis:
            if x is y:
                continue
            for attr, ask in (("colour", "color"), ("shape", "shape")):
                dx, dy = name(x, attr), name(y, attr)
                if dx is None or dy is None:
                    continue
                same = x.get(attr) == y.get(attr)
                add(("same", attr), _yn(same), f"are {the(dx)} and {the(dy)} the same {ask}?",
                    f"{_yn(same)}, they are {'' if same else 'not '}the same {ask}.", "compare", "attr",
                    f"same{ask.capitalize()}")
            dx, dy = name(x, "size"), name(y, "size")
            if dx is None or dy is None:
                continue
            bigger = x.size == "large" and y.size == "small"
            add(("bigger",), _yn(bigger), f"is {the(dx)} bigger than {the(dy)}?",
                f"{_yn(bigger)}, {the(dx)} is {'' if bigger else 'not '}bigger than {the(dy)}.", "compare",
                "attr", "compareSize")
        dx = name(x, "colour")
        if dx is not None:
            other = [c for c in COLOUR_NAMES if c != x.colour]
            wrong = other[int(rng.integers(len(other)))]
            pair = (x.colour, wrong) if rng.random() < 0.5 else (wrong, x.colour)
            add(("choose",), x.colour, f"is {the(dx)} {pair[0]} or {pair[1]}?", f"{the(dx)} is {x.colour}.",
                "choose", "attr", "chooseColor")
    return out


def write(w: WorldWriter, pools: dict[str, list[ImageInfo]], per_image: int) -> dict[str, int]:
    counts = {}
    for split, name in SPLITS.items():
        rng = w.rng("gqa", split)
        bal = TemplateBalancer(rng, SHARES)
        records = {}
        for info in pools[split]:
            picks = bal.pick_many(candidates(info.scene, rng), per_image, distinct=lambda c: c.item[0])
            for k, c in enumerate(picks):
                question, full, types = c.item
                qid = f"{info.image_id}{k:02d}"
                w.text(question, full, c.label)
                records[qid] = {"semantic": [], "entailed": [], "equivalent": [qid], "question": question,
                                "imageId": info.image_id, "isBalanced": True,
                                "groups": {"global": None, "local": types["detailed"]}, "answer": c.label,
                                "semanticStr": "", "annotations": {"answer": {}, "question": {}, "fullAnswer": {}},
                                "types": types, "fullAnswer": full}
        w.write_json(f"gqa/{name}_balanced_questions.json", records)
        counts[split] = len(records)
    return counts
