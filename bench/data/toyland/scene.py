"""Toyland scenes: a handful of objects (shape, colour, size, position) on a plain background.

A scene is pure data; `render.py` turns it into pixels. Objects never overlap and every pair of
objects is clearly ordered both horizontally and vertically (centres at least `MIN_GAP` pixels
apart on each axis), so "left of / right of / above / below" is always decidable from the pixels.
A *covered* object is hidden under a grey cover: its position is visible, its attributes are not
(SNLI-VE uses this for hypotheses that the image cannot decide).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 64
SHAPES = ("circle", "square", "triangle", "diamond")
COLOURS = {
    "red": (215, 45, 40),
    "green": (40, 160, 60),
    "blue": (40, 80, 215),
    "yellow": (235, 195, 30),
    "purple": (140, 60, 180),
}
COLOUR_NAMES = tuple(COLOURS)
SIZES = {"small": 5, "large": 9}  # half-extent in pixels
SIZE_NAMES = tuple(SIZES)
COVER_HALF = 10  # a cover is bigger than any object, so it hides the size too
MIN_GAP = 3
ATTRS = ("size", "colour", "shape")


@dataclass(frozen=True)
class Obj:
    """One object; `cx, cy` is its centre in pixels."""

    shape: str
    colour: str
    size: str
    cx: int
    cy: int
    covered: bool = False

    @property
    def half(self) -> int:
        return COVER_HALF if self.covered else SIZES[self.size]

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Pixel box x1, y1, x2, y2 (x2/y2 exclusive) of what is drawn (the cover if covered)."""
        h = self.half
        return (self.cx - h, self.cy - h, self.cx + h + 1, self.cy + h + 1)

    def get(self, attr: str) -> str:
        return getattr(self, attr)


@dataclass(frozen=True)
class Scene:
    image_id: str
    objects: tuple[Obj, ...]
    background: tuple[int, int, int]

    @property
    def visible(self) -> tuple[Obj, ...]:
        return tuple(o for o in self.objects if not o.covered)


def left_of(a: Obj, b: Obj) -> bool:
    return a.cx < b.cx


def above(a: Obj, b: Obj) -> bool:
    return a.cy < b.cy


RELATIONS = {
    "left of": left_of,
    "right of": lambda a, b: left_of(b, a),
    "above": above,
    "below": lambda a, b: above(b, a),
}


def matches(obj: Obj, desc: dict) -> bool:
    """Does `obj` fit a (partial) description such as {'colour': 'red', 'shape': 'circle'}?"""
    if obj.covered:
        return False
    for k, v in desc.items():
        if getattr(obj, k) != v:
            return False
    return True


def describe(obj: Obj, attrs: tuple[str, ...]) -> dict:
    return {a: obj.get(a) for a in attrs}


# Descriptions tried when an object must be named uniquely (the shape alone, the colour alone, ...).
DESC_PATTERNS = (("shape",), ("colour",), ("colour", "shape"), ("size", "shape"), ("size", "colour"), ATTRS)


def unique_descriptions(scene: Scene, obj: Obj, patterns=DESC_PATTERNS, exclude: tuple[str, ...] = ()) -> list[dict]:
    """Every description (from `patterns`, without attributes in `exclude`) that fits only `obj`."""
    out = []
    for p in patterns:
        if any(a in exclude for a in p):
            continue
        d = describe(obj, p)
        if sum(matches(o, d) for o in scene.objects) == 1:
            out.append(d)
    return out


def random_description(rng: np.random.Generator, patterns=DESC_PATTERNS) -> dict:
    p = patterns[rng.integers(len(patterns))]
    values = {"size": SIZE_NAMES, "colour": COLOUR_NAMES, "shape": SHAPES}
    return {a: values[a][rng.integers(len(values[a]))] for a in p}


def _random_obj(rng) -> tuple[str, str, str]:
    return (
        SHAPES[rng.integers(len(SHAPES))],
        COLOUR_NAMES[rng.integers(len(COLOUR_NAMES))],
        SIZE_NAMES[rng.integers(len(SIZE_NAMES))],
    )


def place(rng: np.random.Generator, specs: list[tuple[str, str, str, bool]], size: int = IMAGE_SIZE) -> list[Obj] | None:
    """Place objects (shape, colour, size, covered) without overlap; None if they do not fit."""
    placed: list[Obj] = []
    for shape, colour, sz, covered in specs:
        half = COVER_HALF if covered else SIZES[sz]
        for _ in range(60):
            cx = int(rng.integers(half + 1, size - half - 1))
            cy = int(rng.integers(half + 1, size - half - 1))
            ok = True
            for o in placed:
                if abs(cx - o.cx) < MIN_GAP or abs(cy - o.cy) < MIN_GAP:
                    ok = False
                    break
                # boxes separated by at least 2 px on one axis
                if abs(cx - o.cx) < half + o.half + 3 and abs(cy - o.cy) < half + o.half + 3:
                    ok = False
                    break
            if ok:
                placed.append(Obj(shape, colour, sz, cx, cy, covered))
                break
        else:
            return None
    return placed


def sample_scene(
    rng: np.random.Generator,
    image_id: str,
    n_objects: tuple[int, int] = (2, 5),
    fixed: list[tuple[str, str, str]] | None = None,
    n_covered: int = 0,
) -> Scene:
    """A random scene with n_objects (inclusive range) objects; `fixed` objects are included first."""
    while True:
        n = int(rng.integers(n_objects[0], n_objects[1] + 1))
        specs = [(s, c, z, False) for s, c, z in (fixed or [])]
        while len(specs) < n:
            specs.append((*_random_obj(rng), False))
        for i in range(min(n_covered, len(specs))):
            specs[-1 - i] = (*specs[-1 - i][:3], True)
        objs = place(rng, specs)
        if objs is not None:
            order = rng.permutation(len(objs))
            grey = int(rng.integers(200, 236))
            tint = tuple(int(np.clip(grey + d, 0, 255)) for d in rng.integers(-8, 9, size=3))
            return Scene(image_id, tuple(objs[i] for i in order), tint)


def mirrored(scene: Scene, image_id: str) -> Scene:
    """The same objects mirrored left-right: every left/right relation reverses (a hard negative)."""
    objs = tuple(Obj(o.shape, o.colour, o.size, IMAGE_SIZE - 1 - o.cx, o.cy, o.covered) for o in scene.objects)
    return Scene(image_id, objs, scene.background)
