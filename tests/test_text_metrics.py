"""GLUE metrics against scikit-learn / SciPy on random inputs; SQuAD v1.1 EM / F1 on awkward inputs."""

from __future__ import annotations

import numpy as np
import pytest

from bench.core.errors import DataError
from bench.tasks.base import Example
from bench.tasks.metrics import METRICS
from bench.tasks.text_metrics import (
    average_ranks,
    f1,
    matthews,
    normalize_answer,
    pearson,
    spearman,
    squad_exact,
    squad_f1,
)

sklearn_metrics = pytest.importorskip(
    "sklearn.metrics", reason="scikit-learn is the reference for GLUE's accuracy / F1 / Matthews: "
                              "pip install scikit-learn (the 'test' extra)")
stats = pytest.importorskip("scipy.stats", reason="SciPy is the reference for Pearson / Spearman: pip install scipy")


@pytest.mark.parametrize("seed", range(20))
def test_classification_metrics_equal_sklearn(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 60)), int(rng.integers(2, 4))
    gold = [str(v) for v in rng.integers(0, k, n)]
    pred = [str(v) for v in rng.integers(0, k, n)] if seed % 5 else ["1"] * n  # a collapsed model too
    assert matthews(gold, pred) == pytest.approx(100 * sklearn_metrics.matthews_corrcoef(gold, pred), abs=1e-9)
    if k == 2:
        ref = sklearn_metrics.f1_score(gold, pred, pos_label="1", average="binary", zero_division=0)
        assert f1(gold, pred) == pytest.approx(100 * ref, abs=1e-9)
    acc = METRICS.get("glue_accuracy_f1")([Example(str(i), (), ("t",), target={g: 1.0}) for i, g in enumerate(gold)],
                                          {str(i): p for i, p in enumerate(pred)})
    assert acc["accuracy"] == pytest.approx(100 * sklearn_metrics.accuracy_score(gold, pred))


def test_degenerate_classification_cases_score_zero_like_sklearn():
    assert matthews(["1", "1"], ["1", "1"]) == 0.0 == sklearn_metrics.matthews_corrcoef(["1", "1"], ["1", "1"])
    assert f1(["0", "0"], ["0", "0"]) == 0.0


@pytest.mark.parametrize("seed", range(20))
def test_correlations_equal_scipy(seed):
    rng = np.random.default_rng(100 + seed)
    n = int(rng.integers(3, 80))
    x = rng.normal(size=n)
    y = 0.5 * x + rng.normal(size=n)
    if seed % 3 == 0:  # STS-B gold scores repeat (0.0, 2.5, 5.0, ...): ties must share their average rank
        x, y = np.round(x * 2) / 2, np.round(y)
    assert pearson(x, y) == pytest.approx(100 * stats.pearsonr(x, y)[0], abs=1e-9)
    assert spearman(x, y) == pytest.approx(100 * stats.spearmanr(x, y)[0], abs=1e-9)
    np.testing.assert_allclose(average_ranks(x), stats.rankdata(x, method="average"))


def test_constant_side_correlation_is_zero_not_nan():
    assert pearson([1.0, 1.0, 1.0], [1.0, 2.0, 3.0]) == 0.0
    assert spearman([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]) == 0.0


def test_stsb_metric_reads_float_targets():
    exs = [Example(str(i), (), ("a", "b"), target=t) for i, t in enumerate([0.0, 2.5, 5.0, 4.0])]
    out = METRICS.get("glue_correlation")(exs, {"0": 0.1, "1": 2.0, "2": 4.5, "3": 4.4})
    assert out["spearman"] == pytest.approx(100.0)
    assert out["pearson"] == pytest.approx(100 * stats.pearsonr([0.1, 2.0, 4.5, 4.4], [0.0, 2.5, 5.0, 4.0])[0])


# ---------------------------------------------------------------------------------------------- SQuAD
@pytest.mark.parametrize("raw, norm", [
    ("The Eiffel Tower", "eiffel tower"),
    ("an apple a day", "apple day"),
    ("Theatre", "theatre"),                  # an article only as a whole word
    ("a.m.", "am"),                          # punctuation goes before the articles: "a.m." -> "am"
    ("the-the", "thethe"),                   # hyphen removed first: no word boundary left
    ("  Denver \t Broncos\n", "denver broncos"),
    ("¿Qué?", "¿qué"),                       # only ASCII punctuation (string.punctuation) is removed
    ("", ""),
])
def test_squad_normalisation(raw, norm):
    assert normalize_answer(raw) == norm


def test_squad_em_f1_by_hand():
    assert squad_exact("the Denver Broncos!", "Denver Broncos") == 1.0
    assert squad_f1("Denver Broncos won", "the Denver Broncos") == pytest.approx(2 * (2 / 3) * 1 / (2 / 3 + 1))
    assert squad_f1("", "Denver") == 0.0 and squad_exact("", "Denver") == 0.0
    assert squad_f1("the", "a") == 0.0          # both normalise to nothing: no common token, F1 0
    assert squad_exact("the", "a") == 1.0       # ... but the empty strings are equal: EM 1, as the script
    assert squad_f1("red red blue", "red") == pytest.approx(2 * (1 / 3) * 1 / (1 / 3 + 1))  # counts clip


def test_squad_metric_max_over_gold_answers_and_missing_prediction():
    exs = [Example("q1", (), ("q", "c"), meta={"answers": ["Santa Clara", "Levi's Stadium", "Levi's Stadium in Santa Clara"]}),
           Example("q2", (), ("q", "c"), meta={"answers": ["1990", "in 1990"]}),
           Example("q3", (), ("q", "c"), meta={"answers": ["gold"]})]
    out = METRICS.get("squad")(exs, {"q1": "levis stadium", "q2": "In 1990.", "q3": ""})
    assert out["exact_match"] == pytest.approx(200 / 3)
    assert out["f1"] == pytest.approx(200 / 3)
    out = METRICS.get("squad")(exs[:1], {"q1": "Stadium in Santa Clara"})
    # best gold: "levis stadium in santa clara" (5 tokens) vs 4 predicted tokens, all shared -> P 1, R 0.8
    assert out == {"exact_match": 0.0, "f1": pytest.approx(100 * 2 * 0.8 / 1.8)}
    with pytest.raises(DataError, match="predictions missing for 1 of 3"):
        METRICS.get("squad")(exs, {"q1": "x", "q2": "y"})
