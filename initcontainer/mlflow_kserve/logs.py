"""Logging: one line per event, text or JSON; ``step()`` logs each pipeline step with its duration."""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from mlflow_kserve.errors import redact

LOGGER_NAME = "mlflow_kserve"
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}


class _TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # Structured fields (step, seconds, exit_code, ...) are for --log-format json; text shows the step only.
        step = getattr(record, "step", None)
        prefix = f"[{step}] " if step else ""
        return redact(f"mlflow-kserve {record.levelname.lower()}: {prefix}{record.getMessage()}")


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        payload.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD})
        return redact(json.dumps(payload, default=str))


def configure_logging(fmt: str = "text", level: str = "info") -> None:
    logger = logging.getLogger(LOGGER_NAME)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonFormatter() if fmt == "json" else _TextFormatter())
    logger.handlers[:] = [handler]
    logger.setLevel(level.upper())
    logger.propagate = False


def get_logger(name: str | None = None) -> logging.Logger:
    logger = logging.getLogger(LOGGER_NAME if not name else f"{LOGGER_NAME}.{name}")
    root = logging.getLogger(LOGGER_NAME)
    if not root.handlers:
        configure_logging()
    return logger


@contextmanager
def step(name: str, timings: dict[str, float] | None = None) -> Iterator[logging.Logger]:
    """Log ``name`` done with its duration; record seconds into ``timings``. Errors propagate unlogged
    (the CLI logs them once)."""
    log = get_logger()
    start = time.monotonic()
    yield log
    seconds = round(time.monotonic() - start, 3)
    if timings is not None:
        timings[name] = seconds
    log.info("%s done in %.1fs", name, seconds, extra={"step": name, "seconds": seconds})
