"""Tests of aura_ops.logs: sources, formats, analyses, streaming, findings.

Fixtures in tests/fixtures/logs/ come from generate.py there (the scenario is described in its
docstring): 207 requests + 57 traceback lines in api.jsonl, 2 malformed lines, a deploy at
23:30:00 after which POST /api/render fails with KeyError.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import random
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure

from aura_ops.errors import ConfigError, SourceUnavailableError
from aura_ops.findings import Status
from aura_ops.logs import (
    LogFormat,
    LogLines,
    check_error_types,
    check_errors_since,
    check_failing_endpoints,
    check_latency,
    check_log_errors,
    error_timeline,
    latency_percentiles,
    load_events,
    plot_error_rate,
    read_events,
    search,
    summarize_file,
    trace,
)
from aura_ops.logs_stats import endpoint_table, error_table

FIX = Path(__file__).parent / "fixtures" / "logs"
API = FIX / "api.jsonl"
WORKER = FIX / "worker.log"
DEPLOY = datetime(2026, 11, 23, 23, 30, tzinfo=UTC)


@pytest.fixture(scope="module")
def api() -> pd.DataFrame:
    """The api.jsonl fixture read once."""
    return read_events(API)


# --------------------------------------------------------------------------- reading


def test_json_lines_columns_types_and_malformed(api: pd.DataFrame) -> None:
    """JSON lines give typed canonical columns, time order, and the 2 malformed lines counted."""
    assert len(api) == 264
    assert api.attrs["malformed"] == 2
    assert list(api.columns[:12]) == [
        "ts",
        "level",
        "logger",
        "service",
        "message",
        "correlation_id",
        "method",
        "route",
        "status",
        "duration_ms",
        "error_type",
        "source",
    ]
    assert str(api["ts"].dtype) == "datetime64[us, UTC]"
    assert str(api["status"].dtype) == "Int64"
    assert str(api["duration_ms"].dtype) == "float64"
    assert api["ts"].is_monotonic_increasing
    assert {"api.jsonl"} == set(api["source"])
    assert "path" in api.columns and "error" in api.columns


def test_rotated_files_with_gzip_in_age_order() -> None:
    """A glob reads app.log.2.gz, app.log.1 and app.log (oldest first), text preset sniffed."""
    df = read_events(str(FIX / "app.log*"))
    assert df.attrs["sources"] == ["app.log.2.gz", "app.log.1", "app.log"]
    assert {"text"} == set(df.attrs["formats"].values())
    assert len(df) == 30
    assert df.attrs["malformed"] == 1
    same = read_events(FIX / "app.log", include_rotated=True)
    assert df["message"].tolist() == same["message"].tolist()
    assert len(read_events(FIX / "app.log")) == 10


def test_text_preset_fields() -> None:
    """The plain-text preset yields ts, level, logger, correlation ID and the HTTP fields."""
    line = (
        "2026-11-23T23:30:01.123Z ERROR aura.api [3f2a9c0e5b7d4e1f] HTTP 500 POST "
        "/api/render KeyError: 'output_codec' Duration 3ms"
    )
    row = read_events(LogLines([line]), fmt="text").iloc[0]
    expected = {
        "level": "ERROR",
        "logger": "aura.api",
        "correlation_id": "3f2a9c0e5b7d4e1f",
        "method": "POST",
        "route": "/api/render",
        "status": 500,
        "duration_ms": 3.0,
        "error_type": "KeyError",
        "error": "'output_codec'",
    }
    assert expected == {k: row[k] for k in expected}
    assert pd.Timestamp("2026-11-23T23:30:01.123Z") == row["ts"]


def test_logfmt() -> None:
    """logfmt pairs (quoted values, aliases msg/time) are parsed and sniffed."""
    lines = [
        'time=2026-11-23T23:30:01Z level=error msg="HTTP 500 GET /x" status=500 duration_ms=12.5',
        "time=2026-11-23T23:30:02+01:00 level=warn msg=slow route=/y method=GET status=200",
    ]
    df = read_events(LogLines(lines, name="lf"))
    assert df.attrs["formats"] == {"lf": "logfmt"}
    assert df["level"].tolist() == ["WARNING", "ERROR"]  # 23:30:02+01:00 is 22:30:02Z
    assert df["status"].tolist() == [200, 500]
    assert df["message"].iloc[1] == "HTTP 500 GET /x"
    assert df["duration_ms"].iloc[1] == 12.5


def test_combined_log_format() -> None:
    """nginx/Apache combined lines: CLF time with offset to UTC, request time to ms, level."""
    lines = [
        '10.0.0.1 - - [23/Nov/2026:23:30:01 +0100] "GET /api/x?id=3 HTTP/1.1" 200 51 "-" "c" 0.012',
        '10.0.0.2 - bob [23/Nov/2026:22:30:02 +0000] "POST /api/render HTTP/1.1" 502 0 "-" "ua"',
    ]
    df = read_events(LogLines(lines, name="access"))
    assert df.attrs["formats"] == {"access": "combined"}
    first = df.iloc[0]
    assert pd.Timestamp("2026-11-23T22:30:01Z") == first["ts"]
    assert (first["method"], first["route"], first["status"], first["duration_ms"]) == (
        "GET",
        "/api/x",
        200,
        12.0,
    )
    assert df["level"].iloc[1] == "ERROR"


def test_regex_format_string_and_object() -> None:
    """``fmt="regex:..."`` and LogFormat.from_regex map named groups to columns."""
    rx = r"(?P<ts>\S+) \| (?P<level>\w+) \| (?P<msg>.*)"
    lines = ["2026-11-23T23:30:01Z | warn | disk 91% full", "nonsense"]
    for fmt in (f"regex:{rx}", LogFormat.from_regex(rx, name="pipes")):
        df = read_events(LogLines(lines), fmt=fmt)
        assert df["message"].tolist() == ["disk 91% full"]
        assert df["level"].tolist() == ["WARNING"]
        assert df.attrs["malformed"] == 1
    with pytest.raises(ConfigError):
        read_events(LogLines(lines), fmt="regex:(unclosed")
    with pytest.raises(ConfigError):
        read_events(LogLines(lines), fmt="yaml")


def test_stdin_iterables_and_mappings(monkeypatch: pytest.MonkeyPatch) -> None:
    """``"-"`` reads stdin; a generator, a LogLines of text and a {pod: lines} mapping work."""
    text = WORKER.read_text()
    monkeypatch.setattr(sys, "stdin", io.StringIO(text))
    assert len(read_events("-")) == 6
    assert len(read_events(line for line in text.splitlines())) == 6
    assert len(read_events(LogLines(text, name="pod-a"))) == 6
    assert len(read_events(io.BytesIO(text.encode()))) == 6
    both = read_events({"pod-a": text, "pod-b": text.splitlines()})
    assert both["source"].value_counts().to_dict() == {"pod-a": 6, "pod-b": 6}


def test_kubectl_timestamp_prefix_is_used_as_ts() -> None:
    """A JSON line prefixed by an RFC 3339 timestamp (kubectl --timestamps) takes it as ts."""
    df = read_events(LogLines(['2026-11-23T23:30:01.123456789Z {"level": "INFO", "msg": "hi"}']))
    assert pd.Timestamp("2026-11-23T23:30:01.123456Z") == df["ts"].iloc[0]
    assert df["message"].iloc[0] == "hi"


def test_garbage_is_counted_never_fatal(tmp_path: Path) -> None:
    """Binary garbage and broken JSON are counted as malformed and the read goes on."""
    p = tmp_path / "mixed.log"
    p.write_bytes(
        b'{"ts": "2026-11-23T23:30:00Z", "level": "INFO", "message": "ok"}\n'
        b"\xff\xfe\x00garbage\n[1, 2]\n"
        b'{"ts": "not a time", "level": "INFO"}\n'
        b'{"ts": "2026-11-23T23:30:01Z", "level": "ERROR", "message": "boom"}\n'
    )
    df = read_events(p, fmt="json")
    assert df["message"].tolist() == ["ok", "boom"]
    assert df.attrs["malformed"] == 3


def test_window_pattern_and_max_events(api: pd.DataFrame) -> None:
    """since/until keep a window; pattern pre-filters; max_events keeps the most recent."""
    after = read_events(API, since=DEPLOY, until="2026-11-23T23:31:00Z")
    assert after["ts"].between(DEPLOY, DEPLOY + timedelta(minutes=1), inclusive="left").all()
    assert len(api[(api["ts"] >= DEPLOY) & (api["ts"] < DEPLOY + timedelta(minutes=1))]) == len(
        after
    )
    hits = read_events(API, pattern="TimeoutError")
    assert len(hits) == 5
    last2 = read_events(API, pattern="TimeoutError", max_events=2)
    assert hits["ts"].tail(2).tolist() == last2["ts"].tolist()
    assert last2.attrs["dropped"] == 3


def test_search_regex_in_window() -> None:
    """search() finds a regex in a window, like grep over the last minutes."""
    df = search(API, r"HTTP 5\d\d GET", regex=True, since=DEPLOY)
    assert len(df) == 2  # the two provider timeouts after the deploy
    assert {"TimeoutError"} == set(df["error_type"])
    assert len(search(API, "no such text anywhere")) == 0


def test_missing_sources_raise_source_unavailable(tmp_path: Path) -> None:
    """A missing file, an empty glob and a corrupt gzip raise SourceUnavailableError."""
    with pytest.raises(SourceUnavailableError, match="not found"):
        read_events(tmp_path / "nope.log")
    with pytest.raises(SourceUnavailableError, match="no log files match"):
        read_events(str(tmp_path / "*.log"))
    bad = tmp_path / "bad.log.gz"
    bad.write_bytes(gzip.compress(b"x" * 1000)[:20])
    with pytest.raises(SourceUnavailableError):
        read_events(bad)


# --------------------------------------------------------------------------- analyses


def test_check_error_types_ranks_and_counts(api: pd.DataFrame) -> None:
    """KeyError ×57 on POST /api/render tops 62 errors; the traceback lines count once."""
    [f] = check_error_types(api)
    assert f.status == Status.CRITICAL
    assert f.observed == 62
    assert f.summary == (
        "62 errors of 2 types; top: KeyError ×57 on POST /api/render "
        "(first 2026-11-23 23:30:16Z, last 2026-11-23 23:34:56Z)"
    )
    table = f.evidence[0].data
    rows = {r[0]: dict(zip(table["columns"], r, strict=True)) for r in table["rows"]}
    assert (rows["KeyError"]["count"], rows["KeyError"]["lines"]) == (57, 114)
    assert (rows["TimeoutError"]["count"], rows["TimeoutError"]["routes"]) == (
        5,
        "GET /api/providers",
    )
    assert "KeyError" in f.evidence[1].data
    assert f.reproduce.startswith("check_error_types(read_events(")


def test_check_error_types_ok_and_unknown(api: pd.DataFrame) -> None:
    """No errors gives OK; no events gives UNKNOWN (nothing was looked at)."""
    healthy = api[api["route"] == "/api/projects"]
    [ok] = check_error_types(healthy)
    assert ok.status == Status.OK
    [unk] = check_error_types(api.iloc[0:0])
    assert unk.status == Status.UNKNOWN


def test_check_failing_endpoints(api: pd.DataFrame) -> None:
    """The worst endpoint with its ratio and error type; 429 called out; healthy ones listed."""
    failing, limited, healthy = check_failing_endpoints(api)
    assert failing.status == Status.CRITICAL
    assert failing.summary.startswith(
        "POST /api/render fails 57/60 requests (95.0%), mostly KeyError"
    )
    assert "overall 5xx ratio 30.0%" in failing.summary  # 62 of 207 requests
    assert limited.status == Status.WARNING
    assert "10 HTTP 429" in limited.summary and "GET /api/limited 10/20" in limited.summary
    assert healthy.status == Status.OK
    assert "4 endpoint(s)" in healthy.summary and "GET /api/projects" in healthy.summary
    table = endpoint_table(api).set_index("endpoint")
    assert tuple(table.loc["GET /api/providers", ["requests", "errors_5xx", "top_error"]]) == (
        5,
        5,
        "TimeoutError",
    )
    assert table["requests"].sum() == 207


def test_check_failing_endpoints_without_requests() -> None:
    """Logs without HTTP status lines give UNKNOWN, not OK."""
    [f] = check_failing_endpoints(read_events(WORKER))
    assert f.status == Status.UNKNOWN


def test_error_timeline_auto_and_fixed(api: pd.DataFrame) -> None:
    """The auto bucket gives 30–60 buckets; totals match; a fixed freq is honoured."""
    tl = error_timeline(api)
    assert tl.attrs["freq"] == "15s"
    assert 30 <= len(tl) <= 60
    assert (tl["requests"].sum(), tl["errors"].sum(), tl["errors_4xx"].sum()) == (207, 62, 12)
    per_min = error_timeline(api, freq="1min")
    assert len(per_min) == 15
    assert per_min["error_ratio"].iloc[0] == 0.0
    assert pd.Timestamp("2026-11-23T23:20Z") == per_min["ts"].iloc[0]


def test_check_errors_since_names_type_route_and_label(api: pd.DataFrame) -> None:
    """A deploy's new KeyError is named with route, delay and label; old timeouts are INFO."""
    new, old = check_errors_since(api, DEPLOY, label="deploy v2.4.1")
    assert new.status == Status.CRITICAL
    assert (
        new.summary
        == "KeyError on POST /api/render started 16 s after deploy v2.4.1: 57 errors, 0 before"
    )
    assert old.status == Status.INFO
    assert "TimeoutError on GET /api/providers already occurred before deploy v2.4.1" in old.summary
    assert "not caused by it" in old.summary


