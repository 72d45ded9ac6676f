"""Log analysis benchmark: the five questions on generated logs, aura-ops against the shell.

For each size (100 MB and 1 GB by default; 4 GB with ``--4g``) and format (JSON lines and the
seeds' plain text), in one run and interleaved:

- the seeds' shell pipelines (``benchmarks/shell/questions.sh``: grep, awk, sort, uniq with
  ``LC_ALL=C``), one process tree per question;
- aura-ops in a fresh Python process (``_logs_child.py``): ``summarize_file`` answers
  questions 1, 2, 3 and 5 in one pass, ``trace`` answers 4; timed after the imports (a
  notebook has them already), the import time reported beside it;
- ``grep -F`` of the correlation ID alone, and ``cat`` of the file (the read limit).

Answers must be identical (error types with their line counts; 5xx per endpoint; request
count, p50/p95/p99 and max per endpoint to 0.001 ms; the traced lines; requests and 5xx per
minute) or the script exits 1. Peak memory is each process tree's largest resident set
(``wait4``). Generated logs are cached in ``benchmarks/.data`` (git-ignored): the first 1 GB
run spends a few minutes writing them (``--4g`` adds ~4.4 GB per format, ~10 min).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DATA, ROOT, print_machine, run_timed, save_result  # noqa: E402
from loggen import generate  # noqa: E402

SHELL = ROOT / "benchmarks" / "shell" / "questions.sh"
CHILD = ROOT / "benchmarks" / "_logs_child.py"
QUESTIONS = ("q1", "q2", "q3", "q4", "q5")


def _shell(fmt: str, q: str, path: Path, cid: str) -> dict[str, Any]:
    return run_timed([str(SHELL), fmt, q, str(path), cid])


def _parse_shell(q: str, fmt: str, out: str) -> Any:
    """The shell output in the child's answer shape."""
    lines = [ln for ln in out.splitlines() if ln.strip()]
    if q in ("q1", "q2"):
        return {ln.strip().split(" ", 1)[1]: int(ln.strip().split(" ", 1)[0]) for ln in lines}
    if q == "q3":
        rows = {}
        for ln in lines:
            key, n, *vals = ln.split("\t")
            rows[key] = [int(n), *vals]
        return rows
    if q == "q4":
        if fmt == "json":
            return sorted(json.loads(ln)["message"] for ln in lines)
        return sorted(ln.split("] ", 1)[1] for ln in lines)
    return {ln.split()[0]: [int(ln.split()[1]), int(ln.split()[2])] for ln in lines}


def _engine(path: Path, cid: str, engine: str) -> dict[str, Any]:
    run = run_timed([sys.executable, str(CHILD), str(path), cid, engine], cwd=ROOT)
    if run["rc"] != 0:
        raise SystemExit(f"engine child failed:\n{run['stderr']}")
    return {**run, **json.loads(run["stdout"])}


def bench_one(path: Path, fmt: str, cid: str, repeat: int, engines: list[str]) -> dict[str, Any]:
    """All measurements for one file, ``repeat`` rounds interleaved; medians reported."""
    run_timed(["cat", str(path)])  # page cache warm, as for a log being written
    shell: dict[str, list[dict[str, Any]]] = {q: [] for q in QUESTIONS}
    ours: dict[str, list[dict[str, Any]]] = {e: [] for e in engines}
    grep, cat = [], []
    for _ in range(repeat):
        for q in QUESTIONS:
            shell[q].append(_shell(fmt, q, path, cid))
        for e in engines:
            ours[e].append(_engine(path, cid, e))
        grep.append(run_timed(f"grep -F {cid} {path} | wc -l", shell=True))
        cat.append(run_timed(["cat", str(path)]))
    mismatches = _compare(shell, ours, fmt)
    med = statistics.median
    result: dict[str, Any] = {
        "file": path.name,
        "format": fmt,
        "bytes": path.stat().st_size,
        "repeat": repeat,
        "cat_s": med(r["wall_s"] for r in cat),
        "grep_f_s": med(r["wall_s"] for r in grep),
        "shell": {
            q: {
                "wall_s": med(r["wall_s"] for r in runs),
                "cpu_s": med(r["cpu_s"] for r in runs),
                "peak_mib": max(r["peak_mib"] for r in runs),
            }
            for q, runs in shell.items()
        },
        "engines": {},
        "mismatches": mismatches,
    }
    result["shell_total_s"] = sum(v["wall_s"] for v in result["shell"].values())
    for e, runs in ours.items():
        result["engines"][e] = {
            "used": runs[0]["engine"],
            "summarize_s": med(r["summarize_s"] for r in runs),
            "trace_s": med(r["trace_s"] for r in runs),
            "five_s": med(r["summarize_s"] + r["trace_s"] for r in runs),
            "import_s": med(r["import_s"] for r in runs),
            "process_wall_s": med(r["wall_s"] for r in runs),
            "peak_mib": max(r["peak_mib"] for r in runs),
        }
    return result


