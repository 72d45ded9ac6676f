"""The receiver's durable memory: deliveries, alert episodes and runs in one SQLite file.

Every accepted delivery is committed before the webhook is answered (WAL journal,
``synchronous=FULL``: a 2xx promises the alert survives a power cut, not only a crash of this
process; at alert rates the extra fsync costs a millisecond). Three tables:

- ``deliveries``: every authenticated delivery, accepted or refused, with what became of it;
  PagerDuty's webhook id is unique, so a redelivery is recognised;
- ``episodes``: one row per alert occurrence (fingerprint + startsAt, or the PagerDuty incident);
  a repeat or a ``resolved`` notification updates it, never creates a second run;
- ``runs``: the state machine ``queued → running → done | failed``, plus ``dropped`` for an
  alert refused because the queue was full. On start, ``running`` rows (a crash mid-run) go
  back to ``queued``; a run interrupted ``max_attempts`` times is failed instead.

Alerts of a storm with the same group key (same route, alert name, runbook and parameters)
within ``storm_window_s`` join one run (``alerts`` counts them). Retention deletes old
finished runs, their output directories (only inside the output root), and old episodes and
deliveries, by age and by count.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from aura_ops.alert_routes import RunRequest
from aura_ops.alerts import Alert
from aura_ops.redact import Redactor, default_redactor

__all__ = ["AlertOutcome", "RunStore"]

SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
  id INTEGER PRIMARY KEY,
  source TEXT NOT NULL,
  delivery_key TEXT,
  received_at REAL NOT NULL,
  status TEXT NOT NULL,
  http_status INTEGER NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  alerts INTEGER NOT NULL DEFAULT 0,
  truncated INTEGER NOT NULL DEFAULT 0,
  outcomes TEXT NOT NULL DEFAULT '[]'
);
CREATE UNIQUE INDEX IF NOT EXISTS deliveries_key ON deliveries(source, delivery_key)
  WHERE delivery_key IS NOT NULL;
CREATE INDEX IF NOT EXISTS deliveries_time ON deliveries(received_at);
CREATE TABLE IF NOT EXISTS runs (
  id INTEGER PRIMARY KEY,
  state TEXT NOT NULL,
  source TEXT NOT NULL,
  alertname TEXT NOT NULL,
  labels TEXT NOT NULL,
  runbook TEXT NOT NULL,
  environment TEXT NOT NULL,
  params TEXT NOT NULL,
  route TEXT NOT NULL,
  group_key TEXT NOT NULL,
  created_at REAL NOT NULL,
  started_at REAL,
  finished_at REAL,
  attempts INTEGER NOT NULL DEFAULT 0,
  alerts INTEGER NOT NULL DEFAULT 1,
  repeats INTEGER NOT NULL DEFAULT 0,
  resolved_at REAL,
  verdict TEXT,
  headline TEXT,
  duration_s REAL,
  run_dir TEXT,
  error TEXT,
  note TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS runs_state ON runs(state, id);
CREATE INDEX IF NOT EXISTS runs_group ON runs(group_key, created_at);
CREATE TABLE IF NOT EXISTS episodes (
  key TEXT PRIMARY KEY,
  source TEXT NOT NULL,
  alertname TEXT NOT NULL,
  status TEXT NOT NULL,
  labels TEXT NOT NULL,
  starts_at TEXT NOT NULL,
  first_seen REAL NOT NULL,
  last_seen REAL NOT NULL,
  deliveries INTEGER NOT NULL DEFAULT 1,
  resolved_at REAL,
  outcome TEXT NOT NULL,
  reason TEXT NOT NULL DEFAULT '',
  run_id INTEGER
);
CREATE INDEX IF NOT EXISTS episodes_run ON episodes(run_id);
CREATE INDEX IF NOT EXISTS episodes_seen ON episodes(last_seen);
"""
TERMINAL = ("done", "failed", "dropped")