def test_check_errors_since_existing_errors_only(api: pd.DataFrame) -> None:
    """Errors at the same rate before and after a change are not blamed on it."""
    no_render = api[api["route"].fillna("") != "/api/render"]
    no_render = no_render[no_render["error_type"] != "KeyError"]
    [f] = check_errors_since(no_render, "2026-11-23T23:27:00Z", label="config push")
    assert f.status == Status.INFO
    assert "(2 before, 3 after)" in f.summary and "config push" in f.summary
    [ok] = check_errors_since(api[api["route"] == "/api/projects"], DEPLOY, label="x")
    assert ok.status == Status.OK


def test_trace_across_api_and_worker() -> None:
    """One correlation ID across api.jsonl and worker.log, in time order."""
    cid = "c000000000000081"
    df = trace([API, WORKER], cid)
    assert df["source"].tolist() == ["worker.log", "api.jsonl", "worker.log", "api.jsonl"]
    assert df["ts"].is_monotonic_increasing
    assert {cid} == set(df["correlation_id"])
    both = pd.concat([read_events(API), read_events(WORKER)])
    assert df["message"].tolist() == trace(both, cid)["message"].tolist()


def test_latency_percentiles_and_check(api: pd.DataFrame) -> None:
    """Exact percentiles per endpoint; a p95 over the limit names the endpoint."""
    lat = latency_percentiles(api).set_index(["method", "route"])
    assert tuple(lat.loc[("POST", "/api/render"), ["count", "p50_ms", "max_ms"]]) == (
        60,
        3.0,
        802.0,
    )
    expected = api.loc[api["route"] == "/api/jobs", "duration_ms"].quantile(0.95)
    assert expected == lat.loc[("POST", "/api/jobs"), "p95_ms"]
    slow, fine = check_latency(api, p95_max_ms=1000)
    assert slow.status == Status.CRITICAL
    assert slow.summary.startswith("GET /api/providers p95 5000 ms")
    assert fine.status == Status.OK
    [ok] = check_latency(api[api["route"] == "/api/projects"], p95_max_ms=1000)
    assert ok.status == Status.OK


