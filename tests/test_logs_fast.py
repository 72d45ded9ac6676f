"""The fast log paths give exactly the pure-Python answers: raw-byte search and DuckDB."""

from __future__ import annotations

import gzip
import json
import random
from pathlib import Path

import pandas as pd
import pytest

import aura_ops.logs_engine as engine
import aura_ops.logs_scan as scan
from aura_ops.errors import ConfigError
from aura_ops.logs import LogSummary, search, summarize_file, trace
from aura_ops.logs_duckdb import available

from .conftest import need

FIXTURES = Path(__file__).parent / "fixtures" / "logs"
TABLES = ("error_types", "endpoints", "latency", "timeline")


def _json_line(rng: random.Random, i: int) -> dict:
    """One record: mostly canonical access lines, with the shapes the normaliser handles."""
    ts = f"2026-11-23T10:{i // 600 % 60:02d}:{i // 10 % 60:02d}.{i % 10 * 100:03d}Z"
    route = rng.choice(["/api/a", "/api/b/{id}", "/api/c"])
    status = rng.choice([200, 200, 200, 201, 404, 429, 500, 503])
    rec = {"ts": ts, "level": "ERROR" if status >= 500 else "INFO", "logger": "api",
           "message": f"HTTP {status} GET {route} Duration {i % 97}ms",
           "correlation_id": f"c{i % 500:05d}", "method": "GET", "route": route,
           "status": status, "duration_ms": round(rng.lognormvariate(3, 1), 1)}  # fmt: skip
    if status >= 500 and i % 3:
        rec["error_type"] = rng.choice(["KeyError", "TimeoutError"])
    if i % 11 == 0:  # a worker line without status, an untyped error message
        rec = {"ts": ts, "level": "ERROR", "message": f"job {i} failed after {i % 7} tries",
               "correlation_id": f"c{i % 500:05d}"}  # fmt: skip
    if i % 13 == 0:  # the route only in the path, the status as text, a lower-case level
        rec.pop("route", None)
        rec["path"] = "/api/d?x=1"
        rec["status"] = str(rec.get("status", 200))
        rec["level"] = "info" if int(rec["status"]) < 500 else "error"
    if i % 17 == 0:  # an HTTP message without a status field: the normaliser parses it
        rec = {"ts": ts, "level": "WARNING", "message": "HTTP 503 POST /api/e Duration 12ms"}
    return rec


def write_json(path: Path, n: int = 3000, extra: list[str] | None = None) -> Path:
    """A JSON-lines log of ``n`` records (seeded), plus ``extra`` raw lines."""
    rng = random.Random(7)
    lines = [json.dumps(_json_line(rng, i)) for i in range(n)] + (extra or [])
    path.write_text("\n".join(lines) + "\n")
    return path


def write_text(path: Path, n: int = 3000, extra: list[str] | None = None) -> Path:
    """The same stream in the plain-text preset, with worker lines and a malformed line."""
    rng = random.Random(7)
    out = []
    for i in range(n):
        r = _json_line(rng, i)
        cid = f" [{r['correlation_id']}]" if "correlation_id" in r else ""
        out.append(f"{r['ts']} {str(r['level']).upper()} api{cid} {r['message']}")
        if i == 50:
            out.append("Traceback (most recent call last):")
    path.write_text("\n".join(out + (extra or [])) + "\n")
    return path


def assert_same(a: LogSummary, b: LogSummary) -> None:
    """Two summaries hold identical tables and counts."""
    for name in TABLES:
        pd.testing.assert_frame_equal(getattr(a, name), getattr(b, name), check_exact=True)
        assert getattr(a, name).attrs == getattr(b, name).attrs
    for name in ("lines", "events", "malformed", "formats", "first_seen", "last_seen"):
        assert getattr(a, name) == getattr(b, name), name


@pytest.fixture
def duck() -> None:
    """DuckDB is installed (required under CI)."""
    need(available(), "duckdb is not installed (pip install duckdb)")


