"""Official metrics of the seven tasks, in percent (0-100), registered by name in METRICS.

Each metric is `(examples, predictions) -> {name: value}`; `predictions` maps Example.uid to the
prediction of the task's head (see bench.tasks.base.TaskSpec), except retrieval, which takes a
score matrix. A missing prediction is an error, as in the official scripts.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from bench.core.errors import DataError
from bench.core.io import atomic_write_json
from bench.core.registry import Registry
from bench.tasks.base import Example
from bench.tasks.vqa_normalize import process_digit_article, process_punctuation, strip_whitespace

Metric = Callable[[Sequence[Example], Any], dict[str, float]]
METRICS: Registry[Metric] = Registry("metric")


def _percent(hits: float, total: int) -> float:
    return 100.0 * hits / total if total else 0.0


def _aligned(examples: Sequence[Example], predictions: dict) -> list[tuple[Example, Any]]:
    """(example, prediction) pairs; refuses missing predictions (naming the first missing uid)."""
    if not examples:
        raise DataError("evaluation: no examples to score")
    missing = [ex.uid for ex in examples if ex.uid not in predictions]
    if missing:
        raise DataError(
            f"evaluation: predictions missing for {len(missing)} of {len(examples)} examples (first: uid '{missing[0]}')"
        )
    return [(ex, predictions[ex.uid]) for ex in examples]


# --------------------------------------------------------------------------- VQA
def vqa_score(prediction: str, answers: Sequence[str]) -> float:
    """Official VQA accuracy of one prediction against the human answers, in [0, 1].

    For each human, min(1, #other humans giving the prediction / 3), averaged over the humans
    (leave-one-out over the 10). As in the official script, the answers and the prediction are
    normalised only when the humans disagree; unanimous answers are compared after stripping only.
    """
    gts = [strip_whitespace(a) for a in answers]
    res = strip_whitespace(prediction)
    if len(set(gts)) > 1:
        gts = [process_digit_article(process_punctuation(a)) for a in gts]
        res = process_digit_article(process_punctuation(res))
    matches = sum(g == res for g in gts)
    # The others of human i match `matches - [gts[i] == res]` times.
    return sum(min(1.0, (matches - (g == res)) / 3.0) for g in gts) / len(gts)


@METRICS.register("vqa")
def vqa_accuracy(examples: Sequence[Example], predictions: dict) -> dict[str, float]:
    """VQA soft accuracy over examples whose meta['answers'] holds the 10 raw human answers."""
    pairs = _aligned(examples, predictions)
    total = sum(vqa_score(str(pred), ex.meta["answers"]) for ex, pred in pairs)
    return {"vqa_score": _percent(total, len(pairs))}


def write_vqa_predictions(path, predictions: dict) -> None:
    """Write predictions in the official results format `[{"question_id": int, "answer": str}]`."""
    rows = []
    for uid, answer in predictions.items():
        try:
            qid = int(uid)
        except (TypeError, ValueError):
            raise DataError(f"{path}: VQA question id '{uid}' is not an integer") from None
        rows.append({"question_id": qid, "answer": str(answer)})
    rows.sort(key=lambda r: r["question_id"])
    atomic_write_json(path, rows, indent=None)


# --------------------------------------------------------------------------- single-label tasks
def _gold_label(ex: Example) -> str:
    """The one label of a single-label classify target {label: 1.0}."""
    return max(ex.target, key=ex.target.get)


@METRICS.register("accuracy")
def label_accuracy(examples: Sequence[Example], predictions: dict) -> dict[str, float]:
    """Exact-match accuracy of predicted labels (GQA, SNLI-VE): the official string comparison."""
    pairs = _aligned(examples, predictions)
    return {"accuracy": _percent(sum(str(p) == _gold_label(ex) for ex, p in pairs), len(pairs))}


@METRICS.register("nlvr2")
def nlvr2_metrics(examples: Sequence[Example], predictions: dict) -> dict[str, float]:
    """NLVR2 accuracy and consistency (share of sentences whose image pairs are all right).

    Examples group by meta['consistency_key'] (the identifier with its pair id blanked, as the
    official script does); labels compare case-insensitively like the official script.
    """
    pairs = _aligned(examples, predictions)
    correct = 0
    consistent: dict[str, bool] = {}
    for ex, pred in pairs:
        ok = str(pred).lower() == _gold_label(ex).lower()
        correct += ok
        key = ex.meta.get("consistency_key", ex.uid)
        consistent[key] = consistent.get(key, True) and ok
    return {
        "accuracy": _percent(correct, len(pairs)),
        "consistency": _percent(sum(consistent.values()), len(consistent)),
    }


# --------------------------------------------------------------------------- RefCOCO+
def refer_iou(box_a: Sequence[float], box_b: Sequence[float]) -> float:
    """IoU of two pixel boxes [x, y, w, h] with the refer toolkit's inclusive-pixel convention."""
    ix1, iy1 = max(box_a[0], box_b[0]), max(box_a[1], box_b[1])
    ix2 = min(box_a[0] + box_a[2] - 1, box_b[0] + box_b[2] - 1)
    iy2 = min(box_a[1] + box_a[3] - 1, box_b[1] + box_b[3] - 1)
    inter = (ix2 - ix1 + 1) * (iy2 - iy1 + 1) if ix1 < ix2 and iy1 < iy2 else 0.0
    union = box_a[2] * box_a[3] + box_b[2] * box_b[3] - inter
    return float(inter / union) if union > 0 else 0.0


def box_iou(a: Sequence[float], b: Sequence[float]) -> float:
    """Continuous IoU of two x1y1x2y2 boxes (any common unit)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _to_pixel_xywh(box: Sequence[float], width: float, height: float) -> list[float]:
    x1, y1, x2, y2 = (float(v) for v in box)
    return [x1 * width, y1 * height, (x2 - x1) * width, (y2 - y1) * height]


@METRICS.register("refcoco")
def refcoco_accuracy(examples: Sequence[Example], predictions: dict) -> dict[str, float]:
    """Share of expressions whose predicted box (normalised x1y1x2y2) has IoU > 0.5 with meta['gt_box'].

    With meta['image_size'] = (width, height) the IoU is computed in pixels with the refer
    toolkit's convention; otherwise continuously on the normalised boxes.
    """
    hits = 0
    pairs = _aligned(examples, predictions)
    for ex, pred in pairs:
        gt = ex.meta["gt_box"]
        size = ex.meta.get("image_size")
        if size:
            iou = refer_iou(_to_pixel_xywh(pred, *size), _to_pixel_xywh(gt, *size))
        else:
            iou = box_iou(pred, gt)
        hits += iou > 0.5
    return {"accuracy": _percent(hits, len(pairs))}


# --------------------------------------------------------------------------- retrieval
def _ranks(scores: np.ndarray, gold: np.ndarray) -> np.ndarray:
    """0-based rank of column gold[i] in row i, descending score, ties broken by lower index."""
    rows = np.arange(len(gold))
    gold_scores = scores[rows, gold][:, None]
    cols = np.arange(scores.shape[1])[None, :]
    ahead = (scores > gold_scores) | ((scores == gold_scores) & (cols < gold[:, None]))
    return ahead.sum(axis=1)


@METRICS.register("retrieval")
def retrieval_recall(examples: Sequence[Example], predictions: dict) -> dict[str, float]:
    """Image retrieval (text -> image) and text retrieval (image -> text) R@1/5/10, and r_mean.

    predictions = {'scores': [n_texts, n_images], 'text_uids': [...], 'image_ids': [...]}, rows and
    columns in that order. IR: rank of each text's image among all images. TR: for each image
    that has texts, the best rank among its texts over all texts. Ties rank by index.
    """
    try:
        scores = np.asarray(_as_numpy(predictions["scores"]), dtype=np.float64)
        text_uids = [str(u) for u in predictions["text_uids"]]
        image_ids = [str(i) for i in predictions["image_ids"]]
    except (KeyError, TypeError) as e:
        raise DataError(f"retrieval predictions: expected a dict with 'scores', 'text_uids', 'image_ids' ({e})") from None
    if scores.shape != (len(text_uids), len(image_ids)):
        raise DataError(
            f"retrieval predictions: scores shape {tuple(scores.shape)}, expected ({len(text_uids)}, {len(image_ids)})"
        )
    row_of = {u: r for r, u in enumerate(text_uids)}
    col_of = {i: c for c, i in enumerate(image_ids)}
    _aligned(examples, row_of)
    rows, gold = [], []
    for ex in examples:
        if ex.image_ids[0] not in col_of:
            raise DataError(f"retrieval predictions: image '{ex.image_ids[0]}' of text '{ex.uid}' is not among the scored images")
        rows.append(row_of[ex.uid])
        gold.append(col_of[ex.image_ids[0]])
    rows_a, gold_a = np.asarray(rows), np.asarray(gold)
    sub = scores[rows_a]
    ir_rank = _ranks(sub, gold_a)
    # TR: column-wise ranks of every text, then the best over each image's texts.
    tr_rank_all = _ranks(sub.T[gold_a], np.arange(len(rows_a)))
    best: dict[int, int] = {}
    for g, r in zip(gold_a.tolist(), tr_rank_all.tolist()):
        best[g] = min(r, best.get(g, r))
    tr_rank = np.asarray(list(best.values()))
    out = {}
    for k in (1, 5, 10):
        out[f"ir_r{k}"] = 100.0 * float((ir_rank < k).mean())
    for k in (1, 5, 10):
        out[f"tr_r{k}"] = 100.0 * float((tr_rank < k).mean())
    out["r_mean"] = sum(out.values()) / 6.0
    return out


def _as_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().float().cpu().numpy()
    return np.asarray(x)


# --------------------------------------------------------------------------- VCR
@METRICS.register("vcr")
def vcr_accuracy(examples: Sequence[Example], predictions: dict) -> dict[str, float]:
    """Q->A, QA->R (rationale scored given the gold answer) and Q->AR (both right)."""
    pairs = _aligned(examples, predictions)
    qa = qar = both = 0
    for ex, pred in pairs:
        a_ok = int(pred[0]) == int(ex.target[0])
        r_ok = int(pred[1]) == int(ex.target[1])
        qa += a_ok
        qar += r_ok
        both += a_ok and r_ok
    n = len(pairs)
    return {"q2a": _percent(qa, n), "qa2r": _percent(qar, n), "q2ar": _percent(both, n)}


# --------------------------------------------------------------------------- pre-training
@METRICS.register("pretrain")
def pretrain_accuracy(examples: Sequence[Example], predictions: dict) -> dict[str, float]:
    """Objective accuracy pooled over examples: predictions map uid -> (n_correct, n_total)
    (masked tokens for MLM, the match decision for ITM, masked regions for MRM)."""
    pairs = _aligned(examples, predictions)
    correct = sum(float(p[0]) for _, p in pairs)
    total = sum(float(p[1]) for _, p in pairs)
    return {"accuracy": 100.0 * correct / total if total else 0.0}
