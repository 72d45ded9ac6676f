"""Child process of bench_logs.py: answer the five questions with aura_ops.logs, print JSON.

``python _logs_child.py FILE CID ENGINE`` -- times ``summarize_file`` (questions 1, 2, 3 and 5
in one pass) and ``trace`` (question 4) after the imports, and prints the answers in the shape
the shell pipelines give, so the parent can compare them. Peak memory is measured by the parent
(``wait4``) and includes the interpreter, pandas and DuckDB themselves.
"""

from __future__ import annotations

import json
import sys
import time


def main() -> int:
    path, cid, engine = sys.argv[1], sys.argv[2], sys.argv[3]
    t0 = time.perf_counter()
    from aura_ops.logs import summarize_file, trace

    imported = time.perf_counter()
    s = summarize_file(path, engine=engine, freq="1min")
    summarized = time.perf_counter()
    tr = trace(path, cid)
    traced = time.perf_counter()
    ep = s.endpoints[s.endpoints["errors_5xx"] > 0]
    tl = s.timeline[s.timeline["requests"] > 0]
    answers = {
        "q1": {r.error_type: int(r.lines) for r in s.error_types.itertuples()},
        "q2": {r.endpoint: int(r.errors_5xx) for r in ep.itertuples()},
        "q3": {
            f"{r.method} {r.route}": [int(r.count), *(f"{v:.3f}" for v in r[3:])]
            for r in s.latency.itertuples(index=False)
        },
        "q4": sorted(str(m) for m in tr["message"]),
        "q5": {
            f"{t:%Y-%m-%dT%H:%M}": [int(r), int(e)]
            for t, r, e in zip(tl["ts"], tl["requests"], tl["errors"], strict=True)
        },
    }
    print(
        json.dumps(
            {
                "import_s": imported - t0,
                "summarize_s": summarized - imported,
                "trace_s": traced - summarized,
                "engine": s.engine,
                "lines": s.lines,
                "answers": answers,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
