"""Data sources that misbehave on purpose: the five failures of the fault matrix, for every kind
of source a runbook reads.

A :class:`FaultServer` is a real TCP server on 127.0.0.1 in a thread. Its ``behaviour`` decides
what a connection gets:

- ``hang``: accepted, never read from, never answered (until the server stops);
- ``canned``: the request is read, then a fixed answer (an HTTP 503, a Kubernetes 403
  ``Status``, a Redis ``-NOAUTH``, an HTML page) is sent and the connection closed;
- ``slow``: a proxy to a *healthy* upstream that holds the answer back for ``delay_s`` seconds.
  It records, per connection, whether the client gave up first (it has a timeout) or waited
  the whole delay (it has none, or one longer than the delay): :attr:`FaultServer.waited`.

"Down" needs no server (:func:`closed_port`). Files, directories and commands fail through
:func:`make_path_fault` (missing, unreadable, a FIFO that blocks ``open()``, corrupt bytes, a
command that never returns). :func:`make_fault` builds the value of one runbook parameter
failing in one way, with whatever it must start, as a context manager.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import socket
import stat
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = [
    "DELAY_S",
    "FAILURES",
    "FaultServer",
    "Unavailable",
    "closed_port",
    "make_fault",
    "unsupported",
]

#: How long a "slow" source holds its answer back: longer than any timeout a check uses
#: (health 5 s, Prometheus queries 10 s, Kubernetes 5 s, database connect 5 s).
DELAY_S = 15.0
FAILURES = ("down", "refusing", "hanging", "garbage", "slow")

HTML = (
    b"<!DOCTYPE html>\n<html><head><title>Welcome to nginx!</title></head>\n"
    b"<body><h1>Welcome to nginx!</h1><p>If you see this page, the web server is "
    b"successfully installed.</p></body></html>\n"
)


def _http(code: int, reason: str, body: bytes, ctype: str) -> bytes:
    head = (
        f"HTTP/1.1 {code} {reason}\r\nContent-Type: {ctype}\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


HTTP_503 = _http(
    503, "Service Unavailable", b'{"error": "upstream unavailable"}', "application/json"
)
HTTP_403 = _http(403, "Forbidden", b"<html><body>403 Forbidden</body></html>", "text/html")
HTML_200 = _http(200, "OK", HTML, "text/html; charset=utf-8")
KUBE_403 = _http(
    403,
    "Forbidden",
    json.dumps(
        {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": 'pods is forbidden: User "system:serviceaccount:aura:aura-ops" cannot '
            'list resource "pods" in API group "" in the namespace "default"',
            "reason": "Forbidden",
            "details": {"kind": "pods"},
            "code": 403,
        }
    ).encode(),
    "application/json",
)
REDIS_NOAUTH = b"-NOAUTH Authentication required.\r\n"


Made = tuple[str, tuple[str, ...], "FaultServer | None"]


class Unavailable(Exception):
    """This failure cannot be produced for this kind of source here (the reason says why)."""


def closed_port() -> int:
    """A port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _read_request(conn: socket.socket, wait_s: float = 2.0) -> bytes:
    """What the client sends first: HTTP headers, a PostgreSQL startup packet, a Redis PING."""
    conn.settimeout(wait_s)
    data = b""
    with contextlib.suppress(OSError):
        while len(data) < 65536:
            chunk = conn.recv(65536)
            if not chunk:
                break
            data += chunk
            if not data[:8].isupper() or b"\r\n\r\n" in data:  # not HTTP, or headers complete
                break
    return data


