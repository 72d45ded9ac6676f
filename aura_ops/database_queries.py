"""PostgreSQL plumbing for :mod:`aura_ops.database`: connections, the SQL text, ``fetch_*``.

Every function here does I/O and raises the typed errors of :mod:`aura_ops.errors`; the
``check_*`` functions in :mod:`aura_ops.database` judge what these return.

A database is named by ``db``: a libpq DSN (``"postgresql://…"`` or ``"host=… dbname=…"``), the
NAME of an environment variable holding one (``"AURA_DB_DSN"`` or ``"$AURA_DB_DSN"``, resolved
in this process, so the secret never becomes a parameter), or an open ``psycopg.Connection``
(from :func:`connect`). Subjects and reproduce strings are rebuilt from host, port and dbname
only: a password never reaches a finding.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import time
import weakref
from collections.abc import Iterator, Mapping
from typing import Any

import pandas as pd
import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from aura_ops.config import secret
from aura_ops.errors import (
    AuraOpsError,
    ConfigError,
    QueryError,
    SourceTimeoutError,
    SourceUnavailableError,
)

__all__ = [
    "Db",
    "connect",
    "describe",
    "fetch_blocking_locks",
    "fetch_connections",
    "fetch_connectivity",
    "fetch_database_sizes",
    "fetch_idle_in_transaction",
    "fetch_long_running_queries",
    "fetch_replication",
    "fetch_slow_statements",
    "fetch_sql",
    "fetch_table_sizes",
    "fetch_visibility",
    "run_sql",
    "session",
]

#: What names a database: a DSN, the name of an env var holding one, or an open connection.
Db = str | psycopg.Connection[Any]

QUERY_CHARS = 300  # how much of a query's text goes into evidence

_ENV_NAME = re.compile(r"\$?[A-Za-z_][A-Za-z0-9_]*")

CONNECTIONS_SQL = """\
SELECT coalesce(state, '<hidden>') AS state, coalesce(usename::text, '<hidden>') AS usename,
       coalesce(application_name, '') AS application_name, count(*)::int AS connections,
       current_setting('max_connections')::int AS max_connections,
       current_setting('superuser_reserved_connections')::int AS reserved_connections
FROM pg_stat_activity WHERE backend_type = 'client backend'
GROUP BY 1, 2, 3 ORDER BY connections DESC, state, usename"""

_SESSION_COLUMNS = """\
SELECT pid, usename::text AS usename, application_name, client_addr::text AS client_addr,
       state, wait_event_type, wait_event,
       extract(epoch FROM now() - query_start)::float8 AS query_age_s,
       extract(epoch FROM now() - state_change)::float8 AS state_age_s,
       extract(epoch FROM now() - xact_start)::float8 AS xact_age_s,
       left(query, %(query_chars)s) AS query
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"""

LONG_RUNNING_SQL = f"""{_SESSION_COLUMNS}
  AND state IN ('active', 'fastpath function call')
  AND now() - query_start >= make_interval(secs => %(min_age_s)s)
ORDER BY query_age_s DESC"""

IDLE_IN_TRANSACTION_SQL = f"""{_SESSION_COLUMNS}
  AND state IN ('idle in transaction', 'idle in transaction (aborted)')
  AND now() - state_change >= make_interval(secs => %(min_idle_s)s)
ORDER BY state_age_s DESC"""

# Hidden rows show neither state nor backend_type; datid and usesysid set means a session.
VISIBILITY_SQL = """\
SELECT count(*) FILTER (WHERE query = '<insufficient privilege>' AND datid IS NOT NULL
                          AND usesysid IS NOT NULL)::int AS hidden_sessions,
       current_user AS role,
       pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS can_read_all_stats
