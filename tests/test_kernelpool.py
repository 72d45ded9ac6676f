"""Warm kernels: runs on a pool behave like cold runs -- isolated, deadline-bound, crash-proof.

Each executor start costs a Python process, papermill and a kernel (~2 s of CPU): the tests
share one pool and run the fewest notebooks that show each property.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aura_ops.findings import Status
from aura_ops.kernelpool import KernelPool, default_pool, preload_modules
from aura_ops.runner import run_runbook

from .conftest import write_runbook

REPORT = (
    "import os\nfrom aura_ops import Finding, show, conclude\n"
    "seen = globals().get('left_behind', 'nothing')\nleft_behind = 'state from a run'\n"
    "show(Finding('test.env', 'kernel', 'OK', 'ok', observed={'trigger': "
    "os.environ.get('AURA_OPS_TRIGGER'), 'run_id': os.environ.get('AURA_OPS_RUN_ID'), "
    "'extra': os.environ.get('KP_TEST_VALUE'), 'cwd': os.getcwd(), 'seen': seen, "
    "'nice': os.nice(0)}, "
    "source='test://env'))\nconclude()"
)


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project with a reporting runbook, one that hangs and one that kills its kernel."""
    root = tmp_path_factory.mktemp("kp-project")
    write_runbook(root, "report", 'run_id = ""  # set by the runner', REPORT)
    write_runbook(
        root,
        "hang",
        "seconds = 600  # how long",
        "from aura_ops import Finding, show\nshow(Finding('test.before', 'x', 'OK', 'before'))",
        "import time\ntime.sleep(seconds)",
    )
    write_runbook(root, "crash", "code = 9  # exit code", "import os\nos._exit(code)")
    return root


@pytest.fixture(scope="module")
def pool(root: Path) -> Iterator[KernelPool]:
    """Two warm executors importing little (fast to start), both ready."""
    with KernelPool(2, modules=("aura_ops",)) as p:
        deadline = time.monotonic() + 180
        while p.stats()["ready"] < 2 and time.monotonic() < deadline:
            time.sleep(0.2)
        yield p


def _observed(result: object) -> dict[str, str]:
    finding = next(f for f in result.findings if f.check == "test.env")  # type: ignore[attr-defined]
    return dict(finding.observed)  # type: ignore[arg-type]


def test_warm_run_sees_the_run_environment(root: Path, pool: KernelPool, tmp_path: Path) -> None:
    """Warm runs execute on the pool, each in a fresh kernel, with the trigger, run id, extra
    variables and working directory of the run set before the first cell."""
    served = pool.stats()["served"]
    res = run_runbook(
        "report",
        root=root,
        output_root=tmp_path,
        trigger="alert",
        kernel_pool=pool,
        extra_env={"KP_TEST_VALUE": "sandbox-7"},
    )
    seen = _observed(res)
    again = run_runbook("report", root=root, output_root=tmp_path, kernel_pool=pool)
    assert served + 2 == pool.stats()["served"]
    assert ["nothing", "nothing"] == [seen["seen"], _observed(again)["seen"]]  # fresh kernels
    assert ("completed", "warm") == (
        res.record["execution"]["status"],
        res.record["execution"]["kernel"],
    )
    assert ("alert", res.record["run_id"]) == (seen["trigger"], seen["run_id"])
    assert "sandbox-7" == seen["extra"]
    assert str(root / "notebooks") == seen["cwd"]


def test_hung_cell_stops_at_the_deadline(root: Path, pool: KernelPool, tmp_path: Path) -> None:
    """A hung cell is stopped at the deadline: UNKNOWN with the reason, and what the run had
    found before the hang is in the report."""
    res = run_runbook("hang", root=root, output_root=tmp_path, kernel_pool=pool, timeout_s=20)
    assert "timeout" == res.record["execution"]["status"]
    assert Status.UNKNOWN == res.verdict.status
    assert "before" in [f.summary for f in res.findings]


