"""procs.run: the one way tools run. Their output is read by the program, so no terminal size reaches them."""

from __future__ import annotations

import sys

import pytest
from mlflow_kserve import procs


def test_no_terminal_size_reaches_a_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # what pytest-xdist, or a user's shell, exports
    monkeypatch.setenv("LINES", "24")
    show = "import os; print(os.environ.get('COLUMNS'), os.environ.get('LINES'), os.environ.get('KEPT'))"
    result = procs.run([sys.executable, "-c", show], env={"COLUMNS": "40", "KEPT": "yes"})
    assert result.returncode == 0 and result.output == "None None yes"