FROM pg_stat_activity"""

BLOCKING_SQL = """\
SELECT a.pid AS blocked_pid, a.usename::text AS blocked_user,
       a.application_name AS blocked_application,
       extract(epoch FROM now() - coalesce(a.query_start, a.state_change))::float8 AS wait_s,
       a.wait_event_type, a.wait_event, left(a.query, %(query_chars)s) AS blocked_query,
       b.pid AS blocking_pid, b.usename::text AS blocking_user,
       b.application_name AS blocking_application, b.state AS blocking_state,
       extract(epoch FROM now() - b.xact_start)::float8 AS blocking_xact_age_s,
       left(b.query, %(query_chars)s) AS blocking_query
FROM pg_stat_activity AS a
CROSS JOIN LATERAL unnest(pg_blocking_pids(a.pid)) AS blocker(pid)
LEFT JOIN pg_stat_activity AS b ON b.pid = blocker.pid
WHERE a.pid <> pg_backend_pid()
ORDER BY wait_s DESC, blocked_pid, blocking_pid"""

PSS_STATE_SQL = """\
SELECT (SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
        WHERE e.extname = 'pg_stat_statements') AS schema,
       EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_stat_statements')
         AS available,
       current_setting('shared_preload_libraries') AS preload, current_user AS role,
       pg_has_role(current_user, 'pg_read_all_stats', 'USAGE') AS can_read_all_stats"""

PSS_COLUMNS_SQL = """\
SELECT attname::text FROM pg_attribute
WHERE attrelid = %(relation)s::regclass AND attnum > 0 AND NOT attisdropped"""

#: pg_stat_statements columns by meaning, newest name first (PG13 renamed *_time → *_exec_time).
PSS_COLUMN_CHOICES: Mapping[str, tuple[str, ...]] = {
    "calls": ("calls",),
    "total_ms": ("total_exec_time", "total_time"),
    "mean_ms": ("mean_exec_time", "mean_time"),
    "max_ms": ("max_exec_time", "max_time"),
    "rows": ("rows",),
    "shared_blks_hit": ("shared_blks_hit",),
    "shared_blks_read": ("shared_blks_read",),
}

TABLE_SIZES_SQL = """\
SELECT n.nspname::text AS schema, c.relname::text AS table,
       pg_total_relation_size(c.oid) AS total_bytes, pg_relation_size(c.oid) AS table_bytes,
       pg_indexes_size(c.oid) AS index_bytes, s.n_live_tup AS live_rows,
       s.n_dead_tup AS dead_rows, s.last_autovacuum
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg_toast%%'
ORDER BY total_bytes DESC, schema, "table" LIMIT %(top_n)s"""

DATABASE_SIZES_SQL = """\
SELECT datname::text AS database, pg_database_size(datname) AS bytes
FROM pg_database WHERE datallowconn AND has_database_privilege(datname, 'CONNECT')
ORDER BY bytes DESC, database"""

RECOVERY_SQL = "SELECT pg_is_in_recovery() AS in_recovery"

PRIMARY_REPLICATION_SQL = """\
SELECT 'replica' AS role, pid, usename::text AS usename, application_name,
       client_addr::text AS client_addr, state, sync_state,
       pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::float8 AS replay_lag_bytes,
       extract(epoch FROM write_lag)::float8 AS write_lag_s,
       extract(epoch FROM flush_lag)::float8 AS flush_lag_s,
       extract(epoch FROM replay_lag)::float8 AS replay_lag_s
