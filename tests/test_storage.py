"""A data directory against its allotment, measured on real files, offenders named."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from aura_ops import storage
from aura_ops.findings import Status

MIB = 1024**2
GIB = 1024**3


def _write(path: Path, size: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        fh.write(b"\1" * size)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """A data directory: 6 MiB of renders, 2 MiB of uploads, 12 MiB in a cache."""
    root = tmp_path / "data"
    for i in range(3):
        _write(root / "renders" / f"p{i}" / "final.mp4", 2 * MIB)
    _write(root / "uploads" / "a.mov", 2 * MIB)
    _write(root / "render-cache" / "job-1" / "frames.tmp", 8 * MIB)
    _write(root / "render-cache" / "job-2" / "frames.tmp", 4 * MIB)
    return root


def test_under_quota_is_ok(data: Path) -> None:
    """20 MiB of a 1 GiB allotment is OK, with the largest entries named all the same."""
    (finding,) = storage.check_directory_usage(data, quota_gib=1)
    assert Status.OK == finding.status
    assert "uses 20.0 MiB of its 1.0 GiB (2 %)" in finding.summary
    assert "largest: render-cache/ 12.0 MiB, renders/ 6.0 MiB" in finding.summary


def test_over_thresholds_names_the_offenders(data: Path) -> None:
    """Above 80 % of the allotment is WARNING, above 90 % CRITICAL; the biggest are named."""
    (warn,) = storage.check_directory_usage(data, quota_gib=24 / 1024)
    assert Status.WARNING == warn.status and "(83 %), over 80 %" in warn.summary
    (crit,) = storage.check_directory_usage(data, quota_gib=21 / 1024)
    assert Status.CRITICAL == crit.status
    assert "render-cache/ 12.0 MiB" in crit.summary
    assert "file render-cache/job-1/frames.tmp 8.0 MiB" in crit.summary
    table = crit.evidence[0].data
    assert ["dir", "render-cache", 12 * MIB] == table["rows"][0][:3]


def test_no_quota_reports_sizes_as_info(data: Path) -> None:
    """Without an allotment there is nothing to judge: INFO with the sizes."""
    (finding,) = storage.check_directory_usage(data, quota_gib=0)
    assert Status.INFO == finding.status and "no quota given" in finding.summary


def test_missing_directory_is_unknown(tmp_path: Path) -> None:
    """A directory that is not there is UNKNOWN with the reason, never OK."""
    (finding,) = storage.check_directory_usage(tmp_path / "gone", quota_gib=1)
    assert Status.UNKNOWN == finding.status and "No such file" in finding.summary


def test_unreadable_directory_is_unknown(data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A directory the runbook may not read (permission denied) is UNKNOWN, not "empty"."""
    real = os.scandir

    def refuse(path: str) -> object:
        if os.fspath(path) == os.fspath(data):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real(path)

    monkeypatch.setattr(os, "scandir", refuse)
    (finding,) = storage.check_directory_usage(data, quota_gib=1)
    assert Status.UNKNOWN == finding.status and "could not be read" in finding.summary


def test_partial_scan_under_the_limit_is_unknown(data: Path) -> None:
    """A walk out of time cannot call the directory healthy."""
    (finding,) = storage.check_directory_usage(data, quota_gib=1, budget_s=0)
    assert Status.UNKNOWN == finding.status and "partial scan" in finding.summary


def test_hanging_walk_is_unknown_within_its_deadline(
    data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A walk stuck in the kernel (hung NFS) is abandoned at 2 x budget + 1 s: UNKNOWN."""
    release = threading.Event()

    def stuck(*args: object, **kwargs: object) -> object:
        release.wait(30)
        raise OSError("released")

    monkeypatch.setattr(storage, "fetch_largest", stuck)
    t0 = time.monotonic()
    try:
        (finding,) = storage.check_directory_usage(data, quota_gib=1, budget_s=0.5)
    finally:
        release.set()
    assert time.monotonic() - t0 < 4
    assert Status.UNKNOWN == finding.status and "did not return within 2 s" in finding.summary
