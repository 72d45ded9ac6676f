"""PostgreSQL and SQLite diagnostics: every ``psql``/``sqlite3`` step of the seed runbooks.

PostgreSQL (psycopg 3, read-only, every timeout set; see :func:`connect`):

==============================  ===========================================================
``check_connectivity``          ``SELECT 1`` latency and server version (seed 004)
``check_connections``           connections vs ``max_connections`` by state, user, application
``check_long_running_queries``  active statements older than a threshold (seed 004)
``check_idle_in_transaction``   sessions idle inside an open transaction
``check_blocking_locks``        blocking chains from ``pg_blocking_pids``, by root blocker
``check_slow_statements``       slowest statements from ``pg_stat_statements`` (seeds 000/004)
``check_table_sizes``           largest tables (seed 004); ``check_database_sizes`` likewise
``check_replication``           ``pg_stat_replication`` lag; no replicas is INFO
==============================  ===========================================================

SQLite (seed 001, :mod:`aura_ops.database_sqlite`): ``check_sqlite_size``,
``check_sqlite_integrity``.

``db`` is a DSN, the NAME of an env var holding one (``"AURA_DB_DSN"``), or an open connection
from :func:`connect`. Each ``check_*`` returns ``list[Finding]`` and never raises: a database
that is down, refusing, hanging or too slow (``statement_timeout``, ``lock_timeout``) gives
UNKNOWN naming the reason -- except :func:`check_connectivity`, where reaching the database is
the thing under test. A role that cannot see every session gives UNKNOWN with the ``GRANT``
that fixes it. The ``fetch_*`` functions (:mod:`aura_ops.database_queries`) return the
DataFrames behind each check, with the exact SQL in ``df.attrs["source"]``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import pandas as pd
import psycopg

from aura_ops import database_queries as Q
from aura_ops.database_queries import (
    Db,
    connect,
    fetch_blocking_locks,
    fetch_connections,
    fetch_connectivity,
    fetch_database_sizes,
    fetch_idle_in_transaction,
    fetch_long_running_queries,
    fetch_replication,
    fetch_slow_statements,
    fetch_sql,
    fetch_table_sizes,
    fetch_visibility,
)
from aura_ops.database_sqlite import (
    check_sqlite_integrity,
    check_sqlite_size,
    fetch_sqlite_integrity,
    fetch_sqlite_size,
)
from aura_ops.errors import AuraOpsError, QueryError, SourceUnavailableError
from aura_ops.findings import Evidence, Finding, Status, unknown

__all__ = [
    "blocking_roots",
    "check_blocking_locks",
    "check_connections",
    "check_connectivity",
    "check_database_sizes",
    "check_idle_in_transaction",
    "check_long_running_queries",
    "check_replication",
    "check_slow_statements",
    "check_sqlite_integrity",
    "check_sqlite_size",
    "check_table_sizes",
    "connect",
    "fetch_blocking_locks",
    "fetch_connections",
    "fetch_connectivity",
    "fetch_database_sizes",
    "fetch_idle_in_transaction",
    "fetch_long_running_queries",
    "fetch_replication",
    "fetch_slow_statements",
    "fetch_sql",
    "fetch_sqlite_integrity",
    "fetch_sqlite_size",
    "fetch_table_sizes",
    "fetch_visibility",
]

Conn = psycopg.Connection[Any]
Make = Callable[..., Finding]  # Finding with check, subject, source and reproduce filled in


def _repro(func: str, db: Db, **kwargs: Any) -> str:
    args = [repr(Q.describe(db)[0])] + [f"{k}={v!r}" for k, v in kwargs.items()]
    return f"{func}({', '.join(args)})"


def _run_check(
    check: str, db: Db, source: str, reproduce: str, timeout_s: float,
    body: Callable[[Conn, Make], list[Finding]],
) -> list[Finding]:  # fmt: skip
    """Open a session and run ``body(conn, make)``; any failure becomes one UNKNOWN finding."""
    subject = Q.describe(db)[1]
    make = functools.partial(Finding, check, subject, source=source, reproduce=reproduce)
    try:
        with Q.session(db, timeout_s=timeout_s) as conn:
            return body(conn, make)
    except AuraOpsError as exc:
        src, hint = exc.source or source, exc.hint
        return [unknown(check, subject, exc.message, source=src, hint=hint, reproduce=reproduce)]
    except Exception as exc:  # a check never raises
        return [unknown(check, subject, exc, source=source, reproduce=reproduce)]


def _level(value: float, warn: float, crit: float) -> Status:
    if value >= crit:
        return Status.CRITICAL
    return Status.WARNING if value >= warn else Status.OK


def _short(text: Any, n: int = 80) -> str:
    flat = " ".join(str(text or "").split())
    return flat if len(flat) <= n else flat[: n - 1] + "…"


def _n(count: int, one: str, many: str) -> str:
    return f"{count} {one if count == 1 else many}"


def _size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def _visibility_gap(conn: Conn, make: Make, source: str) -> list[Finding]:
    """An UNKNOWN finding when this role cannot see other roles' sessions."""
    vis = fetch_visibility(conn)
    if vis["hidden_sessions"] == 0 or vis["can_read_all_stats"]:
        return []
    summary = (
        f"{_n(vis['hidden_sessions'], 'session', 'sessions')} of other roles hidden from role "
        f"{vis['role']}: they were not judged"
    )
    hint = f"GRANT pg_monitor TO {vis['role']}; (or pg_read_all_stats) and re-run"
    return [make(Status.UNKNOWN, summary, source=source, hint=hint)]


