"""Alert storm, reduced for ``make test`` (the full size is ``benchmarks/bench_storm.py``).

A real receiver (uvicorn on loopback, a fast fake runner) takes waves of 200 Alertmanager
deliveries from 8 concurrent senders: 20 distinct episodes, each delivered 9 times (shuffled),
then each resolved. Every distinct episode gets exactly one run, each run
executes once, every duplicate is counted as a repeat, and resident memory does not grow from
wave to wave. A second storm against a blocked worker with ``max_queue=10`` shows the queue
stays bounded and the overflow is visible as ``dropped`` runs, never lost silently.

``AURA_OPS_STORM_OUT=FILE`` writes the figures measured (docs/reliability.md quotes them).
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import statistics
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from aura_ops.alert_routes import load_routes
from aura_ops.runstore import RunStore
from aura_ops.server import ServeOptions, create_app
from aura_ops.server_workers import Job, RunOutcome
from tests.conftest import serve_in_thread, write_runbook

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

TOKEN = "storm-token-0123456789"
ROUTES = """
version: 1
defaults: {environment: ""}
routes:
  - name: storm
    match: {alertname: StormAlert}
    runbook: target
    params: {subject: {from: labels.service, pattern: "^[a-z0-9-]+$"}}
receivers:
  alertmanager: {bearer_token_env: STORM_TOKEN}
"""
EPISODES, COPIES, SENDERS, WAVES = 20, 9, 8, 3


def rss_mib() -> float:
    """This process's resident memory (the receiver runs in it)."""
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


class Runner:
    """A fast fake runner that counts executions per run; ``gate`` can hold the workers."""

    def __init__(self) -> None:
        self.calls: dict[int, int] = {}
        self.gate = threading.Event()
        self.gate.set()
        self._lock = threading.Lock()

    def __call__(self, job: Job) -> RunOutcome:
        self.gate.wait(60)
        with self._lock:
            self.calls[job.run_id] = self.calls.get(job.run_id, 0) + 1
        time.sleep(0.02)
        return RunOutcome("WARNING", f"storm run for {job.params.get('subject')}")


@contextlib.contextmanager
def receiver(tmp: Path, *, max_queue: int) -> Iterator[tuple[str, RunStore, Runner]]:
    """A receiver in a real uvicorn server on a free port, with 2 workers."""
    write_runbook(tmp, "target", 'subject = "x"  # what\n')
    (tmp / "routes.yaml").write_text(ROUTES)
    store = RunStore(tmp / "aura-ops.db", max_queue=max_queue)
    runner = Runner()
    app = create_app(store, load_routes(tmp / "routes.yaml", tmp), runner=runner,
                     options=ServeOptions(workers=2, run_timeout_s=60, output_root=tmp / "out"),
                     environ={"STORM_TOKEN": TOKEN})  # fmt: skip
    try:
        with serve_in_thread(app) as url:
            try:
                yield url, store, runner
            finally:
                runner.gate.set()  # workers held at the gate must finish for the server to stop
    finally:
        store.close()


def alert(service: str, fingerprint: str, status: str = "firing") -> dict[str, Any]:
    """One Alertmanager delivery with one alert."""
    a = {"status": status, "labels": {"alertname": "StormAlert", "service": service},
         "annotations": {"summary": f"storm on {service}"}, "startsAt": "2026-11-23T10:15:00Z",
         "endsAt": "0001-01-01T00:00:00Z", "fingerprint": fingerprint}  # fmt: skip
    return {"version": "4", "groupKey": "{}:{alertname=\"StormAlert\"}", "status": status,
            "receiver": "aura-ops", "alerts": [a]}  # fmt: skip


def send_all(url: str, docs: list[dict[str, Any]]) -> list[tuple[float, int]]:
    """POST every delivery from SENDERS concurrent clients: (seconds to answer, status)."""
    local = threading.local()

    def send(doc: dict[str, Any]) -> tuple[float, int]:
        if not hasattr(local, "client"):
            local.client = httpx.Client(headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        t0 = time.perf_counter()
        status = local.client.post(f"{url}/alertmanager", json=doc).status_code
        return time.perf_counter() - t0, status

    with ThreadPoolExecutor(SENDERS) as pool:
        return list(pool.map(send, docs))


def wave(n: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]], set[str]]:
    """EPISODES new episodes: each COPIES times firing (shuffled), then each once resolved
    (a resolved notification that overtakes every firing one starts nothing, by design)."""
    services = sorted(f"svc-{n}-{i}" for i in range(EPISODES))
    firing = [alert(s, f"{n:04x}{i:012x}") for i, s in enumerate(services) for _ in range(COPIES)]
    random.Random(n).shuffle(firing)
    resolved = [alert(s, f"{n:04x}{i:012x}", "resolved") for i, s in enumerate(services)]
    return firing, resolved, set(services)


