"""ASGI middleware in front of every endpoint: API key, body limits, readiness, JSON errors.

It answers before the endpoints see anything, so an oversized or stalled body or a missing
key costs almost nothing, and every refusal the service controls is a small JSON error.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import os

# Probes stay open so an orchestrator can check the service without the key. /metrics is
# not among them: it tells traffic and model figures, so Prometheus sends the key (README).
OPEN_PATHS = ("/livez", "/readyz", "/healthz")
# The browser client's static files hold no data: the page asks for the key itself.
OPEN_PREFIXES = ("/ui/",)
MODEL_PATHS = ("/classify", "/analyze", "/label")
# BentoML's own endpoints without inputs: it logs a whole traceback for a malformed body, so
# the guard refuses those bodies first (one short line at most, like every other refusal).
NO_INPUT_PATHS = ("/info", "/reload")
# The routers answer these in plain text (Starlette) or as {"detail": ...} (FastAPI); no
# endpoint of ours sends them, so the guard rewrites them all as {"error": ...}.
PLAIN_ERRORS = {404: "no such endpoint", 405: "method not allowed on this endpoint"}


def read_api_key(env_name: str) -> bytes | None:
    """The key as UTF-8 bytes, None when the variable is unset; refuses a set-but-empty one.

    An empty value used to mean "authentication off" without a word: a typo in a deployment
    then opened the service to everyone.
    """
    value = os.environ.get(env_name)
    if value is None:
        return None
    if not value.strip():
        raise RuntimeError(f"${env_name} is set but empty: set a key to require one, or "
                           f"unset the variable to run without authentication")
    return value.encode("utf-8")


def _json(status: int, body: dict, headers: list | None = None) -> tuple[dict, dict]:
    data = json.dumps(body).encode()
    start = {"type": "http.response.start", "status": status,
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(data)).encode()), *(headers or [])]}
    return start, {"type": "http.response.body", "body": data}


class Guard:
    """slot: a serving.slot.ModelSlot; max_body: bytes; api_key: bytes or None (off)."""

    def __init__(self, app, slot, max_body: int, api_key: bytes | None, api_key_env: str,
                 body_timeout_s: float) -> None:
        self.app, self.slot, self.max_body = app, slot, max_body
        self.api_key, self.api_key_env = api_key, api_key_env
        self.body_timeout_s = body_timeout_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "websocket":
            # No endpoint speaks WebSocket; refusing here keeps the key check unskippable.
            return await send({"type": "websocket.close", "code": 1008})
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"].rstrip("/") or "/"
        refusal = self.check(scope, path)
        if refusal is not None:
            return await self._send(send, *refusal)
        if scope["method"] in ("POST", "PUT", "PATCH"):
            body, receive = await self._read_body(receive)
            if isinstance(body, tuple):
                return await self._send(send, *body)
            if path in NO_INPUT_PATHS and not _empty_object(body):
                return await self._send(send, 400, {"error": f"{path} takes no input: send {{}} "
                                                             f"or an empty body"})
        return await self.app(scope, receive, _json_errors(send))

    def check(self, scope, path: str) -> tuple[int, dict] | None:
        """The refusal for this request before its body is read, if any."""
        if self.api_key and not _open(path) and not self._authorised(scope):
            return 401, {"error": f"missing or wrong API key: send 'Authorization: Bearer "
                                  f"<key>' (the server's ${self.api_key_env})"}
        if self.slot.current() is None and (path == "/readyz" or path in MODEL_PATHS):
            return 503, {"ready": False, "error": self.slot.reason}
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body:
            return 413, {"error": f"request body of {int(length):,} bytes is larger than "
                                  f"{self.max_body:,} bytes (serving.max_body_mb)"}
        return None

    def _authorised(self, scope) -> bool:
        # Raw header bytes against the key's UTF-8 bytes: a non-ASCII key matches when the
        # client sends it as UTF-8 (decoding the header as latin-1 first never could).
        headers = dict(scope["headers"])
        given = headers.get(b"x-api-key", b"")
        auth = headers.get(b"authorization", b"")
        if auth[:7].lower() == b"bearer ":
            given = auth[7:].strip()
        return hmac.compare_digest(given, self.api_key)

    async def _read_body(self, receive):
        """(body, replaying receive) or ((status, error), receive) past a limit.

        Bodies are bounded by max_body, so holding one in memory is bounded too. A client
        that stops sending gets 408 after body_timeout_s: held bodies would otherwise fill
        the server's concurrency limit and every other client would get 429.
        """
        chunks, size, more = [], 0, True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.body_timeout_s
        while more:
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - loop.time()))
            except TimeoutError:
                return (408, {"error": f"request body not received within "
                                       f"{self.body_timeout_s:g} s (serving.body_timeout_s)"}
                        ), receive
            if message["type"] != "http.request":
                return (400, {"error": "client disconnected before sending the body"}), receive
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_body:
                return (413, {"error": f"request body larger than {self.max_body:,} bytes "
                                       f"(serving.max_body_mb)"}), receive
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
        extra = [(b"connection", b"close")] if status in (408, 413) else []
        start, content = _json(status, body, extra)
        await send(start)
        await send(content)


def _open(path: str) -> bool:
    return path in OPEN_PATHS or path == "/ui" or path.startswith(OPEN_PREFIXES)


def _empty_object(body: bytes) -> bool:
    """An empty body or a small JSON object (its keys are ignored, as BentoML does)."""
    if not body.strip():
        return True
    if len(body) > 1024:
        return False
    try:
        return isinstance(json.loads(body), dict)
    except ValueError:
        return False


def _json_errors(send):
    """A send() that turns the routers' 404/405 answers into the service's JSON errors."""
    held: dict | None = None

    async def wrapped(message) -> None:
        nonlocal held
        if message["type"] == "http.response.start" and message["status"] in PLAIN_ERRORS:
            held = message
            return
        if held is not None and message["type"] == "http.response.body":
            status = held["status"]
            keep = [(k, v) for k, v in held.get("headers", []) if k.lower() == b"allow"]
            start, content = _json(status, {"error": PLAIN_ERRORS[status]}, keep)
            held = None
            await send(start)
            return await send(content)
        await send(message)
    return wrapped