def check_connectivity(
    db: Db, *, latency_warn_ms: float = 500.0, timeout_s: float = 5.0
) -> list[Finding]:
    """Connect, time ``SELECT 1`` and read the server version (seed 004 "Test connectivity").

    Unlike the other checks, reaching the database is the thing tested here: a server that is
    down, refuses the login or hangs past the timeout is CRITICAL with the reason, not UNKNOWN
    (the database being unreachable is the finding). A bad ``db`` argument (unset env var,
    invalid DSN) is UNKNOWN: nothing was tested. Connect + ``SELECT 1`` slower than
    ``latency_warn_ms`` is WARNING.
    """
    check, source = "database.connectivity", Q.CONNECTIVITY_SQL
    reproduce = _repro("check_connectivity", db, latency_warn_ms=latency_warn_ms)
    subject = Q.describe(db)[1]
    make = functools.partial(Finding, check, subject, source=source, reproduce=reproduce)
    try:
        row = fetch_connectivity(db, timeout_s=timeout_s).iloc[0]
    except (SourceUnavailableError, QueryError) as exc:
        summary = f"Database unreachable: {exc.message}"
        return [make(Status.CRITICAL, summary, observed=type(exc).__name__, hint=exc.hint)]
    except Exception as exc:
        return [unknown(check, subject, exc, source=source, reproduce=reproduce)]
    connect_ms = 0.0 if math.isnan(row["connect_ms"]) else float(row["connect_ms"])
    total_ms = connect_ms + float(row["select1_ms"])
    status = Status.WARNING if total_ms >= latency_warn_ms else Status.OK
    summary = (
        f"PostgreSQL {row['server_version']} ({'standby' if row['in_recovery'] else 'primary'}) "
        f"answered SELECT 1 in {row['select1_ms']:.1f} ms (connect {connect_ms:.0f} ms)"
    )
    slow = "Slow to connect or answer: check load (check_connections) and the network"
    return [
        make(status, summary, observed=round(total_ms, 1), expected=f"< {latency_warn_ms:g} ms",
             evidence=(Evidence.table(row.to_frame().T, "connectivity"),),
             hint="" if status == Status.OK else slow)
    ]  # fmt: skip


