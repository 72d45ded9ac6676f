"""The sandbox's neighbours: the parts the service depends on, and the fault actions on them.

Started by :class:`aura_ops.sandbox.Sandbox` before the service and stopped after it:

* the **LLM provider** -- :mod:`aura_ops.sandbox.provider` in its own process, with a random
  API key held in :data:`PROVIDER_KEY_VAR` (given to the service and, through
  :meth:`Peers.kernel_env`, to a runbook's kernel, so it can test the key);
* a **customer webhook endpoint** -- a small HTTP server that accepts ``job.completed``
  webhooks, and can refuse connections or hang;
* the **broker** behind live updates -- a tiny Redis-protocol server answering ``PING``;
* the **Kubernetes API** for the sandbox's deployment -- a
  :class:`~aura_ops.kube_fixture.KubeFixtureServer` serving :mod:`aura_ops.sandbox.kube_state`;
* **live-page clients** -- WebSocket connections to ``/ws/jobs`` with the web app's Origin.

The ``fault_*`` functions are the control-side actions of catalogue faults
(:mod:`aura_ops.sandbox.faults`): each takes the running ``Sandbox``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socketserver
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

from aura_ops.errors import SourceUnavailableError
from aura_ops.kube_fixture import KubeFixtureServer
from aura_ops.sandbox import kube_state
from aura_ops.sandbox.ports import check_exit_output, free_port, start_on_free_port
from aura_ops.sandbox.upstreams import (
    ALLOWED_ORIGINS,
    BROKER_URL_ENV,
    PROVIDER_KEY_ENV,
    PROVIDER_URL_ENV,
    WEBHOOK_URL_ENV,
)

__all__ = [
    "PROVIDER_KEY_VAR",
    "Broker",
    "LiveClients",
    "Peers",
    "WebhookReceiver",
    "fault_broker_down",
    "fault_broker_up",
    "fault_kube_healthy",
    "fault_kube_oom",
    "fault_provider",
    "fault_provider_ok",
    "fault_render_burst",
    "fault_webhook",
    "fault_webhook_ok",
]

#: The environment variable holding the sandbox provider's API key (a runbook parameter names it).
PROVIDER_KEY_VAR = "AURA_OPS_SANDBOX_OPENAI_KEY"


class _Reusable(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class WebhookReceiver:
    """A customer's webhook endpoint: ``ok`` (204), ``hang`` (never answers) or ``refuse``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/hooks/aura"
        self.mode = "ok"
        self.received = 0
        self.release = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                if receiver.mode == "hang":
                    receiver.release.wait(30)  # hold the connection, answer nothing
                    return
                receiver.received += 1
                self.send_response(204)
                self.end_headers()

            do_POST = do_HEAD = do_GET = _answer  # noqa: N815 (http.server API)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._httpd = _Reusable(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self.release.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def set_mode(self, mode: str) -> None:
        """``refuse`` closes the listening socket (connection refused); others restart it."""
        self.release.set()  # let requests held by ``hang`` go
        self.mode = mode
        if mode == "refuse":
            self.stop()
            return
        self.release = threading.Event()
        if self._httpd is None:
            self.start()


