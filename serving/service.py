"""The ferops HTTP service: the promoted champion behind BentoML.

    bentoml serve serving.service:EmotionService --port 3000     # from the project root

Endpoints (POST, JSON unless said otherwise):
    /classify   {"crops": [48x48 ints, ...]}  -> one {label, confidence, probabilities} per crop
                (concurrent requests are batched adaptively into one model call)
    /analyze    multipart upload field "image" (JPEG/PNG) -> every face with box and prediction
    /info       {} -> model version, classes, metrics, training date, data version
    /reload     {} -> load a newly promoted champion now (the service also polls for one)
    GET /readyz -> 200 once a champion is loaded, else 503 with the reason

Configuration comes from params.yaml (`serving:`; $FEROPS_PARAMS names another file). The
model comes from the BentoML model store ($BENTOML_HOME), where `ferops promote` and
`ferops rollback` export the champion; the newest export is served.
"""

from __future__ import annotations

import dataclasses
import gc
import logging
import os
import time
from pathlib import Path
from typing import Annotated

import bentoml
import numpy as np
import orjson
from pydantic import Field
from starlette.responses import JSONResponse, Response

from ferops.config import load_params
from ferops.errors import DataError
from ferops.inference import StatsRecorder, analyze_image
from serving.batcher import EagerBatcher, OverloadedError
from serving.guard import Guard
from serving.slot import ModelSlot, ReloadSignal

log = logging.getLogger("ferops.serving")

# Read once when the service module is imported: the API schema (crop size, limits,
# batching) is fixed by these values, so they cannot change while the service runs.
PARAMS = load_params(os.environ.get("FEROPS_PARAMS", "params.yaml"))
CFG = PARAMS.serving
# The training crop (margin, size) with the service's own, faster detection pass.
FACES = dataclasses.replace(PARAMS.faces, detect_max_side=CFG.detect_max_side)
SIZE = FACES.size

Pixel = Annotated[int, Field(ge=0, le=255)]
Row = Annotated[list[Pixel], Field(min_length=SIZE, max_length=SIZE)]
Crop = Annotated[list[Row], Field(min_length=SIZE, max_length=SIZE)]
Crops = Annotated[list[Crop], Field(min_length=1, max_length=CFG.max_crops,
                                    description=f"{SIZE}x{SIZE} grayscale face crops (0-255), "
                                                f"at most {CFG.max_crops}")]

