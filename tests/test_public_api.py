"""The documented public surface: every module's __all__ is sorted, real, typed and documented."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

import aura_ops

LIBRARY = [
    "availability", "backup", "changes", "config", "database", "display", "errors", "findings",
    "health", "incident_metrics", "incidents", "kube", "logs", "memory", "metrics", "postmortem",
    "prometheus", "providers", "queues", "realtime", "redact", "remediate", "report", "runner",
    "severity", "storage", "system", "triage", "triage_sweep", "webhooks",
]  # fmt: skip
README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_top_level_all_is_sorted_and_real() -> None:
    """aura_ops.__all__ is sorted and every name exists."""
    assert aura_ops.__all__ == sorted(aura_ops.__all__)
    for name in aura_ops.__all__:
        assert hasattr(aura_ops, name), name


@pytest.mark.parametrize("module", LIBRARY)
def test_module_surface(module: str) -> None:
    """Each library module lists its public names; each is documented and fully typed."""
    mod = importlib.import_module(f"aura_ops.{module}")
    assert mod.__doc__, module
    names = mod.__all__
    assert names == sorted(names), f"{module}.__all__ is not sorted"
    for name in names:
        obj = getattr(mod, name)
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            continue
        assert inspect.getdoc(obj), f"{module}.{name} has no docstring"
        if inspect.isfunction(obj):
            sig = inspect.signature(obj)
            assert sig.return_annotation is not inspect.Signature.empty, f"{module}.{name} ->"
            for p in sig.parameters.values():
                if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                    assert p.annotation is not inspect.Parameter.empty, f"{module}.{name}({p.name})"


@pytest.mark.parametrize("module", ["health", "logs", "metrics", "database", "kube", "system",
                                    "changes", "remediate"])
def test_readme_shows_each_module(module: str) -> None:
    """The README's library section has an example for every check module."""
    assert f"from aura_ops import {module}" in README or f"{module}.check_" in README