def check_connections(
    db: Db, *, warn_pct: float = 80.0, crit_pct: float = 95.0, timeout_s: float = 5.0
) -> list[Finding]:
    """Client connections against ``max_connections``, by state, user and application.

    WARNING from ``warn_pct`` % of ``max_connections``, CRITICAL from ``crit_pct`` % (seed 004
    "Connection pool exhausted"). Our own diagnostic connection is counted, and so are other
    roles' sessions a role without ``pg_monitor`` cannot see (plus an UNKNOWN with the GRANT).
    """
    reproduce = _repro("check_connections", db, warn_pct=warn_pct, crit_pct=crit_pct)

    def body(conn: Conn, make: Make) -> list[Finding]:
        df = fetch_connections(conn)
        gap = _visibility_gap(conn, make, df.attrs["source"])
        hidden = int(fetch_visibility(conn)["hidden_sessions"]) if gap else 0
        total = int(df["connections"].sum()) + hidden
        max_conn = int(df["max_connections"].iloc[0])
        pct = 100.0 * total / max_conn
        by_state = df.groupby("state", as_index=False)["connections"].sum()
        by_state = by_state.sort_values("connections", ascending=False, kind="stable")
        by_app = df.groupby(["usename", "application_name"], as_index=False)["connections"].sum()
        by_app = by_app.sort_values("connections", ascending=False, kind="stable")
        top = by_app.iloc[0]
        states = ", ".join(f"{n} {s}" for s, n in by_state.itertuples(index=False))
        states += f", {hidden} hidden from this role" if hidden else ""
        summary = (
            f"{total} of {max_conn} connections in use ({pct:.0f} %): {states}; most from user "
            f"{top['usename']} app '{top['application_name']}' ({top['connections']})"
        )
        status = _level(pct, warn_pct, crit_pct)
        refused_at = max_conn - int(df["reserved_connections"].iloc[0])
        hint = (
            f"Non-superusers are refused at {refused_at}. Find the leaking pool (table by user "
            "and application); idle sessions can be ended: SELECT pg_terminate_backend(pid) FROM "
            "pg_stat_activity WHERE state = 'idle' AND state_change < now() - interval "
            "'10 minutes' (approve first)"
        )
        evidence = (
            Evidence.table(by_state, "connections by state"),
            Evidence.table(by_app, "connections by user and application"),
        )
        return [
            make(status, summary, observed=round(pct, 1), source=df.attrs["source"],
                 expected=f"< {warn_pct:g} % of max_connections", evidence=evidence,
                 hint="" if status == Status.OK else hint,
                 labels={"connections": total, "max_connections": max_conn}),
            *gap,
        ]  # fmt: skip

    return _run_check("database.connections", db, Q.CONNECTIONS_SQL, reproduce, timeout_s, body)


def _sessions_check(
    check: str, db: Db, what: tuple[str, str], age_col: str, fetch: Callable[[Conn], pd.DataFrame],
    hint: str, thresholds: tuple[float, float], timeout_s: float, reproduce: str, source: str,
) -> list[Finding]:  # fmt: skip
    """Shared judgement of long-running and idle-in-transaction sessions."""
    warn_s, crit_s = thresholds

    def body(conn: Conn, make: Make) -> list[Finding]:
        df = fetch(conn)
        src = df.attrs["source"]
        gap = _visibility_gap(conn, make, src)
        if df.empty:
            ok = make(Status.OK, f"No {what[1]} for {warn_s:g} s or longer", observed=0,
                      expected=f"none >= {warn_s:g} s", source=src)  # fmt: skip
            return gap or [ok]
        worst = df.iloc[0]
        age = float(worst[age_col])
        summary = (
            f"{_n(len(df), *what)} for {warn_s:g} s or longer; oldest {age:.0f} s: pid "
            f"{worst['pid']} ({worst['usename']}, app '{worst['application_name']}', "
            f"{worst['state']}): {_short(worst['query'])}"
        )
        finding = make(
            _level(age, warn_s, crit_s), summary, observed=round(age, 1),
            expected=f"< {warn_s:g} s", evidence=(Evidence.table(df, what[1]),), source=src,
            hint=hint.format(pid=worst["pid"]), labels={"pids": [int(p) for p in df["pid"]]},
        )  # fmt: skip
        return [finding, *gap]

    return _run_check(check, db, source, reproduce, timeout_s, body)


def check_long_running_queries(
    db: Db, *, warn_s: float = 60.0, crit_s: float = 300.0, timeout_s: float = 5.0
) -> list[Finding]:
    """Active statements running for ``warn_s`` or longer, CRITICAL from ``crit_s`` (seed 004)."""
    reproduce = _repro("check_long_running_queries", db, warn_s=warn_s, crit_s=crit_s)
    hint = (
        "Confirm with its owner, then cancel it: SELECT pg_cancel_backend({pid}); "
        "pg_terminate_backend({pid}) only if cancel fails (approve first)"
    )
    return _sessions_check(
        "database.long_running_queries", db, ("query running", "queries running"), "query_age_s",
        lambda c: fetch_long_running_queries(c, min_age_s=warn_s), hint, (warn_s, crit_s),
        timeout_s, reproduce, Q.LONG_RUNNING_SQL,
    )  # fmt: skip


