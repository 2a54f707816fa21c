"""``wasbs://container@account.blob.core.windows.net/prefix`` with azure-storage-blob, credentials chosen as
MLflow's Azure Blob repository chooses them: ``AZURE_STORAGE_CONNECTION_STRING`` (its BlobEndpoint wins over the
URI's host, which is how Azurite is reached), else ``AZURE_STORAGE_ACCESS_KEY`` for the URI's account, else
``DefaultAzureCredential`` (workload identity). The SDK's retries (3, with waits up to 24 s) are bounded to
``Bounds``."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import IO, Any

from mlflow_kserve.env_store.backend import Bounds, join
from mlflow_kserve.errors import ConfigError, redact

_URI = re.compile(r"^wasbs://(?P<container>[^@/]+)@(?P<account>[^./]+)\.(?P<suffix>[^/]+)/?(?P<prefix>.*)$")


class AzureBackend:
    def __init__(self, uri: str, bounds: Bounds) -> None:
        from azure.storage.blob import BlobServiceClient

        match = _URI.match(uri)
        if not match:
            raise ConfigError(
                f"--env-store {redact(uri)!r} is not wasbs://container@account.blob.core.windows.net/prefix",
                "write the URI as MLflow does for Azure Blob Storage",
            )
        self.location = uri
        self.prefix = match["prefix"].strip("/")
        options = {
            "retry_total": bounds.attempts - 1,
            "connection_timeout": bounds.connect_timeout,
            "read_timeout": bounds.read_timeout,
        }
        if os.environ.get("AZURE_STORAGE_CONNECTION_STRING"):
            service = BlobServiceClient.from_connection_string(os.environ["AZURE_STORAGE_CONNECTION_STRING"], **options)
        else:
            credential: object = os.environ.get("AZURE_STORAGE_ACCESS_KEY")
            if not credential:
                from azure.identity import DefaultAzureCredential

                credential = DefaultAzureCredential()
            account_url = f"https://{match['account']}.{match['suffix']}"
            service = BlobServiceClient(account_url, credential=credential, **options)
        self.container = service.get_container_client(match["container"])

    def read(self, name: str) -> bytes | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            return self.container.download_blob(join(self.prefix, name)).readall()
        except ResourceNotFoundError:
            return None

    def stream(self, name: str, offset: int = 0) -> IO[bytes]:
        return _Reader(self.container.download_blob(join(self.prefix, name), offset=offset or None))

    def write(self, name: str, data: bytes) -> None:
        self.container.upload_blob(join(self.prefix, name), data, overwrite=True)

    def upload(self, src: Path, name: str) -> None:
        with src.open("rb") as data:
            self.container.upload_blob(join(self.prefix, name), data, overwrite=True, max_concurrency=4)


class _Reader:
    """A blob download as a readable stream (the SDK's downloader reads in chunks; ``read`` gives up to ``size``)."""

    def __init__(self, downloader: Any) -> None:
        self.downloader = downloader

    def read(self, size: int = -1) -> bytes:
        return self.downloader.read(size)

    def close(self) -> None:
        pass
