"""The sandbox service: a small, real HTTP API shaped like the seed runbooks' systems.

It runs in its own process (``python -m aura_ops.sandbox.service``), serves the health
endpoints of seeds 000/003/004, a Prometheus ``/metrics`` exposition, seed 003's
``/metrics/json``, and a few business endpoints backed by a real PostgreSQL. Every request is
written as one JSON line (with its correlation ID) to the log file. Faults are switched on and
off through ``/_sandbox/*`` control endpoints, which are neither logged nor counted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import threading
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Match, Route, WebSocketRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket

from aura_ops.sandbox import faults as fault_catalogue
from aura_ops.sandbox.store import Store, utcnow_iso
from aura_ops.sandbox.upstreams import ProviderError, Upstreams, serve_job_updates

_CONVERTER = re.compile(r":\w+}")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class RateLimitExceeded(Exception):
    """Raised when the sandbox's rate-limit fault rejects a request."""


class JsonLog:
    """Append-only JSON-lines log, safe across threads."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = path.open("a", encoding="utf-8", buffering=1)
        self._lock = threading.Lock()

    def write(self, **fields: Any) -> None:
        record = {"ts": utcnow_iso(), **{k: v for k, v in fields.items() if v is not None}}
        line = json.dumps(record, separators=(",", ":"))
        with self._lock:
            self._fh.write(line + "\n")


class Telemetry:
    """The service's Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.requests = Counter(
            "aura_http_requests",
            "HTTP requests by method, route and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "aura_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queue_depth = Gauge("aura_queue_depth", "Jobs waiting", registry=self.registry)
        self.workers = Gauge("aura_workers_active", "Workers running", registry=self.registry)
        self.webhook_failures = Counter(
            "aura_webhook_failures", "Failed webhook deliveries", registry=self.registry
        )
        self.jobs_completed = Counter(
            "aura_jobs_completed", "Jobs completed", registry=self.registry
        )


class RequestObserver:
    """ASGI middleware: correlation IDs, one JSON log line and metrics per request."""

    def __init__(self, app: ASGIApp, *, service: SandboxService) -> None:
        self.app = app
        self.svc = service

    def _route(self, scope: Scope) -> str:
        for route in self.svc.routes:
            match, _ = route.matches(scope)
            if match == Match.FULL:
                return _CONVERTER.sub("}", str(getattr(route, "path", scope["path"])))
        return "<unmatched>"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_sandbox"):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        cid = headers.get("x-correlation-id") or uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["correlation_id"] = cid
        status_box = {"status": 500, "started": False}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_box["status"] = message["status"]
                status_box["started"] = True
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-correlation-id", cid.encode())]
            await send(message)

        start = time.perf_counter()
        error: BaseException | None = None
        try:
            await self.app(scope, receive, send_wrapper)
        except Exception as exc:  # the request failed: answer 500 and log the exception type
            # Starlette's ServerErrorMiddleware may already have answered 500 and re-raised
            error = exc
            if not status_box["started"]:
                status = 429 if isinstance(exc, RateLimitExceeded) else 500
                body = {
                    "error": "Rate limit exceeded" if status == 429 else "Internal Server Error",
                    "correlation_id": cid,
                }
                await JSONResponse(body, status_code=status)(scope, receive, send_wrapper)
        elapsed = time.perf_counter() - start
        error = scope["state"].get("error", error)
        self.svc.observe(scope, self._route(scope), status_box["status"], elapsed, cid, error)


