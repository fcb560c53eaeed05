"""NLVR2 (jsonl, as distributed): one statement about a *pair* of images, label "True"/"False".

As in the real data, every sentence of a set is paired with several image pairs, half of them
making it true and half false, so the sentence text alone says nothing about the label.
Identifiers are `<split>-<set>-<pair>-<sentence>`; the images are `<split>-<set>-<pair>-img0/1`.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from bench.data.toyland.language import NUMBER_WORDS, a, noun, sentence
from bench.data.toyland.scene import RELATIONS, Scene, matches, random_description, sample_scene
from bench.data.toyland.writer import WorldWriter

SPLITS = ("train", "dev")
PAIRS_PER_SET = 4
SIDES = ("left", "right")
EASY = (("shape",), ("colour",), ("colour", "shape"))

Statement = tuple[str, Callable[[Scene, Scene], bool]]


def _has(s: Scene, d: dict) -> bool:
    return any(matches(o, d) for o in s.objects)


def _count(s: Scene, d: dict) -> int:
    return sum(matches(o, d) for o in s.objects)


def _pair_in(s: Scene, d1: dict, rel: str, d2: dict) -> bool:
    fn = RELATIONS[rel]
    return any(matches(x, d1) and matches(y, d2) and fn(x, y) for x in s.objects for y in s.objects if x is not y)


def random_statement(rng: np.random.Generator) -> Statement:
    kind = int(rng.integers(5))
    d = random_description(rng, EASY)
    if kind == 0:
        side = int(rng.integers(2))
        return f"the {SIDES[side]} image contains {a(d)}.", lambda l, r: _has((l, r)[side], d)
    if kind == 1:
        return f"both images contain {a(d)}.", lambda l, r: _has(l, d) and _has(r, d)
    if kind == 2:
        d = random_description(rng, (("shape",), ("colour",)))
        n = int(rng.integers(1, 4))
        return (f"there are exactly {NUMBER_WORDS[n]} {noun(d, plural=n != 1)} in total.",
                lambda l, r: _count(l, d) + _count(r, d) == n)
    if kind == 3:
        return ("the left image contains more objects than the right image.",
                lambda l, r: len(l.objects) > len(r.objects))
    d1, d2 = random_description(rng, EASY[:2]), random_description(rng, EASY[:2])
    rel = list(RELATIONS)[int(rng.integers(4))]
    side = int(rng.integers(2))
    return (f"in the {SIDES[side]} image, {a(d1)} is {rel} {a(d2)}.",
            lambda l, r: _pair_in((l, r)[side], d1, rel, d2))


def make_set(rng: np.random.Generator) -> tuple[list[str], list[tuple[Scene, Scene]], list[list[bool]]]:
    """Two sentences and four image pairs covering each (truth of s0, truth of s1) combination once."""
    while True:
        stmts = [random_statement(rng), random_statement(rng)]
        if stmts[0][0] == stmts[1][0]:
            continue
        found: dict[tuple[bool, bool], tuple[Scene, Scene]] = {}
        for _ in range(300):
            pair = (sample_scene(rng, ""), sample_scene(rng, ""))
            truth = (stmts[0][1](*pair), stmts[1][1](*pair))
            found.setdefault(truth, pair)
            if len(found) == PAIRS_PER_SET:
                combos = [(False, False), (False, True), (True, False), (True, True)]
                order = rng.permutation(PAIRS_PER_SET)
                pairs = [found[combos[i]] for i in order]
                labels = [[combos[i][0], combos[i][1]] for i in order]
                return [sentence(s) for s, _ in stmts], pairs, labels


def write(w: WorldWriter, sets: dict[str, int]) -> tuple[dict[str, int], list[str]]:
    counts, ids = {}, []
    for split in SPLITS:
        rng = w.rng("nlvr2", split)
        rows = []
        for n in range(sets[split]):
            sents, pairs, labels = make_set(rng)
            w.text(*sents)
            for s, (left, right) in enumerate(pairs):
                stem = f"{split}-{n}-{s}"
                for side, scene in (("img0", left), ("img1", right)):
                    w.add(Scene(f"{stem}-{side}", scene.objects, scene.background))
                    ids.append(f"{stem}-{side}")
                for k, text in enumerate(sents):
                    rows.append({"identifier": f"{stem}-{k}", "sentence": text, "label": str(labels[s][k]),
                                 "writer": "toyland", "synset": "shapes", "query": "shapes", "validation": {},
                                 "extra_validations": {}})
        w.write_jsonl(f"nlvr2/{split}.json", rows)
        counts[split] = len(rows)
    return counts, ids
