"""Official metrics of the BERT study's text tasks (GLUE and SQuAD v1.1), in percent (0-100).

GLUE scores each task with the metric its benchmark defines (Wang et al. 2019; the GLUE server and
`datasets`' glue metric): accuracy for MNLI, QNLI, RTE, WNLI and SST-2, accuracy and F1 of the
positive class for MRPC and QQP, Matthews correlation for CoLA, Pearson and Spearman correlation for
STS-B. The values equal scikit-learn's `accuracy_score`, `f1_score`, `matthews_corrcoef` and SciPy's
`pearsonr` / `spearmanr` (× 100; tests/test_text_metrics.py checks it on random inputs). Where those
are undefined (a correlation with a constant side) or divide by zero (F1 without a positive on either
side, Matthews with one class only), they score 0, as scikit-learn's do.

SQuAD v1.1 is the official evaluation script's definition: answers normalised (lower case,
punctuation removed, the articles a / an / the removed, whitespace collapsed), exact match and token
F1 of the prediction against each gold answer, the maximum over the gold answers, averaged over
questions. The official script scores a missing prediction 0 with a warning; here, as for every task
of the suite, a missing prediction is an error (the runner predicts every question, so a missing one
is a bug, not a model's answer).
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Sequence

import numpy as np

from bench.core.errors import DataError
from bench.tasks.base import Example
from bench.tasks.metrics import METRICS, _aligned, _gold_label

# The label whose F1 GLUE reports: MRPC's "equivalent" and QQP's "duplicate" are "1" in the TSVs.
POSITIVE = "1"


# --------------------------------------------------------------------------- GLUE definitions
def accuracy(gold: Sequence, pred: Sequence) -> float:
    gold, pred = list(gold), list(pred)
    return 100.0 * sum(g == p for g, p in zip(gold, pred)) / len(gold) if gold else 0.0


def f1(gold: Sequence, pred: Sequence, positive=POSITIVE) -> float:
    """F1 of the positive class (scikit-learn's binary `f1_score`; 0 when there is no positive anywhere)."""
    tp = sum(g == positive and p == positive for g, p in zip(gold, pred))
    fp = sum(g != positive and p == positive for g, p in zip(gold, pred))
    fn = sum(g == positive and p != positive for g, p in zip(gold, pred))
    return 100.0 * 2 * tp / (2 * tp + fp + fn) if tp else 0.0


def matthews(gold: Sequence, pred: Sequence) -> float:
    """Matthews correlation coefficient, multi-class form (Gorodkin 2004; scikit-learn's `matthews_corrcoef`):
    from the confusion matrix C, (c·s − t·p) / sqrt((s² − p·p)(s² − t·t)) with t the true and p the
    predicted counts per class, c the correct predictions and s the examples; 0 when undefined."""
    labels = sorted(set(gold) | set(pred), key=str)
    index = {lab: i for i, lab in enumerate(labels)}
    cm = np.zeros((len(labels), len(labels)), dtype=np.float64)
    for g, p in zip(gold, pred):
        cm[index[g], index[p]] += 1
    t, p = cm.sum(axis=1), cm.sum(axis=0)
    c, s = np.trace(cm), cm.sum()
    cov_ytyp = c * s - t @ p
    cov_ypyp = s * s - p @ p
    cov_ytyt = s * s - t @ t
    if cov_ypyp * cov_ytyt == 0:
        return 0.0
    return 100.0 * float(cov_ytyp / np.sqrt(cov_ytyt * cov_ypyp))


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson's r (SciPy's `pearsonr`), 0 when a side is constant (SciPy: undefined)."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    a, b = a - a.mean(), b - b.mean()
    den = np.sqrt((a @ a) * (b @ b))
    return 100.0 * float(np.clip((a @ b) / den, -1.0, 1.0)) if den > 0 else 0.0


