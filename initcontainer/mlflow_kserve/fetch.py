"""Step 1: fetch the model with MLflow's artifact API into ``dest`` so that ``dest/MLmodel`` exists.

Any URI MLflow understands: s3://, gs://, wasbs:// / abfss://, http(s)://, a path or file://,
models:/<name>/<version>, models:/<name>@<alias>, runs:/<run_id>/<path>. Transient errors are retried
with backoff; a missing or denied object is not. Downloads land in a temp dir beside ``dest`` and are
renamed into place, so an interrupted fetch never leaves a model that looks complete.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mlflow_kserve.errors import FetchError, redact
from mlflow_kserve.logs import get_logger

log = get_logger()

_REMOTE_DIR_SCHEMES = ("s3://", "gs://", "wasbs://", "abfss://", "wasb://", "abfs://", "runs:/", "models:/")
_NOT_FOUND = re.compile(
    r"NoSuchKey|NoSuchBucket|Not ?Found|404|RESOURCE_DOES_NOT_EXIST|does not exist|No such file|"
    r"BlobNotFound|ContainerNotFound|not a valid|Invalid model version|not found",
    re.IGNORECASE,
)
_DENIED = re.compile(
    r"AccessDenied|Access Denied|Forbidden|403|401|InvalidAccessKeyId|SignatureDoesNotMatch|"
    r"ExpiredToken|Unauthorized|PERMISSION_DENIED|UNAUTHENTICATED|AuthorizationFailure|"
    r"NoCredentialsError|Unable to locate credentials|credentials",
    re.IGNORECASE,
)
_TRANSIENT = re.compile(
    r"\b5\d\d\b|SlowDown|Throttl|RequestTimeout|timed? ?out|Connection reset|Connection refused|"
    r"Connection aborted|EndpointConnectionError|Could not connect|ServiceUnavailable|InternalError|"
    r"TEMPORARILY_UNAVAILABLE|Max retries exceeded|RemoteDisconnected|IncompleteRead|BrokenPipe",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class FetchResult:
    path: Path
    files: int
    bytes: int


def fetch_model(uri: str, dest: Path, *, retries: int = 4, backoff: float = 0.5) -> FetchResult:
    """Download ``uri`` into ``dest`` (replaced if it exists); raise FetchError (exit 3)."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(dest)
    source = _normalize(uri)
    attempt = 0
    while True:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.fetch-", dir=dest.parent))
        try:
            _download(source, tmp)
            root = _model_root(tmp, uri)
            files, size = _count(root)
            if dest.exists():
                shutil.rmtree(dest)
            os.replace(root, dest)
            log.info("fetched %d files, %.1f MB from %s", files, size / 1e6, redact(uri), extra={"step": "fetch"})
            return FetchResult(dest, files, size)
        except FetchError:
            raise
        except Exception as exc:  # MLflow, boto3, google and azure SDKs raise many types
            kind = classify(exc)
            if kind == "transient" and attempt < retries:
                delay = min(backoff * 2**attempt, 8.0)
                attempt += 1
                log.warning(
                    "fetch attempt %d failed (%s); retrying in %.1fs", attempt, _short(exc), delay,
                    extra={"step": "fetch"},
                )  # fmt: skip
                time.sleep(delay)
                continue
            raise _error(uri, exc, kind, attempt) from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def classify(exc: BaseException) -> str:
    """'not-found', 'denied', 'transient' or 'other', from the exception chain's types and messages."""
    texts = []
    seen: BaseException | None = exc
    while seen is not None and len(texts) < 6:
        texts.append(f"{type(seen).__name__}: {seen}")
        seen = seen.__cause__ or seen.__context__
    text = " | ".join(texts)
    status = _status(exc)
    if status in (401, 403) or (status is None and _DENIED.search(text) and not _TRANSIENT.search(text)):
        return "denied"
    if status == 404 or (status is None and _NOT_FOUND.search(text)):
        return "not-found"
    if (status is not None and (status >= 500 or status == 429)) or _TRANSIENT.search(text):
        return "transient"
    if isinstance(exc, (ConnectionError, TimeoutError)):
        return "transient"
    return "other"


def _status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status else None
    status = getattr(response, "status_code", None) or getattr(exc, "status_code", None)
    return int(status) if isinstance(status, int) else None


# MLflow's own HTTP retries (7 with backoff factor 2) would turn our bounded retry loop into minutes
# against an unreachable tracking server; these are MLflow's documented settings, used unless set.
MLFLOW_HTTP_DEFAULTS = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1"}


def _download(source: str, tmp: Path) -> None:
    if _is_local(source):
        path = Path(source[len("file://") :] if source.startswith("file://") else source)
        if not path.exists():
            raise FileNotFoundError(f"No such file or directory: {path}")
        target = tmp / "artifacts"
        if path.is_dir():
            shutil.copytree(path, target, symlinks=False)
        else:
            target.mkdir()
            shutil.copy2(path, target / path.name)
        return
    for key, value in MLFLOW_HTTP_DEFAULTS.items():
        os.environ.setdefault(key, value)
    import mlflow.artifacts

    mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=str(tmp / "artifacts"))


def _model_root(tmp: Path, uri: str) -> Path:
    """Where MLmodel is: the download dir itself, or its single child (MLflow nests a prefix downloaded
    without its trailing slash one level deeper). Nothing at all is 'not found'."""
    base = tmp / "artifacts"
    if not base.exists() or not any(base.iterdir()):
        raise FileNotFoundError(f"not found: nothing at {redact(uri)}")
    if (base / "MLmodel").exists():
        return base
    children = [c for c in base.iterdir() if not c.name.startswith(".")]
    if len(children) == 1 and children[0].is_dir() and (children[0] / "MLmodel").exists():
        return children[0]
    return base  # plan reports the missing MLmodel (exit 4)


def _normalize(uri: str) -> str:
    """A remote 'directory' URI needs its trailing slash, else MLflow nests the files one level deeper."""
    if uri.startswith(_REMOTE_DIR_SCHEMES) and not uri.startswith(("runs:/", "models:/")):
        return uri if uri.endswith("/") else uri + "/"
    return uri


def _is_local(uri: str) -> bool:
    return uri.startswith("file://") or ("://" not in uri and not uri.startswith(("models:/", "runs:/")))


def _count(root: Path) -> tuple[int, int]:
    files = size = 0
    for folder, _dirs, names in os.walk(root):
        for name in names:
            files += 1
            size += os.path.getsize(os.path.join(folder, name))
    return files, size


def _remove_stale(dest: Path) -> None:
    for stale in dest.parent.glob(f".{dest.name}.fetch-*"):
        shutil.rmtree(stale, ignore_errors=True)


def _short(exc: BaseException) -> str:
    return redact(" ".join(f"{type(exc).__name__}: {exc}".split()))[:300]


def _error(uri: str, exc: BaseException, kind: str, attempts: int) -> FetchError:
    where = redact(uri)
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