def test_plot_error_rate(api: pd.DataFrame) -> None:
    """The chart is a Figure with title, units, a percent axis, threshold and change markers."""
    old = (DEPLOY - timedelta(days=2), "deploy v2.4.0")
    marks = [(DEPLOY, "deploy v2.4.1"), old]
    fig = plot_error_rate(error_timeline(api), changes=marks, threshold=0.05)
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert "HTTP 5xx error rate" in ax.get_title(loc="left")
    assert ax.get_xlabel() == "time (UTC)" and "%" in ax.get_ylabel()
    texts = [t.get_text() for t in ax.texts]
    assert "deploy v2.4.1" in texts and "deploy v2.4.0" not in texts
    assert "1 change(s) outside the window not shown" in texts
    assert ax.yaxis.get_major_formatter()(0.5, 0) == "50%"
    fig.savefig(io.BytesIO(), format="png")
    empty = plot_error_rate(error_timeline(api.iloc[0:0]))
    assert isinstance(empty, Figure)


# --------------------------------------------------------------------------- check layer


def test_check_log_errors_reads_and_judges() -> None:
    """check_log_errors reads the files and returns the error-type and endpoint findings."""
    findings = check_log_errors(API, since="2026-11-23T23:00:00Z")
    assert [f.check for f in findings] == [
        "logs.error_types",
        "logs.failing_endpoints",
        "logs.rate_limited",
        "logs.healthy_endpoints",
    ]
    assert all(
        "read_events(" in f.reproduce and "2026-11-23T23:00:00Z" in f.reproduce for f in findings
    )


