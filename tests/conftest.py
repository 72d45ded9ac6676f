"""Shared fixtures: a throwaway project with runbooks, servers that misbehave on purpose."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

IN_CI = os.environ.get("CI") == "true"


def need(condition: bool, reason: str) -> None:
    """Skip when a service is missing on a laptop; fail under CI, where it must be there."""
    if not condition:
        if IN_CI:
            pytest.fail(f"required in CI: {reason}")
        pytest.skip(reason)


def write_runbook(root: Path, name: str, params: str, *cells: str, title: str = "") -> Path:
    """A minimal runbook notebook: header, a parameters cell, then code cells."""
    (root / "notebooks").mkdir(parents=True, exist_ok=True)
    p = new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb = new_notebook(cells=[new_markdown_cell(f"# {title or name}\n\nTest runbook {name}."), p,
                             *(new_code_cell(c) for c in cells)])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = root / "notebooks" / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A project root with a few tiny runbooks and one environment, used as AURA_OPS_HOME."""
    root = tmp_path / "project"
    show = ("from aura_ops import Finding, show, conclude\n"
            "show(Finding('test.level', subject, level, f'{subject} is {level}',"
            " source='test://' + subject))\nconclude()")
    write_runbook(root, "verdict", 'level = "OK"  # status to report\n'
                  'subject = "thing"  # what is judged\nretries = 3  # an int\n'
                  'ratio = 0.5  # a float\nverbose = False  # a bool\n'
                  'api_token_env = ""  # env var holding a token\nrun_id = ""  # set by runner',
                  show)
    write_runbook(root, "crash", 'subject = "thing"  # subject\n',
                  "from aura_ops import Finding, show\n"
                  "show(Finding('test.first', subject, 'OK', 'first step fine'))",
                  "raise RuntimeError('boom in cell 3')",
                  "show(Finding('test.never', subject, 'OK', 'never reached'))")
    write_runbook(root, "sleepy", 'seconds = 60  # how long to sleep\n',
                  "from aura_ops import Finding, show\n"
                  "show(Finding('test.before', 'x', 'OK', 'before the sleep'))",
                  "import time\ntime.sleep(seconds)")
    env_dir = root / "parameters" / "environments"
    env_dir.mkdir(parents=True)
    (env_dir / "staging.yaml").write_text(
        "description: test\nparameters:\n  subject: staging-api\n  unrelated: 1\n")
    monkeypatch.setenv("AURA_OPS_HOME", str(root))
    monkeypatch.setenv("AURA_OPS_AUDIT_LOG", str(tmp_path / "audit.jsonl"))
    return root


@contextlib.contextmanager
def hanging_server() -> Iterator[int]:
    """A TCP port that accepts connections and never answers."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        srv.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                conns.append(srv.accept()[0])

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield srv.getsockname()[1]
    finally:
        stop.set()
        t.join(2)
        for c in conns:
            c.close()
        srv.close()


def closed_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def sandbox() -> Iterator[object]:
    """One running sandbox (service + PostgreSQL) shared by the tests that only read from it."""
    from aura_ops.sandbox import Sandbox

    with Sandbox() as sb:
        sb.traffic(1.5, rps=40, seed=1)
        yield sb


@contextlib.contextmanager
def serve_in_thread(app: Any, *, join_s: float = 15) -> Iterator[str]:
    """Run ``app`` (with its lifespan) in a real uvicorn server on a free loopback port, in a
    thread; yield its URL; stop it on exit."""
    import time

    import uvicorn

    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="on", ws="none")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "uvicorn did not start"
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(join_s)
