"""Official metrics against hand-computed cases."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.core.errors import DataError
from bench.tasks import METRICS, TASKS, write_vqa_predictions
from bench.tasks.base import Example
from bench.tasks.metrics import refer_iou, vqa_score
from bench.tasks.vqa_normalize import normalize_answer


@pytest.mark.parametrize("raw, norm", [
    ("a dog", "dog"), ("The Two cats", "2 cats"), ("dont", "don't"), ("3,000", "3000"),
    ("yes!", "yes"), ("none", "0"), ("1.5", "1.5"), ("hello.", "hello"), ("left-side", "left side"),
    ("  Ten\n", "10"), ("white / black", "white black"),
])
def test_official_normalisation(raw, norm):
    assert normalize_answer(raw) == norm


def test_vqa_score_hand_cases():
    # 2 humans say "2", 8 "yes"; "two" matches "2" only after normalisation:
    # "2"-humans see 1 other match (1/3), "yes"-humans see 2 (2/3): (2/3 + 16/3) / 10 = 0.6
    assert vqa_score("two", ["2"] * 2 + ["yes"] * 8) == pytest.approx(0.6)
    assert vqa_score("yes", ["yes"] * 3 + ["no"] * 7) == pytest.approx(0.9)
    assert vqa_score("Two.", ["2"] * 4 + ["three"] * 6) == pytest.approx(1.0)
    assert vqa_score("cat", ["dog"] * 5 + ["bird"] * 5) == 0.0
    # official quirk: unanimous answers are not normalised
    assert vqa_score("two", ["two"] * 10) == 1.0
    assert vqa_score("2", ["two"] * 10) == 0.0


def test_vqa_metric_and_export(tmp_path):
    exs = [Example("1", ("i",), ("q",), meta={"answers": ["2"] * 2 + ["yes"] * 8}),
           Example("2", ("i",), ("q",), meta={"answers": ["no"] * 10})]
    assert TASKS.get("vqa").evaluate(exs, {"1": "two", "2": "no"}) == {"vqa_score": pytest.approx(80.0)}
    write_vqa_predictions(tmp_path / "predictions.json", {"2": "no", "1": "two"})
    assert json.loads((tmp_path / "predictions.json").read_text()) == [
        {"question_id": 1, "answer": "two"}, {"question_id": 2, "answer": "no"}]


def test_missing_prediction_is_an_error():
    exs = [Example("1", ("i",), ("q",), target={"a": 1.0})]
    with pytest.raises(DataError, match="predictions missing for 1 of 1 examples"):
        METRICS.get("accuracy")(exs, {})


def test_exact_match_and_nlvr2_consistency():
    gqa = [Example("a", ("i",), ("q",), target={"yes": 1.0}), Example("b", ("i",), ("q",), target={"red": 1.0})]
    assert TASKS.get("gqa").evaluate(gqa, {"a": "yes", "b": "Red"}) == {"accuracy": 50.0}
    keys = [("dev-10-0-0", "True", "dev-10--0"), ("dev-10-1-0", "False", "dev-10--0"), ("dev-11-0-1", "True", "dev-11--1")]
    exs = [Example(u, ("a", "b"), ("s",), target={lab: 1.0}, meta={"consistency_key": k}) for u, lab, k in keys]
    out = TASKS.get("nlvr2").evaluate(exs, {"dev-10-0-0": "True", "dev-10-1-0": "True", "dev-11-0-1": "true"})
    assert out == {"accuracy": pytest.approx(200 / 3), "consistency": 50.0}


def test_refcoco_iou_threshold():
    assert refer_iou([0, 0, 50, 50], [0, 0, 30, 50]) == pytest.approx(0.6)
    gt = {"gt_box": [0.0, 0.0, 0.5, 1.0], "image_size": (100, 50)}
    exs = [Example(str(i), ("i",), ("e",), meta=gt) for i in range(3)]
    preds = {"0": [0, 0, 0.3, 1], "1": [0, 0, 0.25, 1], "2": [0.5, 0, 1, 1]}  # IoU 0.6, 0.5 (not > 0.5), 0
    assert TASKS.get("refcoco_plus").evaluate(exs, preds) == {"accuracy": pytest.approx(100 / 3)}
    no_size = [Example("0", ("i",), ("e",), meta={"gt_box": [0, 0, 0.5, 1]})]
    assert TASKS.get("refcoco_plus").evaluate(no_size, {"0": [0, 0, 0.3, 1]}) == {"accuracy": 100.0}


def test_retrieval_recalls_hand_case():
    exs = [Example(f"t{i}", (img,), ("c",)) for i, img in enumerate(["A", "A", "B", "B"])]
    scores = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.5, 0.5]])
    out = TASKS.get("retrieval").evaluate(exs, {"scores": scores, "text_uids": ["t0", "t1", "t2", "t3"],
                                                "image_ids": ["A", "B"]})
    # IR ranks 0, 1, 0, 1 (tie broken by index); TR best ranks A: 0, B: 1
    assert out["ir_r1"] == 50.0 and out["ir_r5"] == out["ir_r10"] == 100.0
    assert out["tr_r1"] == 50.0 and out["tr_r5"] == out["tr_r10"] == 100.0
    assert out["r_mean"] == pytest.approx(500 / 6)


def test_retrieval_shape_mismatch():
    exs = [Example("t0", ("A",), ("c",))]
    with pytest.raises(DataError, match="scores shape"):
        METRICS.get("retrieval")(exs, {"scores": np.zeros((2, 1)), "text_uids": ["t0"], "image_ids": ["A"]})


def test_vcr_metrics():
    exs = [Example(str(i), ("i",), ("t",) * 8, target=(2, 1)) for i in range(3)]
    out = TASKS.get("vcr").evaluate(exs, {"0": (2, 1), "1": (2, 0), "2": (0, 1)})
    assert out == {"q2a": pytest.approx(200 / 3), "qa2r": pytest.approx(200 / 3), "q2ar": pytest.approx(100 / 3)}


def test_pretrain_accuracy_pools_counts():
    exs = [Example("a", ("i",), ("c",)), Example("b", ("i",), ("c",))]
    assert TASKS.get("mlm").evaluate(exs, {"a": (1, 4), "b": (2, 2)}) == {"accuracy": 50.0}
