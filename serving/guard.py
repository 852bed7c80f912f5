"""ASGI middleware in front of every endpoint: API key, body-size limit and readiness reasons.

It answers before BentoML parses anything, so an oversized body or a missing key costs
almost nothing and every refusal is a small JSON error.
"""

from __future__ import annotations

import hmac
import json
import os
import re

# Probes stay open so an orchestrator can check the service without the key.
OPEN_PATHS = ("/livez", "/readyz", "/healthz")
MODEL_PATHS = ("/classify", "/analyze")
# Part names of a multipart body, read from its part headers.
PART_NAME = re.compile(rb'content-disposition:\s*form-data;\s*name="([^"]*)"', re.IGNORECASE)


def _json(status: int, body: dict) -> tuple[dict, dict]:
    data = json.dumps(body).encode()
    start = {"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(data)).encode())]}
    return start, {"type": "http.response.body", "body": data}


class Guard:
    """slot: a serving.slot.ModelSlot; max_body: bytes; api_key_env: names the key variable."""

    def __init__(self, app, slot, max_body: int, api_key_env: str) -> None:
        self.app, self.slot, self.max_body = app, slot, max_body
        self.api_key_env = api_key_env
        self.api_key = os.environ.get(api_key_env) or None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"].rstrip("/") or "/"
        refusal = self.check(scope, path)
        if refusal is not None:
            return await self._send(send, *refusal)
        if scope["method"] in ("POST", "PUT"):
            body, receive = await self._read_body(receive)
            if body is None:
                return await self._send(send, 413, {
                    "error": f"request body larger than {self.max_body:,} bytes "
                             f"(serving.max_body_mb)"})
            if path == "/analyze" and (problem := upload_problem(scope, body)):
                return await self._send(send, *problem)
        return await self.app(scope, receive, send)

    def check(self, scope, path: str) -> tuple[int, dict] | None:
        """The refusal for this request before its body is read, if any."""
        if self.api_key and path not in OPEN_PATHS and not self._authorised(scope):
            return 401, {"error": f"missing or wrong API key: send 'Authorization: Bearer "
                                  f"<key>' (the server's {self.api_key_env})"}
        if self.slot.predictor is None and (path == "/readyz" or path in MODEL_PATHS):
            return 503, {"ready": False, "error": self.slot.reason}
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return 413, {"error": f"request body of {int(length):,} bytes is larger than "
                                  f"{self.max_body:,} bytes (serving.max_body_mb)"}
        return None

    def _authorised(self, scope) -> bool:
        headers = dict(scope["headers"])
        given = headers.get(b"x-api-key", b"").decode("latin-1")
        auth = headers.get(b"authorization", b"").decode("latin-1")
        if auth.lower().startswith("bearer "):
            given = auth[7:].strip()
        return hmac.compare_digest(given.encode(), self.api_key.encode())

    async def _read_body(self, receive):
        """The whole body (None past the limit) and a receive() that replays it to the app.

        Bodies are bounded by max_body, so holding one in memory is bounded too; BentoML
        would read it all anyway.
        """
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body:
                return None, receive
            more = message.get("more_body", False)
        body, sent = b"".join(chunks), False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()
        return body, replay

    @staticmethod
    async def _send(send, status: int, body: dict) -> None:
        start, content = _json(status, body)
        await send(start)
        await send(content)


def upload_problem(scope, body: bytes) -> tuple[int, dict] | None:
    """/analyze takes one multipart field, `image`; BentoML would answer anything else 500."""
    ctype = dict(scope["headers"]).get(b"content-type", b"").decode("latin-1").lower()
    if not ctype.startswith("multipart/form-data"):
        return 415, {"error": "send the image as multipart/form-data with one field 'image' "
                              "(e.g. curl -F image=@photo.jpg)"}
    names = sorted({n.decode("latin-1") for n in PART_NAME.findall(body)})
    if names != ["image"]:
        return 400, {"error": f"expected one multipart field 'image' (a JPEG or PNG file), "
                              f"got {names or 'none'}"}
    return None