@pytest.mark.parametrize("kind", ["missing", "glob", "corrupt"])
def test_unreadable_source_gives_unknown(tmp_path: Path, kind: str) -> None:
    """A missing file, an empty glob or a corrupt gzip is UNKNOWN, with the path named."""
    target = {
        "missing": tmp_path / "gone.log",
        "glob": str(tmp_path / "*.log"),
        "corrupt": tmp_path / "bad.gz",
    }[kind]
    if kind == "corrupt":
        Path(target).write_bytes(b"\x1f\x8b\x08\x00garbage")
    [f] = check_log_errors(target)
    assert f.status == Status.UNKNOWN
    assert str(Path(str(target)).name).replace("*", "") in f.summary + f.source


# --------------------------------------------------------------------------- streaming


def _big_log(path: Path, n: int) -> None:
    """A deterministic multi-MB JSON-lines log with errors, 4xx/429 and tracebacks."""
    rng = random.Random(7)
    routes = [
        ("GET", "/api/projects"),
        ("POST", "/api/render"),
        ("GET", "/api/jobs/{id}"),
        ("POST", "/api/upload"),
        ("GET", "/api/limited"),
    ]
    t = datetime(2026, 11, 23, 22, 0, tzinfo=UTC)
    with path.open("w") as fh:
        for i in range(n):
            t += timedelta(milliseconds=rng.randint(1, 40))
            method, route = rng.choice(routes)
            roll = rng.random()
            status, etype = (
                (500, rng.choice(["KeyError", "TimeoutError", "DbError"]))
                if roll < 0.03
                else (
                    (429, "RateLimitExceeded")
                    if roll < 0.05
                    else (404, None)
                    if roll < 0.06
                    else (200, None)
                )
            )
            rec = {
                "ts": t.isoformat(),
                "level": "ERROR" if status >= 500 else "INFO",
                "logger": "aura.api",
                "message": f"HTTP {status} {method} {route}",
                "correlation_id": f"{i:016x}",
                "method": method,
                "route": route,
                "status": status,
                "duration_ms": round(rng.lognormvariate(3, 1), 3),
            }
            if etype:
                rec["error_type"] = etype
            fh.write(json.dumps(rec) + "\n")
            if status == 500 and rng.random() < 0.5:
                fh.write(
                    json.dumps(
                        {
                            "ts": t.isoformat(),
                            "level": "ERROR",
                            "correlation_id": f"{i:016x}",
                            "error_type": etype,
                            "message": "Traceback ...",
                        }
                    )
                    + "\n"
                )
            if i % 5000 == 0:
                fh.write("{broken\n")


