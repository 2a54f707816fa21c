"""Errors: a V2 error answered to one request (the server keeps serving), the ways start-up fails, and the stop
signal raised while the model loads."""

from __future__ import annotations

import re

# Exit codes of `python -m mlflow_kserve_server start` (the server entrypoint passes them on).
EXIT_CONFIG = 2  # bad flags, or no readable model-settings.json
EXIT_LOAD = 8  # the model failed to load (the same code `mlflow-kserve run` uses for that)


MAX_MESSAGE = 1000
# An absolute path of two or more parts (/mnt/models/model/weights.bin): only its last part is kept in a body.
_PATH = re.compile(r"(?<![\w.:/])/(?:[\w.@+-]+/)+([\w.@+-]+)")


class V2Error(Exception):
    """A request the server answers with ``{"error": message}`` and an HTTP status instead of an inference. The
    message is one line, without server paths, at most MAX_MESSAGE characters: it goes to the client as it is."""

    def __init__(self, message: str, status: int = 400) -> None:
        message = one_line(message)
        super().__init__(message)
        self.message = message
        self.status = status


def one_line(text: str) -> str:
    """``text`` for a client: whitespace (newlines too) collapsed, absolute paths cut to their last part, cut short."""
    flat = _PATH.sub(lambda m: m.group(1), " ".join(str(text).split()))
    return flat if len(flat) <= MAX_MESSAGE else flat[: MAX_MESSAGE - 1] + "…"


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
