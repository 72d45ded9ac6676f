"""A stand-in ``nvidia-smi`` for hosts without a GPU, answering from real H100 captures.

The sandbox writes a tiny executable (``bin/nvidia-smi`` in its working directory) that runs
:func:`main` from this file with the standard library only (``python -I -S``: it starts in a
few milliseconds and imports nothing of aura-ops). It answers the commands the runbooks run:

- ``nvidia-smi`` -- the plain table (``nvidia-smi-<state>.txt``);
- ``--query-gpu=F1,F2,... --format=csv[,noheader][,nounits]`` -- the requested fields, in the
  requested order, from ``query-gpu-<state>.csv``; a field the capture lacks is ``[N/A]``, as
  the real tool prints for an unsupported field;
- ``--query-compute-apps=...`` -- from ``query-apps-<state>.csv`` (``gpu_uuid`` from the GPU
  capture, ``used_memory`` from its ``used_gpu_memory`` column);
- ``-L`` -- the GPU list; ``-q -x`` -- the XML report (captured loaded only).

``<state>`` is ``idle`` or ``loaded``, read from the state file on every call, so a fault
flips it without rewriting the executable. The captures ship in ``sandbox/data/nvidia-smi-h100``.
"""

from __future__ import annotations

import csv
import io
import re
import sys
from pathlib import Path

__all__ = ["main"]

_ALIASES = {"used_memory": "used_gpu_memory"}


def _rows(path: Path) -> list[dict[str, str]]:
    """A captured CSV (header with units, ``, `` separated) as dicts keyed by bare field name."""
    if not path.exists():
        return []
    rows = [r for r in csv.reader(io.StringIO(path.read_text()), skipinitialspace=True) if r]
    if not rows:
        return []
    header = [re.sub(r"\s*\[.*\]$", "", h.strip()) for h in rows[0]]
    return [dict(zip(header, (v.strip() for v in row), strict=False)) for row in rows[1:]]


def _format(rows: list[dict[str, str]], fields: list[str], fmt: str) -> str:
    options = set(fmt.split(","))
    lines = [] if "noheader" in options else [", ".join(fields)]
    for row in rows:
        values = []
        for field in fields:
            value = row.get(field, row.get(_ALIASES.get(field, ""), "[N/A]"))
            if "nounits" in options:
                value = re.sub(r"\s*(MiB|%|W|MHz)$", "", value)
            values.append(value)
        lines.append(", ".join(values))
    return "\n".join(lines) + "\n"


def _option(argv: list[str], name: str) -> str | None:
    for arg in argv:
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def main(argv: list[str], *, captures: str, state_file: str) -> int:
    """Answer one ``nvidia-smi`` command line from the captures; returns the exit status."""
    root = Path(captures)
    state = Path(state_file).read_text().strip() if Path(state_file).exists() else "idle"
    gpus = _rows(root / f"query-gpu-{state}.csv")
    fmt = _option(argv, "--format") or "csv"
    out = sys.stdout
    if (query := _option(argv, "--query-gpu")) is not None:
        out.write(_format(gpus, query.split(","), fmt))
    elif (query := _option(argv, "--query-compute-apps")) is not None:
        uuid = gpus[0].get("uuid", "[N/A]") if gpus else "[N/A]"
        apps = [{"gpu_uuid": uuid, **app} for app in _rows(root / f"query-apps-{state}.csv")]
        out.write(_format(apps, query.split(","), fmt))
    elif argv == ["-L"]:
        for gpu in gpus:
            out.write(f"GPU {gpu.get('index')}: {gpu.get('name')} (UUID: {gpu.get('uuid')})\n")
    elif "-q" in argv and (root / f"nvidia-smi-q-{state}.xml").exists():
        out.write((root / f"nvidia-smi-q-{state}.xml").read_text())
    elif not argv:
        out.write((root / f"nvidia-smi-{state}.txt").read_text())
    else:
        sys.stderr.write(f"fake nvidia-smi: no capture answers {' '.join(argv)!r} ({state})\n")
        return 2
    return 0
