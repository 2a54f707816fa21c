"""``python -m mlflow_kserve_server start <models_dir> [--host H] [--port P] [--workers N] [--metrics-port M]
[--grpc] [--grpc-port G] [--max-request-bytes B] [--log-level L]``; every flag (and the models dir) also read from
``MLFLOW_KSERVE_SERVER_<FLAG>`` (``--metrics-port`` -> ``MLFLOW_KSERVE_SERVER_METRICS_PORT``). The only place
that reads the environment, prints a failure and chooses the exit code."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from mlflow_kserve_server.errors import EXIT_CONFIG, StartError
from mlflow_kserve_server.settings import DEFAULT_MAX_REQUEST_BYTES, ENV_PREFIX, Settings

LOG_LEVELS = ("debug", "info", "warning", "error")


def setup_logging(level: str) -> None:
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=level.upper(), stream=sys.stderr, force=True
    )


def parser() -> argparse.ArgumentParser:
    main = argparse.ArgumentParser(
        prog="python -m mlflow_kserve_server",
        description="The model's own MLflow scoring server with the Open Inference Protocol (V2) routes.",
    )
    commands = main.add_subparsers(dest="command", required=True)
    start = commands.add_parser("start", help="load the model named by <models_dir>/model-settings.json and serve it")
    start.add_argument(
        "models_dir", nargs="?", default=_env("models_dir"), type=Path,
        help=f"folder with model-settings.json (env {ENV_PREFIX}MODELS_DIR)",
    )  # fmt: skip
    _option(start, "--host", "0.0.0.0", str, "address to listen on")
    _option(start, "--port", 8080, _port, "V2 REST port (MLflow's /invocations too)")
    _option(start, "--workers", 1, _positive, "server processes, each with the model loaded")
    _option(start, "--metrics-port", 8082, _port, "Prometheus metrics port (0: none)")
    _option(start, "--grpc", False, _boolean, "serve V2 gRPC too (needs grpcio in the venv: `init --grpc` adds it)")
    _option(start, "--grpc-port", 8081, _port, "V2 gRPC port, with --grpc")
    _option(start, "--max-request-bytes", DEFAULT_MAX_REQUEST_BYTES, _positive, "larger V2 request bodies get 413")
    _option(start, "--log-level", "info", _log_level, f"one of {', '.join(LOG_LEVELS)}")
    return main


def _option(command: argparse.ArgumentParser, flag: str, default: object, kind: type | object, text: str) -> None:
    env = ENV_PREFIX + flag.lstrip("-").upper().replace("-", "_")
    raw = os.environ.get(env)
    value = raw if raw not in (None, "") else default
    if kind is _boolean:  # --grpc / --no-grpc; the env var gives the default
        value = _boolean(value) if isinstance(value, str) else value
        command.add_argument(flag, default=value, action=argparse.BooleanOptionalAction,
                             help=f"{text} (env {env}; default {default})")  # fmt: skip
        return
    command.add_argument(flag, default=value, type=kind, help=f"{text} (env {env}; default {default})")


def _boolean(text: str) -> bool:
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off", ""):
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not true or false")


def _env(name: str) -> str | None:
    return os.environ.get(ENV_PREFIX + name.upper()) or None


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port number")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} must be at least 1")
    return value


def _log_level(text: str) -> str:
    if text.lower() not in LOG_LEVELS:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(LOG_LEVELS)}")
    return text.lower()


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.models_dir is None:
        parser().error(f"<models_dir> is required (or set {ENV_PREFIX}MODELS_DIR)")
    settings = Settings(
        models_dir=args.models_dir,
        host=args.host,
        port=args.port,
        workers=args.workers,
        metrics_port=args.metrics_port,
        grpc=args.grpc,
        grpc_port=args.grpc_port,
        max_request_bytes=args.max_request_bytes,
        log_level=args.log_level,
    )
    setup_logging(settings.log_level)
    from mlflow_kserve_server.serve import start

    try:
        return start(settings)
    except StartError as exc:
        print(f"mlflow-kserve-server: error: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    except OSError as exc:  # e.g. the port is taken
        print(f"mlflow-kserve-server: error: {exc}", file=sys.stderr, flush=True)
        return EXIT_CONFIG
