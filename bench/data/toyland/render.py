"""Render a scene to RGB pixels with PIL; PNG bytes carry no metadata, so they are reproducible."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageDraw

from bench.data.toyland.scene import COLOURS, IMAGE_SIZE, Obj, Scene

COVER_FILL = (118, 118, 118)
COVER_EDGE = (70, 70, 70)


def _draw(draw: ImageDraw.ImageDraw, o: Obj) -> None:
    x1, y1, x2, y2 = o.box
    x2, y2 = x2 - 1, y2 - 1
    if o.covered:
        draw.rectangle((x1, y1, x2, y2), fill=COVER_FILL, outline=COVER_EDGE, width=2)
        return
    fill = COLOURS[o.colour]
    if o.shape == "circle":
        draw.ellipse((x1, y1, x2, y2), fill=fill)
    elif o.shape == "square":
        draw.rectangle((x1 + 1, y1 + 1, x2 - 1, y2 - 1), fill=fill)
    elif o.shape == "triangle":
        draw.polygon([(o.cx, y1), (x2, y2), (x1, y2)], fill=fill)
    elif o.shape == "diamond":
        draw.polygon([(o.cx, y1), (x2, o.cy), (o.cx, y2), (x1, o.cy)], fill=fill)
    else:  # pragma: no cover - shapes come from scene.SHAPES
        raise ValueError(o.shape)


def render(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """uint8 [H, W, 3] pixels: background, objects (covers drawn over hidden ones), mild sensor noise."""
    img = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), scene.background)
    draw = ImageDraw.Draw(img)
    for o in scene.objects:
        _draw(draw, o)
    arr = np.asarray(img, dtype=np.int16)
    noise = rng.integers(-5, 6, size=arr.shape, dtype=np.int16)
    return np.clip(arr + noise, 0, 255).astype(np.uint8)


def png_bytes(pixels: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()
