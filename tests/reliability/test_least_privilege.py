"""Least privilege: the database runbooks need only ``pg_monitor``; Kubernetes only the
read-only Role we ship.

PostgreSQL: ``deploy/postgres/aura-ops-readonly-role.sql`` is applied with ``psql`` to a real
server with password auth (:func:`tests.reliability.conftest.scram_pg`); every PostgreSQL check
and the database-connections runbook then run under that role while another role's sessions
are open, and must see everything. A role without ``pg_monitor`` gets UNKNOWN naming the GRANT.

Kubernetes: every public ``check_*``/``fetch_*`` of :mod:`aura_ops.kube` (and the memory
runbook's ``check_oom_kills``) runs through a recording proxy in front of the API-shaped
fixture server; each request (method + path) is mapped to its RBAC verb and resource and must
be allowed by ``deploy/rbac/aura-ops-readonly-role.yaml`` -- and that Role grants nothing the
code does not use.
"""

from __future__ import annotations

import contextlib
import inspect
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
import yaml

from aura_ops import database, kube, memory
from aura_ops.findings import Finding, Status
from aura_ops.kube_fixture import serve_kube_fixture
from aura_ops.runner import run_runbook
from tests.conftest import closed_port
from tests.reliability.conftest import ROOT, ScramPostgres, apply_role_script

pytestmark = pytest.mark.slow

RO_ENV = "AURA_OPS_RO_DSN"
PLAIN_ENV = "AURA_OPS_PLAIN_DSN"
ROLE_YAML = ROOT / "deploy" / "rbac" / "aura-ops-readonly-role.yaml"
SCENARIO = ROOT / "tests" / "fixtures" / "kube" / "aura-api-incident"
#: the PostgreSQL checks and the arguments they need beyond the DSN
PG_CHECKS = {
    "check_connectivity": {},
    "check_connections": {},
    "check_long_running_queries": {"warn_s": 0.5, "crit_s": 3600},
    "check_idle_in_transaction": {"warn_s": 0.5, "crit_s": 3600},
    "check_blocking_locks": {"min_wait_s": 0.5},
    "check_slow_statements": {},
    "check_table_sizes": {},
    "check_database_sizes": {},
    "check_replication": {},
}
#: checks that read other roles' sessions: without pg_monitor they must say UNKNOWN + GRANT
SESSION_CHECKS = (
    "check_connections",
    "check_long_running_queries",
    "check_idle_in_transaction",
    "check_blocking_locks",
)


@contextlib.contextmanager
def other_sessions(pg: ScramPostgres) -> Iterator[None]:
    """A superuser's sessions the diagnostics must see: one idle in transaction, one active."""
    idle = psycopg.connect(pg.admin_dsn, application_name="aura-export")
    idle.execute("SELECT 1")  # now idle in transaction
    busy = psycopg.connect(pg.admin_dsn, application_name="aura-reports", autocommit=True)
    thread = threading.Thread(target=_sleep_until_cancelled, args=(busy,), daemon=True)
    thread.start()
    time.sleep(1.0)  # both past the 0.5 s thresholds the tests use
    try:
        yield
    finally:
        busy.cancel_safe(timeout=5)
        thread.join(10)
        busy.close()
        idle.close()


def _sleep_until_cancelled(conn: psycopg.Connection[Any]) -> None:
    with contextlib.suppress(psycopg.errors.QueryCanceled):
        conn.execute("SELECT pg_sleep(60)")


def _privilege_problems(findings: list[Finding]) -> list[str]:
    return [
        f"{f.check}: {f.summary} ({f.hint})"
        for f in findings
        if f.status == Status.UNKNOWN or re.search(r"GRANT|privilege|permission", f.hint)
    ]


def test_role_script_makes_a_monitor_role_and_nothing_more(scram_pg: ScramPostgres) -> None:
    """The shipped script gives LOGIN, CONNECT and pg_monitor; read-only, bounded, no table."""
    with psycopg.connect(scram_pg.admin_dsn, autocommit=True) as admin:
        admin.execute("CREATE TABLE IF NOT EXISTS customer_secrets (card text)")
        role = admin.execute(
            "SELECT rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, "
            "rolcanlogin, rolconnlimit, rolconfig FROM pg_roles WHERE rolname = %s",
            (scram_pg.monitor[0],),
        ).fetchone()
        member_of = admin.execute(
            "SELECT r.rolname FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s",
            (scram_pg.monitor[0],),
        ).fetchall()
    assert (False, False, False, False, False, True, 3) == role[:7]
    assert {"default_transaction_read_only=on", "statement_timeout=5s", "lock_timeout=1s"} <= set(
        role[7]
    )
    assert {"pg_monitor"} == {r for (r,) in member_of} - {"pg_use_reserved_connections"}
    with other_sessions(scram_pg), psycopg.connect(scram_pg.dsn(scram_pg.monitor)) as ro:
        ro.autocommit = True
        (pid,) = ro.execute(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'aura-export'"
        ).fetchone()
        for sql in (
            "SELECT * FROM customer_secrets",
            "CREATE TABLE t (x int)",
            f"SELECT pg_terminate_backend({pid})",
            f"SELECT pg_cancel_backend({pid})",
        ):
            with pytest.raises(psycopg.Error):
                ro.execute(sql)  # fmt: skip


