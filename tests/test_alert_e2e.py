"""The whole chain with real processes: ``aura-ops serve`` killed and restarted, and the sandbox
scraped by Prometheus with the shipped rules, alerting through Alertmanager into the receiver."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from aura_ops.testing_prometheus import (
    find_alertmanager,
    find_prometheus,
    free_port,
    start_alertmanager,
    start_prometheus,
)

from .conftest import need, write_runbook

REPO = Path(__file__).resolve().parent.parent
TOKEN = "e2e-alertmanager-token-5150"


@contextlib.contextmanager
def serve(home: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[Any]:
    """``aura-ops serve`` as a real subprocess on a free port; yields (process, url, log)."""
    port = free_port()
    log = home / f"serve-{port}.log"
    proc_env = {**os.environ, "AURA_OPS_HOME": str(home), "AURA_OPS_ALERTMANAGER_TOKEN": TOKEN}
    cmd = [sys.executable, "-m", "aura_ops.cli", "serve", "--port", str(port), *args]
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env={**proc_env, **(env or {})}, stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _healthy(url, proc), 90, lambda: log.read_text())
        yield proc, url, log
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


def _healthy(url: str, proc: subprocess.Popen[bytes]) -> bool:
    assert proc.poll() is None, "aura-ops serve exited"
    with contextlib.suppress(httpx.HTTPError):
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    return False


def wait_for(cond: Callable[[], Any], timeout_s: float, why: Callable[[], str] = lambda: "") -> Any:
    """Poll ``cond`` until truthy (returning it) or fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"not within {timeout_s:g} s\n{why()[-3000:]}")


def post_alert(url: str, subject: str, fingerprint: str) -> int:
    """One Alertmanager delivery of a SlowAlert for ``subject``."""
    alert = {
        "status": "firing",
        "labels": {"alertname": "SlowAlert", "subject": subject},
        "annotations": {},
        "startsAt": "2026-11-23T10:15:00Z",
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "fingerprint": fingerprint,
    }
    doc = {"version": "4", "status": "firing", "alerts": [alert]}
    resp = httpx.post(
        f"{url}/alertmanager",
        json=doc,
        headers={"Authorization": f"Bearer {TOKEN}"},
        timeout=10,
    )
    return resp.status_code


def runs(url: str) -> list[dict[str, Any]]:
    """The run list of a receiver."""
    return list(httpx.get(f"{url}/runs", timeout=5).json()["runs"])


@pytest.mark.slow
def test_sigkill_loses_nothing_and_doubles_nothing(tmp_path: Path) -> None:
    """SIGKILL while runs are queued and running; after a restart every accepted alert has
    exactly one completed run."""
    home = tmp_path / "home"
    write_runbook(
        home,
        "slow",
        'subject = "x"  # what\nseconds = 1  # how long\nrun_id = ""  # set by the runner',
        "import time\ntime.sleep(seconds)",
        "from aura_ops import Finding, show, conclude\n"
        "show(Finding('test.slow', subject, 'OK', subject + ' done', source='test://slow'))\n"
        "conclude()",
    )
    (home / "parameters").mkdir()
    (home / "parameters" / "routes.yaml").write_text(
        "routes:\n  - match: {alertname: SlowAlert}\n    runbook: slow\n"
        "    params: {subject: labels.subject}\n"
    )
    out, db = tmp_path / "out", tmp_path / "serve.db"
    args = ("--db", str(db), "-o", str(out), "--workers", "2", "--run-timeout", "60")
    subjects = [f"svc{i}" for i in range(3)]
    with serve(home, *args) as (proc, url, log):
        for i, subject in enumerate(subjects):
            assert post_alert(url, subject, f"{i:016x}") == 202
        assert post_alert(url, subjects[0], f"{0:016x}") == 202  # a duplicate
        wait_for(lambda: any(r["state"] == "running" for r in runs(url)), 60, log.read_text)
        states = sorted(r["state"] for r in runs(url))
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    assert "queued" in states and "running" in states
    with serve(home, *args) as (proc, url, log):
        wait_for(
            lambda: {r["state"] for r in runs(url)} == {"done"} and len(runs(url)) == 3,
            180,
            log.read_text,
        )
        final = runs(url)
        assert "queued again" in log.read_text()
        assert TOKEN not in log.read_text()
    records = [json.loads(p.read_text()) for p in out.rglob("findings.json")]
    assert sorted(r["parameters"]["subject"] for r in records) == subjects
    assert sorted(r["labels"]["subject"] for r in final) == subjects
    assert {r["verdict"] for r in final} == {"OK"}
    assert sum(r["attempts"] for r in final) >= 4  # at least one run was started twice


def test_shipped_rules_and_alertmanager_config_are_valid() -> None:
    """promtool and amtool accept the shipped rules, Prometheus and Alertmanager configs."""
    promtool, amtool = shutil.which("promtool"), shutil.which("amtool")
    need(
        bool(promtool and amtool),
        "promtool/amtool missing (apt-get install prometheus prometheus-alertmanager)",
    )
    deploy = REPO / "deploy"
    for cmd in (
        [promtool, "check", "rules", str(deploy / "prometheus" / "aura-ops-rules.yml")],
        [promtool, "check", "config", str(deploy / "prometheus" / "prometheus.yml")],
        [amtool, "check-config", str(deploy / "alertmanager" / "alertmanager.yml")],
    ):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stdout + done.stderr


