"""Host diagnostics on the real machine, real nvidia-smi captures and fake nvidia-smi binaries."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from aura_ops.findings import Status
from aura_ops.system import (
    check_cuda_oom,
    check_disk_usage,
    check_gpu_memory,
    check_largest,
    check_memory,
    check_processes,
    fetch_disk_usage,
    fetch_largest,
    fetch_memory,
    fetch_processes,
    parse_apps_csv,
    parse_cuda_oom,
    parse_gpu_csv,
    parse_meminfo,
    parse_nvidia_smi,
)

GPU = Path(__file__).parent / "fixtures" / "nvidia-smi-h100"
H100 = "NVIDIA H100 80GB HBM3"
UUID = "GPU-dd33d5c2-ba8c-86c4-f8d0-05fabbc03aa6"


def read(name: str) -> str:
    return (GPU / name).read_text()


def bare(csv_text: str) -> str:
    """The same capture as ``--format=csv,noheader,nounits`` prints it."""
    rows = csv_text.splitlines()[1:]
    return "".join(re.sub(r" (MiB|%)(?=,|$)", "", row) + "\n" for row in rows)


# -- GPU: parsing the real captures ------------------------------------------------------------
def test_parse_gpu_csv_with_header_and_units() -> None:
    """The loaded H100 capture: 77007 of 81559 MiB used, 4073 free, 100 %, 61 C."""
    (gpu,) = parse_gpu_csv(read("query-gpu-loaded.csv")).to_dict("records")
    assert gpu == {
        "index": 0,
        "name": H100,
        "uuid": UUID,
        "memory_total_mib": 81559,
        "memory_used_mib": 77007,
        "memory_free_mib": 4073,
        "utilization_gpu_pct": 100,
        "temperature_gpu_c": 61,
    }


def test_parse_csv_without_header_and_units() -> None:
    """noheader,nounits output parses the same given the queried fields."""
    fields = (
        "index",
        "name",
        "uuid",
        "memory.total",
        "memory.used",
        "memory.free",
        "utilization.gpu",
        "temperature.gpu",
    )
    with_units = parse_gpu_csv(read("query-gpu-loaded.csv"))
    assert parse_gpu_csv(bare(read("query-gpu-loaded.csv")), fields).equals(with_units)
    apps = parse_apps_csv(
        bare(read("query-apps-loaded.csv")), ("pid", "process_name", "used_memory")
    )
    assert apps.to_dict("records") == [
        {"pid": 506, "process_name": "python3", "used_memory_mib": 76998}
    ]
    assert parse_apps_csv(read("query-apps-idle.csv")).empty


def test_parse_nvidia_smi_table() -> None:
    """The plain table gives the same memory figures and the process holding them."""
    gpus, procs = parse_nvidia_smi(read("nvidia-smi-loaded.txt"))
    assert gpus[["index", "name", "memory_used_mib", "memory_total_mib"]].values.tolist() == [
        [0, H100, 77007, 81559]
    ]
    assert procs.to_dict("records") == [
        {"gpu": 0, "pid": 506, "type": "C", "process_name": "python3", "used_memory_mib": 76998}
    ]
    idle_gpus, idle_procs = parse_nvidia_smi(read("nvidia-smi-idle.txt"))
    assert (idle_gpus["memory_used_mib"].tolist(), idle_procs.empty) == ([0], True)


# -- GPU: judging --------------------------------------------------------------------------------
def test_idle_gpu_is_ok() -> None:
    """The idle capture is OK and says there are no compute processes."""
    (f,) = check_gpu_memory(GPU / "query-gpu-idle.csv", GPU / "query-apps-idle.csv")
    assert f.status == Status.OK
    assert f.summary == (
        f"GPU 0 ({H100}): 0 of 81559 MiB used (0.0 %), 81079 MiB free; no compute processes"
    )


def test_loaded_gpu_warns_naming_gpu_and_process() -> None:
    """94.4 % used is WARNING at 85/95 and CRITICAL at a 90 % limit; the holder is named."""
    (f,) = check_gpu_memory(GPU / "query-gpu-loaded.csv", GPU / "query-apps-loaded.csv")
    assert (f.status, f.observed, f.subject) == (Status.WARNING, 94.4, f"GPU 0 ({H100})")
    assert f.summary == (
        f"GPU 0 ({H100}): 77007 of 81559 MiB used (94.4 %), 4073 MiB free; "
        "top: pid 506 python3 76998 MiB"
    )
    assert f.reproduce == (
        f"check_gpu_memory({str(GPU / 'query-gpu-loaded.csv')!r}, "
        f"{str(GPU / 'query-apps-loaded.csv')!r}, used_warn_pct=85, used_crit_pct=95)"
    )
    (strict,) = check_gpu_memory(
        GPU / "query-gpu-loaded.csv", GPU / "query-apps-loaded.csv", used_crit_pct=90
    )
    assert strict.status == Status.CRITICAL


def test_plain_table_and_after_capture() -> None:
    """The plain table is judged the same; after the process ended the GPU is OK again."""
    (table,) = check_gpu_memory(read("nvidia-smi-loaded.txt"))
    assert (table.status, table.observed) == (Status.WARNING, 94.4)
    assert "top: pid 506 python3 76998 MiB" in table.summary
    (after,) = check_gpu_memory(GPU / "query-gpu-after.csv")
    assert (after.status, after.observed) == (Status.OK, 0.0)


def test_garbled_gpu_output_is_unknown() -> None:
    """Output that is not nvidia-smi's (an error page, a truncated file) is UNKNOWN."""
    (empty,) = check_gpu_memory("")
    (garbled,) = check_gpu_memory(
        "index, name, memory.total [MiB], memory.used [MiB]\n0, x, lots, some\n"
    )
    assert (empty.status, empty.summary) == (
        Status.UNKNOWN,
        "Could not check GPUs: nvidia-smi listed no GPUs",
    )
    assert garbled.status == Status.UNKNOWN


