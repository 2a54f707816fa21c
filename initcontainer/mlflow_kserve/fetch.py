"""Step 1: fetch the model with MLflow's artifact API into ``dest`` so that ``dest/MLmodel`` exists.

Any URI MLflow understands: s3://, gs://, wasbs://, abfss://, http(s)://, a path or file://,
models:/<name>/<version>, models:/<name>@<alias>, runs:/<run_id>/<path>. Transient errors are retried
with backoff (the SDKs' own retries bounded under ours: ClientRetries, sdk_retries.StoreRetries); a missing or
denied object is not. Downloads land in a temp dir beside ``dest`` and are
renamed into place, so an interrupted fetch never leaves a model that looks complete.

A model is refused (exit 4, modelfiles.check_links) when it holds a symbolic link leaving it (a local model is
checked before it is copied: the copy follows links), or when one of its artifact paths would land outside the
model directory ('..' in an S3 key or a registry's artifact path: MLflow refuses to write it).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from mlflow_kserve.errors import FetchError, MlflowKserveError, NotServableError, redact
from mlflow_kserve.logs import get_logger
from mlflow_kserve.mlmodel import no_mlmodel
from mlflow_kserve.modelfiles import check_links, present
from mlflow_kserve.sdk_retries import StoreRetries

log = get_logger()

_REMOTE_DIR_SCHEMES = ("s3://", "gs://", "wasbs://", "abfss://", "http://", "https://", "runs:/", "models:/")
# Error codes the SDKs put in their exceptions (botocore's response Error.Code, MLflow's error_code, Azure's
# error_code): exact names, checked before any message text.
_CODES = {
    "not-found": {
        "NoSuchKey", "NoSuchBucket", "NotFound", "404", "RESOURCE_DOES_NOT_EXIST", "NOT_FOUND", "BlobNotFound",
        "ContainerNotFound", "ResourceNotFound",
    },
    "denied": {
        "AccessDenied", "Forbidden", "403", "401", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
        "InvalidToken", "TokenRefreshRequired", "PERMISSION_DENIED", "UNAUTHENTICATED", "CUSTOMER_UNAUTHORIZED",
        "AuthorizationFailure", "AuthenticationFailed", "AuthorizationPermissionMismatch",
    },
    "transient": {
        "SlowDown", "Throttling", "ThrottlingException", "RequestTimeout", "RequestTimeTooSkewed", "InternalError",
        "ServiceUnavailable", "ServerBusy", "OperationTimedOut", "TEMPORARILY_UNAVAILABLE",
        "REQUEST_LIMIT_EXCEEDED", "500", "502", "503", "504",
    },
}  # fmt: skip
# Message text, for exceptions without a usable code (requests, urllib3, MLflow's wrapped HTTP errors).
_TEXT = {
    "denied": re.compile(
        r"\b40[13] (?:Client Error|error)|AccessDenied|Access Denied|Forbidden|InvalidAccessKeyId|"
        r"SignatureDoesNotMatch|ExpiredToken|Unauthorized|PERMISSION_DENIED|UNAUTHENTICATED|"
        r"NoCredentialsError|Unable to locate credentials|DefaultCredentialsError|ClientAuthenticationError",
        re.IGNORECASE,
    ),
    "not-found": re.compile(
        r"\b404 (?:Client Error|error)|NoSuchKey|NoSuchBucket|RESOURCE_DOES_NOT_EXIST|does not exist|"
        r"No such file|BlobNotFound|ContainerNotFound|Not Found|Invalid model version",
        re.IGNORECASE,
    ),
    "transient": re.compile(
        r"\b(?:5\d\d|429) (?:Server Error|Client Error|error)|too many (?:5\d\d|429) error responses|SlowDown|"
        r"Throttl|RequestTimeout|timed? ?out|Connection reset|Connection refused|Connection aborted|"
        r"EndpointConnectionError|Could not connect|ConnectTimeout|ReadTimeout|ServiceUnavailable|"
        r"TEMPORARILY_UNAVAILABLE|Max retries exceeded|RemoteDisconnected|IncompleteRead|BrokenPipe|"
        r"ChunkedEncodingError|ProtocolError|Temporary failure in name resolution",
        re.IGNORECASE,
    ),
}
# MLflow's refusal of an artifact path that would land outside the download directory (mlflow/utils/uri.py).
_DISK_FULL = re.compile(r"No space left on device|Disk quota exceeded")
_ESCAPE = re.compile(r"^Invalid path\b|resolved path is outside the artifact directory")


@dataclass(frozen=True)
class ClientRetries:
    """Bounds for the retries inside MLflow's HTTP client and botocore, which run under our own retry loop.

    Their defaults (MLflow: 7 retries, backoff factor 2, waits up to 120 s; botocore legacy mode: 5 attempts)
    would turn one bounded fetch into minutes. Both libraries are configured only through environment
    variables, so ``applied()`` sets them for the duration of a download, and only those the operator has
    not set: an operator's own ``MLFLOW_HTTP_REQUEST_MAX_RETRIES`` or ``AWS_MAX_ATTEMPTS`` wins.
    """

    mlflow_http_max_retries: int = 2
    mlflow_http_backoff_factor: int = 1  # MLflow accepts whole seconds only
    aws_max_attempts: int = 2  # botocore counts the first try: one retry

    def env(self) -> dict[str, str]:
        return {
            "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(self.mlflow_http_max_retries),
            "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": str(self.mlflow_http_backoff_factor),
            "AWS_MAX_ATTEMPTS": str(self.aws_max_attempts),
        }

    @contextmanager
    def applied(self) -> Iterator[None]:
        added = [key for key in self.env() if key not in os.environ]
        os.environ.update({key: self.env()[key] for key in added})
        try:
            yield
        finally:
            for key in added:
                os.environ.pop(key, None)


class EmptyDownload(FileNotFoundError):
    """MLflow downloads an S3/GCS prefix with no objects under it as an empty directory, without an error."""

    error_code = "NOT_FOUND"


@dataclass(frozen=True)
class FetchResult:
    path: Path
    files: int
    bytes: int


BACKOFF, MAX_BACKOFF = 0.5, 8.0  # seconds: the first wait, and the longest


def retry_delay(attempt: int, backoff: float = BACKOFF, max_backoff: float = MAX_BACKOFF) -> float:
    """Seconds to wait after failed attempt ``attempt + 1``: ``backoff`` * 2^attempt, at most ``max_backoff``.
    The fetch and the registry lookup before it back off alike."""
    return min(backoff * 2**attempt, max_backoff)


def fetch_model(
    uri: str,
    dest: Path,
    *,
    retries: int = 4,
    backoff: float = BACKOFF,
    max_backoff: float = MAX_BACKOFF,
    client_retries: ClientRetries = ClientRetries(),
    store_retries: StoreRetries | None = None,
    progress_seconds: float = 10.0,
) -> FetchResult:
    """Download ``uri`` into ``dest`` (replaced if it exists) so that ``dest/MLmodel`` exists.

    Transient errors are retried ``retries`` times, waiting ``backoff`` * 2^n seconds (at most ``max_backoff``);
    anything else, and the last transient error, raises FetchError (exit 3) naming the URI (redacted) and a fix.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(dest)
    source = _normalize(uri)
    log.info("fetching %s", redact(uri), extra={"step": "fetch"})
    attempt = 0
    while True:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.fetch-", dir=dest.parent))
        try:
            sdk_bounds = nullcontext() if _is_local(source) else (store_retries or StoreRetries()).applied()
            with client_retries.applied(), sdk_bounds, _progress(tmp, progress_seconds):
                _download(source, tmp)
            check_links(tmp / "artifacts")
            root = _model_root(tmp, uri)
            if not present(root, "MLmodel"):
                raise no_mlmodel(root, redact(uri), uri)
            files, size = _count(root)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(root, dest)
            log.info(
                "fetched %d files, %s from %s", files, _mb(size), redact(uri),
                extra={"step": "fetch", "files": files, "bytes": size, "attempts": attempt + 1},
            )  # fmt: skip
            return FetchResult(dest, files, size)
        except MlflowKserveError:
            raise
        except Exception as exc:  # MLflow, boto3, google and azure SDKs raise many types
            kind, cause = _classify(exc)
            if kind == "transient" and attempt < retries:
                delay = retry_delay(attempt, backoff, max_backoff)
                attempt += 1
                log.warning(
                    "fetch attempt %d failed (%s); retrying in %.1fs", attempt, _short(cause), delay,
                    extra={"step": "fetch", "attempt": attempt},
                )  # fmt: skip
                time.sleep(delay)
                continue
            raise _error(uri, cause, kind, attempt) from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def classify(exc: BaseException) -> str:
    """'disk-full', 'escape' (an artifact path leaving the download dir), 'not-found', 'denied', 'transient' or
    'other': HTTP status or SDK error code anywhere in the exception chain first, then the messages' text."""
    return _classify(exc)[0]