def test_duckdb_json_matches_python(tmp_path: Path, duck: None) -> None:
    """On JSON lines with errors, untyped errors, routes from paths, text statuses and HTTP
    messages without a status, DuckDB and Python give the same summary."""
    path = write_json(tmp_path / "api.jsonl")
    fast = summarize_file(path, engine="duckdb")
    assert "duckdb" == fast.engine
    assert_same(summarize_file(path, engine="python"), fast)


def test_duckdb_json_window_matches_python(tmp_path: Path, duck: None) -> None:
    """A time window gives the same summary on both engines."""
    path = write_json(tmp_path / "api.jsonl")
    kw = {"since": "2026-11-23T10:01:30Z", "until": "2026-11-23T10:03:10.5Z", "freq": "10s"}
    assert_same(summarize_file(path, engine="python", **kw), summarize_file(path, **kw))


def test_duckdb_text_matches_python(tmp_path: Path, duck: None) -> None:
    """On the plain-text preset, with a malformed line and blank lines, both engines agree
    (malformed count included)."""
    path = write_text(tmp_path / "app.log", extra=["", "   ", "not a log line"])
    fast = summarize_file(path, engine="duckdb")
    slow = summarize_file(path, engine="python")
    assert ("duckdb", 2) == (fast.engine, fast.malformed)
    assert_same(slow, fast)


@pytest.mark.parametrize(
    "odd",
    [
        '{"timestamp": "2026-11-23T10:00:00Z", "msg": "alias keys"}',
        '{"ts": "2026-11-23T10:00:00Z", "level": 40, "message": "numeric level"}',
        '{"ts": "2026-11-23T10:00:00Z", "status": 500.0, "message": "float status"}',
        '{"ts": "2026-11-23T10:00:00+02:00", "status": 200, "message": "offset"}',
        "not json at all",
    ],
)
def test_unusual_json_falls_back_to_python(tmp_path: Path, odd: str, duck: None) -> None:
    """A file with a value DuckDB would read differently is read by Python, whole."""
    path = write_json(tmp_path / "odd.jsonl", n=200, extra=[odd])
    fast = summarize_file(path, engine="duckdb")
    slow = summarize_file(path, engine="python")
    assert_same(slow, fast)


JSON_ERRORS = [
    # error rows normalised in SQL: types from messages, masked messages, derived levels
    {"level": "ERROR", "message": "Job 12 failed: app.jobs.RenderTimeout after 0x1f tries"},
    {
        "level": "error",
        "message": "id 3fa85f64-5717-4562-b3fc-2c963f66afa6 gone",
        "correlation_id": "",
    },
    {"level": "FATAL", "message": "disk full on /dev/sda1 (99%)", "correlation_id": "c00001"},
    {"level": "Err", "message": "x" * 120 + " 12345"},
    {"level": "CRIT", "error_type": "", "message": "typed empty 42"},
    {
        "level": None,
        "status": "503",
        "message": "upstream 10.0.0.1 down",
        "method": "GET",
        "route": "/api/a",
    },
    {"status": 500, "method": "POST", "path": "/api/x?y=1", "message": "KeyErrorX: no"},
    {"level": "ERROR", "status": 502, "route": "/api/b/{id}", "error_type": "BadGateway"},
    {"level": "ERROR"},
    {"level": "ERROR", "message": ""},
    {"level": "ERROR", "message": "Valid.Error_2: x ValueError"},
    # non-ASCII and control characters: the Python way
    {"level": "ERROR", "message": "caf\u00e9 12 failed \u0663 TimeoutError"},
    {"level": "ERROR", "message": "tab\tand\x0bvt 7 ConnectionRefused"},
    {"level": "ERROR", "message": 12345},
    # the same correlation ID through SQL and through Python: one error
    {"level": "ERROR", "message": "shared 1 failed", "correlation_id": "c00002"},
    {"level": "ERROR", "message": "shared 2 failed", "correlation_id": "c00002"},
    {"level": "ERROR", "message": "shared \u00e9 failed", "correlation_id": "c00002"},
    {"level": " ERROR", "message": "shared 3 failed", "correlation_id": "c00002"},
]