def test_summarize_file_matches_in_memory(tmp_path: Path) -> None:
    """The streaming summary of a multi-MB file equals read_events + the pandas helpers."""
    path = tmp_path / "big.jsonl"
    _big_log(path, 25_000)
    assert path.stat().st_size > 5_000_000
    s = summarize_file(path, freq="1min")
    df = read_events(path)
    assert (df.attrs["malformed"], len(df)) == (s.malformed, s.events)
    pd.testing.assert_frame_equal(error_table(df), s.error_types)
    pd.testing.assert_frame_equal(endpoint_table(df), s.endpoints)
    pd.testing.assert_frame_equal(latency_percentiles(df), s.latency)
    pd.testing.assert_frame_equal(error_timeline(df, freq="1min"), s.timeline)
    windowed = summarize_file(path, since="2026-11-23T22:05:00Z", until="2026-11-23T22:06:00Z")
    assert (
        len(read_events(path, since="2026-11-23T22:05:00Z", until="2026-11-23T22:06:00Z"))
        == windowed.events
    )


# --------------------------------------------------------------------------- edges


def test_empty_input_gives_typed_frame_and_unknown() -> None:
    """No lines at all give an empty, typed frame, and every check says UNKNOWN (not OK)."""
    df = read_events(LogLines([]))
    assert (len(df), str(df["ts"].dtype), str(df["status"].dtype)) == (
        0,
        "datetime64[us, UTC]",
        "Int64",
    )
    checks = [check_error_types, check_failing_endpoints, check_latency]
    assert [c(df)[0].status for c in checks] == [Status.UNKNOWN] * 3
    assert check_errors_since(df, DEPLOY)[0].status == Status.UNKNOWN


