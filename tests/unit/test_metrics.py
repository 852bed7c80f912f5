"""Evaluation metrics against values computed by hand on a small fixed example."""

import numpy as np
import pytest

from ferops.metrics import (
    classification_report,
    confusion_matrix,
    expected_calibration_error,
    fit_temperature,
    per_class_scores,
    softmax,
)

# 3 classes, 6 samples. Predictions: 0,0,1,1,2,0 for truths 0,0,1,2,2,2
Y_TRUE = np.array([0, 0, 1, 2, 2, 2])
Y_PRED = np.array([0, 0, 1, 1, 2, 0])


def test_confusion_matrix_by_hand():
    cm = confusion_matrix(Y_TRUE, Y_PRED, 3)
    assert cm.tolist() == [[2, 0, 0], [0, 1, 0], [1, 1, 1]]


def test_precision_recall_f1_by_hand():
    s = per_class_scores(confusion_matrix(Y_TRUE, Y_PRED, 3))
    # class 0: tp 2, predicted 3, support 2 -> p 2/3, r 1, f1 0.8
    # class 1: tp 1, predicted 2, support 1 -> p 1/2, r 1, f1 2/3
    # class 2: tp 1, predicted 1, support 3 -> p 1,   r 1/3, f1 0.5
    np.testing.assert_allclose(s["precision"], [2 / 3, 1 / 2, 1])
    np.testing.assert_allclose(s["recall"], [1, 1, 1 / 3])
    np.testing.assert_allclose(s["f1"], [0.8, 2 / 3, 0.5])


def test_report_accuracy_and_macro_f1():
    logits = np.eye(3)[Y_PRED] * 4.0
    r = classification_report(logits, Y_TRUE, ["a", "b", "c"])
    assert r["accuracy"] == pytest.approx(4 / 6)
    assert r["macro_f1"] == pytest.approx((0.8 + 2 / 3 + 0.5) / 3)
    assert r["per_class"]["c"] == pytest.approx(
        {"precision": 1.0, "recall": 1 / 3, "f1": 0.5, "support": 3})


def test_ece_by_hand():
    # Two bins used: conf 0.9 (2 samples, 1 correct) and conf 0.6 (2 samples, both correct).
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.4, 0.6]])
    y = np.array([0, 1, 0, 1])
    # bin of 0.9: |0.5 - 0.9| * 2/4 = 0.2; bin of 0.6: |1.0 - 0.6| * 2/4 = 0.2
    assert expected_calibration_error(probs, y, bins=10) == pytest.approx(0.4)


def test_temperature_scaling_fixes_overconfidence():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 2000)
    true_logits = rng.normal(0, 1, (2000, 3))
    true_logits[np.arange(2000), y] += 1.0
    overconfident = true_logits * 4.0
    t = fit_temperature(overconfident, y)
    assert 3.0 < t < 5.5
    before = expected_calibration_error(softmax(overconfident), y)
    after = expected_calibration_error(softmax(overconfident, t), y)
    assert after < before / 2
