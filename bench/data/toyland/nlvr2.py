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
        return f"the {SIDES[side]} image contains {a(d)}.", lambda left, right: _has((left, right)[side], d)
    if kind == 1:
        return f"both images contain {a(d)}.", lambda left, right: _has(left, d) and _has(right, d)
    if kind == 2:
        d = random_description(rng, (("shape",), ("colour",)))
        n = int(rng.integers(1, 4))
        return (f"there are exactly {NUMBER_WORDS[n]} {noun(d, plural=n != 1)} in total.",
                lambda left, right: _count(left, d) + _count(right, d) == n)
    if kind == 3:
        return ("the left image contains more objects than the right image.",
                lambda left, right: len(left.objects) > len(right.objects))
    d1, d2 = random_description(rng, EASY[:2]), random_description(rng, EASY[:2])
    rel = list(RELATIONS)[int(rng.integers(4))]
    side = int(rng.integers(2))
    return (f"in the {SIDES[side]} image, {a(d1)} is {rel} {a(d2)}.",
            lambda left, right: _pair_in((left, right)[side], d1, rel, d2))


def make_set(rng: np.random.Generator, bank: list[Scene]) -> tuple[list[str], list[tuple[Scene, Scene]], list[list[bool]]]:
    """Two sentences and four image pairs covering each (truth of s0, truth of s1) combination once.

    Pairs are drawn from `bank` (a pool of unused scenes); the scenes used are replaced by new ones."""
    combos = [(False, False), (False, True), (True, False), (True, True)]
    while True:
        stmts = [random_statement(rng), random_statement(rng)]
        if stmts[0][0] == stmts[1][0]:
            continue
        found: dict[tuple[bool, bool], tuple[int, int]] = {}
        used: set[int] = set()
        for _ in range(400):
            i, j = (int(v) for v in rng.choice(len(bank), size=2, replace=False))
            if i in used or j in used:
                continue
            truth = (stmts[0][1](bank[i], bank[j]), stmts[1][1](bank[i], bank[j]))
            if truth not in found:
                found[truth] = (i, j)
                used.update((i, j))
            if len(found) == PAIRS_PER_SET:
                order = rng.permutation(PAIRS_PER_SET)
                pairs = [(bank[found[combos[k]][0]], bank[found[combos[k]][1]]) for k in order]
                labels = [[combos[k][0], combos[k][1]] for k in order]
                for k in sorted(used):
                    bank[k] = sample_scene(rng, "")
                return [sentence(s) for s, _ in stmts], pairs, labels


def write(w: WorldWriter, sets: dict[str, int]) -> tuple[dict[str, int], list[str]]:
    counts, ids = {}, []
    for split in SPLITS:
        rng = w.rng("nlvr2", split)
        rows = []
        bank = [sample_scene(rng, "") for _ in range(48)]
        for n in range(sets[split]):
            sents, pairs, labels = make_set(rng, bank)
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
