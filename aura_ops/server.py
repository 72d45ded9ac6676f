"""``aura-ops serve``: alerts in, evidence reports out, none lost, none doubled.

::

    POST /alertmanager   Alertmanager webhook v4     Authorization: Bearer <token>
    POST /grafana        Grafana alerting webhook    X-Grafana-Alerting-Signature (HMAC)
    POST /pagerduty      PagerDuty V3 webhook        X-PagerDuty-Signature: v1=...
    GET  /runs           run history (JSON, or HTML for a browser)
    GET  /runs/{id}      one run;   GET /runs/{id}/report   its report.html
    GET  /healthz        liveness and run counts

A delivery is handled in this order: size cap while reading (413), authentication on the raw
bytes (401 missing, 403 wrong), JSON (400), schema (422), routing (422 when every alert is
refused: unknown runbook, unacceptable label value), then one SQLite transaction
(:mod:`aura_ops.runstore`) and only then ``202``. ``503`` means it could not be persisted and
the sender should retry. Unrouted alerts are recorded and answered ``202``.

:func:`create_app` builds the Starlette app from its dependencies (store, routes, runner
function, clock), so tests hand it fakes; :func:`serve` wires the real ones and runs uvicorn.
The history pages are :mod:`aura_ops.server_pages`, the workers :mod:`aura_ops.server_workers`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from aura_ops import alerts as payloads
from aura_ops._execute import NICE_ENV
from aura_ops.alert_routes import ReceiverConfig, RouteTable, RunRequest, load_routes
from aura_ops.alerts import Alert, PayloadError
from aura_ops.errors import ConfigError
from aura_ops.redact import Redactor
from aura_ops.runstore import RunStore
from aura_ops.server_pages import error_response, history_routes
from aura_ops.server_workers import (
    Runner,
    SlackNotifier,
    WorkerPool,
    papermill_runner,
    reap_orphans,
    run_marker,
)

__all__ = ["AlertService", "ServeOptions", "create_app", "serve"]

log = logging.getLogger("aura_ops.server")
_PARSERS = {
    "alertmanager": payloads.parse_alertmanager,
    "grafana": payloads.parse_grafana,
    "pagerduty": payloads.parse_pagerduty,
}
Check = tuple[str, str, Callable[[str], bool]]


@dataclasses.dataclass
class ServeOptions:
    """Limits and policies of the receiver (CLI flags of ``aura-ops serve``)."""

    workers: int = 2
    run_timeout_s: float = 300.0
    max_body_bytes: int = 1024 * 1024
    retention_days: float = 30.0
    retention_runs: int = 1000
    retention_interval_s: float = 3600.0
    shutdown_grace_s: float = 5.0
    public_url: str = ""
    output_root: Path | None = None
    #: warm kernels kept ready (:mod:`aura_ops.kernelpool`); None: ``AURA_OPS_WARM_KERNELS``
    #: if set, else one per worker; 0: every run starts cold
    warm_kernels: int | None = None
    #: niceness of run processes, so acknowledging alerts never waits for a run's CPU
    run_nice: int = 5

    def warm_size(self, environ: Mapping[str, str] | None = None) -> int:
        """How many warm kernels to keep: :attr:`warm_kernels`, the env var, or ``workers``."""
        if self.warm_kernels is not None:
            return max(0, self.warm_kernels)
        raw = (environ if environ is not None else os.environ).get("AURA_OPS_WARM_KERNELS", "")
        try:
            return max(0, int(raw)) if raw.strip() else max(1, self.workers)
        except ValueError:
            raise ConfigError(
                f"AURA_OPS_WARM_KERNELS={raw!r} is not a number", hint="0 turns warm kernels off"
            ) from None


class _TooLarge(Exception):
    pass


async def _read_capped(request: Request, cap: int) -> bytes:
    """The body, refusing (without reading on) as soon as it passes ``cap`` bytes."""
    length = request.headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > cap):
        raise _TooLarge
    buf = bytearray()
    async for chunk in request.stream():
        buf += chunk
        if len(buf) > cap:
            raise _TooLarge
    return bytes(buf)


def _checks(
    rc: ReceiverConfig,
    body: bytes,
    headers: Mapping[str, str],
    environ: Mapping[str, str],
    now: float,
) -> list[Check]:
    """(what, header value, verifier) for each credential this receiver requires."""
    headers = {k.lower(): v for k, v in headers.items()}
    checks: list[Check] = []
    if rc.bearer_token_env:
        tokens = rc.values(rc.bearer_token_env, environ)
        value = headers.get("authorization", "")
        checks.append(("bearer token", value, lambda v: payloads.verify_bearer(v, tokens)))
    if rc.hmac_secret_env:
        keys = rc.values(rc.hmac_secret_env, environ)
        ts = headers.get(rc.timestamp_header.lower(), "") if rc.timestamp_header else None
        sig = headers.get(rc.signature_header.lower()) or headers.get("x-grafana-alert-signature")
        if rc.timestamp_header:
            checks.append((rc.timestamp_header, ts or "", lambda v: True))
        checks.append(
            (
                rc.signature_header,
                sig or "",
                lambda v: payloads.verify_grafana_signature(
                    body, v, keys, timestamp=ts, max_skew_s=rc.max_skew_s, now=now
                ),
            )
        )
    if rc.signature_secrets_env:
        pd_keys = rc.values(rc.signature_secrets_env, environ)
        value = headers.get("x-pagerduty-signature", "")
        checks.append(
            (
                "X-PagerDuty-Signature",
                value,
                lambda v: payloads.verify_pagerduty_signature(body, v, pd_keys),
            )
        )
    return checks


class AlertService:
    """Everything behind the HTTP handlers: authentication, parsing, routing, persistence,
    and the lifecycle of the workers and of retention."""

    def __init__(
        self,
        store: RunStore,
        routes: RouteTable,
        *,
        runner: Runner,
        clock: Callable[[], float] = time.time,
        options: ServeOptions | None = None,
        notifier: Callable[[Mapping[str, Any]], Any] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.store, self.routes, self.clock = store, routes, clock
        self.options = options or ServeOptions()
        self.environ = os.environ if environ is None else environ
        names = [n for rc in routes.receivers.values() for n in rc.env_names()]
        self.redactor = Redactor.from_environment(names, self.environ)
        store.redactor = self.redactor  # one redactor for what the store keeps and the log
        self.marker = run_marker(store.path)
        self.pool = WorkerPool(
            store,
            runner,
            workers=self.options.workers,
            run_timeout_s=self.options.run_timeout_s,
            marker=self.marker,
            on_finish=notifier,
            redactor=self.redactor,
        )
        self._stop = threading.Event()
        self._retention: threading.Thread | None = None

    # --- lifecycle ----------------------------------------------------------------------
    def start(self) -> None:
        """Kill orphaned runs of a crashed server, re-queue its runs, start the workers."""
        killed = reap_orphans(self.marker)
        requeued, failed = self.store.recover()
        if killed or requeued or failed:
            log.warning(
                "recovered after an interrupted server: %d orphaned process(es) killed, "
                "%d run(s) queued again, %d failed after repeated interruptions",
                killed,
                requeued,
                failed,
            )
        self._stop.clear()
        self.pool.start()
        self._retention = threading.Thread(
            target=self._retain, name="aura-ops-retention", daemon=True
        )
        self._retention.start()

    def stop(self) -> None:
        """Stop the workers (abandoning runs past the grace period) and retention."""
        self._stop.set()
        abandoned = self.pool.stop(self.options.shutdown_grace_s)
        if abandoned:
            log.warning(
                "%d run(s) still going at shutdown: they run again at next start", abandoned
            )
        if self._retention is not None:
            self._retention.join(2.0)

    def prune(self) -> dict[str, int]:
        """Apply retention now."""
        o = self.options
        return self.store.prune(
            max_age_s=o.retention_days * 86400, max_runs=o.retention_runs, output_root=o.output_root
        )

    def _retain(self) -> None:
        while not self._stop.is_set():
            try:
                gone = self.prune()
                if any(gone.values()):
                    log.info("retention: removed %s", gone)
            except Exception as exc:
                log.error("retention failed: %s", exc)
            self._stop.wait(self.options.retention_interval_s)

    # --- deliveries -------------------------------------------------------------------
    def authenticate(
        self, source: str, body: bytes, headers: Mapping[str, str]
    ) -> JSONResponse | None:
        """None when the delivery is authentic, else the 401 (missing) or 403 (wrong) answer."""
        rc = self.routes.receivers[source]
        for what, value, ok in _checks(rc, body, headers, self.environ, self.clock()):
            if not value:
                return error_response(401, f"missing {what}")
            if not ok(value):
                log.warning("%s: refused a delivery with a wrong %s", source, what)
                return error_response(403, f"wrong {what}")
        return None

    def accept(
        self, source: str, body: bytes, headers: Mapping[str, str]
    ) -> tuple[int, dict[str, Any]]:
        """Parse, route and persist an authenticated delivery: (HTTP status, JSON answer)."""
        try:
            doc = payloads.decode_json(body)
            alerts = _PARSERS[source](doc)
        except PayloadError as exc:
            return self._refuse(source, exc.status, exc.one_line())
        key = None
        if source == "pagerduty":
            key = headers.get("x-webhook-id") or str(doc["event"].get("id") or "") or None
            if key and self.store.seen_delivery(source, key):
                return 200, {"duplicate": True, "delivery_key": key}
        items = self._route_all(alerts)
        if items and all(why for _, _, why in items):
            return self._refuse(source, 422, "; ".join(sorted({w for *_, w in items}))[:2000])
        try:
            delivery, outcomes = self.store.record_delivery(
                source, items, delivery_key=key, truncated=payloads.truncated_alerts(doc)
            )
        except sqlite3.IntegrityError:  # the same webhook id, delivered twice at once
            return 200, {"duplicate": True, "delivery_key": key}
        except sqlite3.Error as exc:
            log.error("%s: delivery NOT persisted (%s); answered 503 to be retried", source, exc)
            return 503, {"error": "could not persist the delivery; retry"}
        self.pool.wake()
        if payloads.truncated_alerts(doc):
            log.warning(
                "%s: the sender left %d alert(s) out of delivery %s (max_alerts)",
                source,
                payloads.truncated_alerts(doc),
                delivery,
            )
        summary = ", ".join(o.outcome + (f" run {o.run_id}" if o.run_id else "") for o in outcomes)
        log.info("%s: delivery %s accepted: %s", source, delivery, summary or "no alerts")
        return 202, {
            "delivery": delivery,
            "runs_queued": sum(1 for o in outcomes if o.outcome == "queued"),
            "alerts": [o.to_dict() for o in outcomes],
        }

    def _route_all(self, alerts: list[Alert]) -> list[tuple[Alert, RunRequest | None, str]]:
        """Each alert with its run request (firing and routed) or the reason it is refused."""
        items: list[tuple[Alert, RunRequest | None, str]] = []
        for alert in alerts:
            request, why = None, ""
            if alert.status == "firing":
                try:
                    request = self.routes.resolve(alert)
                except PayloadError as exc:
                    why = self.redactor.text(exc.one_line())
            items.append((alert, request, why))
        return items

    def _refuse(self, source: str, status: int, reason: str) -> tuple[int, dict[str, Any]]:
        reason = self.redactor.text(reason)
        log.warning("%s: refused a delivery (%s): %s", source, status, reason)
        with contextlib.suppress(sqlite3.Error):
            self.store.record_refused(source, status, reason)
        return status, {"error": reason}


def _receiver(service: AlertService, source: str) -> Callable[[Request], Any]:
    """The POST handler of one webhook endpoint."""
    cap = service.options.max_body_bytes

    async def receive(request: Request) -> Response:
        rc = service.routes.receivers[source]
        if not rc.enabled(service.environ):
            names = ", ".join(rc.env_names()) or "a secret"
            return error_response(404, f"receiver {source!r} is not enabled: set {names}")
        try:
            body = await _read_capped(request, cap)
        except _TooLarge:
            return JSONResponse(
                {"error": f"body larger than {cap} bytes"},
                status_code=413,
                headers={"Connection": "close"},
            )
        denied = service.authenticate(source, body, request.headers)
        if denied is not None:
            return denied
        status, answer = await anyio.to_thread.run_sync(
            service.accept, source, body, request.headers
        )
        return JSONResponse(answer, status_code=status)

    return receive


def create_app(
    store: RunStore,
    routes: RouteTable,
    *,
    runner: Runner,
    clock: Callable[[], float] = time.time,
    options: ServeOptions | None = None,
    notifier: Callable[[Mapping[str, Any]], Any] | None = None,
    environ: Mapping[str, str] | None = None,
) -> Starlette:
    """The receiver app. Its lifespan recovers interrupted runs and starts the workers, and
    stops them at shutdown; ``app.state.service`` is the :class:`AlertService`."""
    service = AlertService(
        store,
        routes,
        runner=runner,
        clock=clock,
        options=options,
        notifier=notifier,
        environ=environ,
    )

    async def healthz(request: Request) -> Response:
        stats = await anyio.to_thread.run_sync(store.stats)
        enabled = {name: rc.enabled(service.environ) for name, rc in routes.receivers.items()}
        return JSONResponse(
            {"status": "ok", "runs": stats["runs"], "busy": service.pool.busy, "receivers": enabled}
        )

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(service.start)
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(service.stop)

    app = Starlette(
        routes=[
            *(
                Route(f"/{source}", _receiver(service, source), methods=["POST"])
                for source in _PARSERS
            ),
            *history_routes(service),
            Route("/healthz", healthz, methods=["GET"]),
        ],
        lifespan=lifespan,
    )
    app.state.service = service
    return app


def _notifier(routes: RouteTable, public_url: str) -> SlackNotifier | None:
    """The Slack-compatible notifier when the routes file names a set URL variable."""
    notify = routes.options.get("notify", {})
    url = os.environ.get(str(notify.get("slack_webhook_env", "")), "")
    if not url:
        return None
    return SlackNotifier(url, public_url=public_url, timeout_s=float(notify.get("timeout_s", 5)))


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 9095,
    routes_path: str | Path | None = None,
    db_path: str | Path | None = None,
    output_root: str | Path | None = None,
    options: ServeOptions | None = None,
    storm_window_s: float = 300.0,
    max_queue: int = 100,
    log_level: str = "info",
) -> int:
    """Run the receiver until interrupted (SIGINT/SIGTERM finish the current requests)."""
    import uvicorn

    from aura_ops.config import project_root
    from aura_ops.server_workers import configure_logging, lock_database

    root = project_root()
    db = Path(db_path or root / "outputs" / "aura-ops.db")
    lock = lock_database(db)  # one server per database, before touching its runs
    pool = None
    try:
        # processes of a killed predecessor's runs stop now, before the slow part of start-up
        orphans = reap_orphans(run_marker(db))
        routes = load_routes(routes_path or root / "parameters" / "routes.yaml", root)
        opts = options or ServeOptions()
        opts.output_root = Path(output_root or root / "outputs").resolve()
        opts.public_url = opts.public_url or f"http://{host}:{port}"
        names = [n for rc in routes.receivers.values() for n in rc.env_names()]
        enabled = [n for n, rc in routes.receivers.items() if rc.enabled()]
        if not enabled:
            raise ConfigError("no webhook receiver is enabled", hint="export " + " or ".join(names))
        notify_env = str(routes.options["notify"].get("slack_webhook_env", ""))
        configure_logging(Redactor.from_environment([*names, notify_env]), log_level)
        if orphans:
            log.warning("killed %d process(es) of runs a killed server left behind", orphans)
        store = RunStore(db, storm_window_s=storm_window_s, max_queue=max_queue)
        warm = opts.warm_size()
        if warm:  # started now, in the background: the first alert finds kernels ready
            from aura_ops.kernelpool import KernelPool

            nice = {NICE_ENV: str(opts.run_nice)} if opts.run_nice > 0 else {}
            pool = KernelPool(warm, env=nice, notebooks_dir=root / "notebooks").start()
        runner = papermill_runner(
            output_root=opts.output_root, root=root, kernel_pool=pool, nice=opts.run_nice
        )
        app = create_app(
            store, routes, runner=runner, options=opts, notifier=_notifier(routes, opts.public_url)
        )
        log.info(
            "aura-ops serve on http://%s:%s (receivers: %s; %d routes; db %s; %d workers; "
            "%d warm kernels)",
            host,
            port,
            ", ".join(enabled),
            len(routes.routes),
            db,
            opts.workers,
            warm,
        )
        config = uvicorn.Config(app, host=host, port=port, log_config=None, lifespan="on")
        try:
            uvicorn.Server(config).run()
        finally:
            store.close()
    finally:
        if pool is not None:
            pool.close()
        lock.close()
    return 0
