"""The ferops HTTP service: the promoted champion behind BentoML.

    bentoml serve serving.service:EmotionService --port 3000     # from the project root

Endpoints (POST):
    /classify   {"crops": [48x48 ints, ...]} as JSON, or raw uint8 pixels as
                application/octet-stream -> one {label, confidence, probabilities} per crop
                (concurrent requests share one model call: serving/batcher.py)
    /analyze    a JPEG/PNG photo: multipart file field "image", or the image as the body
                -> every face with box and prediction
    /info       {} -> model version, classes, metrics, training date, data version
    /reload     {} -> load a newly promoted champion now (the service also polls for one)
    /label      ?label=<class>&face=<i>&consent=yes, a frame as for /analyze -> the 48x48 crop
                of face i stored in camera.drop_folder (off unless serving.labeling)
    GET /readyz -> 200 once a champion is loaded, else 503 with the reason
    GET /ui     the browser client (serving/ui/: live camera, labeling, mood timeline)

/classify and /analyze read their bodies themselves (serving/inputs.py says why), in memory
and off the event loop; they are BentoML's documented FastAPI class views, so they appear in
the service's OpenAPI page beside /info and /reload.

Configuration comes from params.yaml (`serving:`; $FEROPS_PARAMS names another file). The
model comes from the BentoML model store ($BENTOML_HOME), where `ferops promote` and
`ferops rollback` export the champion; the newest export is served.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import logging
import os
import time
from pathlib import Path

import bentoml
import numpy as np
import orjson
from fastapi import FastAPI, Request
from starlette.responses import Response

from ferops.config import load_params
from ferops.dropfolder import save_crop
from ferops.errors import DataError
from ferops.inference import StatsRecorder, locate_faces
from serving import webui
from serving.batcher import EagerBatcher, OverloadedError
from serving.guard import Guard, read_api_key
from serving.inputs import InputError, error_body, parse_crops, read_upload
from serving.ratelimit import TokenBucket
from serving.slot import ModelSlot, ReloadSignal

log = logging.getLogger("ferops.serving")

# Read once when the service module is imported: the API limits (crop size, counts,
# batching) are fixed by these values, so they cannot change while the service runs.
PARAMS = load_params(os.environ.get("FEROPS_PARAMS", "params.yaml"))
CFG = PARAMS.serving
# The training crop (margin, size) with the service's own, faster detection pass.
FACES = PARAMS.faces.replace(detect_max_side=CFG.detect_max_side)
SIZE = FACES.size
# Refuses to start on a set-but-empty key variable (that silently meant "no auth" before).
API_KEY = read_api_key(CFG.api_key_env)

SLOT = ModelSlot(CFG.bento_model, CFG.swap_grace_s)
# Served at /metrics beside BentoML's own metrics.
BATCH_SIZE = bentoml.metrics.Histogram(
    name="ferops_classify_batch_size", documentation="face crops per model call",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
REFUSED = bentoml.metrics.Counter(
    name="ferops_refused_requests", documentation="requests refused with a 4xx or 503",
    labelnames=["endpoint", "status"])

# BentoML generates the OpenAPI page from this app's routes; FastAPI's own docs are off.
app = FastAPI(title="ferops", docs_url=None, redoc_url=None, openapi_url=None)
CLASSIFY_DOC = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": {"type": "object", "required": ["crops"], "properties": {
        "crops": {"type": "array", "minItems": 1, "maxItems": CFG.max_crops,
                  "description": f"{SIZE}x{SIZE} grayscale face crops, integers 0-255",
                  "items": {"type": "array", "items": {"type": "array", "items": {
                      "type": "integer", "minimum": 0, "maximum": 255}}}}}}},
    "application/octet-stream": {"schema": {"type": "string", "format": "binary",
                                            "description": f"N x {SIZE} x {SIZE} uint8 "
                                                           f"pixels, row-major"}}}}}
ANALYZE_DOC = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
        "image": {"type": "string", "format": "binary", "description": "JPEG or PNG photo"}}}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "image/png": {"schema": {"type": "string", "format": "binary"}}}}}
LABEL_DOC = {"parameters": [
    {"name": "label", "in": "query", "required": True, "schema": {"type": "string"}},
    {"name": "face", "in": "query", "schema": {"type": "integer", "minimum": 0, "default": 0}},
    {"name": "consent", "in": "query", "required": True,
     "schema": {"type": "string", "enum": ["yes"]}}], **ANALYZE_DOC}
UI_FILES = webui.load_files() if CFG.ui else {}
# Labeled crops join the project's one drop folder, which the watcher screens and ingests.
DROP_FOLDER = PARAMS.camera.drop_folder


def _error(status: int, message: str, endpoint: str = "") -> Response:
    if endpoint:
        REFUSED.labels(endpoint=endpoint, status=str(status)).inc()
        log.info("refused %s %d: %.120s", endpoint, status, message)  # one short line
    return Response(error_body(message), status_code=status, media_type="application/json")


def _json(body) -> Response:
    # Serialised here: orjson, numpy floats included, no per-response schema work.
    return Response(orjson.dumps(body, option=orjson.OPT_SERIALIZE_NUMPY),
                    media_type="application/json")


@bentoml.service(name="ferops", workers=CFG.workers, threads=4,
                 traffic={"timeout": 30, "max_concurrency": 512},
                 logging={"access": {"enabled": CFG.access_log}})
@bentoml.asgi_app(app, path="/")
class EmotionService:
    def __init__(self) -> None:
        if CFG.model_threads > 0:
            import tensorflow as tf  # before any model exists: TF fixes its pools on first use
            tf.config.threading.set_intra_op_parallelism_threads(CFG.model_threads)
        _route_logs_to_bentoml()
        log.info("authentication: %s", f"on (API key from ${CFG.api_key_env})" if API_KEY
                 else f"off (set ${CFG.api_key_env} to require a key)")
        self.slot = SLOT
        self.stats = StatsRecorder(Path(CFG.stats_path)) if CFG.record_stats else None
        self.batcher = EagerBatcher(self._classify_batch, CFG.batch_max_size,
                                    CFG.batch_max_latency_ms / 1000, BATCH_SIZE.observe)
        # Parsing bodies and decoding photos run here, never on the event loop that answers
        # /livez; the decode pool's size bounds the memory of concurrent decodes.
        self.parse_pool = concurrent.futures.ThreadPoolExecutor(
            2, thread_name_prefix="ferops-parse")
        self.decode_pool = concurrent.futures.ThreadPoolExecutor(
            CFG.analyze_threads, thread_name_prefix="ferops-decode")
        self.analyzing = 0  # /analyze requests decoding or waiting to (event-loop only)
        # Each worker process takes its share, so the service as a whole stays in the limit.
        self.label_bucket = TokenBucket(CFG.label_per_minute / CFG.workers,
                                        burst=max(1, min(CFG.label_per_minute, 5) // CFG.workers))
        # With several workers a /reload reaches one of them, and a swap must happen on all
        # at once: the signal folder coordinates them (serving/slot.py).
        self.signal = ReloadSignal(CFG.workers) if CFG.workers > 1 else None
        self.slot.start(self.signal)
        # TensorFlow and Keras leave millions of long-lived objects; a full GC pass over them
        # stalled requests for ~0.4 s now and then. Freezing moves them out of the collector.
        gc.freeze()
        if self.slot.predictor is None:
            log.warning("not ready: %s", self.slot.reason)
        if CFG.reload_poll_s > 0 or self.signal:
            self.slot.watch(CFG.reload_poll_s, self.signal)

    @bentoml.on_shutdown
    def _leave(self) -> None:
        if self.signal:
            self.signal.leave()

    def __is_ready__(self) -> bool:
        return self.slot.current() is not None

    def _classify_batch(self, crops: list[np.ndarray]) -> list[dict]:
        predictor = self.slot.current()  # one model for the whole batch, even mid-swap
        answers = predictor.classify(np.asarray(crops, dtype=np.uint8), CFG.abstain_below)
        if self.stats:
            self.stats.record(answers, time.time())
        return answers

    async def _off_loop(self, pool, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(pool, fn, *args)

    @app.post("/classify", openapi_extra=CLASSIFY_DOC, response_model=None,
              summary="Face crops (detected and normalised by the caller) -> predictions")
    async def classify(self, request: Request) -> Response:
        """Concurrent requests share one model call (eager adaptive batching)."""
        body = await request.body()
        try:
            crops = await self._off_loop(self.parse_pool, parse_crops, body,
                                         request.headers.get("content-type"), SIZE,
                                         CFG.max_crops)
            return _json(await self.batcher.submit(crops))
        except InputError as exc:
            return _error(exc.status, exc.message, "classify")
        except OverloadedError as exc:
            return _error(503, f"overloaded: {exc}", "classify")

    @app.post("/analyze", openapi_extra=ANALYZE_DOC, response_model=None,
              summary="A photo -> every face found, largest first, with box and prediction")
    async def analyze(self, request: Request) -> Response:
        body = await request.body()
        limit = CFG.analyze_threads + CFG.analyze_queue
        if self.analyzing >= limit:
            return _error(503, f"busy: {self.analyzing} photos are being decoded or queued "
                               f"(serving.analyze_threads + analyze_queue = {limit}); retry",
                          "analyze")
        self.analyzing += 1
        try:
            found = await self._off_loop(self.decode_pool, _locate, body,
                                         request.headers.get("content-type"))
            crops = [crop for _, crop in found.faces]
            answers = await self.batcher.submit(crops) if crops else []
        except InputError as exc:
            return _error(exc.status, exc.message, "analyze")
        except OverloadedError as exc:
            return _error(503, f"overloaded: {exc}", "analyze")
        finally:
            self.analyzing -= 1
        version = answers[0]["model_version"] if answers else self.slot.current().version
        return _json({"width": found.width, "height": found.height,
                      "faces_found": len(found.faces), "model_version": version,
                      "faces": [{"box": [b.x, b.y, b.w, b.h], **a} for (b, _), a in
                                zip(found.faces, answers, strict=True)]})

    @app.post("/label", openapi_extra=LABEL_DOC, response_model=None,
              summary="Label one face of a frame: its 48x48 crop joins the drop folder")
    async def label(self, request: Request) -> Response:
        """Off unless serving.labeling; stores the crop the model sees, never the frame."""
        refusal = _label_refusal(request.query_params, self.slot.current().classes)
        if refusal:
            return _error(*refusal, "label")
        wait = self.label_bucket.take()
        if wait:
            return _error(429, f"at most {CFG.label_per_minute} labels a minute "
                               f"(serving.label_per_minute); retry in {wait:.0f} s", "label")
        label, face = request.query_params["label"], int(request.query_params.get("face", 0))
        try:
            found = await self._off_loop(self.decode_pool, _locate, await request.body(),
                                         request.headers.get("content-type"))
        except InputError as exc:
            return _error(exc.status, exc.message, "label")
        if face >= len(found.faces):
            return _error(422, f"no face {face} in this frame: it has {len(found.faces)}",
                          "label")
        box, crop = found.faces[face]
        path = await self._off_loop(self.parse_pool, save_crop, crop, label, DROP_FOLDER)
        log.info("labeled a face as %s: %s", label, path.name)
        return _json({"saved": f"{label}/{path.name}", "label": label,
                      "box": [box.x, box.y, box.w, box.h]})

    @bentoml.api
    def info(self) -> dict:
        """What is being served: version, classes, metrics, training date, data version."""
        predictor = self.slot.current()
        limits = {"max_crops": CFG.max_crops, "max_faces": CFG.max_faces,
                  "max_body_mb": CFG.max_body_mb, "crop_size": SIZE}
        if predictor is None:
            return {"ready": False, "reason": self.slot.reason, "limits": limits}
        import tensorflow as tf  # loaded already: a model is being served
        runtime = {"batcher": "eager", "workers": CFG.workers, "pid": os.getpid(),
                   "bento_tag": predictor.info.get("bento_tag"),
                   "model_threads": tf.config.threading.get_intra_op_parallelism_threads(),
                   "batches_here": self.batcher.batches, "crops_here": self.batcher.items,
                   "auth": bool(API_KEY)}
        return {"ready": True, **predictor.info, "limits": limits,
                "record_stats": bool(self.stats), "labeling": CFG.labeling,
                "runtime": runtime}

    @bentoml.api
    def reload(self) -> dict:
        """Swap in a newly promoted champion now instead of at the next poll."""
        swapped = self.slot.refresh()
        on_model = 1
        if self.signal:
            staged = self.slot.staged
            target = staged.info.get("bento_tag") if staged else self.slot.tag
            self.signal.bump()
            # Answer once every worker serves it (each loads it, then all swap at once).
            on_model = self.signal.wait_all(target, 60)
        predictor = self.slot.current()
        return {"swapped": swapped, "bento_tag": self.slot.tag,
                "model_version": predictor.version if predictor else None,
                "ready": predictor is not None, "workers": CFG.workers,
                "workers_on_this_model": on_model}


def _label_refusal(query, classes: list[str]) -> tuple[int, str] | None:
    """Why a /label request is refused before its body is looked at, if it is."""
    if not CFG.labeling:
        return 403, "labeling is switched off on this server (serving.labeling: false)"
    if query.get("consent") != "yes":
        return 400, ("labeling stores a face crop: send consent=yes once the person in view "
                     "has agreed")
    if query.get("label") not in classes:
        return 422, f"label must be one of {', '.join(classes)}"
    face = query.get("face", "0")
    if not (face.isdigit() and len(face) <= 3):
        return 422, "face must be the index of a face in the frame (0: the largest)"
    return None


if CFG.ui:
    @app.get("/ui", include_in_schema=False)
    async def ui_page() -> Response:
        return webui.page_response(UI_FILES, "")

    @app.get("/ui/{name}", include_in_schema=False)
    async def ui_file(name: str) -> Response:
        if name not in UI_FILES:
            return _error(404, "no such file")
        return webui.page_response(UI_FILES, name)


def _route_logs_to_bentoml() -> None:
    """ferops' INFO lines (auth mode, swaps, refusals) through BentoML's own log handlers;
    BentoML configures only its own loggers, so these were dropped before."""
    ours, theirs = logging.getLogger("ferops"), logging.getLogger("bentoml")
    if ours.handlers:
        return
    for handler in theirs.handlers or [logging.StreamHandler()]:
        ours.addHandler(handler)
    ours.setLevel(logging.INFO)
    ours.propagate = False


def _locate(body: bytes, content_type: str | None):
    """Upload bytes -> faces (in a decode thread): 4xx InputError for anything unusable."""
    try:
        found = locate_faces(read_upload(body, content_type), FACES)
    except DataError as exc:
        raise InputError(400, f"unusable image: {exc}") from None
    if min(found.width, found.height) < FACES.min_face:
        raise InputError(422, f"image is {found.width}x{found.height} pixels: a side under "
                              f"{FACES.min_face} px cannot hold a detectable face "
                              f"(faces.min_face)")
    if len(found.faces) > CFG.max_faces:
        raise InputError(422, f"{len(found.faces)} faces found, more than the limit of "
                              f"{CFG.max_faces} per request (serving.max_faces)")
    return found


EmotionService.add_asgi_middleware(Guard, slot=SLOT, max_body=int(CFG.max_body_mb * 2**20),
                                   api_key=API_KEY, api_key_env=CFG.api_key_env,
                                   body_timeout_s=CFG.body_timeout_s)
