"""Job queues: are the workers alive and consuming? (seed 003 "Queue Backup").

Queue depth and its trend are :func:`aura_ops.metrics.check_queue_depth`. This module answers
the next question of the seed: is the backlog high volume or stalled workers? It scrapes the
service's ``/metrics`` twice, ``interval_s`` apart, and compares the workers gauge, the
completed-jobs counter and the queue depth::

    show(check_workers(metrics_url, interval_s=5))

A backlog with no worker active, or with workers that completed nothing in the interval, is the
cause (CRITICAL, ``labels["role"] = "cause"``). A ``/metrics`` that cannot be read gives an
``UNKNOWN`` finding with the reason, never OK.
"""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from aura_ops.errors import AuraOpsError
from aura_ops.findings import Evidence, Finding, Status, unknown
from aura_ops.prometheus import redact_url, scrape

__all__ = ["check_workers", "fetch_worker_state"]


def _total(df: pd.DataFrame, name: str) -> float | None:
    rows = df[df["name"] == name] if len(df) else df
    return float(rows["value"].sum()) if len(rows) else None


def fetch_worker_state(
    metrics_url: str,
    *,
    interval_s: float = 5.0,
    workers_gauge: str = "aura_workers_active",
    completed_counter: str = "aura_jobs_completed_total",
    queue_gauge: str = "aura_queue_depth",
    timeout_s: float = 5.0,
) -> dict[str, Any]:
    """Two scrapes ``interval_s`` apart: workers, queue depth and jobs completed in between.

    Returns ``workers``, ``queue_depth``, ``completed`` (counter increase; ``None`` if the
    counter is absent), ``interval_s`` (measured) and the two raw readings. Raises the typed
    errors of :func:`aura_ops.prometheus.scrape`.
    """
    first, t0 = scrape(metrics_url, timeout_s=timeout_s), time.monotonic()
    time.sleep(interval_s)
    second, t1 = scrape(metrics_url, timeout_s=timeout_s), time.monotonic()
    before, after = _total(first, completed_counter), _total(second, completed_counter)
    completed = None if before is None or after is None else max(0.0, after - before)
    return {
        "workers": _total(second, workers_gauge),
        "queue_depth": _total(second, queue_gauge),
        "completed": completed,
        "interval_s": round(t1 - t0, 2),
        "readings": [
            {name: _total(df, name) for name in (workers_gauge, completed_counter, queue_gauge)}
            for df in (first, second)
        ],
    }


def _judge(state: dict[str, Any], min_workers: int) -> tuple[Status, str]:
    workers, depth, done = state["workers"], state["queue_depth"] or 0, state["completed"]
    span = f"{state['interval_s']:.1f} s"
    did = "" if done is None else f" and completed {done:.0f} jobs in {span}"
    if workers is not None and workers < min_workers and depth > 0:
        text = f"{workers:.0f} workers active{did} while {depth:.0f} jobs wait"
        return Status.CRITICAL, f"{text}: the workers have stalled"
    if done == 0 and depth > 0:
        who = "workers" if workers is None else f"{workers:.0f} workers report active but"
        return Status.CRITICAL, f"{who} completed 0 jobs in {span} while {depth:.0f} wait: stuck"
    if workers is not None and workers < min_workers:
        return Status.WARNING, f"{workers:.0f} workers active (queue empty for now)"
    rate = "" if done is None else f", {done:.0f} jobs completed in {span}"
    shown = "?" if workers is None else f"{workers:.0f}"
    return Status.OK, f"{shown} workers active{rate}, {depth:.0f} queued"


def check_workers(
    metrics_url: str,
    *,
    interval_s: float = 5.0,
    min_workers: int = 1,
    workers_gauge: str = "aura_workers_active",
    completed_counter: str = "aura_jobs_completed_total",
    queue_gauge: str = "aura_queue_depth",
    timeout_s: float = 5.0,
) -> list[Finding]:
    """Are workers alive and consuming the queue? CRITICAL when jobs wait and none progress.

    ``min_workers`` is the fewest workers that should be active; fewer with jobs waiting, or
    no job completed in ``interval_s`` while jobs wait, means the workers have stalled.
    """
    shown = redact_url(metrics_url)
    reproduce = f"check_workers({shown!r}, interval_s={interval_s:g})"
    source = f"GET {shown} twice, {interval_s:g} s apart ({workers_gauge}, {completed_counter})"
    try:
        state = fetch_worker_state(
            metrics_url,
            interval_s=interval_s,
            workers_gauge=workers_gauge,
            completed_counter=completed_counter,
            queue_gauge=queue_gauge,
            timeout_s=timeout_s,
        )
    except AuraOpsError as exc:
        return [
            unknown("queues.workers", shown, exc.one_line(), source=source, reproduce=reproduce)
        ]
    if state["workers"] is None and state["completed"] is None:
        reason = f"neither {workers_gauge} nor {completed_counter} at {shown}"
        return [unknown("queues.workers", shown, reason, source=source, reproduce=reproduce)]
    status, text = _judge(state, min_workers)
    return [
        Finding(
            check="queues.workers",
            subject=workers_gauge,
            status=status,
            summary=text[0].upper() + text[1:],
            observed={k: state[k] for k in ("workers", "completed", "queue_depth")},
            expected=f"≥ {min_workers} workers active, jobs completing while any wait",
            evidence=(Evidence.table(state["readings"], "the two scrapes"),),
            source=source,
            reproduce=reproduce,
            hint="Read the worker logs (grep 'Processing job'), restart the workers, then scale "
            "them out while the backlog drains (seed 003)"
            if status > Status.OK
            else "",
            labels={"role": "cause"} if status == Status.CRITICAL else {},
        )
    ]
