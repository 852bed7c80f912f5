"""HTTP client for the ferops service.

Only 48x48 grayscale face crops leave the machine, never frames. `ResilientClassifier` wraps
the plain client so that an unreachable or failing service is counted and retried with
backoff instead of raising into the capture loop.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import requests


@dataclass(frozen=True)
class Prediction:
    label: str
    confidence: float
    probabilities: dict[str, float] = field(default_factory=dict)
    model_version: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "confidence": self.confidence,
                "probabilities": dict(self.probabilities), "model_version": self.model_version}


class ServiceError(Exception):
    """The service could not be reached or answered with an error; the message fits a status bar.

    retryable is False for answers that retrying will not fix (401, 413, 422, a bad response).
    """

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = True):
        super().__init__(message)
        self.status = status
        self.retryable = retryable


class ServiceClient:
    """Thread-safe: each calling thread gets its own requests.Session (keep-alive per worker)."""

    def __init__(self, url: str, *, api_key: str | None = None, timeout_s: float = 2.0,
                 max_crops: int = 64):
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self.max_crops = max(1, max_crops)
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    def classify(self, crops: Sequence[np.ndarray]) -> list[Prediction]:
        """(N, 48, 48) uint8 crops -> N predictions, in order; raises ServiceError."""
        arrays = [_as_crop(c) for c in crops]
        predictions: list[Prediction] = []
        # The service refuses more than max_crops per request (413), so large groups are split.
        for start in range(0, len(arrays), self.max_crops):
            chunk = arrays[start:start + self.max_crops]
            body = {"crops": [a.tolist() for a in chunk]}
            answer = self._post("/classify", body)
            predictions.extend(_parse_predictions(answer, len(chunk)))
        return predictions

    def info(self) -> dict[str, Any]:
        answer = self._post("/info", {})
        if not isinstance(answer, dict):
            raise ServiceError("bad /info response: not a JSON object", retryable=False)
        return answer

    def ready(self) -> bool:
        """True when the service answers /readyz with 200 (a model is loaded)."""
        try:
            resp = self._session().get(self.url + "/readyz", headers=self._headers,
                                       timeout=self.timeout_s)
        except requests.RequestException:
            return False
        return resp.status_code == 200

    def close(self) -> None:
        with self._lock:
            for session in self._sessions:
                session.close()
            self._sessions.clear()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
            with self._lock:
                self._sessions.append(session)
        return session

    def _post(self, path: str, body: dict[str, Any]) -> Any:
        try:
            resp = self._session().post(self.url + path, json=body, headers=self._headers,
                                        timeout=self.timeout_s)
        except requests.Timeout:
            raise ServiceError(f"service timed out after {self.timeout_s:g} s") from None
        except requests.ConnectionError:
            raise ServiceError("service unavailable (connection failed)") from None
        except requests.RequestException as exc:
            raise ServiceError(f"request failed: {exc}") from None
        if resp.status_code != 200:
            raise _http_error(resp)
        try:
            return resp.json()
        except ValueError:
            raise ServiceError("bad response: not JSON", retryable=False) from None


def _as_crop(crop: np.ndarray) -> np.ndarray:
    arr = np.asarray(crop)
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]  # (48, 48, 1) -> (48, 48)
    if arr.ndim != 2:
        raise ValueError(f"a face crop must be 2-D grayscale, got shape {arr.shape}")
    return arr.astype(np.uint8, copy=False)


def _http_error(resp: requests.Response) -> ServiceError:
    try:
        detail = resp.json().get("error") or resp.text
    except (ValueError, AttributeError):
        detail = resp.text
    detail = " ".join(str(detail).split())[:160]
    code = resp.status_code
    if code == 503:
        return ServiceError(f"service not ready (503): {detail}", status=code)
    return ServiceError(f"service error {code}: {detail}", status=code, retryable=code >= 500)


def _parse_predictions(answer: Any, expected: int) -> list[Prediction]:
    if not isinstance(answer, list) or len(answer) != expected:
        raise ServiceError(f"bad /classify response: expected a list of {expected}",
                           retryable=False)
    try:
        return [Prediction(label=str(item["label"]), confidence=float(item["confidence"]),
                           probabilities={str(k): float(v) for k, v in
                                          (item.get("probabilities") or {}).items()},
                           model_version=None if item.get("model_version") is None
                           else str(item["model_version"]))
                for item in answer]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ServiceError(f"bad /classify response: {exc!r}", retryable=False) from None


@dataclass(frozen=True)
class Outcome:
    """One classify attempt: predictions, or the reason there are none (skipped: in backoff)."""
    predictions: list[Prediction] | None
    error: str | None = None
    skipped: bool = False

    @property
    def ok(self) -> bool:
        return self.predictions is not None


@dataclass(frozen=True)
class ServiceStatus:
    ok: bool
    requests: int
    errors: int
    last_error: str | None
    retry_in_s: float
    retryable: bool = True    # False: the service refused (401, 413, ...); retrying will not fix it


class ResilientClassifier:
    """ServiceClient that never raises: failures are counted and followed by backoff.

    While backing off, calls return at once without touching the network, so a dead service
    costs the capture loop nothing; the first success resets the delay.
    """

    def __init__(self, client: ServiceClient, *, backoff_initial_s: float = 0.25,
                 backoff_max_s: float = 4.0, clock: Callable[[], float] = time.monotonic):
        self.client = client
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self._clock = clock
        self._lock = threading.Lock()
        self._delay = 0.0
        self._next_try = 0.0
        self._requests = 0
        self._errors = 0
        self._ok = True
        self._last_error: str | None = None
        self._retryable = True

    def ready_to_send(self) -> bool:
        with self._lock:
            return self._clock() >= self._next_try

    def classify(self, crops: Sequence[np.ndarray]) -> Outcome:
        if not crops:
            return Outcome([])
        if not self.ready_to_send():
            return Outcome(None, self._last_error, skipped=True)
        with self._lock:
            self._requests += 1
        try:
            predictions = self.client.classify(crops)
        except ServiceError as exc:
            self._record_failure(str(exc), exc.retryable)
            return Outcome(None, str(exc))
        with self._lock:
            self._ok, self._delay, self._next_try = True, 0.0, 0.0
        return Outcome(predictions)

    def status(self) -> ServiceStatus:
        with self._lock:
            return ServiceStatus(ok=self._ok, requests=self._requests, errors=self._errors,
                                 last_error=self._last_error,
                                 retry_in_s=max(0.0, self._next_try - self._clock()),
                                 retryable=self._retryable)

    def _record_failure(self, message: str, retryable: bool) -> None:
        with self._lock:
            self._errors += 1
            self._ok, self._last_error, self._retryable = False, message, retryable
            # A refusal (bad key, ...) will not heal by itself: wait the longest between tries.
            delay = max(self.backoff_initial_s, self._delay * 2) if retryable else 1e9
            self._delay = min(self.backoff_max_s, delay)
            self._next_try = self._clock() + self._delay


def make_classifier(service_url: str, params, api_key: str | None, timeout_s: float | None,
                    backoff_max_s: float) -> ResilientClassifier:
    """The never-raising classifier both camera modes use, from params (serving, camera)."""
    client = ServiceClient(service_url, api_key=api_key, max_crops=params.serving.max_crops,
                           timeout_s=params.camera.timeout_s if timeout_s is None else timeout_s)
    return ResilientClassifier(client, backoff_max_s=backoff_max_s)