SLOT = ModelSlot(CFG.bento_model)
# Served at /metrics beside BentoML's own metrics (its adaptive-batch histogram covers only
# its own batcher).
BATCH_SIZE = bentoml.metrics.Histogram(
    name="ferops_classify_batch_size", documentation="face crops per model call in /classify",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


@bentoml.service(name="ferops", workers=CFG.workers, threads=4,
                 traffic={"timeout": 30, "max_concurrency": 512},
                 logging={"access": {"enabled": CFG.access_log}})
class EmotionService:
    def __init__(self) -> None:
        if CFG.model_threads > 0:
            import tensorflow as tf  # before any model exists: TF fixes its pools on first use
            tf.config.threading.set_intra_op_parallelism_threads(CFG.model_threads)
        self.slot = SLOT
        self.stats = StatsRecorder(Path(CFG.stats_path)) if CFG.record_stats else None
        self.batcher = EagerBatcher(self._classify_batch, CFG.batch_max_size,
                                    CFG.batch_max_latency_ms / 1000, BATCH_SIZE.observe)
        self.slot.refresh()
        # TensorFlow and Keras leave millions of long-lived objects; a full GC pass over them
        # stalled requests for ~0.4 s now and then. Freezing moves them out of the collector.
        gc.freeze()
        if self.slot.predictor is None:
            log.warning("not ready: %s", self.slot.reason)
        # With several workers a /reload reaches one of them; the signal tells the others.
        self.signal = ReloadSignal(CFG.workers) if CFG.workers > 1 else None
        if CFG.reload_poll_s > 0 or self.signal:
            self.slot.watch(CFG.reload_poll_s, self.signal)

    @bentoml.on_shutdown
    def _leave(self) -> None:
        if self.signal:
            self.signal.leave()

    def __is_ready__(self) -> bool:
        return self.slot.predictor is not None

    def _classify_batch(self, crops) -> list[dict]:
        predictor = self.slot.predictor  # one model for the whole batch, even mid-swap
        answers = predictor.classify(np.asarray(crops, dtype=np.uint8))
        if self.stats:
            self.stats.record(answers, time.time())
        return answers

    # serving.batching picks the batcher (see serving/batcher.py for why eager is the default).
    if CFG.batching == "bentoml":
        @bentoml.api(batchable=True, max_batch_size=max(2, CFG.batch_max_size),
                     max_latency_ms=CFG.batch_max_latency_ms)
        def classify(self, crops: Crops) -> list[dict]:
            """Face crops (already detected and normalised by the caller) -> predictions."""
            return self._classify_batch(crops)
    else:
        @bentoml.api
        async def classify(self, crops: Crops) -> list[dict]:
            """Face crops (already detected and normalised by the caller) -> predictions.

            Concurrent requests share one model call (eager adaptive batching)."""
            try:
                answers = await self.batcher.submit(crops)
            except OverloadedError as exc:
                return _error(503, f"overloaded: {exc}")
            # Serialised here: BentoML would rebuild the output's JSON schema for every
            # response (a measured 3 % of the service's CPU at 200 requests/s).
            return Response(orjson.dumps(answers, option=orjson.OPT_SERIALIZE_NUMPY),
                            media_type="application/json")

    @bentoml.api
    def analyze(self, image: Path) -> dict:
        """A JPEG or PNG photo -> every face found, largest first, with box and prediction."""
        predictor = self.slot.predictor
        try:
            result = analyze_image(image.read_bytes(), predictor, FACES, max_faces=10**6)
        except DataError as exc:
            return _error(400, f"unusable image: {exc}")
        if result["faces_found"] > CFG.max_faces:
            return _error(422, f"{result['faces_found']} faces found, more than the limit of "
                               f"{CFG.max_faces} per request (serving.max_faces)")
        if self.stats:
            self.stats.record(result["faces"], time.time())
        return result

    @bentoml.api
    def info(self) -> dict:
        """What is being served: version, classes, metrics, training date, data version."""
        predictor = self.slot.predictor
        limits = {"max_crops": CFG.max_crops, "max_faces": CFG.max_faces,
                  "max_body_mb": CFG.max_body_mb, "crop_size": SIZE}
        if predictor is None:
            return {"ready": False, "reason": self.slot.reason, "limits": limits}
        import tensorflow as tf  # loaded already: a model is being served
        runtime = {"batching": CFG.batching, "workers": CFG.workers, "pid": os.getpid(),
                   "bento_tag": self.slot.tag,
                   "model_threads": tf.config.threading.get_intra_op_parallelism_threads(),
                   "batches_here": self.batcher.batches, "crops_here": self.batcher.items}
        return {"ready": True, **predictor.info, "limits": limits,
                "record_stats": bool(self.stats), "runtime": runtime}

    @bentoml.api
    def reload(self) -> dict:
        """Swap in a newly promoted champion now instead of at the next poll."""
        swapped = self.slot.refresh()
        predictor = self.slot.predictor
        answer = {"swapped": swapped, "bento_tag": self.slot.tag,
                  "model_version": predictor.version if predictor else None,
                  "ready": predictor is not None, "workers": CFG.workers,
                  "workers_on_this_model": 1}
        if self.signal:
            self.signal.ack(self.slot.tag)
            self.signal.bump()
            # Answer once every worker serves this model (loading one takes seconds).
            answer["workers_on_this_model"] = self.signal.wait_all(self.slot.tag, 60)
        return answer


EmotionService.add_asgi_middleware(Guard, slot=SLOT, max_body=int(CFG.max_body_mb * 2**20),
                                   api_key_env=CFG.api_key_env)
