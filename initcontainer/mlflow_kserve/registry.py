"""Pin a model registry URI to the version it names now: ``models:/fraud@champion`` -> ``models:/fraud/7``.

An alias (or a stage, or ``latest``) is looked up when something resolves it; a rollout that resolves it once,
when it renders, serves one version in every pod, and an alias move shows up as a change to roll out. Looked
up with MlflowClient against MLFLOW_TRACKING_URI (and MLFLOW_REGISTRY_URI), as the fetch step would.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import asdict, dataclass
from typing import Any

from mlflow_kserve.errors import ConfigError, FetchError, redact
from mlflow_kserve.fetch import BACKOFF, MAX_BACKOFF, ClientRetries, classify, retry_delay
from mlflow_kserve.logs import get_logger

log = get_logger()

# models:/<name>/<version|stage|latest> or models:/<name>@<alias>; a name has no '/' or '@'.
_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:/(?P<ref>[^/@]+)|@(?P<alias>[^/@]+))/?$")


@dataclass(frozen=True)
class Pinned:
    """What a registry URI points at: ``uri`` names the version itself."""

    uri: str
    name: str
    version: str
    run_id: str | None
    source: str
    alias: str | None
    requested: str

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["source"] = redact(self.source)
        return data


def is_registry_uri(uri: str) -> bool:
    return uri.startswith("models:")


def require_tracking_server(
    uri: str, variables: tuple[str, ...] = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
) -> None:
    """ConfigError (2) when ``uri`` needs an MLflow server and none is named: without MLFLOW_TRACKING_URI, MLflow
    3 falls back to a SQLite file it creates in the current directory (mlflow.db), looks the model up in that
    empty database and reports it missing, which points the user the wrong way and leaves a file behind."""
    if any(os.environ.get(name, "").strip() for name in variables):
        return
    raise ConfigError(
        f"{redact(uri)} is looked up on an MLflow tracking server, and MLFLOW_TRACKING_URI is not set",
        "set MLFLOW_TRACKING_URI to your MLflow server, e.g. MLFLOW_TRACKING_URI=https://mlflow.corp.example "
        "(chart: mlflow.trackingUri)",
    )


def pin(uri: str, retries: int = 0, backoff: float = BACKOFF, max_backoff: float = MAX_BACKOFF) -> Pinned:
    """Look up the version ``uri`` names now. A bad URI raises ConfigError (2); a model, version or alias the
    registry does not have, or a registry that cannot be reached, FetchError (3). A transient error (no answer,
    5xx) is retried ``retries`` times with the fetch step's backoff: the lookup is part of the fetch."""
    match = _URI.match(uri)
    if not match:
        raise ConfigError(
            f"not a model registry URI: {redact(uri)!r}",
            "use models:/<name>/<version> or models:/<name>@<alias> (a registry on another host: MLFLOW_TRACKING_URI)",
        )
    require_tracking_server(uri)
    name, ref, alias = match.group("name"), match.group("ref"), match.group("alias")
    attempt = 0
    while True:
        with ClientRetries().applied():
            try:
                version = _lookup(name, ref, alias)
                break
            except FetchError:
                raise
            except Exception as exc:  # MlflowException, requests errors
                if classify(exc) != "transient" or attempt >= retries:
                    raise _error(uri, exc, attempt + 1) from exc
        delay = retry_delay(attempt, backoff, max_backoff)
        attempt += 1
        log.warning("registry lookup attempt %d failed; retrying in %.1fs", attempt, delay, extra={"step": "fetch"})
        time.sleep(delay)
    return Pinned(
        uri=f"models:/{name}/{version.version}",
        name=name,
        version=str(version.version),
        run_id=version.run_id or None,
        source=version.source or "",
        alias=alias,
        requested=uri,
    )


def pin_for_fetch(uri: str, retries: int = 0) -> Pinned | None:
    """The version a ``models:/`` URI names, looked up once and logged, so that what is fetched is exactly
    what report.json records; None for any other URI."""
    if not is_registry_uri(uri):
        return None
    pinned = pin(uri, retries)
    log.info(
        "%s is version %s of %r (run %s)", redact(uri), pinned.version, pinned.name, pinned.run_id or "-",
        extra={"step": "fetch", "model_version": pinned.version, "run_id": pinned.run_id},
    )  # fmt: skip
    return pinned


def _lookup(name: str, ref: str | None, alias: str | None) -> Any:
    from mlflow import MlflowClient

    client = MlflowClient()
    if alias is not None:
        return client.get_model_version_by_alias(name, alias)
    assert ref is not None
    if ref.isdigit():
        return client.get_model_version(name, ref)
    # A stage (Production, Staging, ...) or `latest`: the newest version in it, as MLflow's own download does.
    stages = None if ref.lower() == "latest" else [ref]
    versions = client.get_latest_versions(name, stages=stages)
    if not versions:
        raise FetchError(
            f"registered model {name!r} has no version in {ref!r}",
            "register a version (or transition one to that stage), or pin a version: models:/<name>/<version>",
        )
    return max(versions, key=lambda v: int(v.version))


def _error(uri: str, exc: BaseException, attempts: int = 1) -> FetchError:
    kind = classify(exc)
    cause = redact(" ".join(f"{type(exc).__name__}: {exc}".split()))[:300]
    if kind == "not-found":
        return FetchError(
            f"{redact(uri)} is not in the registry ({cause})",
            "check the model's name and its alias or version in the registry (the MLflow UI's Models page) and "
            "MLFLOW_TRACKING_URI",
        )
    if kind == "denied":
        return FetchError(f"access denied looking up {redact(uri)} ({cause})", "check MLFLOW_TRACKING_TOKEN")
    return FetchError(
        f"could not look up {redact(uri)} in the registry after {attempts} attempts ({cause})",
        "check MLFLOW_TRACKING_URI and the network",
    )
