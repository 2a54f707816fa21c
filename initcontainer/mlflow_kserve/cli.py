"""The thin CLI: parse options into Settings, hand off to pipeline/runner, map errors to exit codes.

This is the only module that prints errors or exits. Every way out is one line on stderr and a documented
exit code: the domain errors' own (2–8); an unexpected exception becomes 1 (its traceback only with
--log-level debug), disk full during install 7; SIGTERM 143 and SIGINT 130, after the children are stopped and
temporary folders removed.
"""

from __future__ import annotations

import errno
import signal
import sys
import tempfile
import traceback
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

import click

from mlflow_kserve import __version__, options
from mlflow_kserve.envdir import claim
from mlflow_kserve.errors import ConfigError, InstallError, MlflowKserveError
from mlflow_kserve.logs import configure_logging, get_logger
from mlflow_kserve.settings import Settings


class Terminated(BaseException):
    """SIGTERM (the kubelet stopping the pod, or a user): unwinds like Ctrl-C, so cleanups run."""


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(__version__, prog_name="mlflow-kserve")
def cli() -> None:
    """Serve any MLflow model with its own dependencies (KServe init container, CI check, local run)."""


@cli.command(short_help="The init container's job: all six steps.")
@options.apply(options.INIT_OPTIONS)
def init(**kwargs: Any) -> None:
    """Fetch, plan, lock, install, verify and configure: the init container's job."""
    settings = _settings(kwargs)
    from mlflow_kserve import pipeline

    with claim(settings.env_dir):
        pipeline.init(settings)


@cli.command()
@options.apply(options.BUILD_OPTIONS)
def build(**kwargs: Any) -> None:
    """Fetch, plan, lock, install and verify, then publish the environment to --env-store: no serving. For model
    CI and the chart's envStore.prebuild Job, so the first pod of a new model version starts from the store.
    An environment the store has already is not built again; a failed publish exits 7. Without --models-dir /
    --env-dir it works in a temporary directory and leaves nothing behind."""
    from mlflow_kserve import pipeline

    with tempfile.TemporaryDirectory(prefix="mlflow-kserve-build-") as scratch:
        for key in ("models_dir", "env_dir"):
            kwargs[key] = kwargs.get(key) or str(Path(scratch, key.removesuffix("_dir")))
        settings = _settings(kwargs)
        with claim(settings.env_dir):
            pipeline.build(settings)


@cli.command("storage-initializer", short_help="KServe's storage-initializer contract.")
@click.argument("storage_uri")
@click.argument("dest", type=click.Path(file_okay=False))
@options.apply(options.STORAGE_INITIALIZER_OPTIONS)
@click.pass_context
def storage_initializer(ctx: click.Context, storage_uri: str, dest: str, **kwargs: Any) -> None:
    """KServe's ClusterStorageContainer contract: init with KServe's arguments STORAGE_URI DEST (/mnt/models).

    The model and the venv both go under DEST (DEST/model, DEST/.env/venv); an mlflow+ prefix on the URI is
    dropped (mlflow+s3://b/k fetches s3://b/k); the InferenceService's mlflow-kserve.io/* annotations override
    the options they name.
    """
    from mlflow_kserve import pipeline
    from mlflow_kserve import storage_initializer as kserve

    init_params = {p.name: p for p in init.params if p.name}
    values = kserve.apply_annotations(kwargs, init_params, ctx)
    settings = _settings({**values, "model_uri": kserve.store_uri(storage_uri), **kserve.layout(dest)})
    with kserve.scratch(dest):
        pipeline.init(settings)