def test_lines_passed_as_paths_are_refused_with_a_hint() -> None:
    """A list of log lines where paths are expected is a ConfigError pointing to LogLines."""
    line = '{"ts": "2026-11-23T23:30:00Z", "level": "INFO", "message": "x"}'
    with pytest.raises(ConfigError, match="looks like log text"):
        read_events([line])
    [f] = check_log_errors([line])
    assert f.status == Status.UNKNOWN


def test_epoch_and_naive_timestamps_become_utc() -> None:
    """Epoch seconds/milliseconds and naive ISO times are read as UTC."""
    lines = [
        '{"ts": 1795476600, "level": "INFO", "message": "s"}',
        '{"ts": 1795476600500, "level": "INFO", "message": "ms"}',
        '{"timestamp": "2026-11-23 23:30:01", "level": "INFO", "message": "naive"}',
    ]
    df = read_events(LogLines(lines), fmt="json")
    expected = ["2026-11-23T23:30:00Z", "2026-11-23T23:30:00.5Z", "2026-11-23T23:30:01Z"]
    assert [pd.Timestamp(t) for t in expected] == df["ts"].tolist()


def test_window_on_text_logs_matches_full_read() -> None:
    """A windowed read of rotated text logs equals filtering a full read."""
    start, end = "2026-11-23T23:20:30Z", "2026-11-23T23:21:30Z"
    full = read_events(str(FIX / "app.log*"))
    part = read_events(str(FIX / "app.log*"), since=start, until=end)
    mask = (full["ts"] >= pd.Timestamp(start)) & (full["ts"] < pd.Timestamp(end))
    assert full[mask]["message"].tolist() == part["message"].tolist()
    assert len(part) > 0


def test_errors_since_without_baseline_says_so(api: pd.DataFrame) -> None:
    """When the log starts at the change, new errors are flagged and the missing baseline named."""
    after = api[api["ts"] >= DEPLOY]
    findings = check_errors_since(after, DEPLOY, label="deploy v2.4.1")
    assert "no log lines before it to compare with" in findings[0].summary
    assert findings[0].status == Status.CRITICAL


def test_findings_are_json_ready_and_name_malformed_lines(api: pd.DataFrame) -> None:
    """Every finding serialises to JSON; skipped lines are shown as evidence."""
    findings = (
        check_error_types(api)
        + check_failing_endpoints(api)
        + check_errors_since(api, DEPLOY, label="deploy")
        + check_latency(api)
    )
    for f in findings:
        json.dumps(f.to_dict())
        assert f.source and f.reproduce
    titles = [e.title for e in findings[0].evidence]
    assert "2 malformed lines skipped (first 2)" in titles


def test_load_events_never_raises_and_checks_say_why(tmp_path: Path) -> None:
    """load_events on a missing file gives an empty frame; the checks are UNKNOWN naming why."""
    events = load_events(tmp_path / "gone.log", since=DEPLOY)
    assert len(events) == 0
    assert "not found" in events.attrs["error"]
    findings = (
        check_error_types(events)
        + check_failing_endpoints(events, source=str(tmp_path / "gone.log"))
        + check_errors_since(events, DEPLOY, label="deploy")
    )
    assert [f.status for f in findings] == [Status.UNKNOWN] * 3
    assert all("logs unreadable: log file not found" in f.summary for f in findings)
    assert isinstance(plot_error_rate(error_timeline(events)), Figure)


def test_comma_separated_paths(api: pd.DataFrame) -> None:
    """A notebook parameter "a.jsonl, b.log" reads both files."""
    df = load_events(f"{API}, {WORKER}")
    assert df["source"].value_counts().to_dict() == {"api.jsonl": 264, "worker.log": 6}


def test_stdlib_json_fallback_gives_the_same_frame(
    monkeypatch: pytest.MonkeyPatch, api: pd.DataFrame
) -> None:
    """Without orjson (an optional speed-up) the standard library parses the same events."""
    import aura_ops.logs_formats as formats

    monkeypatch.setattr(formats, "_loads", json.loads)
    pd.testing.assert_frame_equal(api, read_events(API))


def test_fifo_is_refused_instead_of_blocking(tmp_path: Path) -> None:
    """A named pipe with no writer is refused at once (opening it would hang): UNKNOWN."""
    fifo = tmp_path / "pipe.log"
    os.mkfifo(fifo)
    [f] = check_log_errors(fifo)
    assert f.status == Status.UNKNOWN
    assert "not a regular file" in f.summary