def test_duckdb_json_errors_match_python(tmp_path: Path, duck: None) -> None:
    """Error rows of every shape -- derived levels, empty types, masked IDs, long, empty and
    missing messages, non-ASCII text, a correlation ID seen through both paths -- give the
    same error table on both engines."""
    extra = []
    for i, rec in enumerate(JSON_ERRORS * 3):
        ts = f"2026-11-23T10:0{i % 6}:{i % 60:02d}.{i:03d}Z"
        extra.append(json.dumps({"ts": ts, **{k: v for k, v in rec.items() if v is not None}}))
    path = write_json(tmp_path / "errors.jsonl", n=600, extra=extra)
    fast = summarize_file(path, engine="duckdb")
    assert "duckdb" == fast.engine
    assert_same(summarize_file(path, engine="python"), fast)


TEXT_ODD = [
    # the regex way (printable ASCII): errors, odd spacing, no correlation ID, empty one
    "2026-11-23T10:00:01.000Z ERROR api [c1] HTTP 500 GET /api/a KeyError: 'x' Duration 5ms",
    "2026-11-23T10:00:02.000Z ERROR api [c1] HTTP 502 GET /api/a Duration 7.5ms",
    "2026-11-23T10:00:03.000Z error api [c2] HTTP 503 POST /api/b A.B_c: y: z Duration 1ms tail",
    "2026-11-23T10:00:04.000Z CRITICAL worker Job 9 failed: RateLimitExceeded: quota",
    "2026-11-23T10:00:05.000Z ERROR worker [] Job 10 failed 0xdeadbeef",
    "2026-11-23T10:00:06.000Z INFO  api [c3] HTTP 200 GET /api/a Duration 3ms",
    "2026-11-23T10:00:07.000Z INFO api [c3]  HTTP 200 GET /api/a Duration 4ms",
    "2026-11-23T10:00:08.000Z INFO api [a HTTP 200 GET /x] Duration 5ms",
    "2026-11-23T10:00:09.000Z INFO api [c4] HTTP 1e2 GET /api/a Duration 6ms",
    "2026-11-23T10:00:10.000Z WARN api [c5] HTTP 404 GET /api/a",
    "2026-11-23T10:00:11.000Z FATAL api [c6] HTTP 200 GET /api/a Duration 2ms",
    "2026-11-23T10:00:12.000Z Notice api HTTP 503 GET /api/c Duration 9ms",
    "2026-11-23T10:00:13.000Z ERROR api [c7] HTTP 500 GET /api/a Duration 5ms ",
    "2026-11-23T10:00:14.000Z ERROR api",
    "2026-11-23T10:00:15.000Z ERROR api ",
    "2026-11-23T10:00:16.000Z ERROR api [c8]",
    "2026-11-23T10:00:17+00:00 ERROR api [c9] HTTP 500 GET /api/a Duration 5ms",
    "2026-11-23 10:00:18Z ERROR api [c9] HTTP 500 GET /api/a Duration 5ms",
    # the Python way: non-ASCII, tabs, a dotless i in the level
    "2026-11-23T10:00:19.000Z ERROR api [c10] caf\u00e9 12 failed TimeoutError",
    "2026-11-23T10:00:20.000Z ERROR\tapi [c10] HTTP 500 GET /api/a Duration 5ms",
    "2026-11-23T10:00:21.000Z \u0131nfo api [c11] started",
    "2026-11-23T10:00:22.000Z ERROR api [c1] shared \u00e9",
]


def test_duckdb_text_odd_lines_match_python(tmp_path: Path, duck: None) -> None:
    """Odd plain-text lines -- errors parsed by the regex way, double spaces, a bracket that
    swallows the request, a non-numeric status, derived levels, non-ASCII text, tabs -- give
    the same summary (malformed count included) on both engines."""
    path = write_text(tmp_path / "odd.log", n=600, extra=TEXT_ODD * 2)
    fast = summarize_file(path, engine="duckdb")
    assert "duckdb" == fast.engine
    assert_same(summarize_file(path, engine="python"), fast)
    kw = {"since": "2026-11-23T10:00:05Z", "until": "2026-11-23T10:00:18Z", "freq": "5s"}
    assert_same(summarize_file(path, engine="python", **kw), summarize_file(path, **kw))


