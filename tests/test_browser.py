"""The fire drill in a real browser: `aura-ops lab --sandbox --fault`, Run All, a CRITICAL verdict.

Headless Debian ``chromium`` driven by Playwright (``pip install playwright``; never
``playwright install``: the system browser is used). Saves ``docs/images/lab-high-error-rate.png``,
the screenshot the README shows. Skips on a laptop without them; fails under ``CI=true``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest

from aura_ops.config import project_root
from aura_ops.runner import resolve_runbook

from .conftest import need

pytestmark = pytest.mark.slow

RUNBOOK = "high-error-rate"
SCREENSHOT = Path(__file__).resolve().parent.parent / "docs" / "images" / f"lab-{RUNBOOK}.png"
CHROMIUM = os.environ.get("AURA_OPS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# JupyterLab settings for a quiet, deterministic session: no news prompt, and no autosave, so
# running the cells never writes outputs into the committed runbook
SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false"},
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
}


def _jupyter_home(tmp: Path) -> dict[str, str]:
    """Private Jupyter config, settings, workspaces and runtime directories for this test."""
    for name, value in SETTINGS.items():
        path = tmp / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))
    return {
        "JUPYTER_CONFIG_DIR": str(tmp / "config"),
        "JUPYTER_RUNTIME_DIR": str(tmp / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(tmp / "settings"),
        "JUPYTERLAB_WORKSPACES_DIR": str(tmp / "workspaces"),
        "AURA_OPS_AUDIT_LOG": str(tmp / "audit.jsonl"),
    }


class _Output:
    """The lab command's stdout, read in a thread, searchable with a deadline."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.lines: list[str] = []
        self._q: queue.Queue[str] = queue.Queue()
        threading.Thread(target=self._pump, args=(proc,), daemon=True).start()

    def _pump(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self._q.put(line)

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self._q.get(timeout=0.5)
            except queue.Empty:
                continue
            self.lines.append(line)
            if m := re.search(pattern, line):
                return m
        raise AssertionError(f"no {pattern!r} in {timeout_s} s:\n{''.join(self.lines)}")


@pytest.fixture
def fire_drill(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], _Output]]:
    """`aura-ops lab --sandbox --fault bad-deploy --no-browser`, always stopped afterwards."""
    need(importlib.util.find_spec("playwright") is not None, "pip install playwright")
    need(Path(CHROMIUM).is_file(), "apt-get install chromium")
    setup = "\n".join(c.source for c in nbformat.read(resolve_runbook(RUNBOOK), 4).cells[:6])
    assert "connect(" in setup, f"{RUNBOOK}.ipynb: its setup cell must call connect(globals())"
    env = {**os.environ, **_jupyter_home(tmp_path)}
    env.pop("AURA_OPS_ENV", None)
    cmd = [sys.executable, "-m", "aura_ops.cli", "lab", "--sandbox", "--fault", "bad-deploy"]
    proc = subprocess.Popen(
        [*cmd, "--traffic", "20", "--no-browser"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield proc, _Output(proc)
    finally:
        _stop(proc)


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM first: the command stops JupyterLab and the sandbox, which run in their own
    sessions and would outlive a SIGKILL of it; SIGKILL only when it does not exit."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def _refuses(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _menu(page: object, menu: str, item: str) -> None:
    """Click JupyterLab's main menu ``menu`` and then its item ``item`` (exact labels)."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{menu}$")).click()  # type: ignore[attr-defined]
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).click()  # type: ignore[attr-defined]


def test_fire_drill_in_jupyterlab_shows_critical_verdict(
    fire_drill: tuple[subprocess.Popen[str], _Output], tmp_path: Path
) -> None:
    """Run All on the runbook opened by `lab --sandbox --fault` renders a CRITICAL verdict."""
    from playwright.sync_api import sync_playwright

    notebook = project_root() / "notebooks" / f"{RUNBOOK}.ipynb"
    committed = notebook.read_bytes()
    proc, out = fire_drill
    sandbox_port = int(out.wait_for(r"sandbox running at http://127\.0\.0\.1:(\d+)", 90)[1])
    m = out.wait_for(r"JupyterLab: (http://127\.0\.0\.1:(\d+)/lab/tree/(\S+)\?token=\w+)", 90)
    url, lab_port = m[1], int(m[2])
    assert m[3] == f"{RUNBOOK}.ipynb"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.goto(url)
            # the status bar says "Idle" once the kernel is connected (the toolbar may before)
            idle = page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\| Idle$"))
            idle.wait_for(timeout=90_000)
            _menu(page, "Run", "Run All Cells")
            verdict = page.locator(".jp-OutputArea-output .aura-verdict")
            errors = page.locator("[data-mime-type='application/vnd.jupyter.error']")
            try:
                verdict.or_(errors).first.wait_for(timeout=120_000)
            except Exception:
                page.screenshot(path=str(tmp_path / "failure.png"))
                raise AssertionError(f"no verdict; see {tmp_path / 'failure.png'}") from None
            assert not errors.count(), errors.first.inner_text()
            text = verdict.inner_text()
            assert verdict.locator("span").first.inner_text() == "CRITICAL", text
            for word in ("/api/render", "KeyError", "v2.4.1"):
                assert word in text
            cards = page.locator(".jp-OutputArea-output .aura-finding")
            assert cards.filter(has_text="CRITICAL").count() >= 3
            assert cards.filter(has_text="Reproduce").count() == cards.count()
            _screenshot(page)
        finally:
            browser.close()
    os.killpg(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=60) == 0
    out.wait_for("sandbox stopped", 5)
    assert _refuses(lab_port) and _refuses(sandbox_port)
    assert notebook.read_bytes() == committed  # the committed runbook got no outputs


def _screenshot(page: object) -> None:
    """The last evidence cards, the error-rate plot and the verdict, without the file browser."""
    page.keyboard.press("Escape")  # type: ignore[attr-defined]
    page.locator(".jp-SideBar.jp-mod-left .lm-TabBar-tab.lm-mod-current").click()  # type: ignore[attr-defined]
    page.set_viewport_size({"width": 1280, "height": 1400})  # type: ignore[attr-defined]
    last_card = page.locator(".jp-OutputArea-output .aura-finding").last  # type: ignore[attr-defined]
    last_card.evaluate("e => e.closest('.jp-Cell').scrollIntoView({block: 'start'})")
    time.sleep(1.0)
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))  # type: ignore[attr-defined]
