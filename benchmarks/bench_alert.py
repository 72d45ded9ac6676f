"""Alert-to-report benchmark: webhook accepted -> ``report.html`` written, against the sandbox.

One invocation starts the sandbox with the high-error-rate fault (real traffic, real
PostgreSQL), a Prometheus scraping it every second when one is installed (the runbook then
asks Prometheus for the 5xx ratio; without one it scrapes ``/metrics`` twice, 5 s apart, and
every figure below carries those 5 s), and two ``aura-ops serve`` processes on the same home:

- **warm**: the default (``--warm-kernels`` one per worker, here 2) -- runs on pre-started
  kernels (``aura_ops.kernelpool``);
- **cold**: ``AURA_OPS_WARM_KERNELS=0`` -- each run starts its Python process, papermill and
  kernel.

Alerts (Alertmanager webhooks, each a new episode: a distinct ``namespace``) alternate between
the two servers, one at a time, ``--gap`` seconds apart (alerts rarely come back to back; the
storm benchmark covers bursts). Latency is the report's modification time minus the moment
the ``202`` arrived. Interleaved with them, in the same run, the baselines:

- **papermill CLI**: ``papermill`` running the same notebook cold with the same parameters;
- **plain script (floor)**: the notebook's code cells as one Python script, run cold.

Prints p50/p95 and the ratios the issue sets targets on (p50 <= 1.3x floor, <= 0.6x papermill).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx  # noqa: E402
import nbformat  # noqa: E402
from _common import pct, print_machine, run_timed, save_result  # noqa: E402
from _serve import TOKEN, Target, alert_doc, sandbox_target, serve  # noqa: E402


def fire(url: str, outputs: Path, namespace: str, timeout_s: float = 300.0) -> dict[str, Any]:
    """One alert; wait for its report. Latency = report mtime - 202 received. The server runs
    one alert at a time here, so the report that appears under ``outputs`` is this one's."""
    before = set(outputs.glob("*/*/report.html"))
    doc = alert_doc(namespace, uuid.uuid4().hex[:16])
    resp = httpx.post(f"{url}/alertmanager", json=doc, timeout=30,
                      headers={"Authorization": f"Bearer {TOKEN}"})  # fmt: skip
    accepted = time.time()
    if resp.status_code != 202:
        raise SystemExit(f"webhook answered {resp.status_code}: {resp.text}")
    run_id = resp.json()["alerts"][0]["run_id"]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        row = httpx.get(f"{url}/runs/{run_id}", timeout=10).json()
        if row.get("state") in ("done", "failed"):
            break
        time.sleep(0.05)
    else:
        raise SystemExit(f"run {run_id} did not finish in {timeout_s:g} s")
    if row.get("state") != "done":
        raise SystemExit(f"run {run_id} failed: {row.get('error')}")
    (report,) = set(outputs.glob("*/*/report.html")) - before
    return {
        "latency_s": report.stat().st_mtime - accepted,
        "verdict": row.get("verdict"),
        "headline": row.get("headline"),
        "run_duration_s": row.get("duration_s"),
    }


def floor_script(target: Target, path: Path) -> Path:
    """The notebook's code cells (not the skipped remediation) as one script."""
    nb = nbformat.read(target.home / "notebooks" / "high-error-rate.ipynb", as_version=4)
    parts = []
    for cell in nb.cells:
        tags = cell.metadata.get("tags", [])
        if cell.cell_type != "code" or "skip-execution" in tags:
            continue
        parts.append(cell.source)
        if "parameters" in tags:
            parts.append("\n".join(f"{k} = {v!r}" for k, v in target.params.items()))
    path.write_text("\n\n".join(parts) + "\n")
    return path


def papermill_cmd(target: Target, out: Path) -> list[str]:
    """The papermill command line for the same notebook and parameters."""
    cmd = [str(Path(sys.executable).parent / "papermill"),
           str(target.home / "notebooks" / "high-error-rate.ipynb"), str(out),
           "--kernel", "python3", "--no-progress-bar"]  # fmt: skip
    for k, v in target.params.items():
        cmd += ["-p", k, str(v)]
    return cmd


