"""Tests for aura_ops.database against real PostgreSQL servers and real SQLite files.

Conditions are induced for real: sessions holding row locks, idle transactions, pg_sleep,
hundreds of connections, a socket that never answers. The main server is the embedded
pgserver one; a second server from Debian's PostgreSQL binaries (apt package ``postgresql``)
preloads pg_stat_statements and has password auth on 127.0.0.1.
"""
# ruff: noqa: SIM300  -- the project's test style is `assert expected == actual`

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from aura_ops import database as D
from aura_ops.errors import ConfigError, QueryError
from aura_ops.findings import Status
from aura_ops.sandbox.postgres import start_postgres, start_standby, system_postgres_bindir

ENV = "AURA_TEST_DB_DSN"
IN_CI = os.environ.get("CI") == "true"


def _skip_or_fail(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: this must be available)")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """Our own temp dir for server data (pytest's basetemp may be pruned by parallel runs)."""
    path = Path(tempfile.mkdtemp(prefix="aura-ops-test-db-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def pg(scratch: Path) -> Iterator[str]:
    """The embedded PostgreSQL; its DSN is also exported as $AURA_TEST_DB_DSN."""
    try:
        server = start_postgres(scratch / "pg")
    except Exception as exc:  # pragma: no cover - depends on the machine
        _skip_or_fail(f"cannot start PostgreSQL: {exc}")
    os.environ[ENV] = server.dsn
    yield server.dsn
    os.environ.pop(ENV, None)
    server.stop()


@pytest.fixture(scope="module")
def admin(pg: str) -> Iterator[psycopg.Connection[Any]]:
    """A superuser connection that owns a small ``accounts`` table."""
    with psycopg.connect(pg, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS accounts (id int PRIMARY KEY, balance int)")
        conn.execute("INSERT INTO accounts SELECT g, 0 FROM generate_series(1, 500) g")
        yield conn


@pytest.fixture(scope="module")
def system_pg(scratch: Path) -> Iterator[Any]:
    """Debian's PostgreSQL with pg_stat_statements preloaded (apt package ``postgresql``)."""
    if system_postgres_bindir() is None:
        _skip_or_fail("Debian PostgreSQL binaries missing: apt-get install postgresql")
    server = start_postgres(scratch / "syspg", prefer="system")
    if server.kind != "system":  # AURA_OPS_TEST_DSN points elsewhere
        pytest.skip("AURA_OPS_TEST_DSN is set: no server of our own to configure")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def standby(system_pg: Any, scratch: Path) -> Iterator[Any]:
    """A streaming replica of the system server (pg_basebackup -R)."""
    server = start_standby(system_pg, scratch / "standby")
    yield server
    server.stop()


@pytest.fixture
def clean(admin: psycopg.Connection[Any]) -> Iterator[list[psycopg.Connection[Any]]]:
    """A list for the test's extra connections; all closed (and their pids gone) afterwards."""
    conns: list[psycopg.Connection[Any]] = []
    yield conns
    pids = [c.info.backend_pid for c in conns if not c.closed]
    for conn in conns:
        with contextlib.suppress(Exception):
            conn.cancel_safe(timeout=2)
        conn.close()
    _wait_for(lambda: not _live(admin, pids), "extra sessions to end")


def _live(admin: psycopg.Connection[Any], pids: list[int]) -> list[int]:
    rows = admin.execute("SELECT pid FROM pg_stat_activity WHERE pid = ANY(%s)", (pids,))
    return [r[0] for r in rows.fetchall()]


def _wait_for(predicate: Callable[[], Any], what: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _session(dsn: str, conns: list[psycopg.Connection[Any]], **kw: Any) -> Any:
    conn = psycopg.connect(dsn, **kw)
    conns.append(conn)
    return conn


def _in_thread(conn: psycopg.Connection[Any], query: str) -> threading.Thread:
    """Run ``query`` on ``conn`` in a thread; errors (cancellation) are swallowed."""

    def run() -> None:
        with contextlib.suppress(psycopg.Error):
            conn.execute(query)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _state(admin: psycopg.Connection[Any], pid: int) -> str | None:
    row = admin.execute(
        "SELECT coalesce(wait_event_type, state) FROM pg_stat_activity WHERE pid = %s", (pid,)
    ).fetchone()
    return row[0] if row else None


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def hanging_port() -> Iterator[int]:
    """A TCP port that accepts connections and never says a word."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []

    def accept() -> None:
        with contextlib.suppress(OSError):
            while True:
                held.append(server.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    server.close()
    for conn in held:
        conn.close()


def _as_role(dsn: str, role: str) -> str:
    params = conninfo_to_dict(dsn)
    params["user"] = role
    return make_conninfo("", **params)


# --- connect ------------------------------------------------------------------------------


def test_connect_sets_every_timeout_read_only_and_application_name(pg: str) -> None:
    """connect() by env-var name sets the timeouts, read-only, autocommit and application_name."""
    with D.connect(ENV, statement_timeout_s=4, lock_timeout_s=0.5) as conn:
        show = {
            name: conn.execute(f"SHOW {name}").fetchone()[0]
            for name in ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout",
                         "default_transaction_read_only", "application_name")
        }  # fmt: skip
        assert conn.autocommit is True
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            conn.execute("CREATE TABLE must_not_exist ()")
    expected = {
        "statement_timeout": "4s",
        "lock_timeout": "500ms",
        "idle_in_transaction_session_timeout": "10s",
        "default_transaction_read_only": "on",
        "application_name": "aura-ops",
    }
    assert expected == show


def test_connect_accepts_dsn_env_keyword_dollar_name_and_plain_dsn(pg: str) -> None:
    """The DSN may come as dsn_env=NAME, "$NAME" or the DSN itself."""
    for conn in (D.connect(dsn_env=ENV), D.connect(f"${ENV}"), D.connect(pg)):
        with conn:
            assert 1 == conn.execute("SELECT 1").fetchone()[0]


def test_connect_with_unset_env_var_is_config_error_and_check_unknown() -> None:
    """An unset env var raises ConfigError from connect and gives UNKNOWN from a check."""
    os.environ.pop("AURA_TEST_UNSET_DSN", None)
    with pytest.raises(ConfigError, match="AURA_TEST_UNSET_DSN is not set"):
        D.connect("AURA_TEST_UNSET_DSN")
    [finding] = D.check_connections("AURA_TEST_UNSET_DSN")
    assert Status.UNKNOWN == finding.status
    assert "AURA_TEST_UNSET_DSN is not set" in finding.summary


def test_garbage_db_argument_gives_unknown_not_an_exception() -> None:
    """A db argument that is neither a DSN nor an env var name gives UNKNOWN."""
    [finding] = D.check_long_running_queries("not a dsn!")
    assert Status.UNKNOWN == finding.status


def test_password_never_reaches_subject_summary_source_or_reproduce() -> None:
    """A DSN with a password yields findings without it; the subject is host:port/dbname."""
    port = _closed_port()
    dsn = f"postgresql://app:pw-s3cr3t-value@127.0.0.1:{port}/aura"
    findings = D.check_connections(dsn) + D.check_connectivity(dsn)
    assert "pw-s3cr3t-value" not in json.dumps([f.to_dict() for f in findings])
    assert [f"postgres://127.0.0.1:{port}/aura"] * 2 == [f.subject for f in findings]


# --- connectivity and unreachable / refusing / hanging servers ------------------------------


def test_connectivity_ok_reports_server_version_and_latency(pg: str, admin: Any) -> None:
    """A healthy server answers SELECT 1: OK, with its version in the summary."""
    version = admin.execute("SHOW server_version").fetchone()[0]
    [finding] = D.check_connectivity(ENV)
    assert Status.OK == finding.status
    assert f"PostgreSQL {version} (primary) answered SELECT 1" in finding.summary
    assert "SELECT 1" == finding.source
    assert "check_connectivity('AURA_TEST_DB_DSN', latency_warn_ms=500.0)" == finding.reproduce


def test_connectivity_to_closed_port_is_critical_with_reason() -> None:
    """Connectivity is the thing tested: a refused TCP connection is CRITICAL, not UNKNOWN."""
    [finding] = D.check_connectivity(f"host=127.0.0.1 port={_closed_port()} dbname=aura")
    assert Status.CRITICAL == finding.status
    assert "Connection refused" in finding.summary


def test_closed_port_gives_unknown(pg: str) -> None:
    """Unreachable (nothing listens on the port) gives UNKNOWN at once."""
    started = time.monotonic()
    [finding] = D.check_connections(f"host=127.0.0.1 port={_closed_port()} dbname=aura")
    assert Status.UNKNOWN == finding.status
    assert "Connection refused" in finding.summary
    assert time.monotonic() - started < 2


def test_nonexistent_socket_gives_unknown() -> None:
    """Unreachable (no server socket in that directory) gives UNKNOWN."""
    [finding] = D.check_blocking_locks("host=/nonexistent/aura-ops dbname=aura")
    assert Status.UNKNOWN == finding.status
    assert "No such file or directory" in finding.summary


def test_nonexistent_database_and_role_are_refused_as_unknown(pg: str) -> None:
    """Refusing (unknown database, unknown role) gives UNKNOWN naming the refusal."""
    params = conninfo_to_dict(pg)
    no_db = make_conninfo("", **{**params, "dbname": "no_such_db"})
    no_role = make_conninfo("", **{**params, "user": "no_such_role"})
    for dsn, text in ((no_db, 'database "no_such_db" does not exist'),
                      (no_role, 'role "no_such_role" does not exist')):  # fmt: skip
        [finding] = D.check_idle_in_transaction(dsn)
        assert Status.UNKNOWN == finding.status
        assert "login refused" in finding.summary
        assert text in finding.summary


def test_wrong_password_is_refused_as_unknown(system_pg: Any) -> None:
    """Refusing (password authentication failed over TCP) gives UNKNOWN without the password."""
    with psycopg.connect(system_pg.dsn, autocommit=True) as conn:
        conn.execute("DROP ROLE IF EXISTS app_pw")
        conn.execute("CREATE ROLE app_pw LOGIN PASSWORD 'right-password'")
    dsn = f"postgresql://app_pw:wrong-password@127.0.0.1:{system_pg.tcp_port}/postgres"
    [finding] = D.check_connections(dsn)
    assert Status.UNKNOWN == finding.status
    assert 'password authentication failed for user "app_pw"' in finding.summary
    assert "wrong-password" not in json.dumps(finding.to_dict())


def test_hanging_server_gives_unknown_within_connect_timeout(hanging_port: int) -> None:
    """Hanging (accepts, never answers): connect_timeout fires and the check is UNKNOWN."""
    started = time.monotonic()
    [finding] = D.check_table_sizes(f"host=127.0.0.1 port={hanging_port} dbname=x", timeout_s=2)
    elapsed = time.monotonic() - started
    assert Status.UNKNOWN == finding.status
    assert "no answer within connect_timeout = 2 s" in finding.summary
    assert 1.5 < elapsed < 4


def test_hanging_server_is_critical_for_connectivity(hanging_port: int) -> None:
    """check_connectivity against a hanging server is CRITICAL within the timeout."""
    started = time.monotonic()
    [finding] = D.check_connectivity(f"host=127.0.0.1 port={hanging_port} dbname=x", timeout_s=2)
    assert Status.CRITICAL == finding.status
    assert "connect_timeout" in finding.summary
    assert time.monotonic() - started < 4


def test_statement_over_statement_timeout_gives_unknown_naming_it(pg: str, clean: list) -> None:
    """A query stuck past statement_timeout (here behind a table lock) gives UNKNOWN naming it."""
    holder = _session(pg, clean)
    holder.execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
    with D.connect(ENV, statement_timeout_s=1, lock_timeout_s=0) as conn:
        started = time.monotonic()
        [finding] = D.check_table_sizes(conn)
        elapsed = time.monotonic() - started
    assert Status.UNKNOWN == finding.status
    assert "query exceeded statement_timeout = 1 s" in finding.summary
    assert "pg_total_relation_size" in finding.source
    assert elapsed < 3


def test_lock_wait_over_lock_timeout_gives_unknown_naming_it(pg: str, clean: list) -> None:
    """With the default session a diagnostic never queues behind a lock: lock_timeout fires."""
    holder = _session(pg, clean)
    holder.execute("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE")
    [finding] = D.check_table_sizes(ENV, timeout_s=3)
    assert Status.UNKNOWN == finding.status
    assert "lock_timeout = 1 s" in finding.summary
    assert "check_blocking_locks" in finding.hint


# --- sessions: long-running, idle in transaction, blocking ----------------------------------


def test_quiet_server_is_ok_for_every_session_check(pg: str, admin: Any) -> None:
    """With nothing wrong every session check says OK and shows its SQL."""
    findings = (
        D.check_long_running_queries(ENV)
        + D.check_idle_in_transaction(ENV)
        + D.check_blocking_locks(ENV)
        + D.check_connections(ENV)
    )
    assert [Status.OK] * 4 == [f.status for f in findings]
    assert all("pg_stat_activity" in f.source for f in findings)


def test_idle_in_transaction_session_is_detected_with_its_pid(pg: str, clean: list) -> None:
    """A session that opened a transaction and went quiet is named by pid and last query."""
    idle = _session(pg, clean)
    idle.execute("SELECT balance FROM accounts WHERE id = 7")
    time.sleep(0.4)
    [warn] = D.check_idle_in_transaction(ENV, warn_s=0.3, crit_s=60)
    [crit] = D.check_idle_in_transaction(ENV, warn_s=0.1, crit_s=0.3)
    pid = idle.info.backend_pid
    assert (Status.WARNING, Status.CRITICAL) == (warn.status, crit.status)
    assert {"pids": [pid]} == dict(warn.labels)
    assert f"pid {pid} (postgres, app '', idle in transaction)" in warn.summary
    assert "SELECT balance FROM accounts WHERE id = 7" in warn.summary
    assert f"pg_terminate_backend({pid})" in warn.hint


def test_long_running_query_is_detected(pg: str, admin: Any, clean: list) -> None:
    """A statement running past the threshold (pg_sleep) is WARNING naming its pid and text."""
    sleeper = _session(pg, clean, autocommit=True)
    pid = sleeper.info.backend_pid
    thread = _in_thread(sleeper, "SELECT pg_sleep(30) /* slow report */")
    _wait_for(lambda: _state(admin, pid) == "Timeout", "pg_sleep to start")
    time.sleep(0.6)
    [finding] = D.check_long_running_queries(ENV, warn_s=0.5, crit_s=60)
    admin.execute("SELECT pg_cancel_backend(%s)", (pid,))
    thread.join(5)
    assert Status.WARNING == finding.status
    assert [pid] == finding.labels["pids"]
    assert "pg_sleep(30) /* slow report */" in finding.summary
    assert f"pg_cancel_backend({pid})" in finding.hint


def test_blocking_chain_names_root_blocker_its_query_and_waiters(
    pg: str, admin: Any, clean: list
) -> None:
    """Two sessions queued behind an open UPDATE: one finding naming the blocker's pid and query."""
    holder = _session(pg, clean)
    holder.execute("UPDATE accounts SET balance = balance + 1 WHERE id = 1")
    waiters = [_session(pg, clean, autocommit=True) for _ in range(2)]
    threads = [_in_thread(w, "UPDATE accounts SET balance = balance - 1 WHERE id = 1")
               for w in waiters]  # fmt: skip
    for w in waiters:
        _wait_for(lambda w=w: _state(admin, w.info.backend_pid) == "Lock", "waiter to block")
    time.sleep(0.3)
    [warn] = D.check_blocking_locks(ENV, min_wait_s=0.2, crit_wait_s=60)
    [crit] = D.check_blocking_locks(ENV, min_wait_s=0.2, crit_wait_s=0.2)
    holder.rollback()
    for thread in threads:
        thread.join(5)
    root = holder.info.backend_pid
    expected = {"blocking_pid": root, "blocked_pids": sorted(w.info.backend_pid for w in waiters)}
    assert expected == dict(warn.labels)
    assert (Status.WARNING, Status.CRITICAL) == (warn.status, crit.status)
    assert warn.summary.startswith("2 sessions blocked for up to ")
    assert warn.summary.endswith(
        f" s by pid {root} (postgres, app '', idle in transaction): "
        "UPDATE accounts SET balance = balance + 1 WHERE id = 1"
    )
    table = warn.evidence[0].data
    assert {"blocked_pid", "blocking_pid", "wait_s", "blocked_query", "blocking_query"} <= set(
        table["columns"]
    )
    assert "pg_blocking_pids" in warn.source


def test_blocking_roots_follow_chains_to_the_root() -> None:
    """blocking_roots attributes each waiter to the session at the head of its chain."""
    edges = pd.DataFrame(
        {"blocked_pid": [2, 3, 4, 10, 11, 12], "blocking_pid": [1, 2, 2, 11, 10, 10]}
    )
    roots = {k: sorted(v) for k, v in D.blocking_roots(edges).items()}
    assert {1: [2, 3, 4], 10: [11, 12], 11: [10, 12]} == roots


def test_role_without_pg_monitor_gets_unknown_with_the_grant(pg: str, admin: Any,
                                                             clean: list) -> None:  # fmt: skip
    """A role that cannot see other roles' sessions is told which GRANT fixes it."""
    admin.execute("DROP ROLE IF EXISTS aura_limited")
    admin.execute("CREATE ROLE aura_limited LOGIN")
    idle = _session(pg, clean)
    idle.execute("SELECT 1")
    time.sleep(0.2)
    limited = _as_role(pg, "aura_limited")
    [before] = D.check_idle_in_transaction(limited, warn_s=0.1)
    admin.execute("GRANT pg_monitor TO aura_limited")
    [after] = D.check_idle_in_transaction(limited, warn_s=0.1)
    assert Status.UNKNOWN == before.status
    assert "GRANT pg_monitor TO aura_limited;" in before.hint
    assert Status.WARNING == after.status
    assert [idle.info.backend_pid] == after.labels["pids"]


# --- connections ----------------------------------------------------------------------------


def test_connections_near_max_connections_warn_then_critical(pg: str, admin: Any,
                                                             clean: list) -> None:  # fmt: skip
    """85 of 100 connections is WARNING at the default 80 %, 96 of 100 is CRITICAL (>= 95 %)."""
    in_use = admin.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend'"
    ).fetchone()[0]
    for _ in range(85 - in_use - 1):  # the check's own connection makes 85
        _session(pg, clean, autocommit=True, application_name="leaky-pool")
    [warn] = D.check_connections(ENV)
    for _ in range(96 - 85):
        _session(pg, clean, autocommit=True, application_name="leaky-pool")
    [crit] = D.check_connections(ENV)
    assert (Status.WARNING, 85.0, 85) == (warn.status, warn.observed, warn.labels["connections"])
    assert (Status.CRITICAL, 96.0) == (crit.status, crit.observed)
    assert "96 of 100 connections in use (96 %)" in crit.summary
    assert "app 'leaky-pool'" in crit.summary
    assert "Non-superusers are refused at 97" in crit.hint
    by_app = crit.evidence[1].data
    assert ["postgres", "leaky-pool", 96 - in_use - 1] == by_app["rows"][0]


def test_connection_thresholds_are_keywords(pg: str) -> None:
    """Lowered thresholds turn the same quiet server into WARNING and CRITICAL."""
    [warn] = D.check_connections(ENV, warn_pct=1, crit_pct=99)
    [crit] = D.check_connections(ENV, warn_pct=1, crit_pct=1)
    assert (Status.WARNING, Status.CRITICAL) == (warn.status, crit.status)
    assert "check_connections('AURA_TEST_DB_DSN', warn_pct=1, crit_pct=1)" == crit.reproduce


# --- slow statements ------------------------------------------------------------------------


def test_missing_pg_stat_statements_is_unknown_with_the_fix(pg: str) -> None:
    """Without pg_stat_statements (the pgserver wheel ships none) the check says what to do."""
    [finding] = D.check_slow_statements(ENV)
    assert Status.UNKNOWN == finding.status
    assert "pg_stat_statements extension is not installed" in finding.summary
    assert "shared_preload_libraries = 'pg_stat_statements'" in finding.hint
    assert "CREATE EXTENSION pg_stat_statements;" in finding.hint
    with pytest.raises(QueryError):
        D.fetch_slow_statements(ENV)


def test_extension_not_created_in_this_database_asks_only_for_create(system_pg: Any) -> None:
    """Preloaded but not created in this database: the fix is CREATE EXTENSION, no restart."""
    with psycopg.connect(system_pg.dsn, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS no_pss")
        conn.execute("CREATE DATABASE no_pss")
    dsn = make_conninfo("", **{**conninfo_to_dict(system_pg.dsn), "dbname": "no_pss"})
    [finding] = D.check_slow_statements(dsn)
    assert Status.UNKNOWN == finding.status
    assert "CREATE EXTENSION pg_stat_statements;" in finding.hint
    assert "shared_preload_libraries" not in finding.hint


def test_slow_statements_are_ranked_by_mean_time(system_pg: Any) -> None:
    """With pg_stat_statements the slowest statement (pg_sleep) leads and trips the threshold."""
    with psycopg.connect(system_pg.dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        conn.execute("SELECT pg_stat_statements_reset()")
        for _ in range(3):
            conn.execute("SELECT pg_sleep(0.25)")
        for i in range(20):
            conn.execute("SELECT count(*) FROM generate_series(1, %s)", (i,))
    [finding] = D.check_slow_statements(system_pg.dsn, mean_warn_ms=200, mean_crit_ms=10_000)
    table = finding.evidence[0].data
    by_mean = pd.DataFrame(table["rows"], columns=table["columns"])
    assert Status.WARNING == finding.status
    assert "1 statement average 200 ms or more; slowest" in finding.summary
    assert "over 3 calls: SELECT pg_sleep($1)" in finding.summary
    assert ("SELECT pg_sleep($1)", 3) == (by_mean["query"][0], by_mean["calls"][0])
    assert 250 <= finding.observed < 1000
    assert "mean_exec_time" in finding.source  # PostgreSQL >= 13 column names, introspected


# --- sizes and replication -----------------------------------------------------------------


def test_table_and_database_sizes(pg: str, admin: Any) -> None:
    """The accounts table and the postgres database are measured; limits turn them WARNING."""
    [tables] = D.check_table_sizes(ENV)
    [over] = D.check_table_sizes(ENV, table_max_bytes=1)
    [dbs] = D.check_database_sizes(ENV)
    [dbs_over] = D.check_database_sizes(ENV, database_max_bytes=1)
    assert (Status.OK, Status.WARNING) == (tables.status, over.status)
    assert tables.summary.startswith("Largest table public.accounts: ")
    assert (Status.OK, Status.WARNING) == (dbs.status, dbs_over.status)
    names = [row[0] for row in dbs.evidence[0].data["rows"]]
    assert "postgres" in names


def test_no_replicas_is_info_not_an_error(pg: str) -> None:
    """A primary with no replicas is INFO, with the replication query as its source."""
    [finding] = D.check_replication(ENV)
    assert Status.INFO == finding.status
    assert "No replicas attached" in finding.summary
    assert "pg_stat_replication" in finding.source


def test_streaming_replica_is_seen_from_the_primary(system_pg: Any, standby: Any) -> None:
    """A primary with one streaming replica: OK, one row in state 'streaming'."""
    with psycopg.connect(system_pg.dsn, autocommit=True) as conn:
        _wait_for(
            lambda: conn.execute("SELECT count(*) FROM pg_stat_replication").fetchone()[0] == 1,
            "the replica to connect",
        )
    [finding] = D.check_replication(system_pg.dsn)
    table = finding.evidence[0].data
    assert Status.OK == finding.status
    assert finding.summary.startswith("1 replica; max replay lag ")
    assert ["streaming"] == [row[table["columns"].index("state")] for row in table["rows"]]


def test_standby_behind_its_threshold_warns(system_pg: Any, standby: Any) -> None:
    """On a standby the lag is the age of the last replayed transaction: 1 s old > 0.5 s."""
    with psycopg.connect(system_pg.dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS ticks (at timestamptz)")
        conn.execute("INSERT INTO ticks VALUES (now())")
        lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    replayed = "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn"
    with psycopg.connect(standby.dsn, autocommit=True) as conn:
        _wait_for(lambda: conn.execute(replayed, (lsn,)).fetchone()[0], "the insert to replay")
    time.sleep(1.0)
    [finding] = D.check_replication(standby.dsn, lag_warn_s=0.5, lag_crit_s=60)
    assert Status.WARNING == finding.status
    assert finding.summary.startswith("Standby: last replayed transaction is ")
    assert finding.observed >= 1.0


def test_fetch_functions_return_frames_with_their_sql(pg: str, admin: Any) -> None:
    """Every fetch_* returns a DataFrame carrying the exact SQL it ran."""
    frames = {
        "connections": D.fetch_connections(ENV),
        "connectivity": D.fetch_connectivity(ENV),
        "long": D.fetch_long_running_queries(ENV),
        "idle": D.fetch_idle_in_transaction(ENV),
        "blocking": D.fetch_blocking_locks(ENV),
        "tables": D.fetch_table_sizes(ENV, top_n=3),
        "databases": D.fetch_database_sizes(ENV),
        "replication": D.fetch_replication(ENV),
        "sql": D.fetch_sql(ENV, "SELECT count(*) AS n FROM accounts"),
    }
    assert all(isinstance(df, pd.DataFrame) and df.attrs["source"] for df in frames.values())
    assert 500 == frames["sql"]["n"][0]
    assert "LIMIT 3" in frames["tables"].attrs["source"]
    with pytest.raises(QueryError, match="read-only transaction"):
        D.fetch_sql(ENV, "DELETE FROM accounts")


# --- SQLite ---------------------------------------------------------------------------------


@pytest.fixture
def sqlite_db(tmp_path: Path) -> Path:
    """A small SQLite database with a table and an index (3000 rows)."""
    path = tmp_path / "aura.db"
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, name TEXT, state TEXT)")
        conn.execute("CREATE INDEX jobs_state ON jobs (state, name)")
        rows = [(f"job-{i:05d}", "failed" if i % 3 == 0 else "done") for i in range(3000)]
        conn.executemany("INSERT INTO jobs (name, state) VALUES (?, ?)", rows)
        conn.commit()
    return path


def test_sqlite_healthy_file_is_ok_and_left_untouched(sqlite_db: Path) -> None:
    """A healthy file: size OK (page_count * page_size), integrity ok, file not modified."""
    before = (sqlite_db.read_bytes(), sorted(p.name for p in sqlite_db.parent.iterdir()))
    [size] = D.check_sqlite_size(sqlite_db)
    [integrity] = D.check_sqlite_integrity(sqlite_db)
    after = (sqlite_db.read_bytes(), sorted(p.name for p in sqlite_db.parent.iterdir()))
    assert (Status.OK, Status.OK) == (size.status, integrity.status)
    assert sqlite_db.stat().st_size == size.observed
    assert "PRAGMA integrity_check(100)" == integrity.source
    assert before == after


def test_sqlite_size_threshold_warns(sqlite_db: Path) -> None:
    """A database above size_warn_bytes is WARNING."""
    [finding] = D.check_sqlite_size(sqlite_db, size_warn_bytes=1024)
    assert Status.WARNING == finding.status


def test_sqlite_corrupted_page_is_critical(sqlite_db: Path) -> None:
    """Garbage written into a b-tree page makes integrity_check CRITICAL, naming the page."""
    with sqlite_db.open("r+b") as f:
        f.seek(4096 * 5 + 100)
        f.write(b"\x00\xff" * 400)
    [finding] = D.check_sqlite_integrity(sqlite_db)
    assert Status.CRITICAL == finding.status
    assert "aura.db is corrupt" in finding.summary
    assert "On tree page" in finding.evidence[0].data


def test_sqlite_file_that_is_not_a_database_is_critical(sqlite_db: Path) -> None:
    """A file whose header is destroyed is CRITICAL for integrity, UNKNOWN for size."""
    with sqlite_db.open("r+b") as f:
        f.write(b"garbage!" * 16)
    [integrity] = D.check_sqlite_integrity(sqlite_db)
    [size] = D.check_sqlite_size(sqlite_db)
    assert Status.CRITICAL == integrity.status
    assert "SQLITE_NOTADB: file is not a database" in integrity.summary
    assert Status.UNKNOWN == size.status


def test_sqlite_missing_file_is_unknown(tmp_path: Path) -> None:
    """A path with no database is UNKNOWN (nothing was checked), not CRITICAL."""
    [finding] = D.check_sqlite_integrity(tmp_path / "nope.db")
    assert Status.UNKNOWN == finding.status
    assert "does not exist" in finding.summary


def test_sqlite_locked_database_is_unknown_within_timeout(sqlite_db: Path) -> None:
    """A writer holding an exclusive lock makes the check UNKNOWN after its timeout."""
    with contextlib.closing(sqlite3.connect(sqlite_db, isolation_level=None)) as writer:
        writer.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        [finding] = D.check_sqlite_integrity(sqlite_db, timeout_s=0.5)
        elapsed = time.monotonic() - started
        writer.execute("ROLLBACK")
    assert Status.UNKNOWN == finding.status
    assert "database is locked" in finding.summary
    assert elapsed < 2


def test_public_names_are_sorted_and_exist() -> None:
    """__all__ is sorted and every name in it exists."""
    assert sorted(D.__all__) == D.__all__
    assert all(hasattr(D, name) for name in D.__all__)
