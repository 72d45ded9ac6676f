"""Fixtures of the reliability suite: a real PostgreSQL with password auth and least-privilege
roles made by ``deploy/postgres/aura-ops-readonly-role.sql``."""

from __future__ import annotations

import dataclasses
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from tests.conftest import need

ROOT = Path(__file__).resolve().parents[2]
ROLE_SCRIPT = ROOT / "deploy" / "postgres" / "aura-ops-readonly-role.sql"


@dataclasses.dataclass(frozen=True)
class ScramPostgres:
    """A Debian PostgreSQL on 127.0.0.1 (scram-sha-256) with a monitor and a plain role."""

    admin_dsn: str  # trust auth on a private Unix socket: no secret
    tcp_port: int
    psql: Path
    monitor: tuple[str, str]  # (role, password): made by the deploy script, pg_monitor only
    plain: tuple[str, str]  # (role, password): LOGIN and CONNECT, no pg_monitor

    def dsn(self, role: tuple[str, str]) -> str:
        """A password DSN over TCP for ``role`` (a secret: pass it through an env var)."""
        return f"postgresql://{role[0]}:{role[1]}@127.0.0.1:{self.tcp_port}/postgres"


def apply_role_script(psql: Path, admin_dsn: str, role: str, password: str) -> str:
    """Run the shipped script as an operator would (``psql -v ... -f``); returns its output."""
    proc = subprocess.run(
        [str(psql), admin_dsn, "-X", "-q", "-v", f"role={role}", "-v", f"ro_password={password}",
         "-v", "dbname=postgres", "-f", str(ROLE_SCRIPT)],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def scram_pg() -> Iterator[ScramPostgres]:
    """One password-auth PostgreSQL for the whole session, with its two roles."""
    from aura_ops.sandbox.postgres import start_postgres, system_postgres_bindir

    bindir = system_postgres_bindir()
    need(bindir is not None, "the Debian PostgreSQL server is not installed (make services)")
    assert bindir is not None
    psql = bindir / "psql" if (bindir / "psql").exists() else Path(shutil.which("psql") or "psql")
    work = Path(tempfile.mkdtemp(prefix="aura-ops-reliability-pg-"))
    pg = start_postgres(work / "data", prefer="system")
    try:
        assert pg.tcp_port is not None
        monitor = ("aura_ops_ro", "ro-" + secrets.token_hex(12))
        plain = ("aura_ops_plain", "plain-" + secrets.token_hex(12))
        apply_role_script(psql, pg.dsn, *monitor)
        with psycopg.connect(pg.dsn, autocommit=True) as conn:
            conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            conn.execute(f"CREATE ROLE {plain[0]} LOGIN PASSWORD '{plain[1]}'")
        yield ScramPostgres(pg.dsn, pg.tcp_port, psql, monitor, plain)
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)
