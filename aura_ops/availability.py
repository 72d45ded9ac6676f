"""Is the service up at all? Why not? (seeds 000 Complete Outage, 003 API Down, 004 Service Down)

When the health endpoint does not answer, the next question is *how* it fails, because each
way points at a different fix:

- **nothing listening** (connection refused): the process is gone -- crashed, OOM-killed,
  never started. Look at why it exited, restart it.
- **accepts, never answers** (TCP connects, no HTTP reply within the timeout): the process
  is there but hung -- stopped (``SIGSTOP``, a debugger), deadlocked, or saturated.
- **the name does not resolve / the host is unreachable**: DNS or network, not the service.

:func:`check_api` runs the seeds' quick health check (:func:`aura_ops.health.check_health`:
liveness, then readiness, components and providers when it answers) and, when liveness does
not answer, replaces that finding with one that says which of the above it is.
:func:`check_service_process` looks at the process itself on this host (``ps aux | grep``)
and reads its state: stopped (``T``), zombie (``Z``) or stuck in uninterruptible I/O (``D``)
are findings even though the process "exists". :func:`check_database` is the connectivity
check with an unreachable database marked as the outage's cause.
"""

from __future__ import annotations

import errno
import socket
import threading
from typing import Any
from urllib.parse import urlsplit

from aura_ops.database import Db, check_connectivity
from aura_ops.findings import Evidence, Finding, Status, unknown
from aura_ops.health import check_health
from aura_ops.system import fetch_processes

__all__ = ["check_api", "check_database", "check_service_process", "fetch_tcp"]

#: /proc/<pid>/stat states that mean "present but not serving".
_BAD_STATES = {
    "T": (Status.CRITICAL, "stopped (state T: sent SIGSTOP, or held by a debugger)"),
    "t": (Status.CRITICAL, "stopped by a tracer (state t)"),
    "Z": (Status.CRITICAL, "a zombie (state Z: it exited, its parent has not reaped it)"),
    "D": (Status.WARNING, "in uninterruptible sleep (state D: stuck on disk or network I/O)"),
}


def _host_port(base_url: str) -> tuple[str, int]:
    parts = urlsplit(base_url)
    host = parts.hostname or "localhost"
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return host, port


