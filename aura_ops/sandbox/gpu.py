"""The sandbox's GPU render worker, as far as a host without a GPU can have one.

At start (:func:`prepare`) the sandbox gets:

- a **fake ``nvidia-smi``** (``bin/nvidia-smi`` in its working directory): a small executable
  that answers the queries the runbooks run from real captures of an NVIDIA H100 80GB
  (``sandbox/data/nvidia-smi-h100``, see :mod:`aura_ops.sandbox.fake_nvidia_smi`). It prints
  the idle GPU until a fault loads it. The runbook's ``nvidia_smi`` parameter points at it;
  on a real GPU host the same parameter is plain ``nvidia-smi``.
- a **GPU worker log** (``state/logs/gpu-worker.log``, Python ``logging`` text format) with
  the worker's last completed jobs.

The **gpu-oom** fault (:func:`fault_gpu_oom`): a finished job's process still holds 75 GiB of
the GPU (the loaded capture: 77007 of 81559 MiB used by ``python3``), and the next job's
20 GiB allocation fails -- the real ``torch.OutOfMemoryError`` traceback captured on that
GPU is appended to the worker log, stamped now. Revert (:func:`fault_gpu_idle`) frees the GPU.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

__all__ = [
    "CAPTURES",
    "environment",
    "fault_gpu_idle",
    "fault_gpu_oom",
    "nvidia_smi_path",
    "prepare",
    "worker_log_path",
]

#: Real ``nvidia-smi`` captures of one H100 (idle, loaded) and a real CUDA OOM traceback.
CAPTURES = Path(__file__).resolve().parent / "data" / "nvidia-smi-h100"
_FAKE = Path(__file__).resolve().parent / "fake_nvidia_smi.py"


def nvidia_smi_path(sb: Any) -> Path:
    """The sandbox's fake ``nvidia-smi`` executable."""
    return Path(sb.workdir) / "bin" / "nvidia-smi"


def _state_file(sb: Any) -> Path:
    return Path(sb.workdir) / "bin" / "nvidia-smi.state"


def worker_log_path(sb: Any) -> Path:
    """The GPU worker's log (plain-text Python logging lines, tracebacks included)."""
    return Path(sb.workdir) / "state" / "logs" / "gpu-worker.log"


def _stamp(at: dt.datetime) -> str:
    """``2026-11-22 10:39:11,918``: Python logging's default ``asctime`` (UTC here)."""
    return at.strftime("%Y-%m-%d %H:%M:%S,") + f"{at.microsecond // 1000:03d}"


def prepare(sb: Any) -> None:
    """Write the fake ``nvidia-smi`` (idle GPU) and the worker log's last completed jobs."""
    exe = nvidia_smi_path(sb)
    exe.parent.mkdir(parents=True, exist_ok=True)
    exe.write_text(
        f"#!{sys.executable} -IS\n"
        "# Fake nvidia-smi of the aura-ops sandbox: answers from real H100 captures.\n"
        "import runpy, sys\n"
        f"main = runpy.run_path({str(_FAKE)!r})['main']\n"
        f"sys.exit(main(sys.argv[1:], captures={str(CAPTURES)!r}, "
        f"state_file={str(_state_file(sb))!r}))\n"
    )
    exe.chmod(0o755)
    _state_file(sb).write_text("idle\n")
    log = worker_log_path(sb)
    log.parent.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    with log.open("a", encoding="utf-8") as fh:
        for i, job in enumerate(range(37, 42)):
            at = now - dt.timedelta(seconds=60 * (5 - i))
            fh.write(f"{_stamp(at)} INFO worker job {job} done: video processed on GPU 0\n")


def fault_gpu_oom(sb: Any) -> None:
    """A leftover process holds the GPU; the next job dies with CUDA out of memory."""
    _state_file(sb).write_text("loaded\n")
    lines = (CAPTURES / "cuda-oom-traceback.txt").read_text().splitlines()
    first = lines[0].split(" ", 2)[2]  # drop the captured date and time: stamped now
    text = "\n".join([f"{_stamp(dt.datetime.now(dt.UTC))} {first}", *lines[1:]])
    with worker_log_path(sb).open("a", encoding="utf-8") as fh:
        fh.write(text + "\n")


def fault_gpu_idle(sb: Any) -> None:
    """The leftover process is gone: the GPU is idle again (the log keeps its history)."""
    _state_file(sb).write_text("idle\n")


def environment(sb: Any) -> dict[str, str]:
    """Runbook parameters for the GPU worker: ``nvidia_smi`` and ``worker_log_paths``."""
    return {"nvidia_smi": str(nvidia_smi_path(sb)), "worker_log_paths": str(worker_log_path(sb))}