# -- GPU: running nvidia-smi ---------------------------------------------------------------------
@pytest.fixture
def fake_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty directory that is the whole PATH: put fake binaries there."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    return bin_dir


def install(bin_dir: Path, script: str) -> None:
    path = bin_dir / "nvidia-smi"
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def test_runs_nvidia_smi_queries(fake_bin: Path) -> None:
    """A fake nvidia-smi answering the two queries with the loaded capture is judged live."""
    (fake_bin / "gpu.csv").write_text(bare(read("query-gpu-loaded.csv")))
    apps = bare(read("query-apps-loaded.csv")).replace("506,", f"{UUID}, 506,")
    (fake_bin / "apps.csv").write_text(apps)
    install(
        fake_bin,
        f"""case "$1" in
  --query-gpu=index,name,uuid,memory.total,memory.used,memory.free,utilization.gpu,temperature.gpu)
    exec /bin/cat {fake_bin}/gpu.csv ;;
  --query-compute-apps=gpu_uuid,pid,process_name,used_memory) exec /bin/cat {fake_bin}/apps.csv ;;
esac
exit 2
""",
    )
    (f,) = check_gpu_memory()
    assert (f.status, f.observed) == (Status.WARNING, 94.4)
    assert "top: pid 506 python3 76998 MiB" in f.summary
    assert f.source.startswith("nvidia-smi --query-gpu=index,name,uuid,memory.total")


def test_hanging_nvidia_smi_is_unknown_within_timeout(fake_bin: Path) -> None:
    """nvidia-smi that never returns: UNKNOWN after timeout_s, its child killed too."""
    pid_file = fake_bin / "sleep.pid"
    install(fake_bin, f"/bin/sleep 600 &\necho $! > {pid_file}\nwait\n")
    start = time.monotonic()
    (f,) = check_gpu_memory(timeout_s=1)
    elapsed = time.monotonic() - start
    assert (f.status, f.summary) == (
        Status.UNKNOWN,
        "Could not check GPUs: nvidia-smi did not answer within 1 s",
    )
    assert elapsed < 3
    time.sleep(0.2)
    stat = Path(f"/proc/{pid_file.read_text().strip()}/stat")
    assert not stat.exists() or stat.read_text().split(") ")[1][0] == "Z"  # killed (maybe unreaped)


def test_failing_nvidia_smi_is_unknown(fake_bin: Path) -> None:
    """nvidia-smi exiting non-zero: UNKNOWN with its message."""
    message = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    install(fake_bin, f'echo "{message}"\nexit 9\n')
    (f,) = check_gpu_memory()
    assert f.status == Status.UNKNOWN
    assert f.summary == f"Could not check GPUs: nvidia-smi exited with status 9: {message}"


def test_missing_nvidia_smi_is_unknown(fake_bin: Path) -> None:
    """No nvidia-smi on PATH: UNKNOWN 'nvidia-smi not found'."""
    (f,) = check_gpu_memory()
    assert (f.status, f.summary) == (Status.UNKNOWN, "Could not check GPUs: nvidia-smi not found")