def _classify(exc: BaseException) -> tuple[str, BaseException]:
    """The kind, and the exception in the chain that shows it: the root cause first, as SDKs wrap errors in
    their own (MLflow's S3 repository turns botocore's ``InvalidAccessKeyId`` into a PERMISSION_DENIED)."""
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and len(chain) < 8 and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for item in chain:
        full = isinstance(item, OSError) and item.errno in (errno.ENOSPC, errno.EDQUOT)
        if full or _DISK_FULL.search(str(item)[:4000]):  # shutil.Error of a copy lists its OSErrors as text
            return "disk-full", item
        if _ESCAPE.search(str(item)):
            return "escape", item
    for item in reversed(chain):
        status, code = _status(item), _code(item)
        for kind, codes in _CODES.items():
            if code in codes:
                return kind, item
        if status in (401, 403):
            return "denied", item
        if status == 404:
            return "not-found", item
        if status is not None and (status >= 500 or status in (408, 429)):
            return "transient", item
    for kind in ("denied", "not-found", "transient"):
        for item in reversed(chain):
            if _TEXT[kind].search(f"{type(item).__name__}: {item}"):
                return kind, item
    if any(isinstance(item, (ConnectionError, TimeoutError)) for item in chain):
        return "transient", chain[-1]
    return "other", chain[-1]


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status else None
    status = getattr(response, "status_code", None) or getattr(exc, "status_code", None)
    return int(status) if isinstance(status, int) else None


