"""Generate large, deterministic application logs for the log-analysis benchmark.

One seeded event stream written in two formats: JSON lines shaped like the sandbox's
``api.jsonl``, and the seeds' plain-text format (``TS LEVEL LOGGER [CID] MESSAGE``). Each file
is written until it reaches the requested size (text lines are shorter, so the text file
holds a longer stretch of the same stream).

The stream: ~100 lines per second of API access lines over ten endpoints (log-normal
latencies, 0.1 ms resolution), 404/429 client errors, 5xx errors with an exception type,
worker lines sharing the request's correlation ID (``Processing job N``; a failed job logs an
ERROR line with its exception type), a DEBUG line now and then, and a "bad deploy" stretch in
minutes 40-44 of every hour during which ``POST /api/render`` fails with ``KeyError``. About
2 % of the lines are ERROR.

``python benchmarks/loggen.py --size 1g`` writes ``benchmarks/.data/logs-1g.jsonl``,
``logs-1g.log`` and ``logs-1g.meta.json`` (line counts, sizes, and per format a correlation ID
that appears on three lines near the middle of the file, for the trace question). Files already
there with a matching meta file are kept.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

__all__ = ["SIZES", "generate", "parse_size"]

SIZES = {"100m": 100 * 2**20, "1g": 2**30, "4g": 4 * 2**30}
T0 = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
VERSION = 2  # bump when the stream changes: cached files are regenerated
BLOCK = 50_000

# method, route, weight, median ms, sigma, 5xx probability, 4xx status (0: none), 4xx probability
ENDPOINTS = (
    ("GET", "/api/projects", 30, 12.0, 0.5, 0.002, 0, 0.0),
    ("GET", "/api/projects/{project_id}", 20, 18.0, 0.6, 0.004, 404, 0.02),
    ("POST", "/api/render", 12, 240.0, 0.7, 0.01, 0, 0.0),
    ("GET", "/api/jobs/{job_id}", 10, 9.0, 0.4, 0.003, 404, 0.05),
    ("POST", "/api/jobs", 6, 45.0, 0.5, 0.008, 429, 0.03),
    ("GET", "/api/health/system", 8, 3.0, 0.3, 0.0005, 0, 0.0),
    ("GET", "/api/health/providers", 4, 160.0, 0.9, 0.03, 0, 0.0),
    ("POST", "/api/upload", 4, 520.0, 0.8, 0.012, 429, 0.02),
    ("GET", "/api/search", 4, 85.0, 0.7, 0.006, 0, 0.0),
    ("DELETE", "/api/projects/{project_id}", 2, 30.0, 0.5, 0.004, 404, 0.04),
)
ERRORS = (
    ("TimeoutError", "provider openai did not answer in 5 s", 503),
    ("ConnectionRefusedError", "database 10.0.0.12:5432 refused the connection", 500),
    ("NullReferenceException", "Object reference not set to an instance of an object", 500),
    ("OutOfMemoryError", "render worker exceeded 2048 MiB", 500),
    ("RateLimitExceeded", "provider quota exhausted", 502),
)
DEPLOY_ERROR = ("KeyError", "'output_codec'", 500)
RENDER = 2  # index of POST /api/render


def parse_size(text: str) -> int:
    """``"100m"``, ``"1g"``, ``"4g"`` or a byte count."""
    low = text.lower()
    return SIZES[low] if low in SIZES else int(float(low.rstrip("b")))


def _cid(n: int) -> str:
    return f"{(n * 0x9E3779B97F4A7C15) & 0xFFFFFFFFFFFFFFFF:016x}"


class _Sink:
    """One output file: stops taking lines once it reaches its size."""

    def __init__(self, path: Path, target: int) -> None:
        self.path, self.target = path, target
        self.fh = path.open("w", encoding="utf-8", buffering=16 * 2**20)
        self.bytes = self.lines = 0
        self.cid: str | None = None

    @property
    def full(self) -> bool:
        return self.bytes >= self.target

    def write(self, lines: list[str], traced: list[tuple[int, str]]) -> None:
        text = "".join(lines)
        self.fh.write(text)
        if self.cid is None and self.bytes + len(text) >= self.target // 2 and traced:
            self.cid = traced[-1][1]
        self.bytes += len(text)
        self.lines += len(lines)

    def close(self) -> None:
        self.fh.close()


class _Clock:
    """Formats timestamps fast: one strftime per second."""

    def __init__(self) -> None:
        self.sec = -1
        self.prefix = ""

    def ts(self, us: int) -> str:
        sec, ms = divmod(us // 1000, 1000)
        if sec != self.sec:
            self.sec = sec
            self.prefix = (T0 + timedelta(seconds=sec)).strftime("%Y-%m-%dT%H:%M:%S.")
        return f"{self.prefix}{ms:03d}Z"


def _block(rng: np.random.Generator, clock: _Clock, start_us: int, n0: int) -> tuple:
    """One block of events as (json lines, text lines, multi-line cids, last time)."""
    w = np.array([e[2] for e in ENDPOINTS], dtype=float)
    ep = rng.choice(len(ENDPOINTS), size=BLOCK, p=w / w.sum())
    gauss = rng.standard_normal(BLOCK)
    roll = rng.random(BLOCK)
    roll2 = rng.random(BLOCK)
    pick = rng.integers(0, len(ERRORS), BLOCK)
    pick2 = rng.integers(0, len(ERRORS), BLOCK)
    times = start_us + np.cumsum(rng.exponential(10_000, BLOCK).astype(np.int64))
    med = np.array([e[3] for e in ENDPOINTS])[ep]
    sig = np.array([e[4] for e in ENDPOINTS])[ep]
    ms = np.round(med * np.exp(sig * gauss), 1)
    js: list[str] = []
    tx: list[str] = []
    traced: list[tuple[int, str]] = []
    for i in range(BLOCK):
        n = n0 + i
        us = int(times[i])
        ts = clock.ts(us)
        cid = _cid(n)
        if roll[i] < 0.002:
            _line(js, tx, ts, "DEBUG", "aura.cache", "aura-api", "cache refreshed 128 entries", cid)
            continue
        e = ENDPOINTS[ep[i]]
        method, route = e[0], e[1]
        minute = (us // 60_000_000) % 60
        status = 200 if method == "GET" else 201
        err = None
        r = roll2[i]
        if ep[i] == RENDER and 40 <= minute < 45 and r < 0.85:
            err = DEPLOY_ERROR
        elif r < e[5]:
            err = ERRORS[pick[i]]
        elif e[6] and r < e[5] + e[7]:
            status = e[6]
        d = ms[i]
        common = f',"method":"{method}","route":"{route}","path":"{route}"'
        if err is not None:
            etype, text, status = err
            msg = f"HTTP {status} {method} {route} {etype}: {text} Duration {d}ms"
            extra = (
                f'{common},"status":{status},"duration_ms":{d},"error_type":"{etype}",'
                f'"error":"{text}"'
            )
            _line(js, tx, ts, "ERROR", "aura.api", "aura-api", msg, cid, extra)
        else:
            level = "WARNING" if status >= 400 else "INFO"
            msg = f"HTTP {status} {method} {route} Duration {d}ms"
            extra = f'{common},"status":{status},"duration_ms":{d}'
            _line(js, tx, ts, level, "aura.api", "aura-api", msg, cid, extra)
        if route in ("/api/render", "/api/upload") and status < 400:
            job = n % 100000
            _line(js, tx, ts, "INFO", "aura.worker", "aura-worker", f"Processing job {job}", cid)
            if roll[i] > 0.96:
                etype, text, _ = ERRORS[pick2[i]]
                msg = f"Job {job} failed: {etype}: {text}"
                extra = f',"error_type":"{etype}","error":"{text}"'
                _line(js, tx, ts, "ERROR", "aura.worker", "aura-worker", msg, cid, extra)
                traced.append((len(tx), cid))
    return js, tx, traced, int(times[-1])


def _line(js: list[str], tx: list[str], ts: str, level: str, logger: str, service: str,
          msg: str, cid: str, extra: str = "") -> None:  # fmt: skip
    js.append(
        f'{{"ts":"{ts}","level":"{level}","logger":"{logger}","service":"{service}",'
        f'"message":"{msg}","correlation_id":"{cid}"{extra}}}\n'
    )
    tx.append(f"{ts} {level} {logger} [{cid}] {msg}\n")


def generate(out: Path, size: str, *, seed: int = 20261123, quiet: bool = False) -> dict:
    """Write ``logs-<size>.jsonl`` and ``.log`` under ``out`` (kept when already there)."""
    out.mkdir(parents=True, exist_ok=True)
    target = parse_size(size)
    jpath, tpath = out / f"logs-{size}.jsonl", out / f"logs-{size}.log"
    meta_path = out / f"logs-{size}.meta.json"
    if meta_path.is_file() and jpath.is_file() and tpath.is_file():
        meta = json.loads(meta_path.read_text())
        if (
            meta.get("version") == VERSION
            and meta.get("seed") == seed
            and meta["json"]["bytes"] == jpath.stat().st_size
            and meta["text"]["bytes"] == tpath.stat().st_size
        ):
            return meta
    t_start = time.monotonic()
    rng = np.random.default_rng(seed)
    clock = _Clock()
    sinks = {"json": _Sink(jpath, target), "text": _Sink(tpath, target)}
    us, n = 0, 1
    while not all(s.full for s in sinks.values()):
        js, tx, traced, us = _block(rng, clock, us, n)
        n += BLOCK
        for name, lines in (("json", js), ("text", tx)):
            if not sinks[name].full:
                sinks[name].write(lines, traced)
    for s in sinks.values():
        s.close()
    meta = {
        "version": VERSION,
        "seed": seed,
        "size": size,
        **{
            name: {
                "path": s.path.name,
                "bytes": s.path.stat().st_size,
                "lines": s.lines,
                "trace_cid": s.cid,
            }  # fmt: skip
            for name, s in sinks.items()
        },
        "seconds_to_generate": round(time.monotonic() - t_start, 1),
    }
    meta_path.write_text(json.dumps(meta, indent=2))
    if not quiet:
        print(f"generated {jpath.name} and {tpath.name} in {meta['seconds_to_generate']} s")
    return meta


def main(argv: list[str] | None = None) -> int:
    """Command line: ``loggen.py --size 1g [--out DIR]``."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", default="100m", help="100m, 1g, 4g or a byte count")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / ".data")
    p.add_argument("--seed", type=int, default=20261123)
    args = p.parse_args(argv)
    print(json.dumps(generate(args.out, args.size, seed=args.seed), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