class SandboxService:
    """The application: routes, state, fault switches and the background worker."""

    def __init__(self, *, dsn: str, state_dir: Path, service_name: str = "aura-api") -> None:
        self.state_dir = state_dir
        self.service_name = service_name
        self.log = JsonLog(state_dir / "logs" / "api.jsonl")
        self.telemetry = Telemetry()
        self.store = Store(dsn)
        self.faults: dict[str, dict[str, Any]] = {}
        self.started = time.monotonic()
        self.leak: list[bytes] = []
        self._stop = threading.Event()
        tm = self.telemetry
        self.upstreams = Upstreams(self.log, tm.registry, tm.webhook_failures)
        self.beats: dict[str, float] = {}
        self.routes = [
            Route("/health/live", self.live),
            Route("/health/ready", self.ready),
            Route("/api/health/system", self.system),
            Route("/api/health/providers", self.providers),
            Route("/metrics", self.metrics),
            Route("/metrics/json", self.metrics_json),
            Route("/api/projects", self.list_projects),
            Route("/api/projects/{project_id:int}", self.get_project),
            Route("/api/render", self.render, methods=["POST"]),
            Route("/api/jobs/{job_id:int}", self.get_job),
            WebSocketRoute("/ws/jobs", self.ws_jobs),
            Route("/_sandbox/faults", self.faults_get, methods=["GET"]),
            Route("/_sandbox/faults", self.faults_set, methods=["POST"]),
            Route("/_sandbox/faults/{name}", self.faults_clear, methods=["DELETE"]),
        ]

    # --- plumbing -------------------------------------------------------------------------
    def app(self) -> ASGIApp:
        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            yield
            self.shutdown()

        async def on_error(request: Request, exc: Exception) -> Response:
            request.scope["state"]["error"] = exc
            cid = request.scope["state"].get("correlation_id", "")
            if isinstance(exc, RateLimitExceeded):
                return JSONResponse(
                    {"error": "Rate limit exceeded", "correlation_id": cid},
                    status_code=429,
                    headers={"Retry-After": "1"},
                )
            return JSONResponse(
                {"error": "Internal Server Error", "correlation_id": cid}, status_code=500
            )

        inner = Starlette(
            routes=self.routes,
            lifespan=lifespan,
            exception_handlers={RateLimitExceeded: on_error, Exception: on_error},
        )
        return RequestObserver(inner, service=self)

    def start_worker(self, count: int = 2) -> None:
        for i in range(count):
            name = f"sandbox-worker-{i}"
            threading.Thread(target=self._work, args=(name,), name=name, daemon=True).start()
        self.upstreams.start()

    def workers_active(self) -> int:
        """Workers whose loop went round in the last 2 s (a stalled worker stops beating)."""
        now = time.monotonic()
        return sum(1 for beat in list(self.beats.values()) if now - beat < 2.0)

    def shutdown(self) -> None:
        self._stop.set()
        self.upstreams.stop()
        self.store.close()

    def observe(
        self,
        scope: Scope,
        route: str,
        status: int,
        elapsed_s: float,
        cid: str,
        error: BaseException | None,
    ) -> None:
        method = scope["method"]
        leak = self.active("memory-leak")
        if leak:  # the leak: every request's payload kept in a cache that is never evicted
            self.leak.append(b"\x01" * int(leak.get("kib_per_request", 256)) * 1024)
        self.telemetry.requests.labels(method, route, str(status)).inc()
        self.telemetry.latency.labels(method, route).observe(elapsed_s)
        level = "ERROR" if status >= 500 else "WARNING" if status >= 400 else "INFO"
        error_type = type(error).__name__ if error else None
        detail = f" {error_type}: {error}" if error else ""
        self.log.write(
            level=level,
            logger="aura.api",
            service=self.service_name,
            message=f"HTTP {status} {method} {route}{detail} Duration {elapsed_s * 1000:.0f}ms",
            correlation_id=cid,
            method=method,
            route=route,
            path=scope["path"],
            status=status,
            duration_ms=round(elapsed_s * 1000, 3),
            error_type=error_type,
            error=str(error) if error else None,
        )

    def active(self, name: str) -> dict[str, Any] | None:
        return self.faults.get(name)

    def _work(self, name: str = "sandbox-worker-0") -> None:
        while not self._stop.wait(0.2):
            try:
                if self.active("worker-stall") is not None:
                    continue  # hung: no heartbeat, no progress
                self.beats[name] = time.monotonic()
                for job_id, cid in self.store.complete_jobs(limit=10):
                    if not self._render(job_id, cid):
                        continue  # failed, logged with its correlation ID
                    self.telemetry.jobs_completed.inc()
                    self.upstreams.job_completed(job_id, cid)
                    self.log.write(
                        level="INFO",
                        logger="aura.worker",
                        service="aura-worker",
                        message=f"Processing job {job_id} done",
                        correlation_id=cid,
                        job_id=job_id,
                    )
            except Exception as exc:  # the worker must survive a database outage
                self.log.write(
                    level="ERROR",
                    logger="aura.worker",
                    service="aura-worker",
                    message=f"worker error {type(exc).__name__}: {exc}",
                    error_type=type(exc).__name__,
                    error=str(exc),
                )

    def _render(self, job_id: int, cid: str) -> bool:
        """The job's render step: read its project's render settings from the database (a
        project with corrupt settings fails here, deep in the worker: request-trace)."""
        try:
            self.store.render_settings(job_id, cid)
            return True
        except Exception as exc:
            with contextlib.suppress(Exception):
                self.store.fail_job(job_id)
            self.log.write(
                level="ERROR",
                logger="aura.worker",
                service="aura-worker",
                message=f"Processing job {job_id} failed {type(exc).__name__}: {exc}",
                correlation_id=cid,
                job_id=job_id,
                error_type=type(exc).__name__,
                error=str(exc),
            )
            return False

    # --- health -----------------------------------------------------------------------------
    async def live(self, request: Request) -> Response:
        return JSONResponse({"status": "Healthy"})

    def _db_check(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            self.store.ping()
            return {"status": "Healthy", "latency_ms": round((time.perf_counter() - t0) * 1000, 2)}
        except Exception as exc:
            return {"status": "Unhealthy", "error": f"{type(exc).__name__}: {exc}"[:300]}

    def ready(self, request: Request) -> Response:
        checks = {"database": self._db_check()}
        ok = all(c["status"] == "Healthy" for c in checks.values())
        body = {"status": "Healthy" if ok else "Unhealthy", "checks": checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    def system(self, request: Request) -> Response:
        db = self._db_check()["status"]
        components = {
            "database": db,
            "queue": "Healthy",
            "storage": "Healthy",
            "llm": "Healthy",
            "tts": "Healthy",
        }
        worst = (
            "Unhealthy"
            if "Unhealthy" in components.values()
            else ("Degraded" if "Degraded" in components.values() else "Healthy")
        )
        return JSONResponse({"status": worst, "timestamp": utcnow_iso(), "components": components})

    async def providers(self, request: Request) -> Response:
        if self.upstreams.llm is not None:  # the breaker's real state and the last minute
            return JSONResponse({"providers": self.upstreams.providers()})
        return JSONResponse(
            {
                "providers": [
                    {
                        "name": "openai",
                        "status": "Healthy",
                        "circuit": "closed",
                        "latency_ms": 120,
                        "error_rate": 0.0,
                    },
                    {
                        "name": "elevenlabs",
                        "status": "Healthy",
                        "circuit": "closed",
                        "latency_ms": 210,
                        "error_rate": 0.0,
                    },
                ]
            }
        )

    # --- metrics ----------------------------------------------------------------------------
    def metrics(self, request: Request) -> Response:
        # the exposition still answers while the database is down
        with contextlib.suppress(Exception):
            self.telemetry.queue_depth.set(self.store.queue_depth())
        self.telemetry.workers.set(self.workers_active())
        return Response(
            generate_latest(self.telemetry.registry),
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    def metrics_json(self, request: Request) -> Response:
        by_status: dict[str, float] = {"4xx": 0, "5xx": 0}
        for metric in self.telemetry.requests.collect():
            for s in metric.samples:
                if s.name.endswith("_total") and s.labels["status"][0] in "45":
                    by_status[s.labels["status"][0] + "xx"] += s.value
        return JSONResponse(
            {
                "queue_depth": self.store.queue_depth(),
                "workers_active": self.workers_active(),
                "webhook_failures": int(self.telemetry.webhook_failures._value.get()),
                "jobs_completed_hourly": self.store.jobs_completed_since(3600),
                "errors": by_status,
                "uptime_s": round(time.monotonic() - self.started, 1),
            }
        )

    # --- business endpoints -----------------------------------------------------------------
    def _maybe_rate_limit(self, request: Request) -> None:
        fault = self.active("rate-limit")
        if fault and request.url.path.startswith(fault.get("prefix", "/api/projects")):
            raise RateLimitExceeded("Rate limit exceeded")

    def list_projects(self, request: Request) -> Response:
        self._maybe_rate_limit(request)
        return JSONResponse({"projects": self.store.list_projects(limit=20)})

    def get_project(self, request: Request) -> Response:
        self._maybe_rate_limit(request)
        project = self.store.get_project(int(request.path_params["project_id"]))
        if project is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        project["recent_jobs"] = self.store.recent_jobs(int(project["id"]))
        return JSONResponse(project)

    async def render(self, request: Request) -> Response:
        try:
            payload = await request.json()
        except ValueError:
            return JSONResponse({"error": "body must be JSON"}, status_code=422)
        if not isinstance(payload, dict):
            return JSONResponse({"error": "body must be an object"}, status_code=422)
        fault = self.active("bad-deploy")
        if fault:
            settings: dict[str, str] = {}
            # the bug shipped in the bad deploy: the new template reads a key that old clients
            # never send
            codec = settings[fault.get("missing_key", "output_codec")]
            payload["codec"] = codec
        cid = request.scope["state"]["correlation_id"]
        if self.upstreams.llm is not None:  # the script comes from the LLM provider
            llm = self.upstreams.llm
            prompt = f"Write a video script for project {payload.get('project_id', 1)}"
            try:
                await anyio.to_thread.run_sync(llm.complete, prompt, cid)
            except ProviderError as exc:
                request.scope["state"]["error"] = exc
                code = 503 if exc.kind in ("circuit_open", "timeout", "unreachable") else 502
                return JSONResponse({"error": str(exc), "correlation_id": cid}, status_code=code)
        job_id = self.store.create_job(int(payload.get("project_id", 1)), cid)
        return JSONResponse({"job_id": job_id, "status": "queued"}, status_code=202)

    def get_job(self, request: Request) -> Response:
        job = self.store.get_job(int(request.path_params["job_id"]))
        if job is None:
            return JSONResponse({"error": "not found"}, status_code=404)
        return JSONResponse(job)

    async def ws_jobs(self, websocket: WebSocket) -> None:
        await serve_job_updates(websocket, self, self.upstreams)

    # --- control plane ----------------------------------------------------------------------
    async def faults_get(self, request: Request) -> Response:
        return JSONResponse({"active": self.faults})

    async def faults_set(self, request: Request) -> Response:
        body = await request.json()
        name = str(body.get("name", ""))
        if name not in fault_catalogue.SERVICE_FAULTS:
            return JSONResponse(
                {
                    "error": f"unknown fault {name!r}",
                    "known": sorted(fault_catalogue.SERVICE_FAULTS),
                },
                status_code=400,
            )
        self.faults[name] = dict(body.get("params") or {})
        return JSONResponse({"active": self.faults})

    async def faults_clear(self, request: Request) -> Response:
        self.faults.pop(request.path_params["name"], None)
        return JSONResponse({"active": self.faults})


def main(argv: list[str] | None = None) -> None:
    """Run the sandbox service (used by :class:`aura_ops.sandbox.Sandbox`)."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m aura_ops.sandbox.service")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument(
        "--dsn-env",
        default="AURA_OPS_SANDBOX_DSN",
        help="name of the environment variable that holds the database DSN",
    )
    args = parser.parse_args(argv)
    service = SandboxService(dsn=os.environ[args.dsn_env], state_dir=args.state_dir)
    service.start_worker()
    uvicorn.run(
        service.app(), host="127.0.0.1", port=args.port, log_level="warning", access_log=False
    )


if __name__ == "__main__":
    main()