def main(argv: list[str] | None = None) -> int:
    """Command line; see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--alerts", type=int, default=8, help="measured alerts per server")
    p.add_argument("--baselines", type=int, default=5, help="runs of each baseline")
    p.add_argument("--gap", type=float, default=3.0, help="seconds between alerts")
    args = p.parse_args(argv)
    machine = print_machine("alert to report: aura-ops serve vs papermill CLI vs plain script")
    results: dict[str, list[dict[str, Any]]] = {"warm": [], "cold": [], "papermill": [],
                                                 "floor": []}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="aura-bench-") as tmp:
        work = Path(tmp)
        with sandbox_target(work) as target:
            how = "PromQL" if target.prometheus else "two /metrics scrapes 5 s apart"
            print(f"   sandbox up, fault injected; 5xx ratio from {how}")
            env = {**target.kernel_env, "MPLCONFIGDIR": str(work / "mpl")}
            script = floor_script(target, work / "floor.py")
            cwd = target.home / "notebooks"
            with serve(target, work, warm=2) as warm, serve(target, work) as cold:
                servers = {"warm": warm[1:], "cold": cold[1:]}
                for name, (url, outputs) in servers.items():
                    fire(url, outputs, f"warmup-{name}")  # first run: imports, pool, caches
                time.sleep(args.gap * 3)
                for i in range(max(args.alerts, args.baselines)):
                    if i < args.alerts:
                        for name, (url, outputs) in servers.items():
                            results[name].append(fire(url, outputs, f"{name}-{i}"))
                            time.sleep(args.gap)
                    if i < args.baselines:
                        out = work / f"pm-{i}.ipynb"
                        pm = run_timed(papermill_cmd(target, out), env=_env(env), cwd=cwd)
                        fl = run_timed([sys.executable, str(script)], env=_env(env), cwd=cwd)
                        for key, run in (("papermill", pm), ("floor", fl)):
                            if run["rc"] != 0:
                                raise SystemExit(f"{key} failed:\n{run['stderr']}")
                            results[key].append({"latency_s": run["wall_s"]})
                        time.sleep(args.gap)
    summary = report(results, target.prometheus)
    save_result("alert", {"machine": machine, "summary": summary, "runs": results})
    return 0


def _env(extra: dict[str, str]) -> dict[str, str]:
    import os

    return {**os.environ, **extra, "AURA_OPS_TRIGGER": "manual"}


def report(results: dict[str, list[dict[str, Any]]], prometheus: bool) -> dict[str, Any]:
    """Print p50/p95 and the ratios; return them."""
    stats = {}
    for key, runs in results.items():
        lat = [r["latency_s"] for r in runs]
        stats[key] = {"n": len(lat), "p50_s": statistics.median(lat), "p95_s": pct(lat, 0.95)}
    labels = {"warm": "serve (default: warm)", "cold": "serve, warm kernels off",
              "papermill": "papermill CLI, cold", "floor": "plain Python script"}  # fmt: skip
    for key, s in stats.items():
        line = f"n={s['n']:<3} p50 {s['p50_s']:6.2f} s   p95 {s['p95_s']:6.2f} s"
        print(f"   {labels[key]:<24} {line}")
    verdicts = {r.get("verdict") for r in results["warm"] + results["cold"]}
    print(f"   verdicts of the alert runs: {sorted(v or '?' for v in verdicts)}")
    ratios = {
        "warm_vs_floor": stats["warm"]["p50_s"] / stats["floor"]["p50_s"],
        "warm_vs_papermill": stats["warm"]["p50_s"] / stats["papermill"]["p50_s"],
        "cold_vs_floor": stats["cold"]["p50_s"] / stats["floor"]["p50_s"],
        "cold_vs_papermill": stats["cold"]["p50_s"] / stats["papermill"]["p50_s"],
    }
    print(
        f"   warm p50 = {ratios['warm_vs_floor']:.2f}x the floor (target <= 1.3) and "
        f"{ratios['warm_vs_papermill']:.2f}x papermill CLI (target <= 0.6)"
    )
    print(
        f"   cold p50 = {ratios['cold_vs_floor']:.2f}x the floor and "
        f"{ratios['cold_vs_papermill']:.2f}x papermill CLI"
    )
    return {"stats": stats, "ratios": ratios, "prometheus": prometheus,
            "at": dt.datetime.now(dt.UTC).isoformat(), "note": json.dumps(labels)}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
