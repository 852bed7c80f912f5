"""The promotion policy: when a challenger may replace the champion. Pure: numpy only.

Both models are scored now on the same test images, so the comparison can be paired:
McNemar's exact test looks only at the images on which the two disagree (b: only the
challenger is right, c: only the champion is), and the interval of the accuracy difference
uses the same pairs. `registry.rule` picks the rule: `margin` (the challenger's metric beats
the champion's by at least `registry.margin`) or `paired` (the challenger is right on more
of the disputed images than the champion, at significance `registry.alpha`). Both keep the
floor, "a tie never wins", and the guards: macro-F1 and each class's recall may not fall
more than a configured amount below the champion's. registry.py does the MLflow I/O and
calls `judge`; the retraining flow asks `needs_gate`.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ferops.config import RegistryConfig
from ferops.metrics import confusion_matrix, per_class_scores

Z95 = 1.959964  # two-sided 95 % normal quantile


@dataclass
class Decision:
    action: str                  # promoted | kept | rolled_back | nothing
    reason: str
    challenger: str | None = None
    champion: str | None = None  # the champion before the decision
    challenger_score: float | None = None
    champion_score: float | None = None
    metric: str = "accuracy"
    stats: dict[str, Any] = field(default_factory=dict)  # the paired statistics, guards

    def as_tags(self) -> dict[str, str]:
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        flat = {k: v for k, v in asdict(self).items() if k != "stats"}
        flat.update({f"stats.{k}": v for k, v in self.stats.items()})
        return {f"promotion.{k}": str(v) for k, v in flat.items()} | {"promotion.at": stamp}


def mcnemar_exact(b: int, c: int) -> float:
    """One-sided exact McNemar p-value that the challenger is better: P(X >= b), X ~ Bin(b+c, 1/2).

    b: pairs only the challenger gets right; c: pairs only the champion gets right.
    """
    n = b + c
    if n == 0:
        return 1.0
    return min(1.0, sum(math.comb(n, k) for k in range(b, n + 1)) / 2.0 ** n)


def paired_accuracy_interval(b: int, c: int, n: int) -> tuple[float, float, float]:
    """Accuracy difference (challenger - champion) and its 95 % interval, from paired counts.

    The variance of a paired difference of proportions: (b + c - (b - c)^2 / n) / n^2.
    """
    diff = (b - c) / n
    var = max(0.0, (b + c - (b - c) ** 2 / n)) / n ** 2
    half = Z95 * math.sqrt(var)
    return diff, diff - half, diff + half


def model_scores(y: np.ndarray, pred: np.ndarray, n_classes: int) -> dict[str, Any]:
    cm = confusion_matrix(y, pred, n_classes)
    scores = per_class_scores(cm)
    present = scores["support"] > 0
    return {"accuracy": float(np.mean(pred == y)) if len(y) else 0.0,
            "macro_f1": float(scores["f1"].mean()),  # over every class, as evaluate reports
            "recall": scores["recall"], "present": present}


def paired_stats(y: np.ndarray, chal: np.ndarray, champ: np.ndarray) -> dict[str, Any]:
    right_chal, right_champ = chal == y, champ == y
    b = int(np.sum(right_chal & ~right_champ))
    c = int(np.sum(~right_chal & right_champ))
    diff, low, high = paired_accuracy_interval(b, c, len(y))
    return {"n": int(len(y)), "only_challenger_right": b, "only_champion_right": c,
            "p_value": round(mcnemar_exact(b, c), 6), "accuracy_diff": round(diff, 6),
            "accuracy_diff_95": [round(low, 6), round(high, 6)]}


def judge(y: np.ndarray, chal: np.ndarray, champ: np.ndarray | None, n_classes: int,
          cfg: RegistryConfig, classes: list[str] | None = None
          ) -> tuple[bool, str, float, float | None, dict[str, Any]]:
    """(promote?, why, challenger score, champion score, stats) for predicted class ids.

    Order: the floor, then the rule (margin or paired), then the guards on a rule's win.
    """
    names = classes or [str(i) for i in range(n_classes)]
    mine = model_scores(y, chal, n_classes)
    score = mine[cfg.metric]
    theirs = model_scores(y, champ, n_classes) if champ is not None else None
    best = theirs[cfg.metric] if theirs else None
    stats = {} if champ is None else {
        "rule": cfg.rule, **paired_stats(y, chal, champ),
        "challenger_macro_f1": round(mine["macro_f1"], 6),
        "champion_macro_f1": round(theirs["macro_f1"], 6)}
    if score < cfg.floor:
        return False, f"challenger {score:.4f} is below the floor {cfg.floor:.4f}", score, \
            best, stats
    if theirs is None:
        return True, f"first model: {score:.4f} >= floor {cfg.floor:.4f}", score, None, stats
    ok, why = _rule(score, best, stats, cfg)
    guard = _guard(mine, theirs, names, cfg) if ok else ""
    if guard:
        ok, why = False, guard
    return ok, why, score, best, stats


def _rule(score: float, best: float, stats: dict, cfg: RegistryConfig) -> tuple[bool, str]:
    """margin or paired: (promote?, why), before the guards."""
    if cfg.rule == "paired":
        p, b, c = stats["p_value"], stats["only_challenger_right"], stats["only_champion_right"]
        if b > c and p < cfg.alpha:
            return True, (f"challenger is right on {b} of the {b + c} disputed images "
                          f"(McNemar p = {p:.4g} < {cfg.alpha})")
        return False, (f"challenger right on {b}, champion on {c} of the disputed images: "
                       f"McNemar p = {p:.4g} is not below {cfg.alpha}")
    gain = score - best
    if gain >= cfg.margin and gain > 0:
        return True, f"challenger beats champion by {gain:+.4f} (margin {cfg.margin:.4f})"
    return False, (f"challenger {score:.4f} vs champion {best:.4f}: gain {gain:+.4f} is below "
                   f"the margin {cfg.margin:.4f}")


def _guard(mine: dict, theirs: dict, names: list[str], cfg: RegistryConfig) -> str:
    """Why the challenger trades away too much of macro-F1 or of one class ('' if not)."""
    drop = theirs["macro_f1"] - mine["macro_f1"]
    if drop > cfg.max_macro_f1_drop:
        return (f"macro-F1 falls {drop:.4f} below the champion's "
                f"(at most {cfg.max_macro_f1_drop:.4f})")
    if cfg.max_class_recall_drop is not None:
        drops = np.where(theirs["present"], theirs["recall"] - mine["recall"], -np.inf)
        worst = int(np.argmax(drops))
        if drops[worst] > cfg.max_class_recall_drop:
            return (f"recall of '{names[worst]}' falls {drops[worst]:.4f} below the champion's "
                    f"(at most {cfg.max_class_recall_drop:.4f})")
    return ""


def needs_gate(registered: str | None, new_version: str | None,
               last_decision: dict | None) -> bool:
    """Whether the gate must run: not when nothing was registered, nor when no new version
    was made and the current @challenger was already decided (no alias moves then)."""
    if registered is None:
        return False
    return not (new_version is None and last_decision
                and str(last_decision.get("challenger")) == str(registered))