def _code(exc: BaseException) -> str | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        code = response.get("Error", {}).get("Code")
        return str(code) if code else None
    code = getattr(exc, "error_code", None)  # MlflowException, azure HttpResponseError
    if code is None:
        return None
    return str(getattr(code, "value", code))


def _download(source: str, tmp: Path) -> None:
    if _is_local(source):
        path = Path(source[len("file://") :] if source.startswith("file://") else source)
        if not path.exists():
            raise FetchError(
                f"no such file or directory: {path.absolute()} (the model URI is a local path)",
                "check the path; a model in a store needs its scheme (s3://, gs://, wasbs://, models:/, runs:/ …)",
            )
        target = tmp / "artifacts"
        if path.is_dir():
            if not present(path, "MLmodel"):  # before the link check: a folder above a model is the likelier slip
                raise no_mlmodel(path, str(path), source)
            check_links(path)
            shutil.copytree(path, target, symlinks=False)
        else:
            target.mkdir()
            shutil.copy2(path, target / path.name)
        return
    if source.startswith("runs:") or (source.startswith("mlflow-artifacts:") and "://" not in source):
        from mlflow_kserve.registry import require_tracking_server

        require_tracking_server(source, ("MLFLOW_TRACKING_URI",))
    import mlflow.artifacts

    mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(tmp / "artifacts"))


def _model_root(tmp: Path, uri: str) -> Path:
    """Where MLmodel is: the download dir itself, or its single child (MLflow nests a prefix downloaded
    without its trailing slash one level deeper). Nothing at all is 'not found'."""
    base = tmp / "artifacts"
    if not base.exists() or not any(base.iterdir()):
        raise EmptyDownload("no files under this URI")
    if (base / "MLmodel").exists():
        return base
    children = [c for c in base.iterdir() if not c.name.startswith(".")]
    if len(children) == 1 and children[0].is_dir() and (children[0] / "MLmodel").exists():
        return children[0]
    return base  # no MLmodel: fetch_model refuses it (exit 4)


def _normalize(uri: str) -> str:
    """A remote 'directory' URI needs its trailing slash, else MLflow nests the files one level deeper (and, at
    MLflow's artifact proxy, takes a missing directory for a file, which the server answers with a 500)."""
    if uri.startswith(_REMOTE_DIR_SCHEMES) and not uri.startswith(("runs:/", "models:/")):
        path, query = uri.split("?", 1) if uri.startswith(("http://", "https://")) and "?" in uri else (uri, "")
        path = path if path.endswith("/") else path + "/"
        return f"{path}?{query}" if query else path
    return uri


