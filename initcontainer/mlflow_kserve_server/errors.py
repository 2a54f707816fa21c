"""Errors: a V2 error answered to one request (the server keeps serving), the ways start-up fails, and the stop
signal raised while the model loads."""

from __future__ import annotations

# Exit codes of `python -m mlflow_kserve_server start` (the server entrypoint passes them on).
EXIT_CONFIG = 2  # bad flags, or no readable model-settings.json
EXIT_LOAD = 8  # the model failed to load (the same code `mlflow-kserve run` uses for that)


class V2Error(Exception):
    """A request the server answers with ``{"error": message}`` and an HTTP status instead of an inference."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class StartError(Exception):
    """The server cannot start; ``str()`` is the one-line message, ``exit_code`` the process's exit code."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGINT arrived while the model was loading; the server exits 0.

    A subclass, not KeyboardInterrupt itself: when a plain KeyboardInterrupt passes through C code that runs Python
    with ``PyRun_String`` (code a model's load runs may do that), CPython sets a process-wide flag
    (``_Py_UnhandledKeyboardInterrupt``, Python/pythonrun.c ``run_eval_code_obj``) that nothing clears, and at exit
    it kills the process with SIGINT even though the server caught the interrupt and returned 0 (seen in CI: exit -2
    after "stopped before the model was loaded"). The flag is set only for the exact type, so a subclass is safe."""
