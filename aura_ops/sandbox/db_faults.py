"""Database faults of the sandbox, done from the control side to its real PostgreSQL.

Each ``fault_*`` function is the ``apply`` (or ``revert``) of a catalogue fault
(:mod:`aura_ops.sandbox.faults`) and takes the running ``Sandbox``. Connections a fault
holds open are kept in ``sandbox.held[fault]`` and closed by :func:`release` (on ``clear``
and ``stop``).

- **idle-transactions** -- a leaking export worker (``application_name='aura-export'``)
  opens transactions and never commits: enough sessions idle in transaction that client
  connections reach 88 % of ``max_connections`` (the server's default 100; the seeds' pool
  alert is at 80 %). The server keeps its default ``max_connections``: the fault scales to it.
- **lock-blocking** -- a migration (``aura-migrate``) runs ``ALTER TABLE jobs ADD COLUMN``
  inside a transaction and stops there, holding ``ACCESS EXCLUSIVE`` on ``jobs``: a reporting
  session (``aura-reports``) and every API request touching jobs queue behind it.
- **missing-index** -- ``job_events`` is backfilled with history (hundreds of thousands of
  rows) while it has no index on ``job_id``: the project page's per-job event count
  (``GET /api/projects/{project_id}``) now scans the table once per job. The backfill
  grows until that query takes about 2 s on this machine, so the fault is as real on a
  fast CI runner as on a laptop. The backfill itself is not tracked by pg_stat_statements.
- **database-down** -- PostgreSQL is stopped (``pg_ctl stop -m fast``) and, on revert,
  started again with the command line it had (``postmaster.opts``).

:func:`choose_postgres` decides which server the sandbox runs: ``"auto"`` takes the Debian
PostgreSQL (``apt-get install postgresql``; started with pg_stat_statements preloaded) when
it is installed, else the embedded ``pgserver`` -- which has no pg_stat_statements, so the
slow-performance runbook reports that step UNKNOWN with the fix. ``AURA_OPS_SANDBOX_POSTGRES``
(``pgserver`` or ``system``) overrides ``"auto"``, e.g. to try the laptop path on a CI box.
"""

from __future__ import annotations

import contextlib
import math
import os
import shlex
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg

from aura_ops.errors import ConfigError
from aura_ops.sandbox.postgres import system_postgres_bindir

__all__ = [
    "POSTGRES_ENV",
    "SLOW_QUERY_TARGET_S",
    "choose_postgres",
    "fault_backfill_events",
    "fault_clear_backfill",
    "fault_hold_lock",
    "fault_idle_transactions",
    "fault_release_idle",
    "fault_release_lock",
    "fault_start_postgres",
    "fault_stop_postgres",
    "prepare",
    "release",
]

#: How slow the missing-index fault makes one project-page query (seconds).
SLOW_QUERY_TARGET_S = 2.0
IDLE_TARGET_PCT = 88.0
#: Set to ``pgserver`` or ``system`` to override ``Sandbox(postgres="auto")``.
POSTGRES_ENV = "AURA_OPS_SANDBOX_POSTGRES"
BACKFILL_TAG = "backfill"


def choose_postgres(postgres: str = "auto") -> str:
    """``"system"`` or ``"pgserver"`` for a ``Sandbox(postgres=...)`` choice.

    ``"auto"`` follows :data:`POSTGRES_ENV` when it is set (``system`` or ``pgserver``),
    else takes the Debian server when it is installed, else pgserver.
    """
    if postgres == "auto" and os.environ.get(POSTGRES_ENV):
        postgres = os.environ[POSTGRES_ENV].strip().lower()
    if postgres not in ("auto", "system", "pgserver"):
        raise ConfigError(
            f"postgres must be 'auto', 'system' or 'pgserver', not {postgres!r}",
            hint="'system' needs apt-get install postgresql; 'pgserver' needs nothing",
        )
    if postgres == "auto":
        return "system" if system_postgres_bindir() is not None else "pgserver"
    return postgres


def _connect(
    dsn: str, *, app: str, autocommit: bool = True, statement_timeout_s: int = 60
) -> psycopg.Connection[Any]:
    return psycopg.connect(
        dsn, connect_timeout=5, autocommit=autocommit, application_name=app,
        options=f"-c statement_timeout={statement_timeout_s * 1000}",
    )  # fmt: skip


def prepare(sb: Any) -> None:
    """After the schema: pg_stat_statements in the sandbox database when the server has it,
    its counters reset so that they hold what the API runs."""
    if sb.pg is None or sb.pg.kind != "system":
        return
    with _connect(sb.dsn, app="aura-sandbox") as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("SELECT pg_stat_statements_reset()")  # from here on: the API's statements


def _hold(sb: Any, key: str, conn: psycopg.Connection[Any]) -> None:
    sb.held.setdefault(key, []).append(conn)


def release(sb: Any, key: str | None = None) -> None:
    """Close the connections held for fault ``key`` (all faults when None), holders first."""
    for name in [key] if key else list(sb.held):
        for conn in sb.held.pop(name, []):
            with contextlib.suppress(Exception):
                conn.close()


# --- idle-transactions ----------------------------------------------------------------------


def fault_idle_transactions(sb: Any) -> None:
    """Leak sessions idle in transaction until client connections reach 88 % of the maximum."""
    with _connect(sb.dsn, app="aura-sandbox") as conn:
        row = conn.execute(
            "SELECT current_setting('max_connections')::int, count(*) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend'"
        ).fetchone()
    max_conn, in_use = int(row[0]), int(row[1])  # in_use counts this probe: the runbook's own
    wanted = math.ceil(max_conn * IDLE_TARGET_PCT / 100) - in_use
    for i in range(max(0, wanted)):
        leak = _connect(sb.dsn, app="aura-export", autocommit=False)
        leak.execute("SELECT id, name, owner FROM projects WHERE id = %s", (i % 200 + 1,))
        _hold(sb, "idle-transactions", leak)  # transaction left open: idle in transaction