class FaultServer:
    """A TCP server on 127.0.0.1 whose connections hang, get a canned answer, or a slow one."""

    def __init__(
        self,
        behaviour: str,
        *,
        answer: bytes = b"",
        upstream: tuple[str, int] | None = None,
        delay_s: float = DELAY_S,
    ) -> None:
        if behaviour not in ("hang", "canned", "slow"):
            raise ValueError(behaviour)
        if behaviour == "slow" and upstream is None:
            raise ValueError("a slow server needs a healthy upstream")
        self.behaviour, self.answer, self.upstream, self.delay_s = (
            behaviour,
            answer,
            upstream,
            delay_s,
        )
        self.connections = 0
        self.gave_up_after_s: list[float] = []  # slow: clients that timed out first
        self.waited = 0  # slow: clients still there when the answer came
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self._stop = threading.Event()
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True, name="fault-server")
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._sock.getsockname()[1])

    def _accept(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            with self._lock:
                self.connections += 1
                self._held.append(conn)
            if self.behaviour != "hang":
                threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with contextlib.suppress(OSError):
            if self.behaviour == "canned":
                _read_request(conn)
                conn.sendall(self.answer)
                conn.shutdown(socket.SHUT_WR)
                _read_request(conn, 0.5)  # let the client read before the close
            else:
                self._slow(conn)
        with contextlib.suppress(OSError):
            conn.close()

    def _slow(self, conn: socket.socket) -> None:
        """Hold the answer back for ``delay_s``; note whether the client gave up first."""
        start, buffered = time.monotonic(), b""
        while (left := self.delay_s - (time.monotonic() - start)) > 0 and not self._stop.is_set():
            ready, _, _ = select.select([conn], [], [], min(left, 0.2))
            if ready:
                chunk = conn.recv(65536)
                if not chunk:  # the client closed: it has a timeout shorter than the delay
                    with self._lock:
                        self.gave_up_after_s.append(round(time.monotonic() - start, 2))
                    return
                buffered += chunk
        if self._stop.is_set():
            return
        with self._lock:
            self.waited += 1
        assert self.upstream is not None
        with socket.create_connection(self.upstream, timeout=10) as up:
            up.sendall(buffered)
            _pump(conn, up, self._stop)

    def close(self) -> None:
        """Stop accepting, drop every held connection, release the port."""
        self._stop.set()
        self._thread.join(2)
        with self._lock:
            for c in self._held:
                with contextlib.suppress(OSError):
                    c.close()
        self._sock.close()

    def __enter__(self) -> FaultServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pump(a: socket.socket, b: socket.socket, stop: threading.Event) -> None:
    """Copy bytes both ways until either side closes."""
    a.settimeout(None)
    b.settimeout(None)
    while not stop.is_set():
        ready, _, _ = select.select([a, b], [], [], 0.2)
        for src in ready:
            data = src.recv(65536)
            if not data:
                return
            (b if src is a else a).sendall(data)


# --- one parameter, failing one way ------------------------------------------------------------

#: the answer a "refusing" source gives, per protocol (PostgreSQL refuses with a real server)
REFUSALS = {
    "http": HTTP_503,
    "kube": KUBE_403,
    "ws": HTTP_403,
    "redis": REDIS_NOAUTH,
}
#: what a fault's value looks like, per protocol, given a port
URLS: dict[str, Callable[[int, str], str]] = {
    "http": lambda port, path: f"http://127.0.0.1:{port}{path}",
    "kube": lambda port, path: f"http://127.0.0.1:{port}",
    "ws": lambda port, path: f"ws://127.0.0.1:{port}{path}",
    "redis": lambda port, path: f"redis://127.0.0.1:{port}/0",
}


def _address(url: str) -> tuple[str, int]:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", int(parts.port or 80)


@contextlib.contextmanager
def _network_fault(proto: str, failure: str, healthy: str) -> Iterator[Made]:
    """(parameter value, attribution token, server) for a URL-like source failing one way."""
    from urllib.parse import urlsplit

    path = urlsplit(healthy).path if healthy else ""
    if failure == "down":
        port = closed_port()
        yield URLS[proto](port, path), (f"127.0.0.1:{port}",), None
        return
    if failure == "hanging":
        server = FaultServer("hang")
    elif failure == "refusing":
        server = FaultServer("canned", answer=REFUSALS[proto])
    elif failure == "garbage":
        server = FaultServer("canned", answer=HTML_200)
    else:
        if not healthy:
            raise Unavailable("no healthy upstream to slow down")
        server = FaultServer("slow", upstream=_address(healthy))
    with server:
        yield URLS[proto](server.port, path), (f"127.0.0.1:{server.port}",), server


@contextlib.contextmanager
def _postgres_fault(failure: str, env: dict[str, str], pg: Any) -> Iterator[Made]:
    """A ``dsn_env`` whose DSN is down, refused (bad password), hanging, garbage or slow.

    ``pg`` is a ``(tcp_port, role, password)`` of a real scram-auth server, or None.
    """
    var = f"AURA_OPS_FAULT_DSN_{failure.upper()}"
    server: FaultServer | None = None
    if failure == "down":
        port = closed_port()
    elif failure in ("refusing", "slow"):
        if pg is None:
            raise Unavailable("needs the Debian PostgreSQL server (apt-get install postgresql)")
        if failure == "slow":
            server = FaultServer("slow", upstream=("127.0.0.1", pg[0]))
            port = server.port
        else:
            port = pg[0]
    else:
        server = FaultServer("hang" if failure == "hanging" else "canned", answer=HTML_200)
        port = server.port
    password = pg[2] if (pg and failure == "slow") else "wrong-password-on-purpose"
    role = pg[1] if pg else "aura_ops"
    env[var] = f"postgresql://{role}:{password}@127.0.0.1:{port}/postgres"
    try:
        yield var, (f"127.0.0.1:{port}", var), server
    finally:
        if server is not None:
            server.close()


def _unreadable_file(path: Path) -> None:
    """A file open() refuses with EACCES -- also as root, where file modes do not apply."""
    if os.geteuid() != 0:
        path.write_text('{"level": "error"}\n')
        path.chmod(0)
        return
    target = Path("/proc/sys/vm/compact_memory")  # mode 0200: EACCES even for root
    if not target.exists():
        raise Unavailable("as root, no file here refuses to be read")
    path.symlink_to(target)


def unsupported(kind: str, failure: str) -> str:
    """Why ``failure`` cannot be produced for a source of ``kind`` here; "" when it can."""
    if failure == "down" or kind not in ("file", "dir", "backup_dir"):
        return ""
    if failure == "slow":
        return "a local path cannot answer slowly"
    if kind != "file" and failure == "refusing" and os.geteuid() == 0:
        return "as root, every directory is readable"
    if kind == "dir" and failure in ("hanging", "garbage"):
        return "a directory walk reads no file content"
    return ""


def make_path_fault(kind: str, failure: str, tmp: Path, healthy: str) -> str:
    """The path of a file (``file``), directory (``dir`` / ``backup_dir``) or command
    (``command``) that fails one way; raises :class:`Unavailable` where that cannot be done."""
    if why := unsupported(kind, failure):
        raise Unavailable(why)
    if failure == "down":
        return str(tmp / f"missing-{kind}")
    if kind == "file":
        path = tmp / f"{failure}.jsonl"
        if failure == "refusing":
            _unreadable_file(path)
        elif failure == "hanging":
            os.mkfifo(path)  # open() blocks until a writer comes: a hung mount, here
        else:
            path.write_bytes(b"\x00\x1f\x8b\x08garbage\xff\xfe" + os.urandom(2048) + HTML)
        return str(path)
    if kind in ("dir", "backup_dir"):
        path = tmp / f"{failure}-dir"
        path.mkdir()
        if failure == "refusing":
            path.chmod(0)
        elif failure == "hanging":
            os.mkfifo(path / "nightly-20261124.dump")  # reading the newest backup blocks
        else:
            (path / "nightly-20261124.dump").write_bytes(b"PGDMP" + os.urandom(4096))
        return str(path)
    if kind == "command":
        path = tmp / f"{failure}-command"
        body = {
            "refusing": "#!/bin/sh\necho never runs\n",  # no execute bit: EACCES, root too
            "hanging": "#!/bin/sh\nexec sleep 3600\n",
            "garbage": "#!/bin/sh\ncat <<'EOF'\n" + HTML.decode() + "EOF\n",
            "slow": f'#!/bin/sh\nsleep {DELAY_S:g}\nexec "{healthy}" "$@"\n',
        }[failure]
        path.write_text(body)
        if failure != "refusing":
            path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        return str(path)
    raise ValueError(kind)


@contextlib.contextmanager
def make_fault(
    source_kind: str,
    failure: str,
    *,
    healthy: str,
    tmp: Path,
    env: dict[str, str],
    pg: Any = None,
) -> Iterator[Made]:
    """``(value, tokens, server)``: the parameter's failing value, the texts that name this
    source in a finding, and the server behind it (None for files and closed ports).

    ``env`` receives the environment variables the value needs (a DSN for ``dsn_env``).
    """
    if failure not in FAILURES:
        raise ValueError(failure)
    if source_kind == "postgres":
        with _postgres_fault(failure, env, pg) as made:
            yield made
    elif source_kind in REFUSALS:
        with _network_fault(source_kind, failure, healthy) as made:
            yield made
    else:
        tmp.mkdir(parents=True, exist_ok=True)
        value = make_path_fault(source_kind, failure, tmp, healthy)
        yield value, (value,), None