def test_role_script_is_idempotent_and_rotates_the_password(scram_pg: ScramPostgres) -> None:
    """Running the script again succeeds and the new password replaces the old one."""
    role, old = scram_pg.monitor
    apply_role_script(scram_pg.psql, scram_pg.admin_dsn, role, "rotated-" + old)
    try:
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(scram_pg.dsn((role, old)), connect_timeout=5).close()
        psycopg.connect(scram_pg.dsn((role, "rotated-" + old)), connect_timeout=5).close()
    finally:
        apply_role_script(scram_pg.psql, scram_pg.admin_dsn, role, old)


def test_every_postgres_check_works_under_pg_monitor(
    scram_pg: ScramPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each PostgreSQL check, under the pg_monitor role, sees every session: no UNKNOWN."""
    assert set(PG_CHECKS) == {
        n for n in database.__all__ if n.startswith("check_") and "sqlite" not in n
    }
    monkeypatch.setenv(RO_ENV, scram_pg.dsn(scram_pg.monitor))
    with other_sessions(scram_pg):
        findings = [f for name, kw in PG_CHECKS.items()
                    for f in getattr(database, name)(RO_ENV, **kw)]  # fmt: skip
    assert [] == _privilege_problems(findings)
    seen = {f.check: f for f in findings}
    assert seen["database.idle_in_transaction"].status >= Status.WARNING  # aura-export seen
    assert "aura-reports" in str(seen["database.long_running_queries"].evidence)


def test_database_connections_runbook_under_pg_monitor(
    scram_pg: ScramPostgres, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The database-connections runbook under the pg_monitor role: every database check runs."""
    monkeypatch.setenv(RO_ENV, scram_pg.dsn(scram_pg.monitor))
    params = {"dsn_env": RO_ENV, "base_url": f"http://127.0.0.1:{closed_port()}",
              "timeout_s": 5, "idle_in_transaction_warn_s": 1}  # fmt: skip
    with other_sessions(scram_pg):
        run = run_runbook("database-connections", params=params, output_root=tmp_path,
                          timeout_s=150)  # fmt: skip
    assert "completed" == run.record["execution"]["status"]
    db = [f for f in run.findings if f.check.startswith("database.")]
    assert {
        "database.connectivity",
        "database.connections",
        "database.idle_in_transaction",
        "database.blocking_locks",
        "database.long_running_queries",
    } <= {f.check for f in db}
    assert [] == _privilege_problems(db)
    assert any("aura-export" in f.summary for f in db)  # another role's session, judged


def test_role_without_pg_monitor_is_told_the_grant(
    scram_pg: ScramPostgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A role without pg_monitor cannot see other sessions: UNKNOWN with the GRANT to run."""
    monkeypatch.setenv(PLAIN_ENV, scram_pg.dsn(scram_pg.plain))
    with other_sessions(scram_pg):
        findings = {n: getattr(database, n)(PLAIN_ENV, **PG_CHECKS[n]) for n in SESSION_CHECKS}
    grant = f"GRANT pg_monitor TO {scram_pg.plain[0]}"
    for name, found in findings.items():
        told = [f for f in found if f.status == Status.UNKNOWN and grant in f.hint]
        assert 1 == len(told), (name, found)
        assert "hidden from role aura_ops_plain" in told[0].summary


# --- Kubernetes ------------------------------------------------------------------------------


def role_rules(path: Path = ROLE_YAML) -> set[tuple[str, str, str]]:
    """(apiGroup, resource, verb) granted by the Role(s) in ``path``."""
    granted = set()
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc.get("kind") in ("Role", "ClusterRole"):
            for rule in doc.get("rules", []):
                granted |= {(g, r, v) for g in rule["apiGroups"] for r in rule["resources"]
                            for v in rule["verbs"]}  # fmt: skip
    return granted


_PATH = re.compile(
    r"^/(?:api/(?P<core>v1)|apis/(?P<group>[^/]+)/[^/]+)"
    r"(?:/namespaces/[^/]+)?/(?P<res>[^/]+)(?:/(?P<name>[^/]+)(?:/(?P<sub>[^/]+))?)?$"
)
_VERBS = {"POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}


def rbac_of(method: str, target: str) -> tuple[str, str, str] | None:
    """The (apiGroup, resource, verb) an API request needs; None for discovery paths."""
    path, _, query = target.partition("?")
    if path in ("/version", "/api", "/apis") or path.startswith("/openapi"):
        return None
    m = _PATH.match(path)
    assert m, f"not a Kubernetes API path: {target}"
    resource = m["res"] + (f"/{m['sub']}" if m["sub"] else "")
    if method == "GET":
        verb = "watch" if "watch=true" in query else ("get" if m["name"] else "list")
    else:
        verb = _VERBS[method] if m["name"] or method != "DELETE" else "deletecollection"
    return (m["group"] or "", resource, verb)


@contextlib.contextmanager
def recording_proxy(upstream: str) -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """An HTTP proxy that records (method, path) of every request and forwards it."""
    seen: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def _any(self) -> None:
            seen.append((self.command, self.path))
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            r = httpx.request(self.command, upstream + self.path, content=body, timeout=10)
            self.send_response(r.status_code)
            self.send_header("Content-Type", r.headers.get("content-type", "text/plain"))
            self.send_header("Content-Length", str(len(r.content)))
            self.end_headers()
            self.wfile.write(r.content)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any  # noqa: N815

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", seen
    finally:
        httpd.shutdown()
        httpd.server_close()


#: values for the required arguments of kube functions (beyond the API client)
KUBE_ARGS = {"deployment": "aura-api", "name": "aura-api", "pod": "aura-api-7f6b5c4d98-q8w7e",
             "label_selector": "app=aura-api"}  # fmt: skip


def _call_everything(api: Any, url: str) -> set[str]:
    """Call every public check_/fetch_ of aura_ops.kube (logs current and previous)."""
    called = set()
    for name in kube.__all__:
        if not name.startswith(("check_", "fetch_")):
            continue
        fn = getattr(kube, name)
        params = list(inspect.signature(fn).parameters.values())[1:]
        kwargs: dict[str, Any] = {"namespace": "aura"}
        for p in params:
            if p.default is inspect.Parameter.empty:
                assert p.name in KUBE_ARGS, f"add a value for {name}({p.name}=...) to KUBE_ARGS"
                kwargs[p.name] = KUBE_ARGS[p.name]
        variants = [{}, {"previous": True}] if "previous" in kwargs or any(
            p.name == "previous" for p in params) else [{}]  # fmt: skip
        for extra in variants:
            with contextlib.suppress(Exception):  # a 400 for a missing previous log is fine
                fn(api, **kwargs, **extra)
        called.add(name)
    memory.check_oom_kills(url, namespace="aura", label_selector="app=aura-api")
    return called


def test_kube_calls_stay_within_the_readonly_role() -> None:
    """Every request the Kubernetes functions make is a verb + resource the Role allows."""
    allowed = role_rules()
    with serve_kube_fixture(SCENARIO) as upstream, recording_proxy(upstream) as (url, seen):
        api = kube.connect_kube_url(url, timeout_s=5)
        called = _call_everything(api, url)
    assert {"check_pods", "check_events", "check_rollout_history", "fetch_pod_logs"} <= called
    needed = {r for method, path in seen if (r := rbac_of(method, path)) is not None}
    assert {"pods", "pods/log", "events", "deployments", "replicasets"} <= {r for _, r, _ in needed}
    assert set() == needed - allowed
    # ... and the Role is no broader than that: read verbs only, only resources the code reads
    assert {"get", "list", "watch"} >= {v for _, _, v in allowed}
    assert {(g, r) for g, r, _ in needed} == {(g, r) for g, r, _ in allowed}


def test_the_role_refuses_what_runbooks_must_never_do() -> None:
    """No secrets, no exec, no wildcard, no write verb in the shipped Role."""
    allowed = role_rules()
    resources = {r for _, r, _ in allowed}
    assert not resources & {"secrets", "configmaps", "pods/exec", "pods/attach", "*"}
    assert not {v for _, _, v in allowed} & {"create", "update", "patch", "delete", "*"}