def fault_release_idle(sb: Any) -> None:
    """End the leaked sessions (their transactions roll back)."""
    release(sb, "idle-transactions")


# --- lock-blocking --------------------------------------------------------------------------


def fault_hold_lock(sb: Any) -> None:
    """A migration holds ACCESS EXCLUSIVE on ``jobs`` inside an open transaction; a report
    waits behind it (as do the API's own queries on jobs)."""
    holder = _connect(sb.dsn, app="aura-migrate", autocommit=False)
    holder.execute("SET LOCAL lock_timeout = '10s'")
    holder.execute("ALTER TABLE jobs ADD COLUMN priority int")
    _hold(sb, "lock-blocking", holder)
    waiter = _connect(
        sb.dsn, app="aura-reports", statement_timeout_s=0
    )  # waits as long as it takes
    waiter.pgconn.send_query(b"SELECT status, count(*) FROM jobs GROUP BY status")
    _hold(sb, "lock-blocking", waiter)


def fault_release_lock(sb: Any) -> None:
    """The migration's session ends (rolled back); the waiters proceed."""
    release(sb, "lock-blocking")


# --- missing-index --------------------------------------------------------------------------

_SLOW_SQL = (
    "SELECT j.id, j.status, (SELECT count(*) FROM job_events e WHERE e.job_id = j.id) AS events "
    "FROM jobs j WHERE j.project_id = %s ORDER BY j.id DESC LIMIT 50"
)


def _untracked(conn: psycopg.Connection[Any]) -> None:
    """Keep the backfill itself out of pg_stat_statements (it happened "long ago")."""
    with contextlib.suppress(psycopg.Error):
        conn.execute("SET pg_stat_statements.track = 'none'")


def fault_backfill_events(sb: Any, *, target_s: float = SLOW_QUERY_TARGET_S) -> None:
    """Backfill old jobs and their events into ``job_events`` (no index on job_id) until the
    project page's query takes ``target_s`` seconds."""
    with _connect(sb.dsn, app="aura-backfill") as conn:
        _untracked(conn)
        conn.execute(
            "INSERT INTO jobs (project_id, status, correlation_id, created_at, completed_at) "
            "SELECT 1 + g %% 200, 'done', %s, now() - interval '3 days', "
            "now() - interval '3 days' FROM generate_series(0, 200 * 50 - 1) AS g",
            (BACKFILL_TAG,),
        )
        for _ in range(12):  # at most ~1.2 M events
            conn.execute(
                "INSERT INTO job_events (job_id, kind, at) SELECT j.id, "
                "(ARRAY['queued','started','progress','done'])[1 + g %% 4], j.created_at "
                "FROM jobs j CROSS JOIN generate_series(1, 10) AS g "
                "WHERE j.correlation_id = %s",
                (BACKFILL_TAG,),
            )
            conn.execute("ANALYZE job_events")
            t0 = time.perf_counter()
            conn.execute(_SLOW_SQL, (7,)).fetchall()
            if time.perf_counter() - t0 >= target_s:
                break


def fault_clear_backfill(sb: Any) -> None:
    """Remove the backfilled history (the query is fast again)."""
    with _connect(sb.dsn, app="aura-backfill") as conn:
        _untracked(conn)
        conn.execute("TRUNCATE job_events")
        conn.execute("DELETE FROM jobs WHERE correlation_id = %s", (BACKFILL_TAG,))


# --- database-down --------------------------------------------------------------------------


def _pg_ctl(data_dir: Path, *args: str) -> None:
    """Run the server's own pg_ctl as the owner of its data directory."""
    opts = shlex.split((data_dir / "postmaster.opts").read_text())
    pg_ctl = str(Path(opts[0]).with_name("pg_ctl"))
    owner = data_dir.stat()
    as_owner: dict[str, Any] = {}
    if os.geteuid() == 0 and owner.st_uid != 0:
        as_owner = {"user": owner.st_uid, "group": owner.st_gid, "extra_groups": []}
    proc = subprocess.run(  # noqa: S603 - the server's own binary, our arguments
        [pg_ctl, "-D", str(data_dir), *args], capture_output=True, text=True, timeout=60,
        cwd="/", check=False, **as_owner,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"pg_ctl {args[0]} failed: {proc.stderr or proc.stdout}")


def _data_dir(sb: Any) -> Path:
    if sb.pg is None or sb.pg.data_dir is None:
        raise ConfigError("database-down needs a PostgreSQL the sandbox started itself")
    return Path(sb.pg.data_dir)


def fault_stop_postgres(sb: Any) -> None:
    """Stop PostgreSQL (fast shutdown): every connection is cut, new ones are refused."""
    data_dir = _data_dir(sb)
    release(sb)
    _pg_ctl(data_dir, "stop", "-m", "fast", "-w", "-t", "30")


def fault_start_postgres(sb: Any) -> None:
    """Start PostgreSQL again with the options it ran with (same socket, same port)."""
    data_dir = _data_dir(sb)
    opts = shlex.split((data_dir / "postmaster.opts").read_text())[1:]
    if opts[:1] == ["-D"]:
        opts = opts[2:]
    log = str(data_dir / "restart.log")
    _pg_ctl(data_dir, "start", "-w", "-t", "60", "-l", log, "-o", shlex.join(opts))
