"""Every runbook notebook keeps the contract that makes it safe to run and pleasant to edit."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import papermill
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
SECRETISH = re.compile(r"(password|passwd|secret|token|api_?key|dsn|credential)", re.I)
MAX_CELL_LINES = 4


def _nb(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code_lines(source: str) -> list[str]:
    return [ln for ln in source.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def test_there_are_runbooks() -> None:
    """The catalogue is not empty."""
    assert NOTEBOOKS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path: Path) -> None:
    """Notebooks are committed clean: no outputs, no execution counts."""
    for cell in _nb(path).cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, cell.source[:60]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_is_literal_and_documented(path: Path) -> None:
    """One `parameters` cell of `name = literal  # help` lines, every one readable by papermill."""
    cells = [c for c in _nb(path).cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1
    lines = _code_lines(cells[0].source)
    declared = papermill.inspect_notebook(str(path))
    assert len(declared) == len(lines), "papermill could not parse every parameter line"
    for line in lines:
        tree = ast.parse(line)
        (stmt,) = tree.body
        assert isinstance(stmt, (ast.Assign, ast.AnnAssign)), line
        ast.literal_eval(stmt.value)  # literals only
        assert "#" in line and line.split("#", 1)[1].strip(), f"no help comment: {line}"
    for name, spec in declared.items():
        assert spec["help"], name


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_secrets_in_parameters(path: Path) -> None:
    """Secret-looking parameters are env-var names (`*_env`) with no value baked in."""
    for name, spec in papermill.inspect_notebook(str(path)).items():
        if SECRETISH.search(name):
            assert name.endswith("_env"), f"{name} must be passed as an env-var name"
        default = str(spec["default"])
        assert "://" not in default or "@" not in default, f"{name} default looks like a DSN"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_cells_are_thin(path: Path) -> None:
    """Code cells are a few lines over the library: no def, class, loops, try or if."""
    for cell in _nb(path).cells:
        if cell.cell_type != "code" or "parameters" in cell.metadata.get("tags", []):
            continue
        assert len(_code_lines(cell.source)) <= MAX_CELL_LINES, cell.source
        for node in ast.walk(ast.parse(cell.source)):
            assert not isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.For, ast.While,
                                         ast.Try, ast.If, ast.With, ast.Lambda)), cell.source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runbook_format(path: Path) -> None:
    """Header says when to use it; the seeds' sections are there; it ends in a verdict."""
    nb = _nb(path)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    assert "When to use" in nb.cells[0].source and "Severity" in nb.cells[0].source
    for section in ("## Symptoms", "## Diagnosis", "## Verdict", "## Resolution",
                    "## Prevention", "## References"):
        assert section in text, section
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert any("conclude(" in c.source for c in code)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_mitigations_never_run_unattended(path: Path) -> None:
    """Every cell that calls remediate is tagged skip-execution (papermill never runs it)."""
    for cell in _nb(path).cells:
        if cell.cell_type == "code" and "remediate." in cell.source:
            assert "skip-execution" in cell.metadata.get("tags", []), cell.source
