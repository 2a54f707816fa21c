"""Every CLI option, defined once and shared by the subcommands (pip-tools' ``scripts/options.py`` habit).

Each option also reads ``MLFLOW_KSERVE_<FLAG>``; that is how the Helm chart configures the init container.
Multi-value options read a whitespace-separated env var.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

ENV_PREFIX = "MLFLOW_KSERVE_"

ALLOWANCES = ("index-options", "editable", "vcs", "url", "local-path", "external-include")


def env_name(flag: str) -> str:
    """``--model-uri`` -> ``MLFLOW_KSERVE_MODEL_URI``."""
    return ENV_PREFIX + flag.split("/")[0].lstrip("-").replace("-", "_").upper()


class _Line(click.ParamType):
    """A string value whose env var holds one value per line (requirements may contain spaces)."""

    name = "text"
    envvar_list_splitter = "\n"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        return str(value).strip()


LINE = _Line()


def _option(flag: str, *decls: str, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(flag, *decls, envvar=env_name(flag), show_envvar=True, **kwargs)


model_uri = _option(
    "--model-uri",
    required=True,
    help="Where the model is: s3://, gs://, wasbs://, http(s):// (MLflow artifact proxy), a path or file://, "
    "models:/<name>/<version>, models:/<name>@<alias>, runs:/<run_id>/<path>.",
)
name = _option(
    "--name",
    default=None,
    help="Model name served under /v2/models/<name>. Default: derived from the model URI.",
)
backend = _option(
    "--backend",
    type=click.Choice(["auto", "mlserver", "mlflow"]),
    default="auto",
    show_default=True,
    help="The server: mlflow (the model's own MLflow scoring server with the V2 routes; adds no package; MLflow >= "
    "2.21), mlserver (MLServer + mlserver-mlflow added to the model's packages), or auto: mlflow whenever the "
    "model's MLflow is 2.21 or newer, else MLServer.",
)
grpc = _option(
    "--grpc/--no-grpc",
    default=False,
    show_default=True,
    help="Serve V2 gRPC too (h2c, --grpc-port): the mlflow backend's plan adds grpcio, and nothing else, to the "
    "model's packages (MLServer always serves gRPC and adds nothing for it).",
)
models_dir = _option(
    "--models-dir",
    default="/mnt/models",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the model is fetched (<dir>/model) and model-settings.json written.",
)
env_dir = _option(
    "--env-dir",
    default="/mnt/env",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Where the venv (<dir>/venv), the lock and report.json go.",
)
cache_dir = _option(
    "--cache-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Shared dependency cache (a PVC or hostPath). Unset: no cache.",
)
cache_max_bytes = _option(
    "--cache-max-bytes",
    default=None,
    type=click.IntRange(min=0),
    help="Keep the cache under this size: least recently used environments go first, then the download "
    "caches. Unset: no limit.",
)
installer = _option(
    "--installer",
    type=click.Choice(["uv", "pip"]),
    default="uv",
    show_default=True,
    help="Resolver and installer: uv (uv pip compile + uv) or pip (pip-compile + pip).",
)
index_url = _option(
    "--index-url",
    default=None,
    help="Package index for the model's dependencies (operator's choice; also PIP_INDEX_URL / UV_INDEX_URL).",
)
extra_index_url = _option(
    "--extra-index-url",
    multiple=True,
    help="Additional package index; repeatable (env: whitespace-separated).",
)
extra_requirement = _option(
    "--extra-requirement",
    multiple=True,
    type=LINE,
    help="A requirement added to the model's, e.g. 'prometheus-client<1'; repeatable (env: one per line).",
)
constraint = _option(
    "--constraint",
    multiple=True,
    type=LINE,
    help="A constraint applied when resolving, e.g. 'numpy<2'; repeatable (env: one per line).",
)
python_policy = _option(
    "--python-policy",
    type=click.Choice(["warn", "strict"]),
    default="warn",
    show_default=True,
    help="When the model was logged with another Python minor than the serving interpreter: warn, or "
    "fail (exit 5) under strict.",
)
allow = _option(
    "--allow",
    type=click.Choice(ALLOWANCES),
    multiple=True,
    help="Allow requirement lines the policy rejects by default; repeatable.",
)
python = _option(
    "--python",
    default=None,
    help="Interpreter for the venv. Default: the base interpreter running mlflow-kserve.",
)
slim = _option(
    "--slim/--no-slim",
    default=False,
    show_default=True,
    help="Serve the model's mlflow requirement with mlflow-skinny of the same version when the model loads with it.",
)
SERVE_FROM_CACHE_HELP = (
    "With --cache-dir: make the venv a link to its cache entry instead of a copy (the server must mount the cache "
    "at the same path; it holds a lock that keeps the entry from eviction). Off for init; on for run, whose server "
    "runs beside its cache, so a warm run copies nothing."
)
serve_from_cache = _option(
    "--serve-from-cache/--copy-from-cache", default=False, show_default=True, help=SERVE_FROM_CACHE_HELP
)
run_serve_from_cache = _option(
    "--serve-from-cache/--copy-from-cache", default=True, show_default=True, help=SERVE_FROM_CACHE_HELP
)
verify = _option(
    "--verify/--no-verify",
    default=True,
    show_default=True,
    help="Load the model once with the venv's Python before declaring it ready.",
)
max_batch_size = _option(
    "--max-batch-size",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="MLServer adaptive batching: at most this many requests merged into one predict call (0 or 1: off).",
)
max_batch_time = _option(
    "--max-batch-time",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="MLServer adaptive batching: seconds a request waits for others to fill its batch.",
)
fetch_retries = _option(
    "--fetch-retries",
    type=click.IntRange(min=0),
    default=4,
    show_default=True,
    help="Retries (with backoff) for transient errors while fetching the model.",
)
log_format = _option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text or JSON objects (for log pipelines).",
)
log_level = _option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
    help="Log level.",
)
json_output = _option("--json", "json_output", is_flag=True, default=False, help="Print the plan as JSON.")
resolve_json = _option(
    "--json", "json_output", is_flag=True, default=False,
    help="Print the pinned URI with its version, run id, source and alias as JSON.",
)  # fmt: skip
port = _option("--port", type=click.IntRange(1, 65535), default=8080, show_default=True, help="V2 REST port.")
grpc_port = _option(
    "--grpc-port", type=click.IntRange(1, 65535), default=8081, show_default=True,
    help="V2 gRPC port (MLServer always; the mlflow backend with --grpc).",
)  # fmt: skip
metrics_port = _option(
    "--metrics-port", type=click.IntRange(1, 65535), default=8082, show_default=True, help="Metrics port."
)
work_dir = _option(
    "--work-dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Where `run` keeps models and venvs, reused across runs of the same model. "
    "Default: ~/.cache/mlflow-kserve/run.",
)

# KServe-native mode (`storage-initializer`, charts/mlflow-kserve-runtime): the InferenceService's
# `mlflow-kserve.io/<key>` annotations reach the container through env fieldRefs (empty when absent). Each is read
# as the option it names reads its env var (same parsing, same choices) and overrides it; list options add to it.
ANNOTATION_PREFIX = "mlflow-kserve.io/"
ANNOTATIONS: dict[str, str] = {  # annotation key -> the init option it sets
    "extra-requirements": "extra_requirement",
    "constraints": "constraint",
    "python-policy": "python_policy",
    "allow": "allow",
    "backend": "backend",
    "slim": "slim",
}


def _annotation_option(key: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    flag = f"--annotation-{key}"
    return _option(
        flag,
        f"annotation_{key.replace('-', '_')}",
        default=None,
        help=f"The InferenceService's {ANNOTATION_PREFIX}{key} annotation (the runtime chart passes it by fieldRef): "
        f"read like {ANNOTATIONS[key].replace('_', '-')}'s env var; a bad value exits 2 naming the annotation.",
    )


annotation_options = [_annotation_option(key) for key in ANNOTATIONS]
annotations_may_allow = _option(
    "--annotations-may-allow",
    type=click.Choice(ALLOWANCES),
    multiple=True,
    help=f"What the {ANNOTATION_PREFIX}allow annotation may grant (the operator's choice; default: nothing).",
)

# The option sets of each subcommand. init's set is what the chart may configure.
RESOLVE_OPTIONS = [
    model_uri, name, backend, grpc, models_dir, env_dir, cache_dir, installer, index_url, extra_index_url,
    extra_requirement, constraint, python_policy, allow, python, slim, fetch_retries, log_format, log_level,
]  # fmt: skip
INIT_OPTIONS = [*RESOLVE_OPTIONS, cache_max_bytes, serve_from_cache, verify, max_batch_size, max_batch_time]
CHECK_OPTIONS = [*RESOLVE_OPTIONS, json_output]
PIN_OPTIONS = [model_uri, resolve_json, log_format, log_level]
# storage-initializer takes KServe's positional [storageUri, dest] instead of --model-uri, --models-dir, --env-dir.
STORAGE_INITIALIZER_OPTIONS = [
    *(o for o in INIT_OPTIONS if o not in (model_uri, models_dir, env_dir)), *annotation_options,
    annotations_may_allow,
]  # fmt: skip
# run derives --models-dir and --env-dir from --work-dir, and serves from its cache unless told to copy.
RUN_OPTIONS = [
    *(run_serve_from_cache if o is serve_from_cache else o for o in INIT_OPTIONS if o not in (models_dir, env_dir)),
    port, grpc_port, metrics_port, work_dir,
]  # fmt: skip


def apply(options: list[Callable[[Callable[..., Any]], Callable[..., Any]]]) -> Callable[..., Any]:
    """Stack ``options`` on a click command function, first option first in ``--help``."""

    def decorator(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            func = option(func)
        return func

    return decorator
