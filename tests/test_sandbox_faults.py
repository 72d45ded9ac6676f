"""The sandbox's database and host faults: each one real when injected, gone when cleared."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import httpx
import psycopg
import pytest

from aura_ops import backup
from aura_ops.errors import ConfigError
from aura_ops.sandbox import Sandbox, db_faults, host_faults
from aura_ops.sandbox.postgres import system_postgres_bindir

GIB = 1024**3


def _one(dsn: str, sql: str) -> Any:
    with psycopg.connect(dsn, autocommit=True, connect_timeout=3) as conn:
        row = conn.execute(sql).fetchone()
    return row[0] if row else None


def _du(path: os.PathLike[str] | str) -> int:
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.lstat(os.path.join(root, f)).st_blocks * 512 for f in files)
    return total


def test_postgres_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    """ "auto" takes the Debian server when installed, else pgserver; the env var overrides it."""
    monkeypatch.delenv(db_faults.POSTGRES_ENV, raising=False)
    expected = "system" if system_postgres_bindir() is not None else "pgserver"
    assert expected == db_faults.choose_postgres("auto")
    monkeypatch.setenv(db_faults.POSTGRES_ENV, "pgserver")
    assert "pgserver" == db_faults.choose_postgres("auto")
    assert "system" == db_faults.choose_postgres("system")
    with pytest.raises(ConfigError):
        db_faults.choose_postgres("mysql")


@pytest.fixture(scope="module")
def sb() -> Iterator[Sandbox]:
    """One sandbox for the fault tests below (no traffic: every effect is measured directly)."""
    with Sandbox() as sandbox:
        yield sandbox


@pytest.mark.slow
class TestFaults:
    """One sandbox, each fault injected, measured, cleared and measured again."""

    def test_environment_points_at_the_parts(self, sb: Sandbox) -> None:
        """The runbook parameters name real parts: data, backups, the process; the DSN is an
        env var name whose value only the kernel environment carries."""
        env = sb.environment()
        assert os.path.isdir(env["data_dir"]) and os.path.isdir(env["backup_dir"])
        assert len(os.listdir(env["backup_dir"])) == 2
        assert env["process_pattern"].endswith(f"--port {sb.port}")
        assert sb.kernel_env()[env["dsn_env"]] == sb.dsn
        if system_postgres_bindir() is not None:  # the Debian server brings pg_stat_statements
            assert sb.pg is not None and "system" == sb.pg.kind
            sql = "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'"
            assert 1 == _one(sb.dsn, sql)

    def test_idle_transactions(self, sb: Sandbox) -> None:
        """88 % of max_connections end up idle in transaction from aura-export; clear ends them."""
        sql = (
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'aura-export' "
            "AND state = 'idle in transaction'"
        )
        sb.inject("idle-transactions")
        max_conn = int(_one(sb.dsn, "SHOW max_connections"))
        assert _one(sb.dsn, sql) >= 0.8 * max_conn
        sb.clear()
        time.sleep(0.3)
        assert 0 == _one(sb.dsn, sql)

    def test_lock_blocking(self, sb: Sandbox) -> None:
        """The migration blocks the report; clear rolls the migration back."""
        sql = "SELECT count(*) FROM pg_stat_activity WHERE cardinality(pg_blocking_pids(pid)) > 0"
        sb.inject("lock-blocking")
        time.sleep(0.3)
        assert _one(sb.dsn, sql) >= 1
        sb.clear()
        time.sleep(0.3)
        assert 0 == _one(sb.dsn, sql)
        column = "SELECT count(*) FROM information_schema.columns WHERE column_name = 'priority'"
        assert 0 == _one(sb.dsn, column)

    def test_missing_index(self, sb: Sandbox) -> None:
        """After the backfill the project page takes seconds; cleared, it is fast again."""
        sb.inject("missing-index")
        t0 = time.monotonic()
        r = httpx.get(f"{sb.base_url}/api/projects/3", timeout=10)
        slow = time.monotonic() - t0
        assert 200 == r.status_code and len(r.json()["recent_jobs"]) == 50
        assert slow >= 1.0
        sb.clear()
        t0 = time.monotonic()
        assert 200 == httpx.get(f"{sb.base_url}/api/projects/3", timeout=10).status_code
        assert time.monotonic() - t0 < 1.0

    def test_database_down(self, sb: Sandbox) -> None:
        """PostgreSQL stops; cleared, it runs again at the same DSN and the API is ready."""
        sb.inject("database-down")
        with pytest.raises(psycopg.OperationalError):
            _one(sb.dsn, "SELECT 1")
        sb.clear()
        assert 1 == _one(sb.dsn, "SELECT 1")
        deadline = time.monotonic() + 15
        while httpx.get(f"{sb.base_url}/health/ready", timeout=5).status_code != 200:
            assert time.monotonic() < deadline, "the API's pool did not recover"
            time.sleep(0.5)

    def test_disk_full(self, sb: Sandbox) -> None:
        """The render cache fills the data directory to ~94 % of its volume; clear removes it."""
        quota = host_faults.DATA_QUOTA_GIB * GIB
        sb.inject("disk-full")
        assert 0.92 <= _du(host_faults.data_dir(sb)) / quota <= 0.96
        sb.clear()
        assert _du(host_faults.data_dir(sb)) / quota < 0.1

    def test_backups(self, sb: Sandbox) -> None:
        """Stale: newest 74 h old. Corrupt: newest unreadable by pg_restore. Cleared: fresh."""
        where = host_faults.backup_dir(sb)
        sb.inject("backup-stale")
        assert 73.9 < backup.fetch_backups(where)["age_h"].iloc[0] < 74.1
        sb.clear()
        sb.inject("backup-corrupt")
        newest = backup.fetch_backups(where)["path"].iloc[0]
        assert (False, True) == (
            backup.verify_backup(newest)[0],
            backup.verify_backup(backup.fetch_backups(where)["path"].iloc[1])[0],
        )
        sb.clear()
        frame = backup.fetch_backups(where)
        assert 2.9 < frame["age_h"].iloc[0] < 3.1 and backup.verify_backup(frame["path"][0])[0]

    def test_api_hung_then_stop_is_prompt(self, sb: Sandbox) -> None:
        """SIGSTOP: connections are accepted, nothing answers; clear resumes it; a sandbox
        stopped while the API is stopped still exits promptly."""
        sb.inject("api-hung")
        with pytest.raises(httpx.TimeoutException):
            httpx.get(f"{sb.base_url}/health/live", timeout=1)
        sb.clear()
        assert 200 == httpx.get(f"{sb.base_url}/health/live", timeout=5).status_code
        sb.inject("api-hung")
        proc = sb.proc
        t0 = time.monotonic()
        sb.stop()
        assert time.monotonic() - t0 < 8
        assert proc is not None and proc.poll() is not None
