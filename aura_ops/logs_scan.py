"""Raw-byte pre-filter for literal searches in log files (the fast path of ``trace``/``search``).

``grep -F`` is fast because it never splits a file into lines: it looks for the needle in
large blocks and only then finds the line around each hit. :func:`matching_lines` does the
same -- 1 MiB blocks read with ``readinto`` (never ``mmap``: a log truncated by
``copytruncate`` while it is read must not crash the kernel), the needle located with libc's
``memmem`` when it can be loaded (else ``bytes.find``), and the lines counted with numpy in a
second thread while the search runs -- so a search costs about one scan, not one parse.

The lines it yields are exactly the lines :mod:`aura_ops.logs_engine` would have kept: the
file is split at ``\\n``, ``\\r\\n`` and ``\\r`` like a text stream opened with ``newline=""``,
decoded as UTF-8 with replacement, and the line counter counts every line, kept or not.
Only needles that are printable ASCII are handled here (:func:`can_scan`); for any other the
caller reads line by line.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import dataclasses
import gzip
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import IO, Any

import numpy as np

from .errors import SourceUnavailableError

__all__ = ["ScanCounter", "can_scan", "count_lines", "matching_lines"]

BLOCK_BYTES = 2**20  # small blocks stay in cache: a fraction faster than large ones
_COUNT_SLICE = 2**20  # numpy counts newlines in slices that stay in cache


def _load_memmem() -> Any:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        fn = libc.memmem
    except (OSError, AttributeError):  # pragma: no cover - non-POSIX platforms
        return None
    fn.restype = ctypes.c_void_p
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_char_p, ctypes.c_size_t]
    return fn


_MEMMEM = _load_memmem()


@dataclasses.dataclass
class ScanCounter:
    """Lines seen by one scan: ``lines`` in all, ``kept`` of them yielded; ``cr``: whether
    any carriage return was seen (``\r\n`` or a lone ``\r``)."""

    lines: int = 0
    kept: int = 0
    cr: bool = False


def can_scan(needle: str | None) -> bool:
    """Whether :func:`matching_lines` gives exactly the line-by-line answer for ``needle``."""
    return bool(needle) and needle.isascii() and needle.isprintable()  # type: ignore[union-attr]


def _open_raw(path: Path) -> IO[bytes]:
    try:
        with open(path, "rb") as probe:
            is_gz = probe.read(2) == b"\x1f\x8b"
        return gzip.open(path, "rb") if is_gz else open(path, "rb", buffering=0)  # noqa: SIM115
    except OSError as exc:
        raise SourceUnavailableError.from_exception(exc, source=str(path)) from exc


def _count_terminators(view: np.ndarray, cr_present: bool) -> int:
    """Line terminators in ``view`` (bytes): ``\\n``, ``\\r\\n`` and a lone ``\\r``."""
    n = 0
    for s in range(0, len(view), _COUNT_SLICE):
        n += int(np.count_nonzero(view[s : s + _COUNT_SLICE] == 10))
    if cr_present:  # rare: old Mac endings or a stray CR, counted exactly
        cr = np.flatnonzero(view == 13)
        nxt = cr + 1
        inside = nxt < len(view)
        crlf = np.count_nonzero(view[nxt[inside]] == 10)
        n += len(cr) - int(crlf)
    return n


def _find_all(buf: bytearray, stop: int, needle: bytes) -> list[int]:
    """Offsets of ``needle`` in ``buf[:stop]`` (non-overlapping is enough: lines dedupe)."""
    hits: list[int] = []
    if _MEMMEM is not None:
        base = ctypes.addressof(ctypes.c_char.from_buffer(buf))
        off = 0
        while off < stop:
            ptr = _MEMMEM(base + off, stop - off, needle, len(needle))
            if not ptr:
                break
            pos = ptr - base
            hits.append(pos)
            off = pos + len(needle)
        return hits
    pos = buf.find(needle, 0, stop)
    while pos >= 0:
        hits.append(pos)
        pos = buf.find(needle, pos + len(needle), stop)
    return hits


def _lines_at(buf: bytearray, stop: int, hits: list[int], needle: str) -> list[str]:
    """The distinct lines of ``buf[:stop]`` holding a hit, split as a text stream would."""
    out: list[str] = []
    end = -1
    for pos in hits:
        if pos < end:
            continue  # same line as the previous hit
        start = max(buf.rfind(b"\n", 0, pos), buf.rfind(b"\r", 0, pos)) + 1
        nl, cr = buf.find(b"\n", pos, stop), buf.find(b"\r", pos, stop)
        ends = [e for e in (nl, cr) if e >= 0]
        end = min(ends) if ends else stop
        line = buf[start:end].decode("utf-8", errors="replace")
        if needle in line:  # always true for ASCII needles; kept as the definition
            out.append(line)
    return out


def matching_lines(path: Path, needle: str | None, counter: ScanCounter) -> Iterator[str]:
    """Lines of ``path`` (plain or gzip) containing ``needle``, in file order.

    ``counter.lines`` ends as the number of lines in the file, ``counter.kept`` as the number
    yielded (with ``needle=None`` nothing is yielded: the lines are only counted). Raises
    SourceUnavailableError when the file cannot be read.
    """
    raw = needle.encode("ascii") if needle else b""
    buf = bytearray(BLOCK_BYTES)
    filled = 0
    with _open_raw(path) as fh, ThreadPoolExecutor(1, "aura-ops-scan") as pool:
        while True:
            try:
                got = fh.readinto(memoryview(buf)[filled:])  # type: ignore[attr-defined]
            except (OSError, EOFError, gzip.BadGzipFile) as exc:
                raise SourceUnavailableError.from_exception(exc, source=str(path)) from exc
            end = filled + (got or 0)
            if not got:
                yield from _block(buf, end, raw, needle, counter, pool, final=True)
                return
            last = max(buf.rfind(b"\n", 0, end), buf.rfind(b"\r", 0, end - 1))
            if last < 0:
                if end == len(buf):  # one line longer than the block: grow
                    buf.extend(bytes(len(buf)))
                filled = end
                continue
            yield from _block(buf, last + 1, raw, needle, counter, pool, final=False)
            tail = end - (last + 1)
            buf[:tail] = buf[last + 1 : end]
            filled = tail


def _block(
    buf: bytearray,
    stop: int,
    raw: bytes,
    needle: str | None,
    counter: ScanCounter,
    pool: ThreadPoolExecutor,
    *,
    final: bool,
) -> Iterator[str]:
    """Count and search one block of whole lines (``final``: the rest of the file)."""
    if stop <= 0:
        return
    view = np.frombuffer(buf, dtype=np.uint8, count=stop)
    cr = buf.find(b"\r", 0, stop) >= 0
    counter.cr = counter.cr or cr
    counting = pool.submit(_count_terminators, view, cr)  # numpy releases the GIL: in parallel
    try:
        lines = _lines_at(buf, stop, _find_all(buf, stop, raw), needle) if needle else []
    finally:
        counter.lines += counting.result()
    if final and buf[stop - 1] not in (10, 13):
        counter.lines += 1  # a last line without a terminator
    del view
    counter.kept += len(lines)
    yield from lines


def count_lines(path: Path) -> ScanCounter:
    """Lines in a file (plain or gzip), counted like a text stream opened with ``newline=""``
    (``.lines``), and whether it holds a carriage return (``.cr``)."""
    counter = ScanCounter()
    for _ in matching_lines(path, None, counter):  # pragma: no cover - yields nothing
        pass
    return counter