def check_idle_in_transaction(
    db: Db, *, warn_s: float = 60.0, crit_s: float = 600.0, timeout_s: float = 5.0
) -> list[Finding]:
    """Sessions idle inside an open transaction for ``warn_s`` or longer (they hold locks)."""
    reproduce = _repro("check_idle_in_transaction", db, warn_s=warn_s, crit_s=crit_s)
    hint = (
        "An application opened a transaction and stopped talking: find it by app and client; "
        "end it with SELECT pg_terminate_backend({pid}); (approve first) and set "
        "idle_in_transaction_session_timeout"
    )
    return _sessions_check(
        "database.idle_in_transaction", db,
        ("session idle in transaction", "sessions idle in transaction"), "state_age_s",
        lambda c: fetch_idle_in_transaction(c, min_idle_s=warn_s), hint, (warn_s, crit_s),
        timeout_s, reproduce, Q.IDLE_IN_TRANSACTION_SQL,
    )  # fmt: skip


def blocking_roots(edges: pd.DataFrame) -> dict[int, list[int]]:
    """Map each root blocker (blocks others, is not blocked itself) to the pids it holds up.

    ``edges`` has ``blocked_pid`` and ``blocking_pid`` columns (:func:`fetch_blocking_locks`).
    A waiter whose chain ends in a cycle (a deadlock not yet broken) is attributed to the
    sessions of that cycle.
    """
    graph: dict[int, set[int]] = {}
    for blocked, blocking in zip(edges["blocked_pid"], edges["blocking_pid"], strict=True):
        graph.setdefault(int(blocked), set()).add(int(blocking))
    roots: dict[int, list[int]] = {}
    for start in graph:
        seen, stack, found = {start}, list(graph[start]), set()
        while stack:
            pid = stack.pop()
            if pid not in graph:
                found.add(pid)
            elif pid not in seen:
                seen.add(pid)
                stack.extend(graph[pid])
        for root in found or seen - {start}:  # no root: a cycle, blame its members
            roots.setdefault(root, []).append(start)
    return roots


def check_blocking_locks(
    db: Db, *, min_wait_s: float = 5.0, crit_wait_s: float = 30.0, timeout_s: float = 5.0
) -> list[Finding]:
    """Sessions waiting on locks, one finding per root blocker (seed 004 "Check for locks").

    Sessions blocked ``min_wait_s`` or longer make a WARNING, ``crit_wait_s`` or longer
    CRITICAL. The summary names the blocking pid, its state and query, and who waits how long.
    """
    reproduce = _repro("check_blocking_locks", db, min_wait_s=min_wait_s, crit_wait_s=crit_wait_s)

    def body(conn: Conn, make: Make) -> list[Finding]:
        edges = fetch_blocking_locks(conn)
        src = edges.attrs["source"]
        waits = edges.groupby("blocked_pid")["wait_s"].max().to_dict()
        findings = []
        for root, pids in blocking_roots(edges).items():
            waiting = sorted(p for p in pids if waits[p] >= min_wait_s)
            if waiting:
                longest = max(waits[p] for p in waiting)
                findings.append(_blocker(make, root, waiting, longest, edges, crit_wait_s, src))
        findings.sort(key=lambda f: -float(f.observed))
        gap = _visibility_gap(conn, make, src)
        if not findings:
            summary = f"No session blocked on a lock for {min_wait_s:g} s or longer"
            ok = make(Status.OK, summary, observed=0, expected=f"none >= {min_wait_s:g} s")
            return gap or [ok.replace(source=src)]
        return findings + gap

    return _run_check("database.blocking_locks", db, Q.BLOCKING_SQL, reproduce, timeout_s, body)


def _blocker(
    make: Make, root: int, pids: list[int], longest: float, edges: pd.DataFrame,
    crit_wait_s: float, source: str,
) -> Finding:  # fmt: skip
    info = edges[edges["blocking_pid"] == root].iloc[0]
    summary = (
        f"{_n(len(pids), 'session', 'sessions')} blocked for up to {longest:.0f} s by pid {root} "
        f"({info['blocking_user']}, app '{info['blocking_application']}', "
        f"{info['blocking_state']}): {_short(info['blocking_query'])}"
    )
    hint = (
        f"Ask the owner of pid {root} to commit or roll back; else end it with "
        f"SELECT pg_terminate_backend({root}); (approve first)"
    )
    rows = edges[edges["blocked_pid"].isin(pids)]
    return make(
        Status.CRITICAL if longest >= crit_wait_s else Status.WARNING, summary,
        observed=round(longest, 1), expected=f"< {crit_wait_s:g} s", source=source, hint=hint,
        evidence=(Evidence.table(rows, f"sessions waiting behind pid {root}"),),
        labels={"blocking_pid": root, "blocked_pids": pids},
    )  # fmt: skip