def average_ranks(x: Sequence[float]) -> np.ndarray:
    """1-based ranks, ties sharing their average rank (SciPy's `rankdata(method="average")`)."""
    a = np.asarray(x, dtype=np.float64)
    order = np.argsort(a, kind="mergesort")
    sorted_a = a[order]
    ranks = np.empty(len(a), dtype=np.float64)
    start = 0
    for end in range(1, len(a) + 1):
        if end == len(a) or sorted_a[end] != sorted_a[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0  # mean of the 1-based ranks start+1 .. end
            start = end
    return ranks


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rho: Pearson's r of the average ranks (SciPy's `spearmanr`)."""
    return pearson(average_ranks(x), average_ranks(y))


# --------------------------------------------------------------------------- GLUE task metrics
def _labels(examples: Sequence[Example], predictions: dict) -> tuple[list[str], list[str]]:
    pairs = _aligned(examples, predictions)
    return [_gold_label(ex) for ex, _ in pairs], [str(p) for _, p in pairs]


@METRICS.register("glue_accuracy")
def glue_accuracy(examples: Sequence[Example], predictions: dict) -> dict[str, float]:
    """MNLI, QNLI, RTE, WNLI, SST-2: accuracy of the predicted labels."""
    gold, pred = _labels(examples, predictions)
    return {"accuracy": accuracy(gold, pred)}


@METRICS.register("glue_accuracy_f1")
def glue_accuracy_f1(examples: Sequence[Example], predictions: dict) -> dict[str, float]:
    """MRPC, QQP: accuracy and F1 of the positive class ("1")."""
    gold, pred = _labels(examples, predictions)
    return {"accuracy": accuracy(gold, pred), "f1": f1(gold, pred)}


@METRICS.register("glue_matthews")
def glue_matthews(examples: Sequence[Example], predictions: dict) -> dict[str, float]:
    """CoLA: Matthews correlation of the predicted labels."""
    gold, pred = _labels(examples, predictions)
    return {"matthews": matthews(gold, pred)}


@METRICS.register("glue_correlation")
def glue_correlation(examples: Sequence[Example], predictions: dict) -> dict[str, float]:
    """STS-B: Pearson and Spearman correlation of predicted and gold similarity scores (targets are floats)."""
    pairs = _aligned(examples, predictions)
    try:
        gold = [float(ex.target) for ex, _ in pairs]
        pred = [float(p) for _, p in pairs]
    except (TypeError, ValueError):
        raise DataError("STS-B evaluation: expected a number as target and prediction of every example") from None
    return {"pearson": pearson(pred, gold), "spearman": spearman(pred, gold)}


# --------------------------------------------------------------------------- SQuAD v1.1
_PUNCTUATION = frozenset(string.punctuation)
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """The official v1.1 normalisation, in its order: lower case, punctuation removed, articles
    replaced by a space, whitespace collapsed."""
    s = "".join(ch for ch in s.lower() if ch not in _PUNCTUATION)
    return " ".join(_ARTICLES.sub(" ", s).split())


def squad_f1(prediction: str, gold: str) -> float:
    """Token F1 of the normalised prediction against one gold answer, in [0, 1]."""
    pred_tokens, gold_tokens = normalize_answer(prediction).split(), normalize_answer(gold).split()
    same = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred_tokens), same / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def squad_exact(prediction: str, gold: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(gold))


@METRICS.register("squad")
def squad_metrics(examples: Sequence[Example], predictions: dict) -> dict[str, float]:
    """SQuAD v1.1 exact match and F1: the maximum over each question's gold answers (meta['answers'])."""
    pairs = _aligned(examples, predictions)
    em = f = 0.0
    for ex, pred in pairs:
        golds = ex.meta.get("answers") or []
        if not golds:
            raise DataError(f"SQuAD evaluation: question '{ex.uid}' has no gold answers")
        em += max(squad_exact(str(pred), g) for g in golds)
        f += max(squad_f1(str(pred), g) for g in golds)
    return {"exact_match": 100.0 * em / len(pairs), "f1": 100.0 * f / len(pairs)}