def _compare(
    shell: dict[str, list[dict[str, Any]]], ours: dict[str, list[dict[str, Any]]], fmt: str
) -> list[str]:
    """Questions whose answers differ between the shell and an engine (first round)."""
    bad = []
    for q in QUESTIONS:
        want = _parse_shell(q, fmt, shell[q][0]["stdout"])
        for e, runs in ours.items():
            got = runs[0]["answers"][q]
            if got != want:
                bad.append(f"{fmt} {q} engine={e}: shell {_short(want)} != aura-ops {_short(got)}")
    return bad


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True)
    return text if len(text) < 300 else text[:300] + "..."


def report(r: dict[str, Any]) -> None:
    """Print one file's figures."""
    mib = r["bytes"] / 2**20
    print(f"\n-- {r['file']} ({r['format']}, {mib:,.0f} MiB), medians of {r['repeat']}")
    print(f"   read limit: cat {r['cat_s']:.2f} s; grep -F of the ID {r['grep_f_s']:.2f} s")
    names = {"q1": "error types", "q2": "5xx by endpoint", "q3": "latency percentiles",
             "q4": "correlation ID", "q5": "errors per minute"}  # fmt: skip
    for q, v in r["shell"].items():
        print(
            f"   shell {q} {names[q]:<20} {v['wall_s']:6.2f} s  cpu {v['cpu_s']:6.2f} s  "
            f"peak {v['peak_mib']:6.0f} MiB"
        )
    print(f"   shell, all five: {r['shell_total_s']:.2f} s")
    for e, v in r["engines"].items():
        ratio = v["five_s"] / r["shell_total_s"]
        trace_ratio = v["trace_s"] / r["grep_f_s"]
        print(
            f"   aura-ops engine={e} ({v['used']}): all five {v['five_s']:.2f} s = "
            f"{ratio:.2f}x shell; summarize {v['summarize_s']:.2f} s, trace "
            f"{v['trace_s']:.2f} s = {trace_ratio:.2f}x grep -F; peak {v['peak_mib']:.0f} MiB; "
            f"(+{v['import_s']:.2f} s imports)"
        )
    for m in r["mismatches"]:
        print(f"   MISMATCH {m}")
    if not r["mismatches"]:
        print("   answers identical to the shell pipelines")


def main(argv: list[str] | None = None) -> int:
    """Command line; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="100m,1g", help="comma-separated: 100m, 1g, 4g")
    p.add_argument("--4g", dest="four", action="store_true", help="add the 4 GB logs")
    p.add_argument("--formats", default="json,text")
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument(
        "--python-engine",
        default="none",
        help="sizes at which to also time the pure-Python engine, e.g. 100m (slow: ~1 min "
        "per 100 MB of text)",
    )
    args = p.parse_args(argv)
    machine = print_machine("log analysis: five questions, aura-ops vs the seeds' pipelines")
    sizes = [s for s in args.sizes.split(",") if s] + (["4g"] if args.four else [])
    results = []
    for size in sizes:
        meta = generate(DATA, size)
        for fmt in args.formats.split(","):
            path = DATA / meta[fmt]["path"]
            engines = ["auto"] + (["python"] if size in args.python_engine.split(",") else [])
            r = bench_one(path, fmt, meta[fmt]["trace_cid"], args.repeat, engines)
            r["size"] = size
            report(r)
            results.append(r)
    out = save_result("logs", {"machine": machine, "results": results})
    print(f"\nresults: {out}")
    return 1 if any(r["mismatches"] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