def wait_idle(store: RunStore, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = store.stats()["runs"]
        if not runs.get("queued") and not runs.get("running"):
            return
        time.sleep(0.05)
    raise AssertionError(f"runs still pending: {store.stats()}")


def _figures(out: dict[str, Any]) -> None:
    print(f"\nstorm figures: {json.dumps(out)}")
    if path := os.environ.get("AURA_OPS_STORM_OUT"):
        Path(path).write_text(json.dumps(out, indent=2), encoding="utf-8")


def test_storm_one_run_per_episode_and_memory_flat(tmp_path: Path) -> None:
    """Waves of 200 deliveries: one run per distinct episode, executed once; memory flat."""
    figures: dict[str, Any] = {
        "deliveries_per_wave": EPISODES * (COPIES + 1),
        "episodes_per_wave": EPISODES,
        "senders": SENDERS,
        "waves": [],
    }
    with receiver(tmp_path, max_queue=100) as (url, store, runner):
        for n in range(WAVES):
            firing, resolved, services = wave(n)
            t0 = time.perf_counter()
            acks = send_all(url, firing) + send_all(url, resolved)
            storm_s = time.perf_counter() - t0
            docs = firing + resolved
            wait_idle(store)
            assert {202} == {status for _, status in acks}
            runs = [r for r in store.list_runs(limit=10_000) if r["labels"]["service"] in services]
            assert sorted(services) == sorted(r["labels"]["service"] for r in runs)
            assert {1} == {runner.calls[r["id"]] for r in runs}  # each run executed once
            assert EPISODES * (COPIES - 1) == sum(r["repeats"] for r in runs)
            assert all(r["resolved_at"] is not None for r in runs)
            ms = sorted(1000 * s for s, _ in acks)
            figures["waves"].append({
                "storm_s": round(storm_s, 2), "deliveries_per_s": round(len(docs) / storm_s),
                "ack_p50_ms": round(statistics.median(ms), 1),
                "ack_p99_ms": round(ms[int(0.99 * (len(ms) - 1))], 1),
                "runs": len(runs), "rss_mib": round(rss_mib(), 1),
            })  # fmt: skip
    rss = [w["rss_mib"] for w in figures["waves"]]
    figures["rss_growth_after_first_wave_mib"] = round(rss[-1] - rss[0], 1)
    _figures(figures)
    assert rss[-1] - rss[0] < 16, figures  # the first wave pays for imports and caches


def test_storm_queue_stays_bounded_and_overflow_is_visible(tmp_path: Path) -> None:
    """60 new episodes at a blocked worker, max_queue=10: never more than 10 queued; the rest
    are recorded as dropped; the queued ones all run once the worker is free."""
    with receiver(tmp_path, max_queue=10) as (url, store, runner):
        runner.gate.clear()
        depth: list[int] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                depth.append(store.stats()["runs"].get("queued", 0))
                stop.wait(0.01)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        acks = send_all(url, [alert(f"burst-{i}", f"b{i:015x}") for i in range(60)])
        stop.set()
        sampler.join(5)
        stats = store.stats()["runs"]
        assert {202} == {status for _, status in acks}
        assert max(depth) <= 10 and stats["queued"] <= 10
        assert 60 == sum(stats.values())
        dropped = store.list_runs(limit=100, state="dropped")
        assert len(dropped) >= 60 - 10 - 2 and all("queue full" in r["note"] for r in dropped)
        runner.gate.set()
        wait_idle(store)
        done = store.list_runs(limit=100, state="done")
        assert {1} == {runner.calls[r["id"]] for r in done}
        assert 60 == len(done) + len(dropped)
        print(f"\nbounded queue: max queued {max(depth)}, dropped {len(dropped)}, ran {len(done)}")
