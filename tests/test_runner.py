"""The runner and the CLI: output layout, exit codes, deadlines, bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from aura_ops.cli import EXIT_USAGE, main
from aura_ops.errors import ConfigError, RunbookError
from aura_ops.findings import Status
from aura_ops.runner import list_runbooks, run_runbook

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("level", "code"), [("OK", 0), ("WARNING", 1), ("CRITICAL", 2),
                                             ("UNKNOWN", 3)])
def test_exit_code_follows_verdict(project: Path, level: str, code: int) -> None:
    """`aura-ops run` exits 0/1/2/3 for OK/WARNING/CRITICAL/UNKNOWN."""
    out = project / "out"
    assert main(["run", "verdict", "-q", "-o", str(out), "-p", f"level={level}"]) == code


def test_output_layout(project: Path) -> None:
    """A run writes notebook.ipynb, report.html, findings.json in <date>/<time>-<name>-<id>/."""
    result = run_runbook("verdict", params={"level": "WARNING"}, output_root=project / "out")
    assert sorted(p.name for p in result.run_dir.iterdir()) == [
        "findings.json", "notebook.ipynb", "report.html"]
    assert result.run_dir.parent.parent == project / "out"
    assert result.run_dir.name.split("-", 1)[1].startswith("verdict-")
    record = json.loads((result.run_dir / "findings.json").read_text())
    assert record["runbook"] == "verdict"
    assert record["verdict"]["status"] == "WARNING"
    assert record["findings"][0]["summary"] == "thing is WARNING"
    assert record["parameters"]["level"] == "WARNING"
    assert record["parameters"]["run_id"] == result.run_dir.name
    assert set(record["window"]) == {"start", "end"}
    assert {"python", "papermill", "aura_ops"} <= set(record["versions"])
    nb = nbformat.read(result.run_dir / "notebook.ipynb", as_version=4)
    assert any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells)
    html = (result.run_dir / "report.html").read_text()
    assert html.index("WARNING") < html.index("Findings (")
    assert "thing is WARNING" in html and "test://thing" in html


def test_environment_then_command_line(project: Path) -> None:
    """Parameters merge defaults < environment < -p; keys the runbook lacks are ignored."""
    r = run_runbook("verdict", env="staging", output_root=project / "out")
    assert r.record["parameters"]["subject"] == "staging-api"
    assert "unrelated" not in r.record["parameters"]
    r = run_runbook("verdict", env="staging", params={"subject": "cli"},
                    output_root=project / "out")
    assert r.record["parameters"]["subject"] == "cli"


def test_parameters_are_typed(project: Path) -> None:
    """-p values take the type of the parameter's default."""
    r = run_runbook("verdict", params={"retries": "5", "ratio": "0.25", "verbose": "true"},
                    output_root=project / "out")
    assert (r.record["parameters"]["retries"], r.record["parameters"]["ratio"],
            r.record["parameters"]["verbose"]) == (5, 0.25, True)


def test_failing_cell_still_leaves_evidence(project: Path) -> None:
    """A cell that raises ends the run UNKNOWN, keeps earlier findings and says where it stopped."""
    r = run_runbook("crash", output_root=project / "out")
    assert r.verdict.status == Status.UNKNOWN
    summaries = [f.summary for f in r.findings]
    assert "first step fine" in summaries
    assert "never reached" not in summaries
    assert any("RuntimeError: boom in cell 3" in s for s in summaries)
    assert (r.run_dir / "report.html").is_file()


def test_deadline_stops_the_run(project: Path) -> None:
    """A run past its wall-clock limit is stopped, reported UNKNOWN, with what it had recorded."""
    r = run_runbook("sleepy", params={"seconds": 600}, output_root=project / "out",
                    timeout_s=30)
    assert r.verdict.status == Status.UNKNOWN
    assert r.record["execution"]["status"] == "timeout"
    assert r.record["duration_s"] < 60
    assert "before the sleep" in [f.summary for f in r.findings]


def test_secret_parameters_are_names_and_values_never_reach_outputs(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A secret resolved in the kernel from an *_env parameter is redacted in every output."""
    monkeypatch.setenv("CANARY_TOKEN", "canary-5f1e2d3c4b5a")
    nb_path = project / "notebooks" / "verdict.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "from aura_ops import secret\nprint('token is', secret(api_token_env))"))
    nbformat.write(nb, nb_path)
    r = run_runbook("verdict", params={"api_token_env": "CANARY_TOKEN"},
                    output_root=project / "out")
    for p in r.run_dir.iterdir():
        assert "canary-5f1e2d3c4b5a" not in p.read_text(), p.name
    assert "token is [REDACTED]" in (r.run_dir / "notebook.ipynb").read_text()


@pytest.mark.parametrize(("argv", "message"), [
    (["run", "no-such-runbook"], "unknown runbook 'no-such-runbook'"),
    (["run", "../etc/passwd"], "invalid runbook name"),
    (["run", "verdict", "-p", "level"], "malformed parameter 'level'"),
    (["run", "verdict", "-p", "nope=1"], "runbook 'verdict' has no parameter 'nope'"),
    (["run", "verdict", "-p", "retries=many"], "parameter retries: 'many' is not a valid int"),
    (["run", "verdict", "--env", "nowhere"], "unknown environment 'nowhere'"),
    (["run", "verdict", "--env", "../../x"], "invalid environment name"),
])
def test_bad_input_is_one_line_and_exits_64(project: Path, capsys: pytest.CaptureFixture[str],
                                            argv: list[str], message: str) -> None:
    """Bad input gets a one-line error naming the problem and exit 64, and runs nothing."""
    assert main([*argv, "-o", str(project / "out")]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert message in err
    assert not (project / "out").exists()


def test_usage_error_exits_64(capsys: pytest.CaptureFixture[str]) -> None:
    """An unknown command is a usage error (64), never a verdict code."""
    with pytest.raises(SystemExit) as exc:
        main(["frobnicate"])
    assert exc.value.code == EXIT_USAGE


def test_list_shows_parameters(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`aura-ops list -v` shows each runbook with its parameters, read from the notebooks."""
    assert main(["list", "-v"]) == 0
    out = capsys.readouterr().out
    assert "verdict" in out and "-p level=\"OK\"" in out and "status to report" in out
    assert {b.name for b in list_runbooks()} == {"crash", "sleepy", "verdict"}


def test_errors_are_typed(project: Path) -> None:
    """The Python API raises RunbookError / ConfigError for bad input."""
    with pytest.raises(RunbookError):
        run_runbook("missing")
    with pytest.raises(ConfigError):
        run_runbook("verdict", env="nowhere")


def test_console_script_help() -> None:
    """The installed `aura-ops --help` documents every command and the exit codes."""
    out = subprocess.run([sys.executable, "-m", "aura_ops.cli", "--help"], capture_output=True,
                         text=True, check=True).stdout
    for word in ("list", "run", "drill", "sandbox", "exit codes"):
        assert word in out
