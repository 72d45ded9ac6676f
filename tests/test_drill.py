"""The drill end to end: the real notebook, executed by papermill, against the real sandbox."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aura_ops.cli import main
from aura_ops.drill import run_drill
from aura_ops.findings import Status

pytestmark = pytest.mark.slow


def test_bad_deploy_is_named(tmp_path: Path) -> None:
    """With the bad deploy, the verdict is CRITICAL and names the endpoint, exception and deploy."""
    result = run_drill("high-error-rate", output_root=tmp_path)
    assert result.passed, (result.run.verdict.headline, result.missing)
    assert result.status == Status.CRITICAL
    assert set(result.named) == {"/api/render", "KeyError", "v2.4.1"}
    record = json.loads((result.run.run_dir / "findings.json").read_text())
    assert record["trigger"] == "drill"
    assert record["execution"]["status"] == "completed"
    html = (result.run.run_dir / "report.html").read_text()
    assert "KeyError" in html and "v2.4.1" in html
    assert 'src="data:image/png;base64,' in html  # the error-rate plot, inline


def test_no_fault_is_ok(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without a fault, `aura-ops drill --no-fault` reports OK and passes."""
    assert main(["drill", "high-error-rate", "--no-fault", "-q", "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("OK")
    assert "drill PASSED" in out


def test_drill_all_prints_one_table(monkeypatch: pytest.MonkeyPatch,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    """`drill --all` runs every fault and every runbook clean, and prints one row per fault."""
    import aura_ops.drill as drill_mod
    from aura_ops.drill import DrillResult
    from aura_ops.sandbox import FAULTS

    calls: list[tuple[str, str | None]] = []

    class FakeRun:
        def __init__(self, status: Status) -> None:
            self.verdict = type("V", (), {"status": status})()

    def fake(runbook: str, *, fault: str | None = "", **_: object) -> DrillResult:
        calls.append((runbook, fault))
        chosen = FAULTS[fault] if fault else None
        status = Status.CRITICAL if chosen else Status.OK
        return DrillResult(runbook, chosen, FakeRun(status), chosen.expect if chosen else (),
                           (), 1.0)  # type: ignore[arg-type]

    monkeypatch.setattr(drill_mod, "run_drill", fake)
    assert main(["drill", "--all"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split()[:3] == ["runbook", "fault", "with"]
    assert len(out) == 1 + len(FAULTS) + 1
    assert {f for _, f in calls if f} == set(FAULTS)
    assert out[-1] == f"{len(FAULTS)} drills, 0 failed"
