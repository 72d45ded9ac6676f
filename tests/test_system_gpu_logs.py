"""CUDA OOM errors in worker log files (real captured traceback), and the sandbox's fake
nvidia-smi answering from the real H100 captures."""

from __future__ import annotations

import datetime as dt
import gzip
import os
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from aura_ops.findings import Status
from aura_ops.sandbox import gpu
from aura_ops.system import check_cuda_oom_logs, check_gpu_memory, parse_gpu_csv
from aura_ops.system_gpu_logs import fetch_log_records

FIXTURES = Path(__file__).parent / "fixtures" / "nvidia-smi-h100"
TRACEBACK = (FIXTURES / "cuda-oom-traceback.txt").read_text()  # stamped 2026-11-22 10:39:11,918
BEFORE = "2026-11-22 10:38:00,001 INFO worker job 41 done: video processed on GPU 0\n"


@pytest.fixture
def worker_log(tmp_path: Path) -> Path:
    path = tmp_path / "worker.log"
    path.write_text(BEFORE + TRACEBACK)
    return path


def test_oom_traceback_is_critical_with_its_figures(worker_log: Path) -> None:
    """The real torch.OutOfMemoryError: CRITICAL, 20 GiB asked, 3.47 GiB free, pid 408 holds 75."""
    (f,) = check_cuda_oom_logs(str(worker_log))
    assert Status.CRITICAL == f.status
    expected = (
        "CUDA OOM on GPU 0: tried to allocate 20 GiB with 3.47 GiB free of 79.18 GiB; "
        "process 408 holds 75.19 GiB"
    )
    assert expected == f.summary
    assert "worker job 42 failed while processing video" in f.evidence[-1].data
    assert f.reproduce.startswith("check_cuda_oom_logs(")


def test_window_keeps_the_traceback_with_its_line(worker_log: Path) -> None:
    """The traceback has no timestamps: it is kept or dropped with the line it follows."""
    records = fetch_log_records(str(worker_log), since="2026-11-22T10:39:00Z")
    assert 1 == len(records)
    assert 4 == records[0][1].count("\n") + 1
    (after,) = check_cuda_oom_logs(str(worker_log), since="2026-11-22T10:40:00Z")
    assert Status.OK == after.status
    (before,) = check_cuda_oom_logs(str(worker_log), until="2026-11-22T10:39:00Z")
    assert "No CUDA out-of-memory error in 1 lines" in before.summary


def test_json_lines_and_rotated_gzip(tmp_path: Path) -> None:
    """An OOM inside a JSON log line of a gzipped rotation is found with include_rotated."""
    oom = TRACEBACK.splitlines()[-1].replace('"', "'")
    (tmp_path / "worker.jsonl").write_text('{"ts":"2026-11-22T10:40:00Z","level":"INFO"}\n')
    line = f'{{"ts":"2026-11-22T10:39:11Z","level":"ERROR","message":"{oom}"}}\n'
    with gzip.open(tmp_path / "worker.jsonl.1.gz", "wt") as fh:
        fh.write(line)
    (f,) = check_cuda_oom_logs(str(tmp_path / "worker.jsonl"), include_rotated=True)
    assert Status.CRITICAL == f.status
    (plain,) = check_cuda_oom_logs(str(tmp_path / "worker.jsonl"))
    assert Status.OK == plain.status


@pytest.mark.parametrize("kind", ["missing", "directory", "fifo"])
def test_unreadable_log_is_unknown(tmp_path: Path, kind: str) -> None:
    """A missing file, a directory or a FIFO (which would block on open) is UNKNOWN, at once."""
    path = tmp_path / "worker.log"
    if kind == "directory":
        path.mkdir()
    elif kind == "fifo":
        os.mkfifo(path)
    t0 = time.monotonic()
    (f,) = check_cuda_oom_logs(str(path))
    assert Status.UNKNOWN == f.status
    assert str(path) in f.summary
    assert time.monotonic() - t0 < 2.0


# -- the sandbox's fake nvidia-smi -------------------------------------------------------------
@pytest.fixture
def fake(tmp_path: Path) -> SimpleNamespace:
    sb = SimpleNamespace(workdir=tmp_path)
    gpu.prepare(sb)
    return sb


def test_fake_nvidia_smi_answers_like_the_captures(fake: SimpleNamespace) -> None:
    """Idle: OK with no processes; loaded: the captured 77007 of 81559 MiB held by python3."""
    exe = str(gpu.nvidia_smi_path(fake))
    (idle,) = check_gpu_memory(nvidia_smi=exe)
    assert Status.OK == idle.status
    assert "0 of 81559 MiB used" in idle.summary
    gpu.fault_gpu_oom(fake)
    (loaded,) = check_gpu_memory(nvidia_smi=exe)
    captured = parse_gpu_csv((FIXTURES / "query-gpu-loaded.csv").read_text()).iloc[0]
    assert Status.WARNING == loaded.status
    assert int(captured["memory_used_mib"]) == loaded.evidence[0].data["rows"][0][4]
    expected = (
        "GPU 0 (NVIDIA H100 80GB HBM3): 77007 of 81559 MiB used (94.4 %), 4073 MiB free; "
        "top: pid 506 python3 76998 MiB"
    )
    assert expected == loaded.summary
    table = subprocess.run([exe], capture_output=True, text=True, timeout=10, check=True).stdout
    assert (FIXTURES / "nvidia-smi-loaded.txt").read_text() == table
    gpu.fault_gpu_idle(fake)
    assert Status.OK == check_gpu_memory(nvidia_smi=exe)[0].status


def test_fault_writes_the_real_traceback_stamped_now(fake: SimpleNamespace) -> None:
    """The fault appends the captured traceback, its first line stamped now."""
    log = str(gpu.worker_log_path(fake))
    start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    assert Status.OK == check_cuda_oom_logs(log, since=start)[0].status
    gpu.fault_gpu_oom(fake)
    (f,) = check_cuda_oom_logs(log, since=start)
    assert Status.CRITICAL == f.status
    assert TRACEBACK.splitlines()[-1] in Path(log).read_text()


def test_fake_nvidia_smi_refuses_what_was_not_captured(fake: SimpleNamespace) -> None:
    """An option with no capture behind it exits non-zero: the check would say UNKNOWN."""
    proc = subprocess.run(
        [str(gpu.nvidia_smi_path(fake)), "--query-remapped-rows=gpu_uuid"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert 2 == proc.returncode
    assert "no capture" in proc.stderr


def test_log_without_any_timestamp_in_a_window_is_unknown(tmp_path: Path) -> None:
    """A corrupt worker log read through a window would be silently empty: UNKNOWN instead."""
    log = tmp_path / "worker.log"
    log.write_bytes(b"\x00\x1f\x8b\x08garbage\xff\xfe\n<html><body>nginx</body></html>\n")
    (finding,) = check_cuda_oom_logs(str(log), since="2026-11-22T10:00:00Z")
    assert Status.UNKNOWN == finding.status
    assert "starts with a timestamp" in finding.summary
