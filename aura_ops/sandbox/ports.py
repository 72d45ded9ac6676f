"""Ports for the sandbox's processes: chosen free, and chosen again when taken before binding.

A child process is given a port that was free when it was chosen; another process can take it
before the child binds it (``[Errno 98] Address already in use``). :func:`start_on_free_port`
starts again on a new port when the start raises :class:`PortTaken`, which
:func:`check_exit_output` raises for the output of a child that exited for that reason.
"""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

from aura_ops.errors import SourceUnavailableError

__all__ = ["PortTaken", "check_exit_output", "free_port", "start_on_free_port"]


class PortTaken(SourceUnavailableError):
    """A process could not bind the port chosen for it: choose another."""


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def check_exit_output(log: Path, what: str, port: int) -> str:
    """The last 2000 characters of an exited child's output ``log``; raises PortTaken (and
    empties the log for the next attempt) when it exited because ``port`` was taken."""
    text = log.read_text(errors="replace")[-2000:]
    if "address already in use" in text.lower():
        log.write_text("")
        raise PortTaken(f"{what}: port {port} was taken before it was bound")
    return text


def start_on_free_port(start: Callable[[int], None], port: int, *, attempts: int = 3) -> int:
    """``start(port)``, again on a new free port while it raises PortTaken; the port used."""
    for attempt in range(attempts):
        try:
            start(port)
            return port
        except PortTaken:
            if attempt == attempts - 1:
                raise
            port = free_port()
    return port
