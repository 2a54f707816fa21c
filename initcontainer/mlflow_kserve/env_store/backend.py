"""The small interface every store backend implements, and the choice of backend by the URI's scheme.

Backends move named objects (``<key>/manifest.json``, ``<key>/<build>/venv.tar.zst``, ...) under the URI's prefix
and nothing else: they do not retry beyond their SDK's own bounded retries (``Bounds``), and they raise the SDK's
exceptions, which the store classifies once (``fetch.classify``: not found, denied, transient, ...). A missing
object is ``None`` from ``read``, never an error;
``stream`` reads an object from an offset, as it arrives. Clients are imported only for the scheme in use.

- ``s3://bucket/prefix``: s3.py (boto3); ``AWS_*``, IRSA; endpoint ``MLFLOW_S3_ENDPOINT_URL`` / ``AWS_ENDPOINT_URL_S3``
- ``gs://bucket/prefix``: gcs.py (google-cloud-storage); ``GOOGLE_APPLICATION_CREDENTIALS``, workload identity
- ``wasbs://container@account.blob.core.windows.net/prefix``: azure.py (azure-storage-blob);
  ``AZURE_STORAGE_CONNECTION_STRING``, ``AZURE_STORAGE_ACCESS_KEY``, else ``DefaultAzureCredential``
- a path, ``file:///path``: local.py

Credentials are read as the model fetch reads them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from mlflow_kserve.errors import ConfigError, redact

SCHEMES = ("s3://", "gs://", "wasbs://", "file://")
HINT = (
    "use s3://bucket/prefix, gs://bucket/prefix, wasbs://container@account.blob.core.windows.net/prefix, a path or "
    "file:///path"
)


@dataclass(frozen=True)
class Bounds:
    """How long one store request may take, and how often the SDK may try it: a store that is down or slow costs
    a pod at most seconds before it builds instead (a read is never worth failing over)."""

    connect_timeout: float = 5.0
    read_timeout: float = 60.0
    attempts: int = 3  # the first try included


DEFAULT_BOUNDS = Bounds()


class Backend(Protocol):
    location: str  # the store URI, credentials redacted: for messages

    def read(self, name: str) -> bytes | None:
        """The object's bytes, or None when there is no such object."""

    def stream(self, name: str, offset: int = 0) -> IO[bytes]:
        """The object's bytes from ``offset`` on, as a readable stream (the caller closes it)."""

    def write(self, name: str, data: bytes) -> None: ...

    def upload(self, src: Path, name: str) -> None: ...


def check_uri(uri: str) -> str:
    """``uri`` stripped; ConfigError (exit 2) when no backend takes it."""
    text = uri.strip()
    if not text:
        raise ConfigError("--env-store is empty", HINT)
    if "://" in text and not text.startswith(SCHEMES):
        raise ConfigError(f"--env-store {redact(text)!r}: no environment store backend for this scheme", HINT)
    if text.startswith(("s3://", "gs://")) and not text.split("://", 1)[1].split("/", 1)[0]:
        raise ConfigError(f"--env-store {redact(text)!r} names no bucket", HINT)
    if text.startswith("wasbs://") and "@" not in text.split("://", 1)[1].split("/", 1)[0]:
        raise ConfigError(f"--env-store {redact(text)!r} names no container (wasbs://container@account...)", HINT)
    return text if "://" in text else str(Path(text).absolute())  # a path: the same folder from any cwd


def open_backend(uri: str, bounds: Bounds = DEFAULT_BOUNDS) -> Backend:
    """The backend for ``uri`` (already checked by ``check_uri``)."""
    if uri.startswith("s3://"):
        from mlflow_kserve.env_store.s3 import S3Backend

        return S3Backend(uri, bounds)
    if uri.startswith("gs://"):
        from mlflow_kserve.env_store.gcs import GcsBackend

        return GcsBackend(uri, bounds)
    if uri.startswith("wasbs://"):
        from mlflow_kserve.env_store.azure import AzureBackend

        return AzureBackend(uri, bounds)
    from mlflow_kserve.env_store.local import LocalBackend

    return LocalBackend(uri)


def split_bucket(uri: str) -> tuple[str, str]:
    """``s3://bucket/a/b/`` -> ("bucket", "a/b"): the bucket and the prefix without surrounding slashes."""
    rest = uri.split("://", 1)[1]
    bucket, _, prefix = rest.partition("/")
    return bucket, prefix.strip("/")


def join(prefix: str, name: str) -> str:
    return f"{prefix}/{name}" if prefix else name