def test_crashed_kernel_fails_the_run_not_the_pool(
    root: Path, pool: KernelPool, tmp_path: Path
) -> None:
    """A cell that kills its kernel fails that run (DeadKernelError); after it and after a
    hung run, the pool still serves runs that complete."""
    res = run_runbook("crash", root=root, output_root=tmp_path, kernel_pool=pool, timeout_s=60)
    assert "failed" == res.record["execution"]["status"]
    assert "DeadKernelError" in res.record["execution"]["error"]
    after = run_runbook("report", root=root, output_root=tmp_path, kernel_pool=pool)
    assert "completed" == after.record["execution"]["status"]


def test_startup_variables_send_the_run_cold(root: Path, pool: KernelPool, tmp_path: Path) -> None:
    """A run needing another PYTHONPATH than the pool's cannot use a warm kernel: it runs
    cold, and still completes."""
    before = pool.stats()
    res = run_runbook(
        "report",
        root=root,
        output_root=tmp_path,
        kernel_pool=pool,
        extra_env={"PYTHONPATH": os.pathsep.join(sys.path)},
    )
    after = pool.stats()
    assert ("completed", "cold") == (
        res.record["execution"]["status"],
        res.record["execution"]["kernel"],
    )
    assert (before["served"], before["fallbacks"] + 1) == (after["served"], after["fallbacks"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as fh:  # a zombie is gone for our purpose
        return fh.read().split(")")[-1].split()[0] != "Z"


def _wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and any(_alive(p) for p in pids):
        time.sleep(0.2)
    return [p for p in pids if _alive(p)]


@pytest.mark.slow
def test_idle_executors_die_with_their_parent(tmp_path: Path) -> None:
    """A pool whose process is SIGKILLed leaves no executor and no kernel behind."""
    script = tmp_path / "owner.py"
    script.write_text(
        "import json, time\nfrom aura_ops.kernelpool import KernelPool\n"
        "p = KernelPool(1, modules=('aura_ops',)).start()\n"
        "while not p._idle: time.sleep(0.1)\n"
        "ex = p._idle[0]\n"
        "print(json.dumps([ex.proc.pid, ex.kernel_pid]), flush=True)\ntime.sleep(600)\n"
    )
    owner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE)
    try:
        assert owner.stdout is not None
        pids = json.loads(owner.stdout.readline())
        assert [True, True] == [_alive(p) for p in pids]
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    assert [] == _wait_gone(pids, 15)


def test_close_stops_idle_executors() -> None:
    """Closing a pool kills its idle executors and their kernels."""
    p = KernelPool(1, modules=("aura_ops",)).start()
    deadline = time.monotonic() + 120
    while not p._idle and time.monotonic() < deadline:
        time.sleep(0.1)
    ex = p._idle[0]
    p.close()
    assert [] == _wait_gone([ex.proc.pid, ex.kernel_pid or 0], 10)
    assert None is p.take(wait_s=0)


def test_default_pool_is_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without AURA_OPS_WARM_KERNELS there is no shared pool: runs take the cold path."""
    monkeypatch.delenv("AURA_OPS_WARM_KERNELS", raising=False)
    assert None is default_pool()


def test_preload_follows_the_runbooks(root: Path) -> None:
    """A warm kernel imports what the runbooks import, besides pandas and matplotlib."""
    modules = preload_modules(root / "notebooks")
    assert {"aura_ops", "os", "time", "pandas", "matplotlib.pyplot"} <= set(modules)


def test_runs_execute_at_the_niceness_asked(root: Path, tmp_path: Path) -> None:
    """AURA_OPS_RUN_NICE lowers a run's priority on both paths (aura-ops serve sets it so the
    receiver keeps acknowledging alerts while runs use the CPU); the caller's stays as it was."""
    from aura_ops._execute import NICE_ENV

    base = os.nice(0)
    cold = run_runbook("report", root=root, output_root=tmp_path, extra_env={NICE_ENV: "4"})
    with KernelPool(1, modules=("aura_ops",), env={NICE_ENV: "3"}) as niced:
        deadline = time.monotonic() + 180  # a loaded machine starts executors slowly
        while niced.stats()["ready"] < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        warm = run_runbook("report", root=root, output_root=tmp_path, kernel_pool=niced)
        assert 1 == niced.stats()["served"]
    assert (min(base + 4, 19), min(base + 3, 19)) == (
        _observed(cold)["nice"],
        _observed(warm)["nice"],
    )
    assert base == os.nice(0)
