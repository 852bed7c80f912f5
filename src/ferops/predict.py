"""A Keras model's logits and calibrated probabilities on face arrays: the one implementation
that evaluation, the gate, the drift reference and the service share. No training, MLflow or
serving imports; keras is only called through the model passed in.
"""

from __future__ import annotations

import numpy as np

from ferops.metrics import softmax


def predict_logits(model, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """(N, S, S, 1) uint8 -> (N, K) float64 logits."""
    logits = model.predict(x.astype(np.float32), batch_size=batch_size, verbose=0)
    return np.asarray(logits, dtype=np.float64)


def calibrated_probabilities(logits: np.ndarray, temperature: float) -> np.ndarray:
    """(N, K) logits -> (N, K) float32 probabilities with evaluate's val-fitted temperature."""
    return softmax(np.asarray(logits, dtype=np.float64), temperature).astype(np.float32)