@cli.command(short_help="Fetch, plan and lock; print the plan (model CI).")
@options.apply(options.CHECK_OPTIONS)
def check(json_output: bool, **kwargs: Any) -> None:
    """Fetch, plan and lock only; print the plan. For model CI before deploying.

    Without --models-dir / --env-dir it works in a temporary directory and leaves nothing behind.
    """
    from mlflow_kserve import pipeline, report

    kept = bool(kwargs.get("env_dir"))
    with tempfile.TemporaryDirectory(prefix="mlflow-kserve-check-") as scratch:
        for key in ("models_dir", "env_dir"):
            kwargs[key] = kwargs.get(key) or str(Path(scratch, key.removesuffix("_dir")))
        settings = _settings(kwargs)
        with claim(settings.env_dir):
            result = pipeline.check(settings)
    click.echo(report.plan_json(result, kept) if json_output else report.plan_table(result, kept))


@cli.command(short_help="Serve on localhost with the chosen backend.")
@options.apply(options.RUN_OPTIONS)
def run(port: int, grpc_port: int, metrics_port: int, work_dir: str | None, **kwargs: Any) -> None:
    """Init into a work dir, then serve on localhost with the chosen backend (V2 REST on --port)."""
    from mlflow_kserve import runner

    configure_logging(kwargs.get("log_format") or "text", kwargs.get("log_level") or "info")
    code = runner.run(kwargs, port=port, grpc_port=grpc_port, metrics_port=metrics_port, work_dir=work_dir)
    sys.exit(code)


@cli.command(short_help="Print the version a registry URI names now.")
@options.apply(options.PIN_OPTIONS)
def resolve(model_uri: str, json_output: bool, log_format: str, log_level: str) -> None:
    """Print the pinned URI (models:/<name>/<version>) a registry alias points at now, for rollouts.

    Any other URI is printed unchanged: only the registry has names that move.
    """
    import json

    from mlflow_kserve import registry

    configure_logging(log_format, log_level)
    uri = model_uri.strip()
    if not uri:
        raise ConfigError("no model URI given", "pass --model-uri or set MLFLOW_KSERVE_MODEL_URI")
    if not registry.is_registry_uri(uri):
        click.echo(json.dumps({"uri": uri, "pinned": False}) if json_output else uri)
        return
    pinned = registry.pin(uri)
    click.echo(json.dumps({**pinned.as_dict(), "pinned": True}) if json_output else pinned.uri)


def _settings(kwargs: dict[str, Any]) -> Settings:
    configure_logging(kwargs.get("log_format") or "text", kwargs.get("log_level") or "info")
    return Settings.from_options(**kwargs)


def main() -> None:
    log = get_logger()
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        # Bad flags: click's message, our exit code for bad configuration.
        exc.show()
        sys.exit(2)
    except MlflowKserveError as exc:
        _fail(exc)
    except (KeyboardInterrupt, Terminated) as exc:
        name, code = ("SIGTERM", 143) if isinstance(exc, Terminated) else ("SIGINT", 130)
        log.error("stopped by %s; nothing is left looking ready, a new run starts over", name)
        sys.exit(code)
    except Exception as exc:  # a bug, or the machine: still one line and a documented code
        log.debug("%s", traceback.format_exc())
        _fail(_unexpected(exc))


def _fail(exc: MlflowKserveError) -> NoReturn:
    get_logger().error(str(exc), extra={"exit_code": exc.exit_code, "error": type(exc).__name__})
    sys.exit(exc.exit_code)


def _terminate(signum: int, _frame: FrameType | None) -> None:
    from mlflow_kserve import procs

    procs.stop_all()
    raise Terminated(signum)


class UnexpectedError(MlflowKserveError):
    """An exception no step turned into a domain error."""

    exit_code = 1


def _unexpected(exc: Exception) -> MlflowKserveError:
    what = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return InstallError(
            f"no space left on device ({what})",
            "give the volume more room: --env-dir (chart: volumes.envSizeLimit), --models-dir "
            "(volumes.modelsSizeLimit) or the cache (cache.size)",
        )
    if isinstance(exc, OSError) and exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return ConfigError(
            f"cannot write where told to ({what})", "make --models-dir, --env-dir and --cache-dir writable"
        )
    return UnexpectedError(
        f"unexpected error ({what})",
        "run again (a new run starts over); if it fails again, report it with the output of --log-level debug",
    )
