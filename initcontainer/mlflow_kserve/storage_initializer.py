"""KServe's storage-initializer contract, for `mlflow-kserve storage-initializer <storageUri> <dest>`.

KServe's pod webhook injects a ClusterStorageContainer's container as the init container `storage-initializer`
with the arguments ``[storageUri, /mnt/models]`` (kserve v0.20.0
pkg/webhook/admission/pod/storage_initializer_injector.go:542-543). Nothing else of the InferenceService
reaches it but the pod's labels and annotations, which the runtime chart passes as env fieldRefs. This module
turns those into the same Settings ``init`` uses:

- the URI: ``mlflow+s3://b/k`` -> ``s3://b/k`` (the ``mlflow+`` prefix only routes the URI to this container:
  KServe's default ClusterStorageContainer takes plain ``s3://``); ``models:/``, ``runs:/`` and
  ``mlflow-artifacts:`` pass as they are;
- the layout: everything under ``dest``, the only volume the injected container and the server share: the model
  at ``dest/model``, the venv at ``dest/.env/venv`` (hidden: MLServer's model discovery skips it);
- the annotations ``mlflow-kserve.io/<key>``, each read exactly as the option it names reads its env var.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from mlflow_kserve.errors import ConfigError
from mlflow_kserve.files import remove
from mlflow_kserve.options import ANNOTATION_PREFIX, ANNOTATIONS

ROUTING_PREFIX = "mlflow+"
ENV_SUBDIR = ".env"
SCRATCH_SUBDIR = ".tmp"
# Options whose annotation adds to the operator's values instead of replacing them.
_ADDITIVE = {"extra_requirement", "constraint", "allow"}


def store_uri(storage_uri: str) -> str:
    """The URI to fetch: the storageUri without the ``mlflow+`` routing prefix."""
    uri = storage_uri.strip()
    if uri.startswith(ROUTING_PREFIX):
        inner = uri[len(ROUTING_PREFIX) :]
        if "://" not in inner:
            raise ConfigError(
                f"storageUri {storage_uri!r} has nothing after {ROUTING_PREFIX!r}",
                "write mlflow+s3://bucket/path (or gs://, wasbs://, abfss://)",
            )
        return inner
    return uri


def layout(dest: str | Path) -> dict[str, str]:
    """Where init writes, as Settings options: the model and the venv both under ``dest``."""
    root = Path(dest).absolute()
    return {"models_dir": str(root), "env_dir": str(root / ENV_SUBDIR)}


def apply_annotations(
    options: dict[str, Any], params: Mapping[str, click.Parameter], ctx: click.Context
) -> dict[str, Any]:
    """``options`` with the non-empty ``annotation_<key>`` values applied through ``params`` (the init command's
    own options, so an annotation parses exactly like its env var). Raises ConfigError naming the annotation."""
    values = {k: v for k, v in options.items() if not k.startswith("annotation")}
    may_allow = set(options.get("annotations_may_allow") or ())
    for key, name in ANNOTATIONS.items():
        raw = (options.get(f"annotation_{key.replace('-', '_')}") or "").strip()
        if not raw:
            continue
        annotation = f"{ANNOTATION_PREFIX}{key}"
        param = params.get(name)
        if param is None:
            raise ConfigError(
                f"annotation {annotation} is not supported by this mlflow-kserve version",
                f"remove the annotation, or use an image whose init has --{name.replace('_', '-')}",
            )
        value = _convert(annotation, raw, param, ctx)
        if name == "allow":
            refused = sorted(set(value) - may_allow)
            if refused:
                raise ConfigError(
                    f"annotation {annotation}={raw!r} asks for {', '.join(refused)}, which the platform does not "
                    "let annotations grant",
                    "remove it from the annotation, or ask the platform team to add it to the runtime chart's "
                    "annotations.mayAllow",
                )
        if name in _ADDITIVE:
            values[name] = (*(values.get(name) or ()), *value)
        else:
            values[name] = value
    return values


def _convert(annotation: str, raw: str, param: click.Parameter, ctx: click.Context) -> Any:
    try:
        if param.multiple:
            return tuple(param.type.convert(item, param, ctx) for item in param.type.split_envvar_value(raw) if item)
        return param.type.convert(raw, param, ctx)
    except click.BadParameter as exc:
        raise ConfigError(
            f"annotation {annotation}: {exc.message.rstrip('.')}",
            f"fix or remove the annotation {annotation} on the InferenceService",
        ) from None


@contextmanager
def scratch(dest: str | Path) -> Iterator[Path]:
    """The injected container may write only under ``dest`` (read-only root filesystem, no other volume):
    temporary files and HOME go to ``dest/.tmp`` while init runs, for this process and the tools it starts;
    removed afterwards."""
    path = Path(dest).absolute() / SCRATCH_SUBDIR
    remove(path)
    path.mkdir(parents=True)
    saved = {key: os.environ.get(key) for key in ("TMPDIR", "HOME")}
    saved_tempdir = tempfile.tempdir
    os.environ.update({"TMPDIR": str(path), "HOME": str(path)})
    tempfile.tempdir = str(path)
    try:
        yield path
    finally:
        tempfile.tempdir = saved_tempdir
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        remove(path)
