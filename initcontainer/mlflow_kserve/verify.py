"""Step 5: load the model once with the venv's own Python, as MLServer will, so a broken model fails
the init container (exit 8) instead of the serving container later."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

from mlflow_kserve import procs
from mlflow_kserve.errors import VerifyError

# Runs inside the model's venv. Imports the runtime MLServer will use, then loads the model.
_SCRIPT = """
import sys
import mlserver_mlflow.runtime  # the serving stack imports with this MLflow
import mlserver.cli.main, mlserver.server  # what `mlserver start` imports: their bytecode gets written now
import mlflow.pyfunc
model = mlflow.pyfunc.load_model(sys.argv[1])
print("loaded", type(model).__name__, flush=True)
"""

_NOISE = re.compile(r"^\s*(warnings\.warn|WARNING|\w*Warning:|\s*$)")


def verify_model(venv: Path, model_dir: Path, timeout: float = 900) -> None:
    """Raise VerifyError with the last line of the model's error when it does not load."""
    with tempfile.TemporaryDirectory(prefix="mlflow-kserve-verify-") as cwd:
        result = procs.run(
            [venv / "bin" / "python", "-c", _SCRIPT, model_dir],
            cwd=Path(cwd),
            # Write bytecode for every module loaded: the server container mounts the venv read-only, and
            # MLServer's first start takes twice as long without .pyc files.
            env={"PYTHONDONTWRITEBYTECODE": ""},
            timeout=timeout,
        )
    if result.returncode != 0:
        lines = [ln for ln in result.lines if not _NOISE.match(ln)]
        last = lines[-1].strip() if lines else f"exit code {result.returncode}"
        raise VerifyError(
            f"the model failed to load with its own dependencies: {last[:500]}",
            "fix the model (or its requirements) and log it again; run `mlflow-kserve run` locally to debug",
        )


def compile_bytecode(venv: Path) -> None:
    """With --no-verify nothing loads the model, so compile the whole venv (the slow, thorough way)."""
    procs.run(
        [venv / "bin" / "python", "-m", "compileall", "-q", "-j", "0", venv / "lib"],
        env={"PYTHONDONTWRITEBYTECODE": ""},
    )
