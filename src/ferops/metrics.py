"""Classification metrics on plain numpy arrays (no framework), checked by hand in the tests."""

from __future__ import annotations

import numpy as np


def softmax(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    z = logits / temperature
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """(K, K) counts; rows are true classes, columns predictions."""
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes)


def per_class_scores(cm: np.ndarray) -> dict[str, np.ndarray]:
    """precision, recall, f1 and support per class (0 where undefined, as scikit-learn)."""
    tp = np.diag(cm).astype(np.float64)
    predicted, support = cm.sum(axis=0), cm.sum(axis=1)
    precision = np.divide(tp, predicted, out=np.zeros_like(tp), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros_like(tp), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros_like(tp), where=denom > 0)
    return {"precision": precision, "recall": recall, "f1": f1, "support": support}


def expected_calibration_error(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    """ECE: the support-weighted gap between confidence and accuracy over equal-width bins."""
    conf = probs.max(axis=1)
    correct = (probs.argmax(axis=1) == y_true).astype(np.float64)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(conf, edges[1:-1], right=True), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        in_bin = which == b
        if in_bin.any():
            ece += in_bin.mean() * abs(correct[in_bin].mean() - conf[in_bin].mean())
    return float(ece)


def nll(logits: np.ndarray, y_true: np.ndarray, temperature: float = 1.0) -> float:
    p = softmax(logits, temperature)[np.arange(len(y_true)), y_true]
    return float(-np.log(np.clip(p, 1e-12, None)).mean())


def fit_temperature(logits: np.ndarray, y_true: np.ndarray) -> float:
    """The temperature minimising validation NLL (golden-section search on log T in [-3, 3])."""
    lo, hi = -3.0, 3.0
    g = (np.sqrt(5) - 1) / 2
    for _ in range(60):
        a, b = hi - g * (hi - lo), lo + g * (hi - lo)
        if nll(logits, y_true, np.exp(a)) < nll(logits, y_true, np.exp(b)):
            hi = b
        else:
            lo = a
    return float(np.exp((lo + hi) / 2))


COVERAGES = (1.0, 0.9, 0.8, 0.5)


def risk_coverage(probs: np.ndarray, y_true: np.ndarray,
                  coverages: tuple[float, ...] = COVERAGES) -> list[dict]:
    """Accuracy on the most confident fraction of faces, for each coverage; threshold: the
    confidence below which a model answering `uncertain` would keep that coverage."""
    if len(y_true) == 0:
        return []
    confidence = probs.max(axis=1)
    right = probs.argmax(axis=1) == y_true
    order = np.argsort(-confidence, kind="stable")
    rows = []
    for c in coverages:
        keep = order[: max(1, int(round(c * len(order))))]
        rows.append({"coverage": c, "accuracy": float(right[keep].mean()),
                     "threshold": float(confidence[keep].min()), "n": int(len(keep))})
    return rows


def classification_report(logits: np.ndarray, y_true: np.ndarray, classes: list[str],
                          temperature: float = 1.0) -> dict:
    """Everything the evaluate stage reports for one split."""
    k = len(classes)
    y_pred = logits.argmax(axis=1)
    cm = confusion_matrix(y_true, y_pred, k)
    scores = per_class_scores(cm)
    probs = softmax(logits, temperature)
    return {
        "n": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else 0.0,
        "macro_f1": float(scores["f1"].mean()),
        "per_class": {c: {m: float(scores[m][i]) for m in ("precision", "recall", "f1")}
                      | {"support": int(scores["support"][i])} for i, c in enumerate(classes)},
        "ece": expected_calibration_error(softmax(logits), y_true),
        "ece_calibrated": expected_calibration_error(probs, y_true),
        "nll": nll(logits, y_true),
        "risk_coverage": risk_coverage(probs, y_true),  # on the calibrated probabilities
        "confusion_matrix": cm.tolist(),
    }