FROM pg_stat_replication ORDER BY application_name, pid"""

STANDBY_REPLICATION_SQL = """\
SELECT 'standby' AS role, pg_last_wal_receive_lsn()::text AS receive_lsn,
       pg_last_wal_replay_lsn()::text AS replay_lsn,
       pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::float8
         AS replay_lag_bytes,
       extract(epoch FROM now() - pg_last_xact_replay_timestamp())::float8 AS replay_lag_s"""

CONNECTIVITY_SQL = "SELECT 1"

SERVER_SQL = """\
SELECT current_setting('server_version') AS server_version, pg_is_in_recovery() AS in_recovery,
       current_database()::text AS database, current_user::text AS role"""


@dataclasses.dataclass(frozen=True)
class _Target:
    """How to name a database in findings: never with its password."""

    label: str  # for reproduce: the env var name, or the DSN without its password
    subject: str  # postgres://host:port/dbname
    statement_timeout_s: float | None = None
    lock_timeout_s: float | None = None
    password: str = ""  # only to scrub error messages; never shown


_TARGETS: weakref.WeakKeyDictionary[psycopg.Connection[Any], _Target] = weakref.WeakKeyDictionary()


def _subject(params: Mapping[str, Any]) -> str:
    host = params.get("host") or os.environ.get("PGHOST") or "localhost"
    port = params.get("port") or os.environ.get("PGPORT") or "5432"
    dbname = params.get("dbname") or os.environ.get("PGDATABASE") or params.get("user") or ""
    return f"postgres://{host}:{port}/{dbname}"


def _safe_dsn(params: Mapping[str, Any]) -> str:
    keep = {k: v for k, v in params.items() if k in ("host", "port", "dbname", "user")}
    return make_conninfo("", **keep)


def _resolve(db: str) -> tuple[str, _Target]:
    """The DSN named by ``db`` (itself, or the env var it names) and its printable names."""
    text = db.strip()
    if _ENV_NAME.fullmatch(text):
        name = text.lstrip("$")
        dsn, label = secret(name), name
    elif "=" in text or "://" in text:  # key=value conninfo or a URI
        dsn, label = text, ""
    else:
        raise ConfigError(
            "db is neither a DSN nor the name of an environment variable",
            hint="pass 'postgresql://user@host:5432/db' or the name of an env var holding it",
        )
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        where = f"environment variable {label}" if label else "the DSN"
        raise ConfigError(
            f"{where} is not a valid libpq DSN", hint="expected postgresql://user@host:5432/db"
        ) from None
    target = _Target(
        label=label or _safe_dsn(params),
        subject=_subject(params),
        password=str(params.get("password") or ""),
    )
    return dsn, target


def describe(db: Db) -> tuple[str, str]:
    """``(label, subject)`` for findings: never a password, never raises."""
    if isinstance(db, psycopg.Connection):
        target = _TARGETS.get(db)
        if target is not None:
            return target.label, target.subject
        params = conninfo_to_dict(db.info.dsn)  # libpq never returns the password here
        return _safe_dsn(params), _subject(params)
    try:
        target = _resolve(db)[1]
    except ConfigError:
        text = db.strip()
        if _ENV_NAME.fullmatch(text):
            return text.lstrip("$"), f"${text.lstrip('$')}"
        return "<invalid DSN>", "postgres://<invalid DSN>"
    return target.label, target.subject


def _scrub(text: str, target: _Target) -> str:
    text = " ".join(text.split())
    if len(target.password) >= 3:
        text = text.replace(target.password, "***")
    return text


def _secs(value: float) -> str:
    return f"{value:g} s"


def connect(
    dsn_or_env: str | None = None,
    *,
    dsn_env: str | None = None,
    connect_timeout_s: float = 5.0,
    statement_timeout_s: float = 5.0,
    lock_timeout_s: float = 1.0,
    idle_in_transaction_timeout_s: float = 10.0,
    application_name: str = "aura-ops",
) -> psycopg.Connection[Any]:
    """A read-only, autocommit psycopg connection with every timeout set.

    Give a DSN, the name of an env var holding one (``connect("AURA_DB_DSN")``), or
    ``dsn_env="AURA_DB_DSN"``. Sets ``connect_timeout`` (libpq's minimum is 2 s),
    ``statement_timeout``, ``lock_timeout``, ``idle_in_transaction_session_timeout`` and
    ``default_transaction_read_only=on`` through the startup ``options`` (behind PgBouncer,
    which may reject startup options, connect to PostgreSQL directly for diagnostics).
    ``lock_timeout_s=0`` disables the lock timeout. Raises :class:`ConfigError`,
    :class:`SourceTimeoutError` or :class:`SourceUnavailableError`.
    """
    if (dsn_or_env is None) == (dsn_env is None):
        raise ConfigError("give exactly one of dsn_or_env and dsn_env")
    dsn, target = _resolve(dsn_env if dsn_env is not None else str(dsn_or_env))
    target = dataclasses.replace(
        target, statement_timeout_s=statement_timeout_s, lock_timeout_s=lock_timeout_s
    )
    ms = {
        "statement_timeout": statement_timeout_s,
        "lock_timeout": lock_timeout_s,
        "idle_in_transaction_session_timeout": idle_in_transaction_timeout_s,
    }
    options = " ".join(f"-c {k}={max(0, round(v * 1000))}" for k, v in ms.items())
    existing = conninfo_to_dict(dsn).get("options") or ""
    options = f"{existing} {options} -c default_transaction_read_only=on".strip()
    timeout = max(2, math.ceil(connect_timeout_s))
    try:
        conn = psycopg.connect(
            dsn,
            autocommit=True,
            connect_timeout=timeout,
            application_name=application_name,
            options=options,
        )
    except psycopg.Error as exc:
        raise _connect_error(exc, target, timeout) from None
    _TARGETS[conn] = target
    return conn


def _connect_error(exc: psycopg.Error, target: _Target, timeout: int) -> AuraOpsError:
    msg = _scrub(str(exc), target)
    if isinstance(exc, pg_errors.ConnectionTimeout) or "timeout expired" in msg:
        return SourceTimeoutError(
            f"no answer within connect_timeout = {timeout} s",
            hint="the host or network hangs: check the server is up and the port is PostgreSQL's",
        )
    if "authentication failed" in msg or "does not exist" in msg or "no pg_hba.conf" in msg:
        return SourceUnavailableError(
            f"login refused: {msg}",
            hint=f"check the user, password and database name in {target.label!r}",
        )
    return SourceUnavailableError(
        f"cannot connect: {msg}",
        hint="is the server running, and are host and port in the DSN right?",
    )


@contextlib.contextmanager
def session(db: Db, *, timeout_s: float = 5.0) -> Iterator[psycopg.Connection[Any]]:
    """An open connection for ``db``: the one given, or a new one closed afterwards."""
    if isinstance(db, psycopg.Connection):
        yield db
        return
    conn = connect(
        db,
        connect_timeout_s=timeout_s,
        statement_timeout_s=timeout_s,
        lock_timeout_s=min(1.0, timeout_s),
    )
    try:
        yield conn
    finally:
        conn.close()


def _query_error(exc: psycopg.Error, conn: psycopg.Connection[Any], source: str) -> AuraOpsError:
    target = _TARGETS.get(conn) or _Target(*describe(conn))
    msg = _scrub(str(exc), target)
    role = conn.info.user if not conn.closed else "<role>"
    if isinstance(exc, pg_errors.QueryCanceled) and "statement timeout" in msg:
        limit = _secs(target.statement_timeout_s) if target.statement_timeout_s else "its limit"
        return SourceTimeoutError(
            f"query exceeded statement_timeout = {limit}",
            hint="the server is slow or the query waits on a lock: run check_blocking_locks, "
            "or raise timeout_s",
            source=source,
        )
    if isinstance(exc, pg_errors.LockNotAvailable):
        limit = _secs(target.lock_timeout_s) if target.lock_timeout_s else "its limit"
        return SourceTimeoutError(
            f"query waited longer than lock_timeout = {limit} for a lock",
            hint="another session holds a conflicting lock: run check_blocking_locks",
            source=source,
        )
    if isinstance(exc, pg_errors.InsufficientPrivilege):
        return QueryError(msg, hint=f"GRANT pg_monitor TO {role};", source=source)
    if isinstance(exc, psycopg.OperationalError) and not isinstance(exc, pg_errors.QueryCanceled):
        return SourceUnavailableError(f"connection lost: {msg}", source=source)
    return QueryError(f"query rejected: {msg}", source=source)


def run_sql(
    conn: psycopg.Connection[Any], query: str | sql.SQL | sql.Composed, params: Any = None
) -> pd.DataFrame:
    """Run one statement and return its rows; psycopg errors become aura-ops errors.

    ``frame.attrs["source"]`` is the exact SQL sent, parameters inlined.
    """
    try:
        source = psycopg.ClientCursor(conn).mogrify(query, params)
    except psycopg.Error:
        source = query if isinstance(query, str) else query.as_string(conn)
    try:
        cur = conn.execute(query, params)
        rows = cur.fetchall()
        columns = [d.name for d in cur.description or ()]
    except psycopg.Error as exc:
        raise _query_error(exc, conn, source) from None
    frame = pd.DataFrame(rows, columns=columns)
    frame.attrs["source"] = source
    return frame


def fetch_sql(db: Db, query: str, params: Any = None, *, timeout_s: float = 5.0) -> pd.DataFrame:
    """Any read-only query as a DataFrame, with the same timeouts as the checks."""
    with session(db, timeout_s=timeout_s) as conn:
        return run_sql(conn, query, params)


def fetch_connectivity(db: Db, *, timeout_s: float = 5.0) -> pd.DataFrame:
    """One row: ``connect_ms`` (NaN for a given connection), ``select1_ms``, server version."""
    t0 = time.perf_counter()
    with session(db, timeout_s=timeout_s) as conn:
        connect_ms = (time.perf_counter() - t0) * 1000
        if isinstance(db, psycopg.Connection):
            connect_ms = math.nan
        t1 = time.perf_counter()
        run_sql(conn, CONNECTIVITY_SQL)
        select1_ms = (time.perf_counter() - t1) * 1000
        info = run_sql(conn, SERVER_SQL)
    info.insert(0, "select1_ms", select1_ms)
    info.insert(0, "connect_ms", connect_ms)
    return info


def fetch_connections(db: Db, *, timeout_s: float = 5.0) -> pd.DataFrame:
    """Client connections grouped by state, user and application, with max_connections."""
    return fetch_sql(db, CONNECTIONS_SQL, timeout_s=timeout_s)


def fetch_visibility(db: Db, *, timeout_s: float = 5.0) -> dict[str, Any]:
    """How many sessions this role cannot see (other roles' state and query are hidden)."""
    row = fetch_sql(db, VISIBILITY_SQL, timeout_s=timeout_s).iloc[0]
    return {k: row[k].item() if hasattr(row[k], "item") else row[k] for k in row.index}


def fetch_long_running_queries(
    db: Db, *, min_age_s: float = 0.0, timeout_s: float = 5.0
) -> pd.DataFrame:
    """Active statements running for at least ``min_age_s``, oldest first (not our own)."""
    params = {"min_age_s": float(min_age_s), "query_chars": QUERY_CHARS}
    return fetch_sql(db, LONG_RUNNING_SQL, params, timeout_s=timeout_s)


def fetch_idle_in_transaction(
    db: Db, *, min_idle_s: float = 0.0, timeout_s: float = 5.0
) -> pd.DataFrame:
    """Sessions idle inside an open transaction for at least ``min_idle_s`` (``state_age_s``)."""
    params = {"min_idle_s": float(min_idle_s), "query_chars": QUERY_CHARS}
    return fetch_sql(db, IDLE_IN_TRANSACTION_SQL, params, timeout_s=timeout_s)


def fetch_blocking_locks(db: Db, *, timeout_s: float = 5.0) -> pd.DataFrame:
    """One row per (blocked session, session blocking it) from ``pg_blocking_pids``."""
    return fetch_sql(db, BLOCKING_SQL, {"query_chars": QUERY_CHARS}, timeout_s=timeout_s)


def _pss_missing(state: Mapping[str, Any]) -> QueryError:
    steps = []
    if not state["available"]:
        steps.append("install the server's contrib package (Debian: postgresql-contrib)")
    if "pg_stat_statements" not in str(state["preload"]):
        steps.append(
            "set shared_preload_libraries = 'pg_stat_statements' in postgresql.conf and restart"
        )
    steps.append("run CREATE EXTENSION pg_stat_statements; in this database")
    if not state["can_read_all_stats"]:
        steps.append(f"GRANT pg_read_all_stats TO {state['role']}; to see all roles' statements")
    return QueryError(
        "the pg_stat_statements extension is not installed in this database",
        hint="; then ".join(steps),
        source=PSS_STATE_SQL,
    )


def _pss_query(conn: psycopg.Connection[Any], order_by: str, top_n: int) -> sql.Composed:
    """The pg_stat_statements query for this server, its column names found by introspection."""
    state = run_sql(conn, PSS_STATE_SQL).iloc[0].to_dict()
    if pd.isna(state["schema"]):
        raise _pss_missing(state)
    relation = sql.Identifier(str(state["schema"]), "pg_stat_statements")
    have = set(run_sql(conn, PSS_COLUMNS_SQL, {"relation": relation.as_string(conn)})["attname"])
    picked = {}
    for meaning, names in PSS_COLUMN_CHOICES.items():
        found = next((n for n in names if n in have), None)
        if found is not None:
            picked[meaning] = found
    missing = {"calls", "total_ms", "mean_ms"} - set(picked)
    if missing:
        raise QueryError(f"pg_stat_statements lacks columns for {sorted(missing)}")
    fields = [
        sql.SQL("{} AS {}").format(sql.Identifier(col), sql.Identifier(meaning))
        for meaning, col in picked.items()
    ]
    order = sql.Identifier(picked["mean_ms" if order_by == "mean" else "total_ms"])
    return sql.SQL(
        "SELECT queryid, {fields}, left(query, {chars}) AS query FROM {rel} "
        "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database()) "
        "ORDER BY {order} DESC LIMIT {limit}"
    ).format(
        fields=sql.SQL(", ").join(fields),
        chars=sql.Literal(QUERY_CHARS),
        rel=relation,
        order=order,
        limit=sql.Literal(int(top_n)),
    )


def fetch_slow_statements(
    db: Db, *, order_by: str = "total", top_n: int = 10, timeout_s: float = 5.0
) -> pd.DataFrame:
    """Top statements of this database from pg_stat_statements, by ``"total"`` or ``"mean"`` time.

    Columns are normalised across server versions (``total_exec_time``/``total_time`` →
    ``total_ms`` …). A missing extension raises :class:`QueryError` whose hint says what to run.
    """
    if order_by not in ("total", "mean"):
        raise ConfigError(f"order_by must be 'total' or 'mean', not {order_by!r}")
    with session(db, timeout_s=timeout_s) as conn:
        query = _pss_query(conn, order_by, top_n)
        try:
            return run_sql(conn, query)
        except QueryError as exc:
            if "shared_preload_libraries" in exc.message:
                exc.hint = "set shared_preload_libraries = 'pg_stat_statements' and restart"
            raise


def fetch_table_sizes(db: Db, *, top_n: int = 20, timeout_s: float = 5.0) -> pd.DataFrame:
    """The largest tables (with indexes and TOAST) of this database, with live/dead rows."""
    return fetch_sql(db, TABLE_SIZES_SQL, {"top_n": int(top_n)}, timeout_s=timeout_s)


def fetch_database_sizes(db: Db, *, timeout_s: float = 5.0) -> pd.DataFrame:
    """Every database this role may connect to, with its size in bytes."""
    return fetch_sql(db, DATABASE_SIZES_SQL, timeout_s=timeout_s)


def fetch_replication(db: Db, *, timeout_s: float = 5.0) -> pd.DataFrame:
    """Replicas of a primary (``pg_stat_replication``), or one ``role="standby"`` row with lag.

    An empty frame means a primary with no replicas attached.
    """
    with session(db, timeout_s=timeout_s) as conn:
        standby = bool(run_sql(conn, RECOVERY_SQL)["in_recovery"].iloc[0])
        return run_sql(conn, STANDBY_REPLICATION_SQL if standby else PRIMARY_REPLICATION_SQL)
