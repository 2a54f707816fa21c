"""Bounds for the retries inside the Google Cloud Storage and Azure Storage SDKs, which run under our own loop.

fetch.ClientRetries bounds MLflow's HTTP client and botocore through the environment variables they read. These
SDKs read no such variables, and their defaults turn one attempt of ours at an unreachable endpoint into minutes
(measured: about 3 minutes for gs://, 1.5 for wasbs://): google-cloud-storage retries each request for 120 s;
azure-storage-blob waits 15 s, 18 s and 24 s between its 3 retries, each connect allowed 20 s. ``StoreRetries``
sets their own knobs while a fetch runs, so ``--fetch-retries`` and our backoff bound the whole fetch for every
store.

The knobs are applied where MLflow creates its artifact repository for a ``gs``, ``wasbs`` or ``abfss`` URI (also
when it resolves a ``models:/`` or ``runs:/`` URI to one): each repository is built by MLflow as usual, then
configured. Nothing is imported or changed for the other stores.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class GcsRetries:
    """google-cloud-storage's own retry, bounded to ``timeout`` seconds per request (0: one try per request).

    Its retry is time-based (google.api_core Retry: backoff 1 s to 60 s, for 120 s), so no count bounds it: by
    default it is off during a fetch, and our loop (``--fetch-retries``, with backoff) retries instead. Every call
    of the SDK takes the one ``DEFAULT_RETRY`` object as its default, and MLflow's GCS repository passes no other,
    so that object's timeout is set, and restored when the fetch ends. The SDK reads no retry setting from the
    environment; the operator's per-request timeout, ``MLFLOW_ARTIFACT_UPLOAD_DOWNLOAD_TIMEOUT``, is left alone.
    """

    timeout: float = 0.0

    @contextmanager
    def applied(self) -> Iterator[Callable[[Any], None]]:
        """Yields the function that bounds the SDK's retry once MLflow has built a GCS repository."""
        saved: dict[str, Any] = {}

        def bound(_repo: Any) -> None:
            from google.cloud.storage.retry import DEFAULT_RETRY

            # api-core >= 2.17 reads _timeout (and keeps _deadline as its alias); older ones read _deadline.
            for name in ("_timeout", "_deadline"):
                if hasattr(DEFAULT_RETRY, name):
                    saved.setdefault(name, getattr(DEFAULT_RETRY, name))
                    setattr(DEFAULT_RETRY, name, self.timeout)

        try:
            yield bound
        finally:
            if saved:
                from google.cloud.storage.retry import DEFAULT_RETRY

                for name, value in saved.items():
                    setattr(DEFAULT_RETRY, name, value)


@dataclass(frozen=True)
class AzureRetries:
    """azure-storage-blob's and azure-storage-file-datalake's own retry and connect timeout, bounded.

    Keyword arguments of the SDKs' clients (their ExponentialRetry and transport). MLflow builds those clients
    itself from the environment (connection string, access key, SAS token or DefaultAzureCredential) and passes
    no retry settings, and the SDKs read none from the environment, so there is no operator setting to keep:
    the client MLflow built is rebuilt with the same endpoint, credential and TLS verification plus these.
    """

    retry_total: int = 1  # one retry per request, like botocore's under ClientRetries
    initial_backoff: int = 1
    increment_base: int = 2
    connection_timeout: int = 10

    def client_kwargs(self) -> dict[str, Any]:
        return asdict(self)

    def bound_blob(self, repo: Any) -> None:
        """MLflow's AzureBlobArtifactRepository (wasbs://): ``client`` is a BlobServiceClient."""
        from azure.storage.blob import BlobServiceClient
        from mlflow.store.artifact.azure_blob_artifact_repo import AzureBlobArtifactRepository
        from mlflow.utils.credentials import get_default_host_creds

        if not isinstance(repo, AzureBlobArtifactRepository):  # a plugin's repository: not ours to change
            return
        old = repo.client
        verify = get_default_host_creds(repo.artifact_uri).verify  # what MLflow passes as connection_verify
        repo.client = BlobServiceClient(
            old.url, credential=old.credential, connection_verify=verify, **self.client_kwargs()
        )

    def bound_data_lake(self, repo: Any) -> None:
        """MLflow's AzureDataLakeArtifactRepository (abfss://): ``fs_client`` is a FileSystemClient built from
        the URI's account and MLflow's credential (SAS token or DefaultAzureCredential)."""
        from azure.storage.filedatalake import DataLakeServiceClient
        from mlflow.store.artifact.azure_data_lake_artifact_repo import AzureDataLakeArtifactRepository

        if not isinstance(repo, AzureDataLakeArtifactRepository):
            return
        account_url = f"https://{repo.account_name}.{repo.domain_suffix}{repo.sas_token}"
        service = DataLakeServiceClient(account_url, credential=repo.credential, **self.client_kwargs())
        repo.fs_client = service.get_file_system_client(repo.container)


@dataclass(frozen=True)
class StoreRetries:
    """The GCS and Azure bounds together, applied while one fetch runs."""

    gcs: GcsRetries = field(default_factory=GcsRetries)
    azure: AzureRetries = field(default_factory=AzureRetries)

    @contextmanager
    def applied(self) -> Iterator[None]:
        with self.gcs.applied() as bound_gcs:
            bounds = {"gs": bound_gcs, "wasbs": self.azure.bound_blob, "abfss": self.azure.bound_data_lake}
            with _configured_repositories(bounds):
                yield


@contextmanager
def _configured_repositories(configure: dict[str, Callable[[Any], None]]) -> Iterator[None]:
    """While active, MLflow's artifact repository for each scheme is built by its registered factory (MLflow's own,
    or a plugin's) and then passed to ``configure[scheme]``. MLflow resolves models:/ and runs:/ URIs to their
    storage URI through the same registry."""
    from mlflow.store.artifact.artifact_repository_registry import (
        _artifact_repository_registry as registry,
    )
    from mlflow.store.artifact.artifact_repository_registry import (
        get_registered_artifact_repositories,
    )

    originals = {s: f for s, f in get_registered_artifact_repositories().items() if s in configure}
    for scheme, original in originals.items():
        registry.register(scheme, _then(original, configure[scheme]))
    try:
        yield
    finally:
        for scheme, original in originals.items():
            registry.register(scheme, original)


def _then(factory: Callable[..., Any], configure: Callable[[Any], None]) -> Callable[..., Any]:
    def build(artifact_uri: str, *args: Any, **kwargs: Any) -> Any:
        repo = factory(artifact_uri, *args, **kwargs)
        configure(repo)
        return repo

    return build
