"""The sandbox service's data: a real PostgreSQL schema, seeded, reached through a bounded pool."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool

SCHEMA = """
CREATE TABLE IF NOT EXISTS projects (
    id          serial PRIMARY KEY,
    name        text NOT NULL,
    owner       text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS jobs (
    id              serial PRIMARY KEY,
    project_id      int NOT NULL,
    status          text NOT NULL DEFAULT 'queued',
    correlation_id  text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz
);
CREATE INDEX IF NOT EXISTS jobs_status_idx ON jobs (status);
-- render settings per project, read by the worker for every job (request-trace's fault)
ALTER TABLE projects ADD COLUMN IF NOT EXISTS settings jsonb NOT NULL DEFAULT '{"fps": 30}';
CREATE TABLE IF NOT EXISTS job_events (
    id          bigserial PRIMARY KEY,
    job_id      int NOT NULL,
    kind        text NOT NULL,
    at          timestamptz NOT NULL DEFAULT now()
);
"""


def utcnow_iso() -> str:
    """Now, UTC, ISO 8601 with microseconds."""
    return dt.datetime.now(dt.UTC).isoformat()


def init_schema(dsn: str, *, projects: int = 200) -> None:
    """Create the schema and seed projects once (idempotent)."""
    with psycopg.connect(dsn, connect_timeout=5, autocommit=True) as conn:
        conn.execute(SCHEMA)
        (count,) = conn.execute("SELECT count(*) FROM projects").fetchone() or (0,)
        if count == 0:
            with conn.cursor() as cur:
                cur.executemany(
                    "INSERT INTO projects (name, owner) VALUES (%s, %s)",
                    [(f"project-{i:04d}", f"user{i % 17}") for i in range(projects)],
                )


class Store:
    """Queries the service runs, through a small pool with timeouts on every step."""

    def __init__(self, dsn: str, *, max_size: int = 8) -> None:
        self.pool = ConnectionPool(
            dsn,
            min_size=1,
            max_size=max_size,
            timeout=3.0,
            kwargs={
                "connect_timeout": 3,
                "autocommit": True,
                "application_name": "aura-api",
                "options": "-c statement_timeout=5000",
            },
            open=False,
        )
        self.pool.open(wait=False)

    def close(self) -> None:
        self.pool.close(timeout=2)

    def _all(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        with self.pool.connection() as conn, conn.cursor(row_factory=psycopg.rows.dict_row) as cur:
            cur.execute(sql, params)
            return [{k: _plain(v) for k, v in row.items()} for row in cur.fetchall()]

    def ping(self) -> None:
        self._all("SELECT 1 AS one")

    def list_projects(self, *, limit: int) -> list[dict[str, Any]]:
        return self._all("SELECT id, name, owner FROM projects ORDER BY id LIMIT %s", (limit,))

    def get_project(self, project_id: int) -> dict[str, Any] | None:
        rows = self._all("SELECT id, name, owner FROM projects WHERE id = %s", (project_id,))
        return rows[0] if rows else None

    def recent_jobs(self, project_id: int, *, limit: int = 50) -> list[dict[str, Any]]:
        """The project's latest jobs with their event counts (one correlated count per job:
        fast while job_events has an index on job_id or few rows -- see the missing-index
        fault)."""
        return self._all(
            "SELECT j.id, j.status, (SELECT count(*) FROM job_events e WHERE e.job_id = j.id) "
            "AS events FROM jobs j WHERE j.project_id = %s ORDER BY j.id DESC LIMIT %s",
            (project_id, limit),
        )

    def create_job(self, project_id: int, correlation_id: str) -> int:
        rows = self._all(
            "INSERT INTO jobs (project_id, correlation_id) VALUES (%s, %s) RETURNING id",
            (project_id, correlation_id),
        )
        return int(rows[0]["id"])

    def get_job(self, job_id: int) -> dict[str, Any] | None:
        rows = self._all("SELECT id, project_id, status FROM jobs WHERE id = %s", (job_id,))
        return rows[0] if rows else None

    def complete_jobs(self, *, limit: int) -> list[tuple[int, str]]:
        rows = self._all(
            "UPDATE jobs SET status = 'done', completed_at = now() WHERE id IN "
            "(SELECT id FROM jobs WHERE status = 'queued' ORDER BY id LIMIT %s "
            "FOR UPDATE SKIP LOCKED) RETURNING id, correlation_id",
            (limit,),
        )
        return [(int(r["id"]), str(r["correlation_id"] or "")) for r in rows]

    def render_settings(self, job_id: int, correlation_id: str) -> dict[str, Any]:
        """The job's project render settings, read as the worker does: in a transaction that
        names the request (``application_name`` ``aura-worker/<id>``, which the server log
        shows) and with the ID in a sqlcommenter-style comment on the statement."""
        cid = re.sub(r"[^A-Za-z0-9_.-]", "", correlation_id)[:40]
        sql = (
            "SELECT p.id AS project_id, (p.settings->>'fps')::int AS fps FROM projects p "
            "WHERE p.id = (SELECT project_id FROM jobs WHERE id = %s) "
            f"/*correlation_id='{cid}',job_id='{int(job_id)}'*/"
        )
        with (
            self.pool.connection() as conn,
            conn.transaction(),
            conn.cursor(row_factory=psycopg.rows.dict_row) as cur,
        ):
            cur.execute("SELECT set_config('application_name', %s, true)", (f"aura-worker/{cid}",))
            row = cur.execute(sql, (job_id,)).fetchone()
        return dict(row or {})

    def fail_job(self, job_id: int) -> None:
        self._all("UPDATE jobs SET status = 'failed' WHERE id = %s RETURNING id", (job_id,))

    def queue_depth(self) -> int:
        return int(self._all("SELECT count(*) AS n FROM jobs WHERE status = 'queued'")[0]["n"])

    def jobs_completed_since(self, seconds: int) -> int:
        rows = self._all(
            "SELECT count(*) AS n FROM jobs WHERE completed_at > now() - make_interval(secs => %s)",
            (seconds,),
        )
        return int(rows[0]["n"])


def _plain(value: Any) -> Any:
    if isinstance(value, (dt.datetime, dt.date)):
        return value.isoformat()
    return value