def check_slow_statements(
    db: Db, *, mean_warn_ms: float = 500.0, mean_crit_ms: float = 5000.0, min_calls: int = 1,
    top_n: int = 10, timeout_s: float = 5.0,
) -> list[Finding]:  # fmt: skip
    """The slowest statements from ``pg_stat_statements`` (seed 004 "Check slow queries").

    Judges the highest mean time among statements called ``min_calls`` times or more. A
    missing extension is UNKNOWN with the exact steps (``shared_preload_libraries``,
    ``CREATE EXTENSION pg_stat_statements``, ``GRANT pg_read_all_stats``).
    """
    reproduce = _repro("check_slow_statements", db, mean_warn_ms=mean_warn_ms,
                       mean_crit_ms=mean_crit_ms, min_calls=min_calls, top_n=top_n)  # fmt: skip

    def body(conn: Conn, make: Make) -> list[Finding]:
        by_mean = fetch_slow_statements(conn, order_by="mean", top_n=top_n * 5)
        by_total = fetch_slow_statements(conn, order_by="total", top_n=top_n)
        src = f"{by_mean.attrs['source']};\n{by_total.attrs['source']}"
        by_mean = by_mean[by_mean["calls"] >= min_calls].head(top_n)
        evidence = (
            Evidence.table(by_mean, "slowest statements by mean time"),
            Evidence.table(by_total, "statements by total time"),
        )
        if by_mean.empty:
            summary = f"pg_stat_statements has no statement called {min_calls} times or more"
            return [make(Status.OK, summary, source=src, evidence=evidence)]
        top = by_mean.iloc[0]
        mean_ms = float(top["mean_ms"])
        over = int((by_mean["mean_ms"] >= mean_warn_ms).sum())
        lead = (
            f"{_n(over, 'statement', 'statements')} average {mean_warn_ms:g} ms or more; slowest "
        )
        summary = (lead if over else "Slowest statement averages ") + (
            f"{mean_ms:.0f} ms over {int(top['calls'])} calls: {_short(top['query'])}"
        )
        hint = f"EXPLAIN (ANALYZE, BUFFERS) it; add an index or cache (queryid {top['queryid']})"
        if "<insufficient privilege>" in set(by_mean["query"]):
            hint += f"; query text hidden: GRANT pg_read_all_stats TO {conn.info.user};"
        return [
            make(_level(mean_ms, mean_warn_ms, mean_crit_ms), summary, observed=round(mean_ms, 1),
                 expected=f"< {mean_warn_ms:g} ms mean", evidence=evidence, source=src, hint=hint)
        ]  # fmt: skip

    return _run_check("database.slow_statements", db, Q.PSS_STATE_SQL, reproduce, timeout_s, body)


def check_table_sizes(
    db: Db, *, top_n: int = 10, table_max_bytes: float | None = None, timeout_s: float = 5.0
) -> list[Finding]:
    """The largest tables with indexes and dead rows (seed 004 "Check table sizes").

    OK with the table as evidence; WARNING when the largest exceeds ``table_max_bytes``.
    """
    reproduce = _repro("check_table_sizes", db, top_n=top_n, table_max_bytes=table_max_bytes)

    def body(conn: Conn, make: Make) -> list[Finding]:
        df = fetch_table_sizes(conn, top_n=top_n)
        if df.empty:
            return [make(Status.OK, "No user tables in this database", source=df.attrs["source"])]
        top = df.iloc[0]
        over = table_max_bytes is not None and float(top["total_bytes"]) > table_max_bytes
        summary = (
            f"Largest table {top['schema']}.{top['table']}: {_size(top['total_bytes'])} "
            f"(table {_size(top['table_bytes'])}, indexes {_size(top['index_bytes'])})"
        )
        return [
            make(Status.WARNING if over else Status.OK, summary, source=df.attrs["source"],
                 observed=int(top["total_bytes"]),
                 expected=None if table_max_bytes is None else f"<= {table_max_bytes:g} B",
                 evidence=(Evidence.table(df, f"top {top_n} tables by total size"),),
                 hint="Archive or partition it; VACUUM if dead_rows is large" if over else "")
        ]  # fmt: skip

    return _run_check("database.table_sizes", db, Q.TABLE_SIZES_SQL, reproduce, timeout_s, body)