# -- CUDA OOM ------------------------------------------------------------------------------------
def test_parse_cuda_oom_traceback() -> None:
    """The real torch.OutOfMemoryError message as figures."""
    (oom,) = parse_cuda_oom(read("cuda-oom-traceback.txt"))
    figures = {k: oom[k] for k in ("gpu", "tried_gib", "total_gib", "free_gib", "processes")}
    assert figures == {
        "gpu": 0,
        "tried_gib": 20.0,
        "total_gib": 79.18,
        "free_gib": 3.47,
        "processes": [{"pid": 408, "gib": 75.19}],
    }
    assert (oom["this_process_gib"], oom["allocated_gib"]) == (round(518 / 1024, 6), 0.0)


def test_parse_cuda_oom_older_wording() -> None:
    """PyTorch < 2.1 wording ('(GPU 0; X total capacity; …)') gives the same keys."""
    line = (
        "RuntimeError: CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 15.78 GiB total "
        "capacity; 14.50 GiB already allocated; 3.19 MiB free; 14.72 GiB reserved in total by "
        "PyTorch)"
    )
    (oom,) = parse_cuda_oom(line)
    assert (oom["tried_gib"], oom["total_gib"], oom["allocated_gib"], oom["reserved_gib"]) == (
        round(20 / 1024, 6),
        15.78,
        14.5,
        14.72,
    )


def test_check_cuda_oom_names_the_holder() -> None:
    """The OOM is CRITICAL; the hint says another process holds the memory."""
    (f,) = check_cuda_oom(read("cuda-oom-traceback.txt"), subject="worker log")
    assert f.status == Status.CRITICAL
    assert f.summary == (
        "CUDA OOM on GPU 0: tried to allocate 20 GiB with 3.47 GiB free of 79.18 GiB; "
        "process 408 holds 75.19 GiB"
    )
    assert f.hint.startswith("Another process holds the GPU memory (pid 408 (75.19 GiB))")
    (clean,) = check_cuda_oom("2026-11-22 10:39:11 INFO job 41 done\n")
    assert (clean.status, clean.summary) == (
        Status.OK,
        "No CUDA out-of-memory error in 1 line of worker log",
    )


# -- disks ---------------------------------------------------------------------------------------
def df_use_pct(path: Path) -> int:
    out = subprocess.run(["df", "-P", "-k", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.splitlines()[1].split()[4].rstrip("%"))


def test_disk_usage_of_the_tmp_mount_matches_df(tmp_path: Path) -> None:
    """Our used % of the tmp filesystem is df's Use% (df rounds up)."""
    (row,) = fetch_disk_usage([str(tmp_path)]).to_dict("records")
    assert df_use_pct(tmp_path) - 1 <= row["used_pct"] <= df_use_pct(tmp_path)
    assert row["size_gib"] >= row["used_gib"] + row["avail_gib"] - 0.01
    assert row["error"] is None


def test_check_disk_usage_thresholds(tmp_path: Path) -> None:
    """The same mount is OK, WARNING or CRITICAL depending only on the thresholds."""
    (row,) = fetch_disk_usage([str(tmp_path)]).to_dict("records")
    pct = max(row["used_pct"], row["inodes_used_pct"] or 0)
    statuses = [
        check_disk_usage([str(tmp_path)], used_warn_pct=pct + 1, used_crit_pct=pct + 2)[0].status,
        check_disk_usage([str(tmp_path)], used_warn_pct=pct, used_crit_pct=pct + 1)[0].status,
        check_disk_usage([str(tmp_path)], used_warn_pct=pct, used_crit_pct=pct)[0].status,
    ]
    assert statuses == [Status.OK, Status.WARNING, Status.CRITICAL]
    (crit,) = check_disk_usage([str(tmp_path)], used_warn_pct=pct, used_crit_pct=pct)
    assert crit.reproduce == (
        f"check_disk_usage([{str(tmp_path)!r}], used_warn_pct={pct!r}, used_crit_pct={pct!r})"
    )
    assert crit.summary.startswith(f"1 filesystem over {pct:g} %: {tmp_path} {row['used_pct']:g} %")


def test_mounts_file_skips_pseudo_filesystems(tmp_path: Path) -> None:
    """proc/sysfs/squashfs are skipped; octal escapes in mount points are decoded."""
    spaced = tmp_path / "my disk"
    spaced.mkdir()
    escaped = str(spaced).replace(" ", "\\040")
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "proc /proc proc rw,relatime 0 0\n"
        "sysfs /sys sysfs rw 0 0\n"
        "/dev/loop3 /snap/core/1 squashfs ro 0 0\n"
        f"/dev/test {escaped} ext4 rw 0 0\n"
    )
    frame = fetch_disk_usage(mounts_path=str(mounts))
    assert frame[["filesystem", "mount", "type"]].values.tolist() == [
        ["/dev/test", str(spaced), "ext4"]
    ]


