"""What the fetch step logged during a test (mlflow_kserve's logger does not propagate to pytest's caplog)."""

from __future__ import annotations

import logging


class FetchLog(logging.Handler):
    """Records of the ``mlflow_kserve`` logger; the ``fetch_log`` fixture attaches one to it."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def retries(self) -> int:
        return sum(1 for r in self.records if "retrying" in r.getMessage())

    def text(self) -> str:
        return "\n".join(r.getMessage() for r in self.records)
