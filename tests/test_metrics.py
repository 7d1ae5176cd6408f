"""Metrics against hand-computed values: confusion matrix, WAR, UAR (absent classes excluded),
per-class accuracy, the JSON report and its per-group (scene) breakdown."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dferjax import metrics
from dferjax.labels import BASIC_CLASSES

# 3 classes; labels 0,0,0,1,1,2 predicted 0,0,1,1,2,2.
LABELS = [0, 0, 0, 1, 1, 2]
PREDS = [0, 0, 1, 1, 2, 2]
# Rows true, columns predicted, counted by hand.
CONFUSION = [[2, 1, 0],
             [0, 1, 1],
             [0, 0, 1]]


def test_confusion_matrix_small_example():
    confusion = metrics.confusion_matrix(LABELS, PREDS, 3)
    assert confusion.dtype == np.int64
    assert confusion.shape == (3, 3)
    assert confusion.tolist() == CONFUSION


def test_war_uar_per_class_small_example():
    confusion = np.array(CONFUSION)
    assert metrics.war(confusion) == pytest.approx(4 / 6)           # 2 + 1 + 1 correct of 6
    np.testing.assert_allclose(metrics.per_class_accuracy(confusion), [2 / 3, 1 / 2, 1 / 1])
    assert metrics.uar(confusion) == pytest.approx(13 / 18)          # (2/3 + 1/2 + 1) / 3


def test_uar_excludes_absent_class():
    # 4 classes; classes 2 and 3 never occur as labels (3 is predicted once).
    confusion = metrics.confusion_matrix([0, 0, 1, 1], [0, 1, 1, 3], 4)
    assert confusion.tolist() == [[1, 1, 0, 0], [0, 1, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]]
    recall = metrics.per_class_accuracy(confusion)
    assert recall[:2].tolist() == [0.5, 0.5]
    assert math.isnan(recall[2]) and math.isnan(recall[3])
    assert metrics.uar(confusion) == pytest.approx(0.5)              # not (0.5 + 0.5 + 0 + 0) / 4
    assert metrics.war(confusion) == pytest.approx(0.5)


def test_war_and_uar_differ_on_imbalanced_set():
    # 90 samples of class 0 all right, 10 of class 1 all predicted as class 0.
    labels = [0] * 90 + [1] * 10
    preds = [0] * 100
    confusion = metrics.confusion_matrix(labels, preds, 2)
    assert confusion.tolist() == [[90, 0], [10, 0]]
    assert metrics.war(confusion) == pytest.approx(0.9)
    assert metrics.uar(confusion) == pytest.approx(0.5)              # (1.0 + 0.0) / 2


def test_empty_confusion_gives_nan():
    confusion = metrics.confusion_matrix([], [], 3)
    assert confusion.tolist() == [[0] * 3] * 3
    assert math.isnan(metrics.war(confusion)) and math.isnan(metrics.uar(confusion))


@pytest.mark.parametrize("labels, preds, which", [([0, 5], [0, 1], "labels"), ([0, 1], [-1, 1], "predictions")])
def test_out_of_range_raises_and_says_which(labels, preds, which):
    with pytest.raises(ValueError, match=f"^{which} out of range"):
        metrics.confusion_matrix(labels, preds, 3)


def test_length_mismatch_and_float_labels_raise():
    with pytest.raises(ValueError, match="differ in length"):
        metrics.confusion_matrix([0, 1], [0], 2)
    with pytest.raises(ValueError, match="integer"):
        metrics.confusion_matrix([0.0, 1.0], [0, 1], 2)


def test_from_logits_is_argmax():
    logits = np.array([[0.1, 2.0, -1.0], [3.0, 0.0, 0.0]])
    assert metrics.from_logits(logits).tolist() == [1, 0]


def test_report_values_and_json():
    names = BASIC_CLASSES[:3]
    result = metrics.report(LABELS, PREDS, names)
    assert result["num_samples"] == 6
    assert result["war"] == pytest.approx(4 / 6)
    assert result["uar"] == pytest.approx(13 / 18)
    assert list(result["per_class"]) == ["happy", "sad", "neutral"]
    assert result["per_class"]["happy"] == pytest.approx(2 / 3)
    assert result["per_class"]["sad"] == pytest.approx(0.5)
    assert result["per_class"]["neutral"] == pytest.approx(1.0)
    assert result["confusion"] == CONFUSION
    assert result["class_names"] == ["happy", "sad", "neutral"]
    assert "groups" not in result
    json.dumps(result, allow_nan=False)


def test_report_absent_class_is_none():
    result = metrics.report([0, 0, 1], [0, 1, 1], BASIC_CLASSES)
    assert result["per_class"]["happy"] == pytest.approx(0.5)
    assert result["per_class"]["sad"] == pytest.approx(1.0)
    for name in BASIC_CLASSES[2:]:
        assert result["per_class"][name] is None
    assert result["uar"] == pytest.approx(0.75)                      # (0.5 + 1.0) / 2
    json.dumps(result, allow_nan=False)


def test_report_groups_breakdown():
    labels = [0, 1, 0, 1, 0]
    preds = [0, 1, 1, 1, 0]
    groups = ["a", "a", "b", "b", ""]                                 # last sample: no scene
    result = metrics.report(labels, preds, ["x", "y"], groups=groups)
    assert result["war"] == pytest.approx(4 / 5)
    assert set(result["groups"]) == {"a", "b"}
    a, b = result["groups"]["a"], result["groups"]["b"]
    assert a["num_samples"] == 2 and a["war"] == 1.0 and a["uar"] == 1.0
    assert a["confusion"] == [[1, 0], [0, 1]]
    assert b["num_samples"] == 2
    assert b["war"] == pytest.approx(0.5)
    assert b["uar"] == pytest.approx(0.5)                             # class x: 0/1, class y: 1/1
    assert b["per_class"] == {"x": 0.0, "y": 1.0}
    assert b["confusion"] == [[0, 1], [0, 1]]
    assert "groups" not in a and "groups" not in b
    json.dumps(result, allow_nan=False)


def test_report_groups_all_empty_or_wrong_length():
    assert "groups" not in metrics.report([0, 1], [0, 1], ["x", "y"], groups=["", None])
    with pytest.raises(ValueError, match="one name per sample"):
        metrics.report([0, 1], [0, 1], ["x", "y"], groups=["a"])


def test_uar_matches_sklearn_balanced_accuracy():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 7, size=500)
    preds = np.where(rng.random(500) < 0.6, labels, rng.integers(0, 7, size=500))
    confusion = metrics.confusion_matrix(labels, preds, 7)
    assert metrics.uar(confusion) == pytest.approx(sklearn_metrics.balanced_accuracy_score(labels, preds))
    assert metrics.war(confusion) == pytest.approx(sklearn_metrics.accuracy_score(labels, preds))