def test_hanging_statvfs_is_unknown_for_that_mount(monkeypatch: pytest.MonkeyPatch) -> None:
    """A mount whose statvfs never returns (stale NFS) is UNKNOWN; the others are judged."""
    release = threading.Event()
    real = os.statvfs

    def statvfs(path: str) -> os.statvfs_result:
        if path == "/mnt/stale-nfs":
            release.wait(30)
        return real(path)

    monkeypatch.setattr(os, "statvfs", statvfs)
    start = time.monotonic()
    try:
        findings = check_disk_usage(["/", "/mnt/stale-nfs"], timeout_s=0.5)
    finally:
        release.set()
    assert time.monotonic() - start < 2
    assert [(f.status, f.subject) for f in findings][0] == (Status.UNKNOWN, "disk /mnt/stale-nfs")
    assert "statvfs did not return within 0.5 s" in findings[0].summary
    assert findings[1].subject == "disks" and findings[1].status != Status.UNKNOWN


def test_real_disk_check_reports_every_filesystem() -> None:
    """On this machine the check names the fullest filesystem and lists all of them."""
    findings = check_disk_usage()
    main = findings[-1]
    assert main.check == "system.disk_usage" and main.status != Status.UNKNOWN
    assert main.evidence[0].data["total_rows"] >= 1


# -- largest directories and files -------------------------------------------------------------
@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """a/big.bin 3 MiB, a/b/medium.bin 2 MiB, c/small.bin 100 KiB, and a symlink to /."""
    root = tmp_path / "tree"
    for rel, size in (
        ("a/big.bin", 3 << 20),
        ("a/b/medium.bin", 2 << 20),
        ("c/small.bin", 100 << 10),
    ):
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(os.urandom(size))
    (root / "to-root").symlink_to("/")
    return root


def du(path: Path) -> int:
    return os.stat(path).st_blocks * 512


def test_fetch_largest_ranks_files_and_directories(tree: Path) -> None:
    """Files and directories come back largest first, sized like du; symlinks not followed."""
    scan = fetch_largest(tree)
    assert scan.files["path"].tolist() == [
        str(tree / "a/big.bin"),
        str(tree / "a/b/medium.bin"),
        str(tree / "c/small.bin"),
    ]
    assert scan.files["size_bytes"].tolist() == [
        du(tree / "a/big.bin"),
        du(tree / "a/b/medium.bin"),
        du(tree / "c/small.bin"),
    ]
    assert scan.dirs[["path", "size_bytes"]].values.tolist() == [
        [str(tree / "a"), du(tree / "a/big.bin") + du(tree / "a/b/medium.bin")],
        [str(tree / "a/b"), du(tree / "a/b/medium.bin")],
        [str(tree / "c"), du(tree / "c/small.bin")],
    ]
    assert (scan.partial, scan.entries, scan.errors) == (False, 7, 0)


def test_fetch_largest_stops_at_its_budget(tree: Path) -> None:
    """An entry or time budget ends the walk early and marks the result partial."""
    by_entries = fetch_largest(tree, max_entries=3)
    assert (by_entries.partial, by_entries.reason) == (True, "stopped after 3 entries")
    by_time = fetch_largest(tree, budget_s=0)
    assert (by_time.partial, by_time.reason) == (True, "time budget of 0 s ran out")


def test_check_largest_summary_and_missing_path(tree: Path) -> None:
    """INFO naming the biggest directory and file; a missing path is UNKNOWN."""
    (f,) = check_largest(tree)
    assert f.status == Status.INFO
    assert f"largest: dir {tree / 'a'} 5.0 MiB; file {tree / 'a/big.bin'} 3.0 MiB" in f.summary
    (partial,) = check_largest(tree, budget_s=0)
    assert partial.summary.startswith("Partial scan (time budget of 0 s ran out)")
    (missing,) = check_largest(tree / "nope")
    assert missing.status == Status.UNKNOWN