@dataclasses.dataclass(frozen=True)
class AlertOutcome:
    """What one alert of a delivery became.

    ``outcome``: ``queued`` (a new run), ``merged`` (joined a run of the same storm group),
    ``repeat`` (known episode), ``resolved`` (annotated its run), ``resolved-only`` (resolved
    with no run), ``unrouted``, ``dropped`` (queue full), ``update`` (PagerDuty event).
    """

    episode: str
    outcome: str
    run_id: int | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready copy."""
        return dataclasses.asdict(self)


class RunStore:
    """SQLite persistence for the receiver; thread-safe (one connection behind a lock)."""

    def __init__(
        self,
        path: str | Path,
        *,
        clock: Callable[[], float] = time.time,
        storm_window_s: float = 300.0,
        max_queue: int = 100,
        max_attempts: int = 3,
        redactor: Redactor | None = None,
    ) -> None:
        self.path = Path(path)
        #: every alert label, run parameter, headline and error passes through it before it is
        #: written: the database is served by ``GET /runs`` and copied into post-mortems
        self.redactor = redactor or default_redactor()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.clock = clock
        self.storm_window_s = storm_window_s
        self.max_queue = max_queue
        self.max_attempts = max_attempts
        self._lock = threading.RLock()
        self._db = sqlite3.connect(
            str(self.path), isolation_level=None, check_same_thread=False, timeout=10.0
        )
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute("PRAGMA busy_timeout=10000")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._db.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    # --- deliveries ---------------------------------------------------------------------------
    def seen_delivery(self, source: str, key: str) -> bool:
        """Whether a delivery with this id (PagerDuty ``X-Webhook-Id``) was already accepted."""
        with self._lock:
            row = self._db.execute(
                "SELECT 1 FROM deliveries WHERE source=? AND delivery_key=?", (source, key)
            ).fetchone()
        return row is not None

    def record_refused(self, source: str, http_status: int, reason: str) -> int:
        """Record an authenticated delivery that was refused (4xx), so nothing is silent."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO deliveries (source, received_at, status, http_status, reason)"
                " VALUES (?, ?, 'refused', ?, ?)",
                (source, self.clock(), http_status, reason[:2000]),
            )
        return int(cur.lastrowid or 0)

    def record_delivery(
        self,
        source: str,
        items: Sequence[tuple[Alert, RunRequest | None, str]],
        *,
        delivery_key: str | None = None,
        truncated: int = 0,
    ) -> tuple[int, list[AlertOutcome]]:
        """Persist one delivery and what each alert becomes, in one transaction.

        ``items`` holds per alert its routed request (None: unrouted or not firing) and a
        refusal reason ('' when accepted). Returns the delivery id and the outcomes.
        """
        now = self.clock()
        with self._tx() as db:
            outcomes = [self._alert(db, alert, req, why, now) for alert, req, why in items]
            refused = sum(1 for o in outcomes if o.outcome == "refused")
            cur = db.execute(
                "INSERT INTO deliveries (source, delivery_key, received_at, status, http_status,"
                " reason, alerts, truncated, outcomes) VALUES (?, ?, ?, 'accepted', 202, ?, ?,"
                " ?, ?)",
                (
                    source,
                    delivery_key,
                    now,
                    f"{refused} alert(s) refused" if refused else "",
                    len(items),
                    truncated,
                    json.dumps([o.to_dict() for o in outcomes]),
                ),
            )
        return int(cur.lastrowid or 0), outcomes

    def _alert(
        self, db: sqlite3.Connection, alert: Alert, req: RunRequest | None, why: str, now: float
    ) -> AlertOutcome:
        if why:
            return AlertOutcome(alert.episode, "refused", None, why)
        row = db.execute("SELECT * FROM episodes WHERE key=?", (alert.episode,)).fetchone()
        if row is not None:
            return self._known(db, row, alert, now)
        if alert.status == "update":  # e.g. a PagerDuty note on an incident never seen firing
            return AlertOutcome(alert.episode, "update")
        if alert.status == "resolved":  # never starts a run, and a late 'firing' won't either
            outcome, run_id, reason = "resolved-only", None, ""
        elif req is None:
            outcome, run_id, reason = "unrouted", None, "no route matches"
        else:
            outcome, run_id, reason = self._queue(db, alert, req, now)
        db.execute(
            "INSERT INTO episodes (key, source, alertname, status, labels, starts_at, first_seen,"
            " last_seen, resolved_at, outcome, reason, run_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                alert.episode,
                alert.source,
                alert.name,
                "resolved" if alert.status == "resolved" else "firing",
                json.dumps(self.redactor.obj(dict(alert.labels))),
                alert.starts_at,
                now,
                now,
                now if alert.status == "resolved" else None,
                outcome,
                reason,
                run_id,
            ),
        )
        return AlertOutcome(alert.episode, outcome, run_id, reason)

    def _known(
        self, db: sqlite3.Connection, row: sqlite3.Row, alert: Alert, now: float
    ) -> AlertOutcome:
        """A repeat of a known episode: count it; a resolution annotates its run."""
        run_id = row["run_id"]
        resolving = alert.status == "resolved" and row["status"] != "resolved"
        db.execute(
            "UPDATE episodes SET deliveries=deliveries+1, last_seen=?, status=?, resolved_at="
            "COALESCE(resolved_at, ?) WHERE key=?",
            (
                now,
                "resolved" if resolving else row["status"],
                now if resolving else None,
                alert.episode,
            ),
        )
        if run_id is None:
            return AlertOutcome(alert.episode, "resolved" if resolving else "repeat", None)
        if resolving:
            open_ = db.execute(
                "SELECT count(*) FROM episodes WHERE run_id=? AND status!='resolved'", (run_id,)
            ).fetchone()[0]
            if open_ == 0:
                db.execute("UPDATE runs SET resolved_at=? WHERE id=?", (now, run_id))
            return AlertOutcome(alert.episode, "resolved", run_id)
        db.execute("UPDATE runs SET repeats=repeats+1 WHERE id=?", (run_id,))
        return AlertOutcome(alert.episode, "repeat", run_id)

    def _queue(
        self, db: sqlite3.Connection, alert: Alert, req: RunRequest, now: float
    ) -> tuple[str, int | None, str]:
        """A new firing episode: join its storm group's recent run, or queue (or drop) one."""
        joined = db.execute(
            "SELECT id FROM runs WHERE group_key=? AND created_at>=? AND state IN"
            " ('queued','running','done') ORDER BY id DESC LIMIT 1",
            (req.group_key, now - self.storm_window_s),
        ).fetchone()
        if joined is not None:
            db.execute("UPDATE runs SET alerts=alerts+1 WHERE id=?", (joined["id"],))
            return "merged", int(joined["id"]), f"same storm group as run {joined['id']}"
        queued = db.execute("SELECT count(*) FROM runs WHERE state='queued'").fetchone()[0]
        state, note = "queued", ""
        if queued >= self.max_queue:
            state, note = "dropped", f"queue full ({queued} runs waiting)"
        cur = db.execute(
            "INSERT INTO runs (state, source, alertname, labels, runbook, environment, params,"
            " route, group_key, created_at, note) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (
                state,
                alert.source,
                alert.name,
                json.dumps(self.redactor.obj(dict(alert.labels))),
                req.runbook,
                req.environment,
                json.dumps(self.redactor.obj(dict(req.params)), default=str),
                req.route,
                req.group_key,
                now,
                note,
            ),
        )
        return state, int(cur.lastrowid or 0), note

    # --- the run state machine ------------------------------------------------------------
    def recover(self) -> tuple[int, int]:
        """At start: runs left ``running`` by a crash go back to ``queued`` (or fail after
        ``max_attempts``). Returns (requeued, failed)."""
        with self._tx() as db:
            failed = db.execute(
                "UPDATE runs SET state='failed', finished_at=?, error=? WHERE state='running'"
                " AND attempts>=?",
                (
                    self.clock(),
                    f"interrupted {self.max_attempts} times (server crash or restart); "
                    "not retried again",
                    self.max_attempts,
                ),
            ).rowcount
            requeued = db.execute(
                "UPDATE runs SET state='queued', note='requeued after a restart' "
                "WHERE state='running'"
            ).rowcount
        return requeued, failed

    def claim(self) -> dict[str, Any] | None:
        """Take the oldest queued run: mark it ``running`` and return it (None if none)."""
        with self._tx() as db:
            row = db.execute(
                "UPDATE runs SET state='running', started_at=?, attempts=attempts+1 WHERE id="
                "(SELECT id FROM runs WHERE state='queued' ORDER BY id LIMIT 1) RETURNING *",
                (self.clock(),),
            ).fetchone()
        return _row(row) if row is not None else None

    def finish(
        self,
        run_id: int,
        *,
        state: str,
        verdict: str = "",
        headline: str = "",
        duration_s: float | None = None,
        run_dir: str = "",
        error: str = "",
    ) -> dict[str, Any] | None:
        """Record the end of a run (``done`` or ``failed``); returns the updated row."""
        with self._tx() as db:
            row = db.execute(
                "UPDATE runs SET state=?, finished_at=?, verdict=?, headline=?, duration_s=?,"
                " run_dir=?, error=? WHERE id=? AND state='running' RETURNING *",
                (
                    state,
                    self.clock(),
                    verdict or None,
                    self.redactor.text(headline)[:1000] or None,
                    duration_s,
                    run_dir or None,
                    self.redactor.text(error)[:2000] or None,
                    run_id,
                ),
            ).fetchone()
        return _row(row) if row is not None else None

    # --- reading ----------------------------------------------------------------------------
    def get_run(self, run_id: int) -> dict[str, Any] | None:
        """One run with its episodes, or None."""
        with self._lock:
            row = self._db.execute("SELECT * FROM runs WHERE id=?", (run_id,)).fetchone()
            if row is None:
                return None
            eps = self._db.execute(
                "SELECT key, status, starts_at, deliveries, outcome FROM episodes WHERE run_id=?"
                " ORDER BY first_seen",
                (run_id,),
            ).fetchall()
        out = _row(row)
        out["episodes"] = [dict(e) for e in eps]
        return out

    def list_runs(self, *, limit: int = 100, state: str | None = None) -> list[dict[str, Any]]:
        """The newest runs first (all states, ``dropped`` included)."""
        sql, args = "SELECT * FROM runs", []
        if state:
            sql, args = sql + " WHERE state=?", [state]
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        return [_row(r) for r in rows]

    def list_unrun(self, *, limit: int = 50) -> list[dict[str, Any]]:
        """Recent episodes that started no run (unrouted, resolved only) and refused deliveries."""
        with self._lock:
            eps = self._db.execute(
                "SELECT key, source, alertname, status, outcome, reason, last_seen FROM episodes"
                " WHERE run_id IS NULL AND outcome IN ('unrouted', 'resolved-only')"
                " ORDER BY last_seen DESC LIMIT ?",
                (limit,),
            ).fetchall()
            refused = self._db.execute(
                "SELECT source, received_at, http_status, reason FROM deliveries WHERE"
                " status='refused' ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [dict(e) for e in eps] + [{"outcome": "refused", **dict(r)} for r in refused]

    def stats(self) -> dict[str, Any]:
        """Counts per run state, episodes and deliveries."""
        with self._lock:
            states = dict(
                self._db.execute("SELECT state, count(*) FROM runs GROUP BY state").fetchall()
            )
            episodes = self._db.execute("SELECT count(*) FROM episodes").fetchone()[0]
            deliveries = dict(
                self._db.execute(
                    "SELECT status, count(*) FROM deliveries GROUP BY status"
                ).fetchall()
            )
        return {"runs": states, "episodes": episodes, "deliveries": deliveries}

    # --- retention --------------------------------------------------------------------------
    def prune(
        self, *, max_age_s: float, max_runs: int, output_root: str | Path | None = None
    ) -> dict[str, int]:
        """Delete finished runs older than ``max_age_s`` or beyond the newest ``max_runs``,
        their run directories (only those inside ``output_root``), and old episodes and
        deliveries. Queued and running runs are never touched."""
        cutoff = self.clock() - max_age_s
        states = ",".join(f"'{s}'" for s in TERMINAL)
        with self._tx() as db:
            old = db.execute(
                f"SELECT id, run_dir FROM runs WHERE state IN ({states}) AND (created_at<? OR id"
                f" NOT IN (SELECT id FROM runs WHERE state IN ({states}) ORDER BY id DESC"
                " LIMIT ?))",
                (cutoff, max_runs),
            ).fetchall()
            ids = [r["id"] for r in old]
            db.executemany("DELETE FROM runs WHERE id=?", [(i,) for i in ids])
            db.executemany("UPDATE episodes SET run_id=NULL WHERE run_id=?", [(i,) for i in ids])
            episodes = db.execute(
                "DELETE FROM episodes WHERE last_seen<? AND (run_id IS NULL OR run_id NOT IN"
                " (SELECT id FROM runs WHERE state IN ('queued','running')))",
                (cutoff,),
            ).rowcount
            deliveries = db.execute(
                "DELETE FROM deliveries WHERE received_at<?", (cutoff,)
            ).rowcount
        removed = sum(_remove_dir(r["run_dir"], output_root) for r in old)
        return {"runs": len(ids), "dirs": removed, "episodes": episodes, "deliveries": deliveries}


def _remove_dir(run_dir: str | None, output_root: str | Path | None) -> int:
    """Delete ``run_dir`` if it lies inside ``output_root``; 1 when removed."""
    if not run_dir or output_root is None:
        return 0
    path, root = Path(run_dir).resolve(), Path(output_root).resolve()
    if path == root or not path.is_relative_to(root) or not path.is_dir():
        return 0
    shutil.rmtree(path, ignore_errors=True)
    return 1


def _row(row: sqlite3.Row | Mapping[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for key in ("labels", "params"):
        if isinstance(out.get(key), str):
            out[key] = json.loads(out[key])
    return out
