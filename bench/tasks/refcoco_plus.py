"""RefCOCO+: pick the region an expression refers to; accuracy = predicted box IoU > 0.5.

Design of the region target: the ground truth is a *box* (meta['gt_box'], normalised x1y1x2y2);
the training target is the index of the image-store region whose box overlaps it most, which
depends on the store (UNITER and LXMERT features have different boxes). So the loader leaves
`target` None unless given `regions` (an image store), and `resolve_region_targets(examples,
store)` fills it in place later (the fine-tuning code calls it once it has opened the store).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np

from bench.core.errors import DataError
from bench.core.io import read_json
from bench.core.safe_pickle import safe_load
from bench.tasks.base import Example, TaskSpec, declare
from bench.tasks.files import field, nonempty, split_paths
from bench.tasks.metrics import METRICS

NUMBER = (int, float)


def normalise_xywh(bbox: list, width: float, height: float, where: str) -> list[float]:
    """COCO pixel [x, y, w, h] -> [x1, y1, x2, y2] in [0, 1] of the image size."""
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, NUMBER) for v in bbox)):
        raise DataError(f"{where}: field 'bbox': expected 4 numbers [x, y, w, h], found {bbox!r:.60}")
    if width <= 0 or height <= 0:
        raise DataError(f"{where}: image size {width}x{height}: expected positive width and height")
    x, y, w, h = (float(v) for v in bbox)
    return [x / width, y / height, (x + w) / width, (y + h) / height]


def from_records(
    records: Iterable[tuple[str, dict]], split: str, source: str, regions: Any = None
) -> list[Example]:
    """One Example per sentence of each ref record {ref_id, ann_id, image_id, split, sentences[{sent}],
    bbox (pixel xywh), width, height} whose split is `split`."""
    examples = []
    for where, ref in records:
        if field(ref, "split", where, str) != split:
            continue
        image_id = str(field(ref, "image_id", where, (int, str)))
        width = field(ref, "width", where, NUMBER)
        height = field(ref, "height", where, NUMBER)
        gt_box = normalise_xywh(field(ref, "bbox", where), width, height, where)
        ref_id = field(ref, "ref_id", where, (int, str))
        for k, sent in enumerate(field(ref, "sentences", where, list)):
            examples.append(
                Example(
                    uid=str(sent["sent_id"]) if isinstance(sent, dict) and "sent_id" in sent else f"{ref_id}_{k}",
                    image_ids=(image_id,),
                    texts=(field(sent, "sent", f"{where} sentences[{k}]", str),),
                    target=None,
                    meta={"gt_box": gt_box, "image_size": (width, height), "ref_id": ref_id, "ann_id": ref["ann_id"]},
                )
            )
    examples = nonempty(examples, source, split)
    if regions is not None:
        resolve_region_targets(examples, regions)
    return examples


def resolve_region_targets(examples: list[Example], store: Any) -> list[Example]:
    """Set each example's target to the index of the store region with max IoU with meta['gt_box'].

    Also records that IoU in meta['target_iou'] (how well the regions cover the ground truth).
    """
    cache: dict[str, np.ndarray] = {}
    for ex in examples:
        image_id = ex.image_ids[0]
        if image_id not in cache:
            cache[image_id] = np.asarray(store.get(image_id).boxes, dtype=np.float64).reshape(-1, 4)
        ious = box_ious(cache[image_id], np.asarray(ex.meta["gt_box"], dtype=np.float64))
        if ious.size == 0:
            raise DataError(f"image {image_id} has no regions to refer to (RefCOCO+ uid {ex.uid})")
        ex.target = int(np.argmax(ious))
        ex.meta["target_iou"] = float(ious[ex.target])
    return examples


def box_ious(boxes: np.ndarray, box: np.ndarray) -> np.ndarray:
    """IoU of each x1y1x2y2 row of `boxes` with `box` (first maximum wins on ties)."""
    iw = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
    ih = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
    inter = iw * ih
    union = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) + (box[2] - box[0]) * (box[3] - box[1]) - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def _ref_records(refs_path: Path, inst_path: Path) -> list[tuple[str, dict]]:
    """Refs joined with their annotation's box and their image's size from instances.json."""
    refs = safe_load(refs_path)
    if not isinstance(refs, list):
        raise DataError(f"{refs_path}: expected a list of refs, found {type(refs).__name__}")
    instances = read_json(inst_path)
    if not isinstance(instances, dict):
        raise DataError(f"{inst_path}: expected a COCO instances object, found {type(instances).__name__}")
    images = {}
    for i, img in enumerate(field(instances, "images", str(inst_path), list)):
        w = f"{inst_path}: images[{i}]"
        images[field(img, "id", w)] = (field(img, "width", w, NUMBER), field(img, "height", w, NUMBER))
    boxes = {}
    for i, ann in enumerate(field(instances, "annotations", str(inst_path), list)):
        w = f"{inst_path}: annotations[{i}]"
        boxes[field(ann, "id", w)] = field(ann, "bbox", w)
    records = []
    for i, ref in enumerate(refs):
        where = f"{refs_path}: ref {i}"
        ann_id, image_id = field(ref, "ann_id", where), field(ref, "image_id", where)
        if ann_id not in boxes:
            raise DataError(f"{where}: ann_id {ann_id} not found in {inst_path.name} annotations")
        if image_id not in images:
            raise DataError(f"{where}: image_id {image_id} not found in {inst_path.name} images")
        width, height = images[image_id]
        records.append((where, {**ref, "bbox": boxes[ann_id], "width": width, "height": height}))
    return records


def load(spec: TaskSpec, data_dir: Path, split: str, regions: Any = None) -> list[Example]:
    """Read `refs(unc).p` (restricted unpickler) and `instances.json`; see the module docstring
    for `regions` and region targets."""
    refs_path, inst_path = split_paths(spec, data_dir, split)
    return from_records(_ref_records(refs_path, inst_path), split, str(refs_path), regions)


SPEC = declare("refcoco_plus", loader=load, evaluator=METRICS.get("refcoco"))
