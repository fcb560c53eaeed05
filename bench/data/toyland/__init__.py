"""Toyland: a deterministic miniature ShapeWorld/CLEVR-like world written in the real datasets' formats.

`generate_world(out_dir, seed, scale)` writes images, region features (UNITER npz + LXMERT TSV),
all seven tasks, a caption corpus, vocab.txt and MANIFEST.json (layout: docs/ARCHITECTURE.md);
`show_world(world_dir, png_path)` summarises a world as text and draws a contact sheet.
"""

from bench.data.toyland.features import FEAT_DIM, FEATURE_NAMES
from bench.data.toyland.show import show_world
from bench.data.toyland.world import SCALES, generate_world

__all__ = ["generate_world", "show_world", "SCALES", "FEAT_DIM", "FEATURE_NAMES"]