ODD_TIMES = [
    # the fixed-width shortcut and its neighbours: other widths, offsets, impossible values
    "2026-11-23T10:00:30.123Z",
    "2026-11-23T10:00:31.1234Z",
    "2026-11-23T10:00:32.12Z",
    "2026-11-23T10:00:33.123456Z",
    "2026-11-23T10:00:34.123+00:00",
    "2026-11-23T10:00:35.123+01:00",
    "2026-11-23 10:00:36.123Z",
    "2026-11-23T24:00:00.000Z",
    "2026-11-23T10:61:00.000Z",
    "2026-02-30T10:00:00.000Z",
    "2026-11-23T10:00:37.1x3Z",
    "2026-11-23T10:00:38.123z",
    "2026-11-23T1:00:39.1234Z",
    "2026-11-23T10:00:40,123Z",
]


def test_timestamp_shortcut_matches_python(tmp_path: Path, duck: None) -> None:
    """Timestamps of the usual width and of every neighbouring shape (fractions of 2, 4 and
    6 digits, offsets, hour 24, invalid dates, stray characters) give the same
    summary on both engines, in JSON and in plain text."""
    for i, t in enumerate(ODD_TIMES):  # JSON: one file each (an unusual value sends a
        rec = {"ts": t, "level": "INFO", "message": "HTTP 200 GET /api/t Duration 5ms",
               "method": "GET", "route": "/api/t", "status": 200, "duration_ms": i}  # fmt: skip
        path = write_json(tmp_path / f"t{i}.jsonl", n=60, extra=[json.dumps(rec)])
        fast = summarize_file(path, engine="duckdb", freq="10s")  # whole file to Python)
        assert_same(summarize_file(path, engine="python", freq="10s"), fast)
    lines = [f"{t} INFO api [c{i}] HTTP 200 GET /api/t Duration {i}ms" for i, t in
             enumerate(ODD_TIMES)]  # fmt: skip
    path = write_text(tmp_path / "t.log", n=300, extra=lines)
    fast = summarize_file(path, engine="duckdb", freq="10s")
    assert "duckdb" == fast.engine
    assert_same(summarize_file(path, engine="python", freq="10s"), fast)


JSON_DURATIONS = ["1e3", "1.5e-3", "-0.0", "-2", "12345678901234567890123", '"15.30"', "15.30",
                  "15.3", "0.1", '"7"', '" 7"', '"7."', '".5"', '"1_0"']  # fmt: skip


def test_json_numbers_match_python(tmp_path: Path, duck: None) -> None:
    """Durations written as exponents, negative zero, huge integers or text with odd digits
    give the same summary on both engines (one file each: an unusual value may send the
    whole file to Python); plain ones stay in SQL."""
    engines = set()
    for i, d in enumerate(JSON_DURATIONS):
        line = ('{"ts": "2026-11-23T10:00:00.000Z", "level": "INFO", "method": "GET",'
                f' "route": "/api/n", "status": 200, "duration_ms": {d}}}')  # fmt: skip
        path = write_json(tmp_path / f"n{i}.jsonl", n=60, extra=[line, line])
        fast = summarize_file(path, engine="duckdb")
        engines.add(fast.engine)
        assert_same(summarize_file(path, engine="python"), fast)
    assert {"duckdb", "python"} == engines


