"""Real test inputs for the camera client: a video of a real face and a tiny real HTTP service.

The service is a genuine HTTP server on 127.0.0.1 that implements the /classify contract with a
deterministic classifier (label by mean brightness) and checks that it only ever receives
48x48 crops. It can be stopped and started again on the same port to simulate an outage.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cv2
import numpy as np
from skimage import data as skdata

CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
FRAME_W, FRAME_H = 640, 480


def make_face_video(path: Path, frames: int = 40, fps: float = 10.0) -> Path:
    """skimage's astronaut photo (one real face) drifting across a 640x480 frame, mp4v."""
    face = cv2.resize(cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR), (400, 400))
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps,
                             (FRAME_W, FRAME_H))
    assert writer.isOpened()
    for i in range(frames):
        frame = np.full((FRAME_H, FRAME_W, 3), 90, np.uint8)
        x, y = 60 + (4 * i) % 176, 40 + i % 5   # drifts right, wraps after 44 frames
        frame[y:y + 400, x:x + 400] = face
        writer.write(frame)
    writer.release()
    return path


def fake_predict(crop: np.ndarray, classes: tuple[str, ...] = CLASSES) -> dict:
    """Deterministic stand-in for the model: the class is picked by mean brightness."""
    k = len(classes)
    idx = min(k - 1, int(crop.mean() * k / 256))
    probs = {c: round(0.2 / (k - 1), 4) for c in classes}
    probs[classes[idx]] = 0.8
    return {"label": classes[idx], "confidence": 0.8, "probabilities": probs,
            "model_version": "fake-1"}


class FakeService:
    """A real HTTP server with the service's contract; records what it receives."""

    def __init__(self, delay_s: float = 0.0, api_key: str | None = None, status: int = 200):
        self.delay_s, self.api_key, self.status = delay_s, api_key, status
        self.requests = 0
        self.crops = 0
        self.violations: list[str] = []
        self.max_body = 0
        self.concurrent = 0
        self.max_concurrent = 0
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int = 0) -> FakeService:
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                         daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    def check(self, body: object) -> list[np.ndarray]:
        """The crops of a /classify body; anything but {"crops": [48x48 ints]} is a violation."""
        if not isinstance(body, dict) or set(body) != {"crops"}:
            self.violations.append(f"body keys {sorted(body) if isinstance(body, dict) else body}")
            return []
        crops = []
        for crop in body["crops"]:
            arr = np.asarray(crop)
            if arr.shape != (48, 48) or arr.dtype.kind != "i" or arr.min() < 0 or arr.max() > 255:
                self.violations.append(f"crop shape {arr.shape} dtype {arr.dtype}")
            crops.append(arr)
        return crops


def _handler_for(service: FakeService) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        # HTTP/1.0 (the default): one request per connection, so stop() leaves no live socket.

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            ok = self.path == "/readyz" and service.status == 200
            self._reply(200 if ok else 503, {"ok": ok})

        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            if service.api_key and self.headers.get("Authorization") != \
                    f"Bearer {service.api_key}":
                return self._reply(401, {"error": "missing or wrong API key"})
            if service.status != 200:
                return self._reply(service.status, {"error": "no model loaded"})
            if self.path == "/info":
                return self._reply(200, {"model_version": "fake-1", "classes": list(CLASSES)})
            if self.path != "/classify":
                return self._reply(404, {"error": "not found"})
            self._classify(raw)

        def _classify(self, raw: bytes) -> None:
            with service.lock:
                service.requests += 1
                service.max_body = max(service.max_body, len(raw))
                service.concurrent += 1
                service.max_concurrent = max(service.max_concurrent, service.concurrent)
            try:
                crops = service.check(json.loads(raw))
                service.crops += len(crops)
                time.sleep(service.delay_s)
                self._reply(200, [fake_predict(c) for c in crops])
            finally:
                with service.lock:
                    service.concurrent -= 1

        def _reply(self, status: int, payload: object) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