def check_database_sizes(
    db: Db, *, database_max_bytes: float | None = None, timeout_s: float = 5.0
) -> list[Finding]:
    """Size of every database on the server; WARNING above ``database_max_bytes`` (if given)."""
    reproduce = _repro("check_database_sizes", db, database_max_bytes=database_max_bytes)

    def body(conn: Conn, make: Make) -> list[Finding]:
        df = fetch_database_sizes(conn)
        top = df.iloc[0]
        limit = math.inf if database_max_bytes is None else database_max_bytes
        over = int((df["bytes"] > limit).sum())
        n_over, n_all = _n(over, "database", "databases"), _n(len(df), "database", "databases")
        lead = f"{n_over} over {_size(limit)}; " if over else f"{n_all}; "
        summary = f"{lead}largest {top['database']}: {_size(top['bytes'])}"
        return [
            make(Status.WARNING if over else Status.OK, summary, observed=int(top["bytes"]),
                 expected=None if database_max_bytes is None else f"<= {limit:g} B",
                 source=df.attrs["source"], evidence=(Evidence.table(df, "database sizes"),))
        ]  # fmt: skip

    return _run_check(
        "database.database_sizes", db, Q.DATABASE_SIZES_SQL, reproduce, timeout_s, body
    )


def check_replication(
    db: Db, *, lag_warn_s: float = 30.0, lag_crit_s: float = 300.0, timeout_s: float = 5.0
) -> list[Finding]:
    """Replay lag of each replica (on a primary) or of this server (on a standby).

    A primary with no replicas is INFO (nothing can lag); a replica not ``streaming`` is
    WARNING; replay lag from ``lag_warn_s`` WARNING, from ``lag_crit_s`` CRITICAL. On a standby
    the lag is the age of the last replayed transaction, which also grows while the primary
    is idle.
    """
    reproduce = _repro("check_replication", db, lag_warn_s=lag_warn_s, lag_crit_s=lag_crit_s)

    def body(conn: Conn, make: Make) -> list[Finding]:
        df = fetch_replication(conn)
        src = df.attrs["source"]
        if df.empty:
            summary = "No replicas attached to this primary (pg_stat_replication is empty)"
            return [make(Status.INFO, summary, observed=0, source=src)]
        if "state" in df and df["state"].isna().all():
            hint = f"GRANT pg_monitor TO {conn.info.user};"
            raise QueryError("pg_stat_replication hides its columns from this role", hint=hint)
        lag = df["replay_lag_s"].fillna(0.0).astype(float)
        stalled = int((df["state"] != "streaming").sum()) if "state" in df else 0
        status = max(_level(float(lag.max()), lag_warn_s, lag_crit_s),
                     Status.WARNING if stalled else Status.OK)  # fmt: skip
        worst = df.iloc[int(lag.to_numpy().argmax())]
        behind = _size(float(pd.Series(df["replay_lag_bytes"]).fillna(0.0).max()))
        if worst["role"] == "standby":
            summary = f"Standby: last replayed transaction is {lag.max():.0f} s old ({behind} "
            summary += "received, not yet replayed)"
        else:
            summary = (
                f"{_n(len(df), 'replica', 'replicas')}; max replay lag {lag.max():.0f} s "
                f"({worst['application_name']}), up to {behind} behind"
                + (f"; {stalled} not streaming" if stalled else "")
            )
        hint = "Check the replica's network, disk and CPU, and long queries running on it"
        return [
            make(status, summary, observed=round(float(lag.max()), 1), source=src,
                 expected=f"< {lag_warn_s:g} s", evidence=(Evidence.table(df, "replication"),),
                 hint="" if status == Status.OK else hint)
        ]  # fmt: skip

    return _run_check(
        "database.replication", db, Q.PRIMARY_REPLICATION_SQL, reproduce, timeout_s, body
    )