TEXT_FIELDS = [
    # correlation IDs in brackets: empty, nested, unclosed, non-ASCII
    "2026-11-23T10:00:01.000Z INFO api [] HTTP 200 GET /api/a Duration 5ms",
    "2026-11-23T10:00:02.000Z INFO api [a]b] HTTP 200 GET /api/a Duration 5ms",
    "2026-11-23T10:00:03.000Z INFO api [ab HTTP 200 GET /api/a Duration 5ms",
    "2026-11-23T10:00:04.000Z INFO api ab] HTTP 200 GET /api/a Duration 5ms",
    "2026-11-23T10:00:05.000Z INFO api [\u00e9] HTTP 200 GET /api/a Duration 5ms",
    "2026-11-23T10:00:06.000Z INFO api [[x] HTTP 200 GET /api/a Duration 5ms",
    # one duration written several ways, in SQL and through the regex way (errors)
    "2026-11-23T10:00:07.000Z INFO api [c] HTTP 200 GET /api/a Duration 15.3ms",
    "2026-11-23T10:00:08.000Z INFO api [c] HTTP 200 GET /api/a Duration 15.30ms",
    "2026-11-23T10:00:09.000Z INFO api [c] HTTP 200 GET /api/a Duration 015.3ms",
    "2026-11-23T10:00:10.000Z ERROR api [c] HTTP 500 GET /api/a Duration 15.3ms",
    "2026-11-23T10:00:11.000Z ERROR api [c] HTTP 500 GET /api/a Duration 15.300ms",
    "2026-11-23T10:00:12.000Z INFO api [c] HTTP 200 GET /api/a Duration 0.1ms",
    "2026-11-23T10:00:13.000Z INFO api [c] HTTP 200 GET /api/a Duration 12345678901234567890ms",
    "2026-11-23T10:00:14.000Z ERROR api [c] HTTP 500 GET /api/a Duration 1234567890123456789012ms",
    "2026-11-23T10:00:15.000Z INFO api [c] HTTP 200 GET /api/a Duration 1.2.3ms",
    "2026-11-23T10:00:16.000Z INFO api [c] HTTP 200 GET /api/a Duration 1e3ms",
    # the other access fields, checked together: odd logger, status, method, route
    "2026-11-23T10:00:17.000Z INFO ap\u00e9 [c] HTTP 200 GET /api/a Duration 5ms",
    "2026-11-23T10:00:18.000Z INFO api [c] HTTP 2x0 GET /api/a Duration 5ms",
    "2026-11-23T10:00:19.000Z INFO api [c] HTTP 200 Get /api/a Duration 5ms",
    "2026-11-23T10:00:20.000Z INFO api [c] HTTP 200 GET /api/\u00e9 Duration 5ms",
    "2026-11-23T10:00:21.000Z INFO api\x0b [c] HTTP 200 GET /api/a Duration 5ms",
    "2026-11-23T10:00:22.000Z INFO worker\x0b job 5 done",
]


def test_text_field_shortcuts_match_python(tmp_path: Path, duck: None) -> None:
    """Bracketed correlation IDs of every shape, one duration written several ways (kept
    as text until grouped) and odd access fields give the same summary on both engines."""
    path = write_text(tmp_path / "f.log", n=300, extra=TEXT_FIELDS * 2)
    fast = summarize_file(path, engine="duckdb")
    assert "duckdb" == fast.engine
    assert_same(summarize_file(path, engine="python"), fast)


def test_common_lines_stay_in_sql(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, duck: None
) -> None:
    """The generated logs' lines, errors included, are all answered in SQL: no line comes
    back to the Python normaliser."""
    import aura_ops.logs_duckdb as fast_engine

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a line went the Python way")

    monkeypatch.setattr(fast_engine, "_json_other", refuse)
    monkeypatch.setattr(fast_engine, "_text_others", refuse)
    rng = random.Random(3)
    lines = [json.dumps(r) for r in (_json_line(rng, i) for i in range(1, 400)) if "ts" in r]
    lines = [ln for ln in lines if '"HTTP 503 POST /api/e' not in ln or '"status"' in ln]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    text = TEXT_ODD[:13] + TEXT_ODD[14:17]  # not the malformed line, nor the odd timestamps
    (tmp_path / "b.log").write_text("\n".join(text) + "\n")
    for name in ("a.jsonl", "b.log"):
        assert "duckdb" == summarize_file(tmp_path / name, engine="duckdb").engine


def test_gzip_and_fixtures_agree(tmp_path: Path, duck: None) -> None:
    """Rotated gzip files and the shared fixtures give the same answers with either engine."""
    gz = tmp_path / "api.jsonl.1.gz"
    gz.write_bytes(gzip.compress(write_json(tmp_path / "src.jsonl", n=300).read_bytes()))
    for path in (gz, FIXTURES / "api.jsonl", FIXTURES / "app.log", FIXTURES / "worker.log"):
        assert_same(summarize_file(path, engine="python"), summarize_file(path, engine="duckdb"))


