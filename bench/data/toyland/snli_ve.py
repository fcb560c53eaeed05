"""SNLI-VE (snli_ve_<split>.jsonl): a hypothesis about an image, entailment / neutral / contradiction.

Neutral comes from the image, not from the wording: some objects are hidden under a grey cover,
whose position is visible but whose shape, colour and size are not. A hypothesis is entailed if it
holds for every way of filling the covers, contradicted if for none, neutral otherwise. The same
templates therefore carry all three labels, and labels are balanced within each template, so a
text-only model stays at chance. (Hypotheses about undepictable things, such as the time of day,
would be neutral by their wording alone, which is exactly the leak this design avoids.)
"""

from __future__ import annotations

import itertools
from typing import Callable

import numpy as np

from bench.data.toyland.balance import Cand, LabelBalancer
from bench.data.toyland.language import a, noun, sentence
from bench.data.toyland.scene import (
    COLOUR_NAMES,
    RELATIONS,
    SHAPES,
    SIZE_NAMES,
    Obj,
    Scene,
    matches,
    random_description,
    sample_scene,
)
from bench.data.toyland.writer import WorldWriter

SPLITS = ("train", "dev", "test")
LABELS = ("entailment", "neutral", "contradiction")
PREMISE = "Some shapes on a grey background."  # SNLI-VE keeps the Flickr caption; it must not leak
Pred = Callable[[tuple[Obj, ...]], bool]


def completions(scene: Scene) -> list[tuple[Obj, ...]]:
    """Every way of filling the covers with a concrete object."""
    hidden = [i for i, o in enumerate(scene.objects) if o.covered]
    choices = list(itertools.product(SHAPES, COLOUR_NAMES, SIZE_NAMES))
    out = []
    for fill in itertools.product(choices, repeat=len(hidden)):
        objs = list(scene.objects)
        for i, (s, c, z) in zip(hidden, fill):
            objs[i] = Obj(s, c, z, objs[i].cx, objs[i].cy)
        out.append(tuple(objs))
    return out


def _label(pred: Pred, worlds: list[tuple[Obj, ...]]) -> str:
    truth = {pred(objs) for objs in worlds}
    return "entailment" if truth == {True} else "contradiction" if truth == {False} else "neutral"


def hypotheses(scene: Scene, rng: np.random.Generator) -> list[tuple[tuple, str, Pred]]:
    """A handful of hypotheses (template key, text, predicate over objects); half of the descriptions
    are of objects in the scene (covered ones included), so every label is often available."""
    out = []
    patterns = (("shape",), ("colour",), ("colour", "shape"), ("size", "shape"))
    for _ in range(8):
        d = random_description(rng, patterns)
        if rng.random() < 0.5:
            d = {k: scene.objects[int(rng.integers(len(scene.objects)))].get(k) for k in d}
        out.append((("exist", tuple(d)), f"there is {a(d)}.", lambda objs, d=d: any(matches(o, d) for o in objs)))
    for attr, values in (("shape", SHAPES), ("colour", COLOUR_NAMES)) * 2:
        d = {attr: values[int(rng.integers(len(values)))]}
        if rng.random() < 0.5:
            d = {attr: scene.objects[int(rng.integers(len(scene.objects)))].get(attr)}
        out.append((("two", attr), f"there are at least two {noun(d, plural=True)}.",
                    lambda objs, d=d: sum(matches(o, d) for o in objs) >= 2))
        out.append((("none", attr), f"there are no {noun(d, plural=True)}.",
                    lambda objs, d=d: not any(matches(o, d) for o in objs)))
    for _ in range(3):
        x, y = (scene.objects[int(i)] for i in rng.choice(len(scene.objects), size=2, replace=False))
        d1, d2 = ({k: o.get(k)} for o, k in ((x, ("shape", "colour")[int(rng.integers(2))]),
                                              (y, ("shape", "colour")[int(rng.integers(2))])))
        if rng.random() < 0.5:
            d1, d2 = random_description(rng, (("shape",), ("colour",))), random_description(rng, (("shape",), ("colour",)))
        rel = list(RELATIONS)[int(rng.integers(4))]
        out.append((("rel", rel), f"{a(d1)} is {rel} {a(d2)}.",
                    lambda objs, d1=d1, d2=d2, fn=RELATIONS[rel]: any(
                        matches(x, d1) and matches(y, d2) and fn(x, y) for x in objs for y in objs if x is not y)))
    return out


def write(w: WorldWriter, images: dict[str, int], per_image: int) -> tuple[dict[str, int], list[str]]:
    counts, ids = {}, []
    for split in SPLITS:
        rng = w.rng("snli_ve", split)
        bal = LabelBalancer(rng)
        rows = []
        for _ in range(images[split]):
            scene = sample_scene(rng, w.new_id(), (2, 5), n_covered=int(rng.random() < 0.6))
            worlds = completions(scene)
            cands = [Cand(key, _label(pred, worlds), text) for key, text, pred in hypotheses(scene, rng)]
            picks = bal.pick_many(cands, per_image)
            if not picks:
                continue
            w.add(scene)
            ids.append(scene.image_id)
            for k, c in enumerate(picks):
                text = sentence(c.item)
                w.text(text, PREMISE)
                rows.append({"Flikr30kID": f"{scene.image_id}.jpg", "pairID": f"{scene.image_id}.jpg#0r{k}",
                             "captionID": f"{scene.image_id}.jpg#0", "sentence1": PREMISE, "sentence2": text,
                             "gold_label": c.label})
        w.write_jsonl(f"snli_ve/snli_ve_{split}.jsonl", rows)
        counts[split] = len(rows)
    return counts, ids