def _is_local(uri: str) -> bool:
    remote = ("models:/", "runs:/", "mlflow-artifacts:")  # MLflow's schemes, with or without "//"
    return uri.startswith("file://") or ("://" not in uri and not uri.startswith(remote))


def _count(root: Path) -> tuple[int, int]:
    files = size = 0
    for folder, _dirs, names in os.walk(root):
        for name in names:
            files += 1
            size += os.path.getsize(os.path.join(folder, name))
    return files, size


@contextmanager
def _progress(tmp: Path, every: float) -> Iterator[None]:
    """Log how much has arrived every ``every`` seconds while a download runs (nothing for quick ones)."""
    done = threading.Event()

    def report() -> None:
        started = time.monotonic()
        while not done.wait(every):
            files, size = _count(tmp)
            log.info(
                "downloading: %d files, %s so far (%.0fs)", files, _mb(size), time.monotonic() - started,
                extra={"step": "fetch", "files": files, "bytes": size},
            )  # fmt: skip

    thread = threading.Thread(target=report, name="fetch-progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"


def _remove_stale(dest: Path) -> None:
    for stale in dest.parent.glob(f".{dest.name}.fetch-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _short(exc: BaseException) -> str:
    return redact(" ".join(f"{type(exc).__name__}: {exc}".split()))[:300]


def _error(uri: str, exc: BaseException, kind: str, attempts: int) -> MlflowKserveError:
    where = redact(uri)
    if kind == "escape":
        return NotServableError(
            f"an artifact path under {where} escapes the model directory ('..' in an S3 key, a registry's artifact "
            f"path or the URI); nothing was written outside it ({_short(exc)})",
            "remove or rename the object whose key holds '..' in the store (or fix the URI), then log the model again",
        )
    if kind == "disk-full":
        return FetchError(
            f"no space left on device while fetching {where} ({_short(exc)})",
            "give the models volume more room (chart: volumes.modelsSizeLimit; --models-dir)",
        )
    if isinstance(exc, ModuleNotFoundError):
        return _missing_client(uri, exc)
    if kind == "not-found":
        return FetchError(
            f"model not found at {where} ({_short(exc)})",
            "check the URI (bucket, key, registered model name/version/alias) and that the model was logged there",
        )
    if kind == "denied":
        return FetchError(
            f"access denied fetching {where} ({_short(exc)})",
            "check the credentials: storage secret (AWS_*/GOOGLE_*/AZURE_*), IRSA/workload identity, "
            "MLFLOW_TRACKING_TOKEN",
        )
    if kind == "transient":
        return FetchError(
            f"could not fetch {where} after {attempts + 1} attempts ({_short(exc)})",
            "check the endpoint (MLFLOW_S3_ENDPOINT_URL, MLFLOW_TRACKING_URI) and the network; "
            "raise --fetch-retries for flaky stores",
        )
    return FetchError(
        f"could not fetch {where} ({_short(exc)})",
        "check the URI scheme and MLFLOW_TRACKING_URI for models:/ and runs:/ URIs",
    )


# The client library of each store: (module, URI scheme, PyPI package, our extra). The first row whose module is
# the missing one (or inside it), or whose scheme is the URI's when a parent module is missing, names it.
_STORE_CLIENTS = (
    ("azure.identity", "", "azure-identity", "azure"),
    ("azure.storage.filedatalake", "abfss", "azure-storage-file-datalake", "azure"),
    ("azure", "wasbs", "azure-storage-blob", "azure"),
    ("google", "gs", "google-cloud-storage", "gcs"),
)


def _missing_client(uri: str, exc: ModuleNotFoundError) -> FetchError:
    missing, scheme = exc.name or "", uri.split(":", 1)[0]
    for module, store, package, extra in _STORE_CLIENTS:
        inside = missing == module or missing.startswith(module + ".")
        if inside or (store == scheme and module.startswith(missing + ".")):
            return FetchError(
                f"could not fetch {redact(uri)}: its store's client library {package} is missing ({_short(exc)})",
                f"pip install 'mlflow-kserve[{extra}]'; the init image has it when built with the default "
                "EXTRAS (gcs,azure)",
            )
    return FetchError(
        f"could not fetch {redact(uri)}: the module {missing or '?'} is missing ({_short(exc)})",
        "install the package that provides it beside mlflow-kserve",
    )