def test_every_shipped_rule_names_an_existing_runbook() -> None:
    """Each alert rule's `runbook` annotation is a notebook of the catalogue, so an alert with
    no route in routes.yaml still gets its runbook (runbook_from_alert)."""
    doc = yaml.safe_load((REPO / "deploy" / "prometheus" / "aura-ops-rules.yml").read_text())
    named = {
        rule["alert"]: rule.get("annotations", {}).get("runbook", "")
        for group in doc["groups"]
        for rule in group["rules"]
    }
    missing = {a: r for a, r in named.items() if not (REPO / "notebooks" / f"{r}.ipynb").is_file()}
    assert {} == missing


def _test_rules(path: Path) -> Path:
    """The shipped rules with windows and `for:` shortened to seconds, for a test."""
    doc = yaml.safe_load((REPO / "deploy" / "prometheus" / "aura-ops-rules.yml").read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            rule["expr"] = rule["expr"].replace("[5m]", "[10s]")
            rule["for"] = "3s"
    path.write_text(yaml.safe_dump(doc))
    return path


def _test_alertmanager(receiver_url: str, token_file: Path) -> dict[str, Any]:
    """The shipped Alertmanager config pointed at the test receiver, with short timers."""
    doc = yaml.safe_load((REPO / "deploy" / "alertmanager" / "alertmanager.yml").read_text())
    doc["route"].update(group_wait="1s", group_interval="2s", repeat_interval="1h")
    hook = doc["receivers"][0]["webhook_configs"][0]
    hook["url"] = f"{receiver_url}/alertmanager"
    hook["http_config"]["authorization"]["credentials_file"] = str(token_file)
    return dict(doc)


@pytest.mark.slow
def test_alert_to_report_end_to_end(tmp_path: Path) -> None:
    """bad-deploy in the sandbox → Prometheus rule → Alertmanager → aura-ops serve → the
    high-error-rate runbook names /api/render; the alert resolving annotates, starts nothing."""
    from aura_ops.sandbox import Sandbox

    need(bool(find_prometheus() and find_alertmanager()), "prometheus/alertmanager missing")
    home = tmp_path / "home"
    (home / "notebooks").mkdir(parents=True)
    shutil.copy(REPO / "notebooks" / "high-error-rate.ipynb", home / "notebooks")
    shutil.copytree(REPO / "parameters", home / "parameters")
    token_file = tmp_path / "am-token"
    token_file.write_text(TOKEN)
    rules = _test_rules(tmp_path / "rules.yml")
    with Sandbox() as sandbox:
        sandbox.start_traffic(rps=25, seed=3)
        with start_prometheus([f"{sandbox.base_url}/metrics"], rule_files=[rules]) as prom:
            env = {**sandbox.environment(), "prometheus_url": prom.url}
            env.pop("started_at", None)
            (home / "parameters" / "environments" / "example.yaml").write_text(
                yaml.safe_dump({"description": "the test sandbox", "parameters": env})
            )
            out = tmp_path / "out"
            args = ("--db", str(tmp_path / "db"), "-o", str(out), "--workers", "1")
            with serve(home, *args) as (_, url, log):
                am_config = _test_alertmanager(url, token_file)
                with start_alertmanager(am_config) as am:
                    prom_config = yaml.safe_load(prom.config_path.read_text())
                    host = am.url.removeprefix("http://")
                    prom_config["alerting"] = {
                        "alertmanagers": [{"static_configs": [{"targets": [host]}]}]
                    }
                    prom.config_path.write_text(yaml.safe_dump(prom_config))
                    prom.reload()
                    time.sleep(3)  # a healthy baseline
                    assert runs(url) == []
                    sandbox.inject("bad-deploy")
                    done = wait_for(
                        lambda: [r for r in runs(url) if r["state"] in ("done", "failed")],
                        150,
                        lambda: log.read_text() + am.log_tail(),
                    )
                    (run,) = done
                    assert (run["alertname"], run["source"], run["runbook"]) == (
                        "AuraHighErrorRatio",
                        "alertmanager",
                        "high-error-rate",
                    )
                    assert (run["state"], run["verdict"]) == ("done", "CRITICAL"), run
                    assert "/api/render" in run["headline"]
                    report = httpx.get(f"{url}/runs/{run['id']}/report", timeout=5)
                    assert report.status_code == 200 and "/api/render" in report.text
                    (record,) = [json.loads(p.read_text()) for p in out.rglob("findings.json")]
                    assert "warm" == record["execution"]["kernel"]  # serve's default pool
                    sandbox.clear()
                    resolved = wait_for(
                        lambda: httpx.get(f"{url}/runs/{run['id']}", timeout=5).json()[
                            "resolved_at"
                        ],
                        90,
                        lambda: log.read_text() + am.log_tail(),
                    )
                    assert resolved
                    time.sleep(2)
                    assert [r["id"] for r in runs(url)] == [run["id"]]