def test_auto_leaves_small_files_to_python(tmp_path: Path) -> None:
    """``engine="auto"`` reads small files in Python (DuckDB's start would cost more)."""
    assert "python" == summarize_file(write_json(tmp_path / "s.jsonl", n=50)).engine


def test_unknown_engine_is_refused(tmp_path: Path) -> None:
    """An engine name that does not exist is a ConfigError naming the choices."""
    with pytest.raises(ConfigError, match="unknown engine 'spark'") as err:
        summarize_file(write_json(tmp_path / "s.jsonl", n=5), engine="spark")
    assert "use one of auto, duckdb, python" == err.value.hint


# --------------------------------------------------------------------------- raw-byte search

ODD_TEXT = (
    "2026-11-23T10:00:00Z INFO a [cid-1] first\r\n"
    "2026-11-23T10:00:01Z INFO a [cid-2] second\r"
    "2026-11-23T10:00:02Z ERROR a [cid-1] third KeyError: x\n"
    "\n"
    "2026-11-23T10:00:03Z INFO a [cid-3] caf\xe9 cid-1 again\n"
    "2026-11-23T10:00:04Z INFO a [cid-1] last, no newline"
)


def _both(monkeypatch: pytest.MonkeyPatch, fn: object, *args: object) -> tuple:
    fast = fn(*args)  # type: ignore[operator]
    with monkeypatch.context() as m:
        m.setattr(engine, "can_scan", lambda needle: False)
        slow = fn(*args)  # type: ignore[operator]
    return fast, slow


@pytest.mark.parametrize("block", [7, 64, 2**20])
def test_trace_scan_matches_line_reading(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, block: int
) -> None:
    """Searching raw bytes finds the same lines as reading line by line -- across block
    boundaries, with CRLF, a lone CR, non-ASCII bytes and no final newline -- and counts the
    same number of lines."""
    monkeypatch.setattr(scan, "BLOCK_BYTES", block)
    path = tmp_path / "odd.log"
    path.write_bytes(ODD_TEXT.encode("latin-1"))
    fast, slow = _both(monkeypatch, trace, str(path), "cid-1")
    pd.testing.assert_frame_equal(slow, fast)
    assert slow.attrs == fast.attrs
    assert (4, 6) == (len(fast), fast.attrs["lines"])


def test_search_scan_matches_on_gzip_and_fixtures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``search`` over gzip and the fixtures gives the same frame either way."""
    gz = tmp_path / "app.log.gz"
    gz.write_bytes(gzip.compress((FIXTURES / "app.log").read_bytes()))
    for path, needle in ((gz, "HTTP 503"), (FIXTURES / "api.jsonl", "KeyError")):
        fast, slow = _both(monkeypatch, search, str(path), needle)
        pd.testing.assert_frame_equal(slow, fast)
        assert slow.attrs == fast.attrs


def test_count_lines_counts_like_a_text_stream(tmp_path: Path) -> None:
    """Lines are counted as a text stream with universal newlines splits them."""
    for text in ("", "a", "a\n", "a\r\nb\rc\n\nd", "\r\r\n"):
        path = tmp_path / "c.log"
        path.write_text(text, newline="")
        with open(path, encoding="utf-8", newline="") as fh:
            assert sum(1 for _ in fh) == scan.count_lines(path).lines, repr(text)


def test_only_printable_ascii_needles_are_scanned() -> None:
    """Needles the byte search could answer differently go line by line."""
    assert [True, False, False, False] == [
        scan.can_scan(n) for n in ("abc-123", "café", "a\tb", "")
    ]


def test_histogram_percentiles_are_numpys_bit_for_bit() -> None:
    """Percentiles from (distinct value, count) pairs equal np.quantile over every value, so
    the DuckDB engine keeps histograms, not one float per request."""
    import numpy as np

    from aura_ops.logs_stats import hist_quantiles

    rng = np.random.default_rng(7)
    q = [0.0, 0.25, 0.5, 0.95, 0.99, 0.999, 1.0]
    for trial in range(500):
        raw = np.round(rng.lognormal(3, 1.5, int(rng.integers(1, 300))), trial % 4)
        values, counts = np.unique(raw, return_counts=True)
        assert [float(x) for x in np.quantile(raw, q)] == hist_quantiles(values, counts, q)
