"""The promotion policy (ferops.promotion): margin and paired rules, guards, hand-computed
McNemar tables, and when the retraining flow re-runs the gate."""

import math

import numpy as np
import pytest

from ferops.promotion import Decision, judge, mcnemar_exact, needs_gate, paired_accuracy_interval
from tests.factories import PARAMS

MARGIN = PARAMS.registry.replace(rule="margin", margin=0.002, floor=0.3, metric="accuracy",
                                 max_macro_f1_drop=1.0, max_class_recall_drop=None)
PAIRED = MARGIN.replace(rule="paired", alpha=0.05)


def predictions(y: np.ndarray, right: int) -> np.ndarray:
    """Predictions right on the first `right` images, wrong (the next class) on the rest."""
    pred = (y + 1) % 2
    pred[:right] = y[:right]
    return pred


@pytest.mark.parametrize("chal_right, champ_right, promote, why", [
    (700, None, True, "first model"),
    (200, None, False, "below the floor"),
    (710, 700, True, "beats champion"),
    (700, 700, False, "below the margin"),      # a tie never replaces the champion
    (701, 700, False, "below the margin"),      # better, but by less than the margin
    (650, 700, False, "below the margin"),      # worse
    (290, 100, False, "below the floor"),       # better than a bad champion, still too weak
])
def test_margin_rule(chal_right, champ_right, promote, why):
    y = np.zeros(1000, np.int64)
    champ = None if champ_right is None else predictions(y, champ_right)
    ok, reason, score, best, _ = judge(y, predictions(y, chal_right), champ, 2, MARGIN)
    assert ok is promote and why in reason
    assert score == pytest.approx(chal_right / 1000)


def test_zero_margin_still_needs_a_strict_gain():
    y = np.zeros(10, np.int64)
    zero = MARGIN.replace(margin=0.0, floor=0.0)
    assert judge(y, predictions(y, 5), predictions(y, 5), 2, zero)[0] is False
    assert judge(y, predictions(y, 6), predictions(y, 5), 2, zero)[0] is True


@pytest.mark.parametrize("b, c, expected", [
    # P(X >= b) for X ~ Bin(b + c, 1/2), by hand
    (0, 0, 1.0),
    (5, 0, 1 / 32),                                   # all five disputed images: 2^-5
    (8, 2, (45 + 10 + 1) / 1024),                     # C(10,8)+C(10,9)+C(10,10)
    (2, 8, 1 - (1 + 10) / 1024),                      # P(X >= 2) = 1 - P(X <= 1)
    (3, 3, (20 + 15 + 6 + 1) / 64),                   # a tie: p > 1/2
])
def test_mcnemar_exact_against_hand_computed_tables(b, c, expected):
    assert mcnemar_exact(b, c) == pytest.approx(expected)


def test_paired_interval_by_hand():
    # n = 100, b = 10, c = 4: diff 0.06, var = (14 - 36/100) / 100^2 = 0.001364
    diff, low, high = paired_accuracy_interval(10, 4, 100)
    half = 1.959964 * math.sqrt(0.001364)
    assert diff == pytest.approx(0.06) and (low, high) == pytest.approx((0.06 - half, 0.06 + half))


def disputed(b: int, c: int, agree_right: int = 500, agree_wrong: int = 100):
    """y, challenger and champion predictions with exactly b/c disputed images."""
    n = agree_right + agree_wrong + b + c
    y = np.zeros(n, np.int64)
    chal, champ = np.zeros(n, np.int64), np.zeros(n, np.int64)
    i = agree_right
    chal[i:i + agree_wrong] = champ[i:i + agree_wrong] = 1
    i += agree_wrong
    champ[i:i + b] = 1                          # only the challenger is right
    i += b
    chal[i:i + c] = 1                           # only the champion is right
    return y, chal, champ


def test_the_paired_rule_promotes_only_a_significant_gain():
    # 20 vs 8 disputed: p = P(X >= 20 | 28) = 0.0178 < 0.05: promoted
    y, chal, champ = disputed(20, 8)
    ok, reason, _, _, stats = judge(y, chal, champ, 2, PAIRED)
    assert ok and "McNemar p" in reason
    assert (stats["only_challenger_right"], stats["only_champion_right"]) == (20, 8)
    expected = sum(math.comb(28, k) for k in range(20, 29)) / 2 ** 28
    assert stats["p_value"] == pytest.approx(expected, abs=1e-6)
    # 14 vs 8: +0.96 points of accuracy, which the margin rule promotes; p = 0.143: kept
    y, chal, champ = disputed(14, 8)
    assert judge(y, chal, champ, 2, MARGIN)[0] is True
    ok, reason, _, _, stats = judge(y, chal, champ, 2, PAIRED)
    assert not ok and "not below 0.05" in reason and stats["p_value"] > 0.05
    low, high = stats["accuracy_diff_95"]
    assert low < 0 < high  # the interval says the same: no evidence of a gain