def fetch_tcp(host: str, port: int, *, timeout_s: float = 3.0) -> str:
    """Try a TCP connection: ``"accepted"``, ``"refused"``, ``"timeout"``, ``"unresolved"``
    or ``"unreachable: <reason>"``. Never raises."""
    box: dict[str, Any] = {}

    def resolve() -> None:  # getaddrinfo has no timeout of its own
        try:
            box["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            box["infos"] = []

    thread = threading.Thread(target=resolve, daemon=True, name="aura-ops-resolve")
    thread.start()
    thread.join(timeout_s)
    infos = box.get("infos")
    if infos is None:
        return "timeout"
    if not infos:
        return "unresolved"
    family, kind, proto, _, addr = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.settimeout(timeout_s)
        try:
            sock.connect(addr)
        except ConnectionRefusedError:
            return "refused"
        except TimeoutError:
            return "timeout"
        except OSError as exc:
            if exc.errno == errno.ECONNREFUSED:
                return "refused"
            return f"unreachable: {exc.strerror or exc}"
    return "accepted"


_TCP_VERDICT = {
    "refused": (
        "is down: nothing is listening on {hp} (connection refused)",
        "The process is gone: find why it exited (its logs, OOM kills, exit code) and restart it",
    ),
    "accepted": (
        "is hung: {hp} accepts TCP connections but nothing answered HTTP within {t:g} s",
        "The process is there but not serving: check its state (stopped, deadlocked, CPU "
        "saturated) before restarting it; capture a stack dump first if you can",
    ),
    "timeout": (
        "is unreachable: TCP connections to {hp} time out",
        "A firewall, load balancer or network problem, or the host is down: check from "
        "another host and the network path",
    ),
    "unresolved": (
        "is unreachable: the host name of {hp} does not resolve",
        "DNS: check the record and the resolver",
    ),
}


def _classify(live: Finding, base_url: str, timeout_s: float) -> Finding:
    """Rewrite a "not answering" liveness finding with what the TCP layer says."""
    host, port = _host_port(base_url)
    tcp = fetch_tcp(host, port, timeout_s=min(3.0, timeout_s))
    key = tcp if tcp in _TCP_VERDICT else "timeout"
    text, hint = _TCP_VERDICT[key]
    summary = f"API at {base_url} " + text.format(hp=f"{host}:{port}", t=timeout_s)
    if key == "timeout" and tcp != "timeout":
        summary = f"API at {base_url} is unreachable: {tcp}"
    evidence = (
        *live.evidence,
        Evidence.json({"liveness": live.observed, "tcp_connect": tcp}, "how it fails"),
    )
    source = f"{live.source}; TCP connect {host}:{port}"
    labels = {**live.labels, "role": "cause", "tcp": tcp}
    return live.replace(
        summary=summary, hint=hint, evidence=evidence, source=source, observed=tcp, labels=labels
    )


def check_api(base_url: str, *, timeout_s: float = 5.0) -> list[Finding]:
    """Liveness, readiness, components and providers; a silent API is classified at TCP level.

    CRITICAL "is down" (refused), "is hung" (accepts, no answer), or "is unreachable"
    (timeout, DNS) when liveness does not answer; otherwise the findings of
    :func:`aura_ops.health.check_health`.
    """
    findings = check_health(base_url, timeout_s=timeout_s)
    reproduce = f"check_api({base_url!r}, timeout_s={timeout_s:g})"
    first = findings[0] if findings else None
    if (
        first is not None
        and first.status == Status.CRITICAL
        and "not answering" in first.summary
        and first.subject.endswith("/health/live")
    ):
        findings[0] = _classify(first, base_url, timeout_s)
    return [f.replace(reproduce=reproduce) for f in findings]


def check_database(db: Db, *, timeout_s: float = 5.0) -> list[Finding]:
    """Can the service's database be reached? (:func:`aura_ops.database.check_connectivity`)

    In an outage an unreachable database is the cause, not one symptom among many: a
    CRITICAL finding is marked so, and the verdict leads with it rather than with the
    readiness probes that fail because of it.
    """
    return [
        f.replace(labels={**f.labels, "role": "cause"}) if f.status == Status.CRITICAL else f
        for f in check_connectivity(db, timeout_s=timeout_s)
    ]


def check_service_process(pattern: str, *, min_count: int = 1) -> list[Finding]:
    """Is the service's process on this host running, and in a serving state?

    ``pattern`` is a regex over the process name and command line (``ps aux | grep -E``).
    CRITICAL when fewer than ``min_count`` match or one is stopped or a zombie; WARNING when
    one is in uninterruptible I/O. An empty ``pattern`` is INFO: nothing was looked at (the
    service runs elsewhere, e.g. in Kubernetes).
    """
    check, subject = "availability.process", f"processes matching {pattern!r}"
    reproduce = f"check_service_process({pattern!r}, min_count={min_count})"
    source = f"/proc/<pid>/stat (ps aux | grep -E '{pattern}')"
    if not pattern:
        summary = "No process pattern given: the service's process was not inspected"
        return [Finding(check, "processes", Status.INFO, summary, source=source,
                        reproduce=reproduce)]  # fmt: skip
    try:
        frame = fetch_processes(pattern)
    except Exception as exc:  # no /proc, a bad regex
        return [unknown(check, subject, exc, source=source, reproduce=reproduce)]
    evidence = (Evidence.table(frame, f"processes matching {pattern!r}"),)
    make = dict(check=check, subject=subject, source=source, reproduce=reproduce,
                evidence=evidence)  # fmt: skip
    if len(frame) < min_count:
        summary = (
            f"No process matching {pattern!r} is running" if frame.empty
            else f"Only {len(frame)} process(es) match {pattern!r} (expected >= {min_count})"
        )  # fmt: skip
        return [Finding(status=Status.CRITICAL, summary=summary, observed=len(frame),
                        expected=f">= {min_count}", labels={"role": "cause"},
                        hint="The service is not running: read its last log lines and exit "
                        "status, then restart it (see Resolution)", **make)]  # fmt: skip
    findings = []
    for row in frame.itertuples():
        if row.state in _BAD_STATES:
            status, what = _BAD_STATES[row.state]
            summary = f"Service process {row.name} (pid {row.pid}) is {what}"
            hint = (
                f"Resume it with kill -CONT {row.pid} if it was stopped on purpose; otherwise "
                "restart the service (see Resolution)"
            )
            findings.append(Finding(status=status, summary=summary, observed=row.state,
                                    expected="R or S", hint=hint,
                                    labels={"role": "cause", "pid": row.pid}, **make))  # fmt: skip
    if findings:
        return findings
    states = ", ".join(f"pid {r.pid} {r.state}" for r in frame.head(5).itertuples())
    summary = f"{len(frame)} process(es) matching {pattern!r} running ({states})"
    return [Finding(status=Status.OK, summary=summary, observed=len(frame), **make)]