# -- memory --------------------------------------------------------------------------------------
def meminfo(path: Path, total_kb: int, available_kb: int) -> Path:
    path.write_text(
        f"MemTotal:       {total_kb} kB\nMemFree:        {available_kb // 2} kB\n"
        f"MemAvailable:   {available_kb} kB\nBuffers:        1024 kB\nCached:         2048 kB\n"
        "SwapTotal:      0 kB\nSwapFree:       0 kB\n"
    )
    return path


def test_check_memory_thresholds(tmp_path: Path) -> None:
    """16 GiB with 1 GiB available is 93.8 % used: WARNING; with 0.5 GiB: CRITICAL."""
    no_cgroup = str(tmp_path / "no-cgroup")
    warn = meminfo(tmp_path / "warn", 16 << 20, 1 << 20)
    (f,) = check_memory(meminfo_path=str(warn), cgroup_root=no_cgroup)
    assert (f.status, f.observed) == (Status.WARNING, 93.8)
    assert f.summary == "Host memory 93.8 % used (15.0 of 16.0 GiB, 1.0 GiB available)"
    crit = meminfo(tmp_path / "crit", 16 << 20, 512 << 10)
    (f,) = check_memory(meminfo_path=str(crit), cgroup_root=no_cgroup)
    assert f.status == Status.CRITICAL


def test_check_memory_judges_the_cgroup_limit(tmp_path: Path) -> None:
    """A container at 1.9 of its 2 GiB limit is CRITICAL although the host is idle."""
    host = meminfo(tmp_path / "meminfo", 64 << 20, 60 << 20)
    cgroup = tmp_path / "cgroup"
    cgroup.mkdir()
    (cgroup / "memory.max").write_text(f"{2 << 30}\n")
    (cgroup / "memory.current").write_text(f"{(1946 << 20) + (100 << 20)}\n")
    (cgroup / "memory.stat").write_text(f"anon 1000\ninactive_file {100 << 20}\n")
    (f,) = check_memory(meminfo_path=str(host), cgroup_root=str(cgroup))
    assert (f.status, f.observed) == (Status.CRITICAL, 95.0)
    assert f.summary.startswith("Container 95 % of its 2048 MiB limit (1946 MiB working set)")


def test_real_memory() -> None:
    """On this machine /proc/meminfo parses and the figures add up."""
    info = parse_meminfo(Path("/proc/meminfo").read_text())
    mem = fetch_memory()
    assert info["MemTotal"] > 0 and mem["total_mib"] == round(info["MemTotal"] / 2**20, 1)
    assert 0 <= mem["used_pct"] <= 100


# -- processes -----------------------------------------------------------------------------------
@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A real process whose command line carries secrets."""
    argv = [
        sys.executable,
        "-c",
        "import time; time.sleep(30)",
        "--password=hunter2",
        "postgres://aura:pw123@db/aura",
    ]
    proc = subprocess.Popen(argv)
    time.sleep(0.2)
    yield proc
    proc.kill()
    proc.wait()


def test_fetch_processes_finds_and_masks(sleeper: subprocess.Popen[bytes]) -> None:
    """A pattern finds the process; passwords in its command line are masked."""
    frame = fetch_processes(r"time\.sleep\(30\)")
    row = frame.set_index("pid").loc[sleeper.pid]
    assert row["cmdline"].endswith("--password=[REDACTED] postgres://aura:[REDACTED]@db/aura")
    assert "hunter2" not in row["cmdline"] and "pw123" not in row["cmdline"]
    assert row["rss_mib"] > 1 and row["state"] in {"S", "R"}


def test_check_processes_expects_a_running_service(sleeper: subprocess.Popen[bytes]) -> None:
    """min_count=1: OK when the process runs, CRITICAL when nothing matches."""
    (running,) = check_processes(r"time\.sleep\(30\)", min_count=1)
    assert (running.status, running.observed) == (Status.OK, 1)
    (missing,) = check_processes("no-such-service-xyz", min_count=1)
    assert (missing.status, missing.summary) == (
        Status.CRITICAL,
        "0 processes matching 'no-such-service-xyz' (expected ≥ 1)",
    )


def test_zombies_are_counted() -> None:
    """An exited child nobody waited for shows as a zombie."""
    child = subprocess.Popen(["/bin/true"])
    time.sleep(0.3)
    try:
        (f,) = check_processes(r"^true$")
        states = fetch_processes(r"^true$").set_index("pid")["state"].to_dict()
    finally:
        child.wait()
    assert states[child.pid] == "Z"
    assert "zombie" in f.summary
