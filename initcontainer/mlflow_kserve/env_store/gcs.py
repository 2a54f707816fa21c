"""``gs://bucket/prefix`` with google-cloud-storage: credentials from Google's default chain
(``GOOGLE_APPLICATION_CREDENTIALS``, workload identity), ``STORAGE_EMULATOR_HOST`` honoured by the client. The
SDK's own retry (120 s by default) is bounded to ``Bounds``. A read streams the object in ranged requests of
``CHUNK`` bytes (the SDK's reader)."""

from __future__ import annotations

from pathlib import Path
from typing import IO, Any

from mlflow_kserve.env_store.backend import Bounds, join, split_bucket

CHUNK = 16 << 20  # bytes per ranged request


class GcsBackend:
    def __init__(self, uri: str, bounds: Bounds) -> None:
        from google.cloud import storage
        from google.cloud.storage.retry import DEFAULT_RETRY

        self.location = uri
        bucket, self.prefix = split_bucket(uri)
        self.bucket = storage.Client().bucket(bucket)
        budget = bounds.connect_timeout * bounds.attempts
        with_budget = getattr(DEFAULT_RETRY, "with_timeout", None) or DEFAULT_RETRY.with_deadline
        self.options: dict[str, Any] = {
            "timeout": (bounds.connect_timeout, bounds.read_timeout),
            "retry": with_budget(budget),
        }

    def read(self, name: str) -> bytes | None:
        from google.api_core.exceptions import NotFound

        try:
            return self.bucket.blob(join(self.prefix, name)).download_as_bytes(**self.options)
        except NotFound:
            return None

    def stream(self, name: str, offset: int = 0) -> IO[bytes]:
        reader = self.bucket.blob(join(self.prefix, name)).open("rb", chunk_size=CHUNK, **self.options)
        reader.seek(offset)
        return reader

    def write(self, name: str, data: bytes) -> None:
        self.bucket.blob(join(self.prefix, name)).upload_from_string(data, **self.options)

    def upload(self, src: Path, name: str) -> None:
        self.bucket.blob(join(self.prefix, name)).upload_from_filename(str(src), **self.options)
