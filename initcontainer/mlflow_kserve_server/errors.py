"""Errors: a V2 error answered to one request (the server keeps serving), and the two ways start-up fails."""

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
