"""A stand-in for an external LLM provider: a second real service the sandbox depends on.

It runs in its own process (``python -m aura_ops.sandbox.provider --port N``) and answers the
two OpenAI-shaped calls the sandbox service and the runbooks make, with OpenAI's error bodies::

    GET  /v1/models              (seed 004 "Test API manually")
    POST /v1/chat/completions    (what ``POST /api/render`` calls to write a script)

Requests need ``Authorization: Bearer <key>``; the valid key is read from the environment
variable named by ``--key-env``. Its behaviour is switched through ``POST /_provider/mode``
(``{"mode": ..., "params": {...}}``), as an outage at the real provider would change it:

* ``ok`` -- answers within a few milliseconds, rate limit far above the sandbox's traffic;
* ``slow`` -- every call takes ``delay_s`` (default 3 s), longer than the service's timeout;
* ``rate-limit`` -- the key's quota drops to ``per_s`` requests a second (HTTP 429);
* ``invalid-key`` -- the key is revoked (HTTP 401 ``invalid_api_key``);
* ``down`` -- HTTP 503 ``server_error``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["MODES", "ProviderService", "main"]

MODES = frozenset({"ok", "slow", "rate-limit", "invalid-key", "down"})
NORMAL_RATE_PER_S = 200.0


def _error(message: str, kind: str, code: str | None, status: int, **headers: str) -> Response:
    body = {"error": {"message": message, "type": kind, "param": None, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


class _Bucket:
    """A token bucket: ``per_s`` requests a second, bursts up to ``burst``."""

    def __init__(self, per_s: float, burst: float) -> None:
        self.per_s, self.burst = per_s, burst
        self.tokens, self.at = burst, time.monotonic()
        self.lock = threading.Lock()

    def take(self) -> bool:
        with self.lock:
            now = time.monotonic()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.per_s)
            self.at = now
            if self.tokens >= 1:
                self.tokens -= 1
                return True
            return False


class ProviderService:
    """The provider's routes, its key, its mode and its rate limiter."""

    def __init__(self, key: str) -> None:
        self.key = key
        self.mode = "ok"
        self.params: dict[str, Any] = {}
        self.bucket = _Bucket(NORMAL_RATE_PER_S, NORMAL_RATE_PER_S)
        self.calls = 0

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/v1/chat/completions", self.complete, methods=["POST"]),
                Route("/_provider/mode", self.get_mode, methods=["GET"]),
                Route("/_provider/mode", self.set_mode, methods=["POST"]),
            ]
        )

    async def _gate(self, request: Request) -> Response | None:
        """Apply the mode: delay, outage, key check and rate limit, as the provider would."""
        self.calls += 1
        if self.mode == "slow":
            await asyncio.sleep(float(self.params.get("delay_s", 3.0)))
        if self.mode == "down":
            return _error("The server is overloaded or not ready yet.", "server_error", None, 503)
        token = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if self.mode == "invalid-key" or token != self.key:
            shown = f"{token[:7]}****{token[-4:]}" if len(token) > 12 else "****"
            return _error(
                f"Incorrect API key provided: {shown}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
                "invalid_api_key",
                401,
            )
        if not self.bucket.take():
            limit = round(self.bucket.per_s * 60)
            return _error(
                f"Rate limit reached for requests on your organization: Limit {limit} / min. "
                "Please try again in 1s.",
                "requests",
                "rate_limit_exceeded",
                429,
                **{"retry-after": "1", "x-ratelimit-limit-requests": str(limit)},
            )
        return None

    async def models(self, request: Request) -> Response:
        refused = await self._gate(request)
        if refused is not None:
            return refused
        return JSONResponse({"object": "list", "data": [{"id": "gpt-4o-mini", "object": "model"}]})

    async def complete(self, request: Request) -> Response:
        refused = await self._gate(request)
        if refused is not None:
            return refused
        try:
            body = await request.json()
        except ValueError:
            return _error("We could not parse the JSON body.", "invalid_request_error", None, 400)
        prompt = str((body.get("messages") or [{}])[-1].get("content", ""))[:80]
        return JSONResponse(
            {
                "object": "chat.completion",
                "model": body.get("model", "gpt-4o-mini"),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": f"Script: {prompt}"}}
                ],
                "usage": {"prompt_tokens": len(prompt.split()), "completion_tokens": 12},
            }
        )

    async def get_mode(self, request: Request) -> Response:
        return JSONResponse({"mode": self.mode, "params": self.params, "calls": self.calls})

    async def set_mode(self, request: Request) -> Response:
        body = await request.json()
        mode = str(body.get("mode", ""))
        if mode not in MODES:
            return JSONResponse({"error": f"unknown mode {mode!r}"}, status_code=400)
        self.mode, self.params = mode, dict(body.get("params") or {})
        per_s = float(self.params.get("per_s", 1.0)) if mode == "rate-limit" else NORMAL_RATE_PER_S
        self.bucket = _Bucket(per_s, max(1.0, per_s))
        return JSONResponse({"mode": self.mode, "params": self.params})


def main(argv: list[str] | None = None) -> None:
    """Run the provider (used by :class:`aura_ops.sandbox.peers.Peers`)."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m aura_ops.sandbox.provider")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--key-env", required=True, help="variable holding the valid API key")
    args = parser.parse_args(argv)
    service = ProviderService(os.environ[args.key_env])
    uvicorn.run(service.app(), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
