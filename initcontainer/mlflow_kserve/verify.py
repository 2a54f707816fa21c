"""Step 5: load the model once with the venv's own Python, as the server will, so a broken model fails
the init container (exit 8) instead of the serving container later.

Two processes run at once, each on its own core: one loads the model (the check), the other imports what the
chosen backend's server imports (a second check: the server imports with this model's packages). Both write the
bytecode of what they import, so the server's first start finds it. Measured on the iris venv (2 cores, MLServer):
one process doing both took 7.5 s, the model load alone 7.5 s under load and the stack alone 4.0 s, so running
them side by side takes about as long as the load alone.
"""

from __future__ import annotations

import re
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mlflow_kserve import procs
from mlflow_kserve.errors import VerifyError
from mlflow_kserve.logs import get_logger

# mlflow first: the stack process reaches it last (through mlserver_mlflow), when its bytecode exists.
_LOAD = """
import sys
import mlflow.pyfunc
model = mlflow.pyfunc.load_model(sys.argv[1])
print("loaded", type(model).__name__, flush=True)
"""
# What each backend's server imports before it loads the model.
_STACK = {
    "mlserver": """
import mlserver.cli.main, mlserver.server  # what `mlserver start` imports
import mlserver_mlflow.runtime  # what our runtime builds on
import mlflow_kserve_mlserver.runtime  # the runtime that will load the model (next to model-settings.json)
""",
    "mlflow": """
import mlflow.pyfunc.scoring_server, uvicorn  # MLflow's FastAPI app and its server
import mlflow_kserve_server.app  # the V2 routes (from --env-dir/lib on PYTHONPATH), as `start` imports them
""",
}
# With --grpc: the gRPC server, and its messages built with the model's own protobuf (grpc_proto.py), which is
# where a protobuf the server cannot use would show.
_GRPC = """
import mlflow_kserve_server.grpc_server, mlflow_kserve_server.grpc_proto as proto
proto.messages().ModelInferRequest(model_name="verify").SerializeToString()
"""
_STACK_NAMES = {
    "mlserver": "the serving stack (MLServer and its MLflow runtime)",
    "mlflow": "the mlflow backend's server (MLflow's scoring server and the V2 routes)",
}

_NOISE = re.compile(r"^\s*(warnings\.warn|WARNING|\w*Warning:|\s*$)")
# Write bytecode for every module loaded: the server container mounts the venv read-only, and MLServer's
# first start takes twice as long without .pyc files.
_WRITE_BYTECODE = {"PYTHONDONTWRITEBYTECODE": ""}


def verify_model(venv: Path, model_dir: Path, backend: str, server_lib: Path | None = None,
                 timeout: float = 900, grpc: bool = False) -> None:  # fmt: skip
    """Raise VerifyError with the last line of the error when the model or the backend's server does not
    load. ``server_lib``: the folder holding what the backend's server imports from outside the venv:
    mlflow_kserve_server (the mlflow backend) or mlflow_kserve_mlserver (MLServer's runtime, in the models dir);
    ``grpc``: it serves gRPC."""
    python = venv / "bin" / "python"
    get_logger().info(
        "loading the model once with its venv's Python, beside an import of %s", _STACK_NAMES[backend],
        extra={"step": "verify"},
    )  # fmt: skip
    stack_env = {**_WRITE_BYTECODE, "PYTHONPATH": str(server_lib)} if server_lib else _WRITE_BYTECODE
    with tempfile.TemporaryDirectory(prefix="mlflow-kserve-verify-") as cwd, ThreadPoolExecutor(2) as pool:
        load = pool.submit(procs.run, [python, "-c", _LOAD, model_dir], cwd=Path(cwd), env=_WRITE_BYTECODE,
                           timeout=timeout)  # fmt: skip
        code = _STACK[backend] + (_GRPC if grpc and backend == "mlflow" else "")
        stack = pool.submit(procs.run, [python, "-c", code], cwd=Path(cwd), env=stack_env, timeout=timeout)
        loaded, imported = load.result(), stack.result()
    if loaded.returncode != 0:
        raise VerifyError(
            f"the model failed to load with its own dependencies: {_last(loaded)}",
            "fix the model (or its requirements) and log it again; --log-level debug prints the whole load output",
        )
    if imported.returncode != 0:
        raise VerifyError(
            f"{_STACK_NAMES[backend]} does not import with this model's dependencies: {_last(imported)}",
            "pin what conflicts with --constraint (chart: dependencies.constraints); run `mlflow-kserve check`",
        )


def compile_bytecode(venv: Path) -> None:
    """With --no-verify nothing loads the model, so compile the whole venv (the slow, thorough way)."""
    procs.run([venv / "bin" / "python", "-m", "compileall", "-q", "-j", "0", venv / "lib"], env=_WRITE_BYTECODE)


def _last(result: procs.Result) -> str:
    lines = [ln for ln in result.lines if not _NOISE.match(ln)]
    return (lines[-1].strip() if lines else f"exit code {result.returncode}")[:500]