def test_a_tie_never_wins_under_the_paired_rule():
    y, chal, champ = disputed(0, 0)
    assert judge(y, chal, champ, 2, PAIRED.replace(alpha=0.999))[0] is False


def test_the_guards_stop_a_model_that_trades_away_a_class():
    # Three classes, 100 each. Champion: right on 70 of every class (70 %). Challenger: 95 %
    # on classes 0 and 1, but 40 % on class 2 (76.7 % accuracy: better on paper).
    y = np.repeat([0, 1, 2], 100)
    champ, chal = y.copy(), y.copy()
    for k in range(3):
        champ[k * 100 + 70:(k + 1) * 100] = (k + 1) % 3
    for k, right in ((0, 95), (1, 95), (2, 40)):
        chal[k * 100 + right:(k + 1) * 100] = (k + 1) % 3
    names = ["angry", "happy", "sad"]
    assert judge(y, chal, champ, 3, MARGIN, names)[0] is True  # guards off: promoted
    recall_guard = MARGIN.replace(max_class_recall_drop=0.10)
    ok, reason, *_ = judge(y, chal, champ, 3, recall_guard, names)
    assert not ok and "recall of 'sad' falls 0.3000" in reason
    # The macro-F1 guard alone lets this one through: F1 by hand 190/255, 0.95, 80/145 (0.749)
    # against the champion's 0.70 everywhere. That is why the recall guard exists.
    ok, _, _, _, stats = judge(y, chal, champ, 3, MARGIN.replace(max_macro_f1_drop=0.0), names)
    assert ok and stats["challenger_macro_f1"] == pytest.approx(
        (190 / 255 + 0.95 + 80 / 145) / 3, abs=1e-6)
    assert stats["champion_macro_f1"] == pytest.approx(0.70)


def test_the_macro_f1_guard_stops_higher_accuracy_bought_with_a_small_class():
    # 900 of class 0, 100 of class 1. Champion: 850 + 60 right (91 %), macro-F1 by hand
    # (1700/1790 + 120/210) / 2 = 0.7605. Challenger: 900 + 20 right (92 %), macro-F1
    # (1800/1880 + 40/120) / 2 = 0.6454.
    y = np.repeat([0, 1], [900, 100])
    champ, chal = y.copy(), y.copy()
    champ[850:900] = 1
    champ[960:] = 0
    chal[920:] = 0
    ok, reason, score, best, stats = judge(y, chal, champ, 2, MARGIN.replace(
        max_macro_f1_drop=0.02))
    assert (score, best) == pytest.approx((0.92, 0.91))
    assert stats["champion_macro_f1"] == pytest.approx((1700 / 1790 + 120 / 210) / 2, abs=1e-6)
    assert stats["challenger_macro_f1"] == pytest.approx((1800 / 1880 + 40 / 120) / 2, abs=1e-6)
    assert not ok and "macro-F1 falls 0.1152 below" in reason


@pytest.mark.parametrize("registered, new, last, expected", [
    (None, None, None, False),          # nothing registered: nothing to decide
    ("3", "3", {"challenger": "3"}, True),   # a new version: always gated
    ("3", None, {"challenger": "3"}, False),  # no new version, already decided
    ("3", None, {"challenger": "2"}, True),   # no new version, but not decided yet
    ("3", None, None, True),
])
def test_needs_gate(registered, new, last, expected):
    assert needs_gate(registered, new, last) is expected


def test_decision_tags_carry_the_statistics():
    d = Decision("kept", "why", "2", "1", 0.7, 0.69, "accuracy",
                 {"p_value": 0.2, "accuracy_diff_95": [-0.01, 0.03]})
    tags = d.as_tags()
    assert tags["promotion.stats.p_value"] == "0.2"
    assert tags["promotion.stats.accuracy_diff_95"] == "[-0.01, 0.03]"
    assert tags["promotion.action"] == "kept" and "promotion.at" in tags
