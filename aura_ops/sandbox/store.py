"""The sandbox service's data: a real PostgreSQL schema, seeded, reached through a bounded pool."""

from __future__ import annotations

import datetime as dt
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