class Broker:
    """A minimal Redis-protocol server: ``PING`` → ``+PONG``, anything else → ``+OK``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._server: socketserver.ThreadingTCPServer | None = None

    def start(self) -> Broker:
        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                with contextlib.suppress(OSError):
                    while line := self.rfile.readline(1024):
                        if line.strip().upper() == b"PING":
                            self.wfile.write(b"+PONG\r\n")
                        elif not line.startswith((b"*", b"$")):
                            self.wfile.write(b"+OK\r\n")

        class Server(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self._server = Server(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class LiveClients:
    """Browsers on the live page: a WebSocket to ``/ws/jobs`` every ``every_s`` seconds."""

    def __init__(self, ws_url: str, origin: str = ALLOWED_ORIGINS[0], every_s: float = 1.0):
        self.ws_url, self.origin, self.every_s = ws_url, origin, every_s
        self.stop_event = threading.Event()
        self.outcomes: dict[str, int] = {}

    def start(self) -> LiveClients:
        threading.Thread(target=self._run, name="sandbox-live-clients", daemon=True).start()
        return self

    def stop(self) -> None:
        self.stop_event.set()

    def _run(self) -> None:
        import websocket  # websocket-client

        while not self.stop_event.wait(self.every_s):
            outcome = "connected"
            try:
                ws = websocket.create_connection(self.ws_url, timeout=2, origin=self.origin)
                try:
                    ws.recv()
                finally:
                    ws.close()
            except websocket.WebSocketBadStatusException as exc:
                outcome = f"rejected {exc.status_code}"
            except Exception as exc:  # closed by the server, refused, timed out
                outcome = type(exc).__name__
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1


class Peers:
    """Starts and stops the provider, webhook endpoint, broker, Kubernetes API and clients."""

    def __init__(self, workdir: Path, *, version: str = "v2.4.0") -> None:
        self.workdir = workdir
        self.version = version
        self.provider_port = free_port()
        self.provider_url = f"http://127.0.0.1:{self.provider_port}"
        self.provider_key = f"sk-sandbox-{secrets.token_hex(16)}"
        self.provider: subprocess.Popen[bytes] | None = None
        self.webhook = WebhookReceiver()
        self.broker = Broker()
        self.kube = KubeFixtureServer(kube_state.healthy_state(version=version), shift_to_now=False)
        self.clients: LiveClients | None = None

    def start(self, *, timeout_s: float = 20.0) -> Peers:
        self.webhook.start()
        self.broker.start()
        self.kube.start()
        self.provider_port = start_on_free_port(
            lambda port: self._start_provider(port, timeout_s), self.provider_port
        )
        return self

    def _start_provider(self, port: int, timeout_s: float) -> None:
        """The provider on ``port``, answering (raises PortTaken when the port was taken)."""
        self.provider_port, self.provider_url = port, f"http://127.0.0.1:{port}"
        out = (self.workdir / "provider.out").open("ab")
        self.provider = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "aura_ops.sandbox.provider",
                "--port",
                str(self.provider_port),
                "--key-env",
                PROVIDER_KEY_VAR,
            ],
            env={**os.environ, PROVIDER_KEY_VAR: self.provider_key},
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        out.close()
        self._wait_provider(timeout_s)

    def _wait_provider(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.provider is not None and self.provider.poll() is not None:
                text = check_exit_output(
                    self.workdir / "provider.out", "provider", self.provider_port
                )
                raise SourceUnavailableError(f"sandbox provider exited at start:\n{text}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.provider_url}/_provider/mode", timeout=1).status_code == 200:
                    return
            time.sleep(0.1)
        raise SourceUnavailableError(f"sandbox provider did not answer within {timeout_s:g} s")

    def start_clients(self, base_url: str) -> None:
        """Start the live-page WebSocket clients once the service answers."""
        self.clients = LiveClients(self.ws_url(base_url)).start()

    @staticmethod
    def ws_url(base_url: str) -> str:
        return base_url.replace("http://", "ws://", 1) + "/ws/jobs"

    def stop(self) -> None:
        if self.clients:
            self.clients.stop()
        self.webhook.stop()
        self.broker.stop()
        self.kube.stop()
        if self.provider is not None and self.provider.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.provider.pid, signal.SIGTERM)
            try:
                self.provider.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.provider.pid, signal.SIGKILL)
                self.provider.wait(timeout=5)
        self.provider = None

    def kernel_env(self) -> dict[str, str]:
        """What a runbook's kernel needs: the provider key, under :data:`PROVIDER_KEY_VAR`."""
        return {PROVIDER_KEY_VAR: self.provider_key}

    def service_env(self) -> dict[str, str]:
        """Environment variables that tell the sandbox service where its dependencies are."""
        return {
            PROVIDER_URL_ENV: self.provider_url,
            PROVIDER_KEY_ENV: PROVIDER_KEY_VAR,
            PROVIDER_KEY_VAR: self.provider_key,
            WEBHOOK_URL_ENV: self.webhook.url,
            BROKER_URL_ENV: self.broker.url,
        }

    def environment(self, base_url: str) -> dict[str, Any]:
        """Runbook parameters that point at these parts (no secret: the key is a variable name)."""
        return {
            "provider_url": self.provider_url,
            "api_key_env": PROVIDER_KEY_VAR,
            "webhook_url": self.webhook.url,
            "broker_url": self.broker.url,
            "ws_url": self.ws_url(base_url),
            "kube_url": self.kube.url,
        }

    def provider_mode(self, mode: str, **params: Any) -> None:
        r = httpx.post(
            f"{self.provider_url}/_provider/mode",
            timeout=5.0,
            json={"mode": mode, "params": params},
        )
        r.raise_for_status()


# --- fault actions (Fault.apply / Fault.revert); ``sb`` is the running Sandbox ------------------


def fault_kube_oom(sb: Any) -> None:
    """The deployment's containers were OOM-killed at their memory limit and restarted."""
    sb.peers.kube.scenario = kube_state.oom_killed_state(version=sb.peers.version)


def fault_kube_healthy(sb: Any) -> None:
    sb.peers.kube.scenario = kube_state.healthy_state(version=sb.peers.version)


def fault_provider(mode: str, **params: Any) -> Any:
    """An action that switches the provider to ``mode`` (slow, rate-limit, invalid-key, down)."""

    def apply(sb: Any) -> None:
        sb.peers.provider_mode(mode, **params)

    return apply


def fault_provider_ok(sb: Any) -> None:
    sb.peers.provider_mode("ok")


def fault_webhook(mode: str) -> Any:
    """An action that makes the customer's webhook endpoint ``refuse`` or ``hang``."""

    def apply(sb: Any) -> None:
        sb.peers.webhook.set_mode(mode)

    return apply


def fault_webhook_ok(sb: Any) -> None:
    sb.peers.webhook.set_mode("ok")


def fault_broker_down(sb: Any) -> None:
    """The broker behind ``/ws/jobs`` stops: connections to it are refused."""
    sb.peers.broker.stop()


def fault_broker_up(sb: Any) -> None:
    sb.peers.broker.start()


def fault_render_burst(count: int = 150, *, concurrency: int = 8) -> Any:
    """An action that submits ``count`` renders at once through the API (a bulk customer)."""

    def apply(sb: Any) -> None:
        def one(i: int) -> None:
            with contextlib.suppress(httpx.HTTPError):
                client.post(
                    "/api/render",
                    json={"project_id": 1 + i % 200, "preset": "4k"},
                    headers={"X-Correlation-ID": f"bulk{i:012d}"},
                )

        with (
            httpx.Client(base_url=sb.base_url, timeout=5.0) as client,
            ThreadPoolExecutor(concurrency) as pool,
        ):
            list(pool.map(one, range(count)))

    return apply
