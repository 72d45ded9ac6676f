"""Alert storm benchmark: hundreds of webhook deliveries, most of them duplicates, at once.

Against a real ``aura-ops serve`` (warm kernels on) pointed at the sandbox with its fault:
``--episodes`` distinct alert episodes (each its own ``namespace``, so each its own run), every
one delivered ``--copies`` times (Alertmanager re-sends a group on every ``group_interval``),
shuffled and sent by ``--senders`` concurrent clients. Measured: the acknowledgement latency
of every delivery (p50/p99; the receiver answers after its SQLite commit), the runs started
(must equal the episodes: duplicates never start a second run), and the server's resident
memory every 0.5 s from before the storm until its runs are done, and after each of
``--waves`` storms (flat from one wave to the next: the first one's growth is imports).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
from _common import pct, print_machine, save_result  # noqa: E402
from _serve import TOKEN, alert_doc, rss_mib, sandbox_target, serve  # noqa: E402


def storm(url: str, docs: list[dict], senders: int) -> list[tuple[float, int]]:
    """POST every delivery with ``senders`` clients; (seconds to the answer, status) each."""
    local = threading.local()

    def send(doc: dict) -> tuple[float, int]:
        client = getattr(local, "client", None)
        if client is None:
            client = local.client = httpx.Client(
                headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30
            )
        t0 = time.perf_counter()
        resp = client.post(f"{url}/alertmanager", json=doc)
        return time.perf_counter() - t0, resp.status_code

    with ThreadPoolExecutor(senders) as pool:
        return list(pool.map(send, docs))


def sample_rss(pid: int, stop: threading.Event, out: list[tuple[float, float]]) -> None:
    """Append (seconds since start, RSS MiB) every 0.5 s until ``stop``."""
    t0 = time.monotonic()
    while not stop.is_set():
        out.append((time.monotonic() - t0, rss_mib(pid)))
        stop.wait(0.5)


def main(argv: list[str] | None = None) -> int:
    """Command line; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--episodes", type=int, default=10, help="distinct episodes per wave")
    p.add_argument("--waves", type=int, default=2, help="storms, one after the other's runs")
    p.add_argument("--copies", type=int, default=25, help="deliveries of each episode")
    p.add_argument("--senders", type=int, default=8)
    p.add_argument("--timeout", type=float, default=600.0, help="seconds to wait for the runs")
    args = p.parse_args(argv)
    machine = print_machine("alert storm: deliveries with duplicates against aura-ops serve")
    rng = random.Random(11)
    samples: list[tuple[float, float]] = []
    acks: list[tuple[float, int]] = []
    after_wave: list[float] = []
    storm_s = 0.0
    with tempfile.TemporaryDirectory(prefix="aura-storm-") as tmp:
        work = Path(tmp)
        with sandbox_target(work) as target, serve(target, work, warm=2) as (proc, url, _):
            stop = threading.Event()
            sampler = threading.Thread(target=sample_rss, args=(proc.pid, stop, samples))
            sampler.start()
            time.sleep(2)
            for wave in range(args.waves):
                docs = _deliveries(wave, args.episodes, args.copies, rng)
                t0 = time.perf_counter()
                acks += storm(url, docs, args.senders)
                storm_s += time.perf_counter() - t0
                runs = _wait_runs(url, args.episodes * (wave + 1), args.timeout)
                time.sleep(2)
                after_wave.append(rss_mib(proc.pid))
            stop.set()
            sampler.join()
    summary = report(acks, storm_s, runs, samples, args)
    summary["rss_after_each_wave_mib"] = after_wave
    print(f"   server RSS after each wave's runs: {', '.join(f'{r:.0f}' for r in after_wave)} MiB")
    save_result("storm", {"machine": machine, "summary": summary, "rss": samples})
    expected = args.episodes * args.waves
    return 0 if summary["runs_started"] == expected and summary["non_2xx"] == 0 else 1


def _deliveries(wave: int, episodes: int, copies: int, rng: random.Random) -> list[dict]:
    """``copies`` identical deliveries of each of ``episodes`` new episodes, shuffled."""
    import datetime as dt

    starts = dt.datetime.now(dt.UTC)
    eps = [(f"storm-{wave}-{i}", uuid.uuid4().hex[:16]) for i in range(episodes)]
    docs = [alert_doc(ns, fp, starts) for ns, fp in eps for _ in range(copies)]
    rng.shuffle(docs)
    return docs


def _wait_runs(url: str, expected: int, timeout_s: float) -> list[dict[str, Any]]:
    """The runs, once ``expected`` of them are finished (or at the timeout)."""
    deadline = time.monotonic() + timeout_s
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        runs = httpx.get(f"{url}/runs", timeout=10).json()["runs"]
        if sum(r["state"] in ("done", "failed") for r in runs) >= expected:
            break
        time.sleep(1)
    return runs


def report(
    acks: list[tuple[float, int]],
    storm_s: float,
    runs: list[dict[str, Any]],
    samples: list[tuple[float, float]],
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Print and return the storm's figures."""
    lat = [a for a, _ in acks]
    rss = [r for _, r in samples if r]
    summary = {
        "deliveries": len(acks),
        "episodes": args.episodes * args.waves,
        "storm_s": storm_s,
        "ack_p50_ms": statistics.median(lat) * 1000,
        "ack_p99_ms": pct(lat, 0.99) * 1000,
        "ack_max_ms": max(lat) * 1000,
        "non_2xx": sum(1 for _, s in acks if not 200 <= s < 300),
        "runs_started": len(runs),
        "runs_done": sum(r["state"] == "done" for r in runs),
        "repeats_counted": sum(int(r.get("repeats") or 0) for r in runs),
        "alerts_merged": sum(max(0, int(r.get("alerts") or 1) - 1) for r in runs),
        "rss_start_mib": rss[0] if rss else 0,
        "rss_peak_mib": max(rss) if rss else 0,
        "rss_end_mib": rss[-1] if rss else 0,
    }
    s = summary
    print(
        f"   {s['deliveries']} deliveries ({s['episodes']} episodes x {args.copies}, "
        f"{args.waves} waves) by "
        f"{args.senders} senders in {s['storm_s']:.1f} s; non-2xx answers: {s['non_2xx']}"
    )
    print(
        f"   acknowledgement p50 {s['ack_p50_ms']:.1f} ms, p99 {s['ack_p99_ms']:.1f} ms "
        f"(target < 100 ms), max {s['ack_max_ms']:.1f} ms"
    )
    print(
        f"   runs started {s['runs_started']} for {s['episodes']} episodes "
        f"({s['runs_done']} done; {s['repeats_counted']} duplicates counted as repeats, "
        f"{s['alerts_merged']} alerts merged into a run of their storm group)"
    )
    print(
        f"   server RSS: {s['rss_start_mib']:.0f} MiB before, peak {s['rss_peak_mib']:.0f} MiB, "
        f"{s['rss_end_mib']:.0f} MiB after the runs ({len(samples)} samples, every 0.5 s)"
    )
    return summary


if __name__ == "__main__":
    sys.exit(main())
