"""Request tracing in the sandbox: one failing request with lines in the API, worker and
database logs, and the correlation ID a user would report.

Every request is logged by the API with its ``X-Correlation-ID``; the worker logs each job
with the ID of the request that created it; and the worker reads the job's render settings
in a transaction whose ``application_name`` is ``aura-worker/<id>``, with the ID in a
sqlcommenter-style comment on the statement. At start (:func:`prepare`) the sandbox's own
PostgreSQL is told to log the application name (``log_line_prefix = '%m [%p] %q%a '``), so a
statement that fails there is logged with the ID. :func:`db_log_path` is the server's log.

The **poison-job** fault (:func:`fault_poison_project`): project 13's render settings are
corrupt (``fps`` is the text ``"24fps"``); a user submits a render for it, the API accepts it
(202), and the worker fails on it with PostgreSQL's ``invalid input syntax for type integer``.
The user's request ID becomes the runbook's ``correlation_id`` (:func:`correlation_id`);
without a fault that is the ID of a recent render that went through.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import psycopg

__all__ = [
    "LOG_LINE_PREFIX",
    "POISONED_PROJECT",
    "correlation_id",
    "db_log_path",
    "fault_heal_project",
    "fault_poison_project",
    "prepare",
]

#: The server log's line prefix: time, pid, and the session's application name.
LOG_LINE_PREFIX = "%m [%p] %q%a "
#: The project whose render settings the poison-job fault corrupts.
POISONED_PROJECT = 13


def _connect(sb: Any) -> psycopg.Connection[Any]:
    return psycopg.connect(
        sb.dsn, autocommit=True, connect_timeout=5, application_name="aura-admin"
    )


def prepare(sb: Any) -> None:
    """Make the sandbox's own PostgreSQL log the application name (never an external one)."""
    if sb.pg is None or sb.pg.kind == "external":
        return
    with _connect(sb) as conn:
        conn.execute(f"ALTER SYSTEM SET log_line_prefix = '{LOG_LINE_PREFIX}'")
        conn.execute("ALTER SYSTEM SET log_min_error_statement = 'error'")
        conn.execute("SELECT pg_reload_conf()")


def db_log_path(sb: Any) -> str:
    """The sandbox PostgreSQL's server log ("" for an external server: not ours to read)."""
    if sb.pg is None or sb.pg.data_dir is None or sb.pg.kind == "external":
        return ""
    name = "server.log" if sb.pg.kind == "system" else "log"  # pg_ctl -l of each launcher
    return str(Path(sb.pg.data_dir) / name)


def correlation_id(sb: Any, *, min_age_s: float = 1.0) -> str:
    """The request to trace: the fault's failing request, else a render accepted at least
    ``min_age_s`` ago (its job done by now), else the newest accepted; "" without traffic."""
    if getattr(sb, "traced_id", ""):
        return str(sb.traced_id)
    accepted = list(getattr(sb, "accepted", ()))
    now = time.monotonic()
    settled = [cid for at, cid in accepted if now - at >= min_age_s]
    return settled[-1] if settled else (accepted[-1][1] if accepted else "")


def fault_poison_project(sb: Any, *, wait_s: float = 10.0) -> None:
    """Corrupt project 13's settings, submit a user's render for it, wait for the worker."""
    with _connect(sb) as conn:
        conn.execute(
            """UPDATE projects SET settings = settings || '{"fps": "24fps"}' WHERE id = %s""",
            (POISONED_PROJECT,),
        )
    cid = uuid.uuid4().hex[:16]
    r = httpx.post(
        f"{sb.base_url}/api/render",
        json={"project_id": POISONED_PROJECT, "preset": "1080p"},
        headers={"X-Correlation-ID": cid},
        timeout=10.0,
    )
    r.raise_for_status()
    sb.traced_id = cid
    deadline = time.monotonic() + wait_s
    with _connect(sb) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT status FROM jobs WHERE correlation_id = %s", (cid,)
            ).fetchone()
            if row and row[0] != "queued":
                return
            time.sleep(0.1)


def fault_heal_project(sb: Any) -> None:
    """Project 13's settings are repaired."""
    sb.traced_id = ""
    with contextlib.suppress(psycopg.Error), _connect(sb) as conn:
        conn.execute(
            """UPDATE projects SET settings = settings || '{"fps": 30}' WHERE id = %s""",
            (POISONED_PROJECT,),
        )
