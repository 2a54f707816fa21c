"""mlflow_kserve_server runs inside the model's own venv and adds nothing to it: every module imports only the
standard library, mlflow and what MLflow >= 2.21 itself requires (fastapi/starlette, uvicorn; numpy and pandas,
which mlflow.pyfunc imports; google.protobuf), grpcio and orjson only in the one module that needs each (grpcio:
added with --grpc; orjson: an optional accelerator); and importing it has no side effects (the init's verify step
imports it to write its bytecode)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "initcontainer" / "mlflow_kserve_server"
ALLOWED = {"mlflow", "fastapi", "starlette", "uvicorn", "numpy", "pandas", "google.protobuf", "mlflow_kserve_server"}
OPTIONAL = {"grpc": "grpc_server.py", "orjson": "jsonlib.py"}  # imported only where they are optional


def _imports(path: Path) -> list[tuple[str, int]]:
    names = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names += [(_top(alias.name), node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}:{node.lineno}: relative import (use mlflow_kserve_server.…)"
            names.append((_top(node.module), node.lineno))
    return names


def _top(module: str) -> str:
    """The distribution-level name: ``google.protobuf`` (a namespace package), else the first part."""
    return "google.protobuf" if module.startswith("google.protobuf") else module.split(".")[0]


def test_every_module_imports_only_the_standard_library_and_what_mlflow_requires() -> None:
    modules = sorted(PACKAGE.glob("*.py"))
    assert len(modules) > 5
    foreign = [
        f"{path.name}:{line}: {name}"
        for path in modules
        for name, line in _imports(path)
        if name not in ALLOWED and name not in sys.stdlib_module_names and OPTIONAL.get(name) != path.name
    ]
    assert not foreign, f"imports outside the standard library and MLflow's requirements: {foreign}"


def test_the_check_sees_a_foreign_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import json\nfrom requests import get\nfrom google.cloud import storage\n\ndef f():\n    import yaml\n"
    )
    names = {name for name, _ in _imports(module)}
    assert names - ALLOWED - set(sys.stdlib_module_names) == {"requests", "yaml", "google"}


def test_importing_the_server_modules_has_no_side_effects() -> None:
    probe = (
        "import json, os, sys, threading, signal\n"
        "before = (dict(os.environ), signal.getsignal(signal.SIGTERM), threading.active_count())\n"
        "import mlflow_kserve_server.app, mlflow_kserve_server.serve, mlflow_kserve_server.cli\n"
        "import mlflow_kserve_server.grpc_codec\n"
        "after = (dict(os.environ), signal.getsignal(signal.SIGTERM), threading.active_count())\n"
        "print(json.dumps([before == after, sorted(m for m in sys.modules if m.startswith('mlflow_kserve_server'))]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=PACKAGE.parent, timeout=300, check=True
    )
    unchanged, loaded = json.loads(proc.stdout)
    assert unchanged, "importing changed the environment, a signal handler or started a thread"
    every = {f"mlflow_kserve_server.{p.stem}" for p in PACKAGE.glob("*.py") if p.stem not in ("__init__", "__main__")}
    grpc_only = {"mlflow_kserve_server.grpc_server"}  # imports grpcio at the top: only venvs made with --grpc have it
    assert every - grpc_only <= set(loaded), "app + serve + cli + grpc_codec import every module but grpc_server"
