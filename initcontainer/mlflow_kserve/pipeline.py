"""DESIGN.md's steps wired together: ``check`` runs fetch → plan → lock; ``init`` runs all six.

Each step is a module with one job; this one only orders them, times them, and keeps the invariant that
nothing looks ready before everything is: stale outputs are removed first and report.json is written last.
"""

from __future__ import annotations

import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from mlflow_kserve import __version__
from mlflow_kserve.backends import Chosen, choose
from mlflow_kserve.configure import (
    RUNTIME_PACKAGE,
    model_settings,
    write_json,
    write_mlserver_runtime,
    write_server_package,
)
from mlflow_kserve.envdir import build_dir, clear_leftovers, scratch_dir
from mlflow_kserve.errors import ConfigError, ConflictError, VerifyError, redact
from mlflow_kserve.fetch import fetch_model
from mlflow_kserve.files import dir_bytes, discard
from mlflow_kserve.index import IndexConfig
from mlflow_kserve.installers import make_installer
from mlflow_kserve.interpreter import Interpreter, probe
from mlflow_kserve.lock import CONFLICT_HINT, Lock, LockRequest, resolve
from mlflow_kserve.logs import get_logger, step
from mlflow_kserve.plan import Plan, make_plan
from mlflow_kserve.registry import Pinned, pin_for_fetch
from mlflow_kserve.serving_stack import ServingStack
from mlflow_kserve.settings import Settings
from mlflow_kserve.verify import compile_bytecode, verify_model

log = get_logger()


@dataclass
class Prepared:
    """The outcome of fetch, plan and lock: what ``check`` prints and ``init`` installs."""

    settings: Settings
    interpreter: Interpreter
    plan: Plan
    chosen: Chosen  # the backend and why
    request: LockRequest
    lock: Lock
    slim: bool
    lock_cached: bool = False
    model_bytes: int = 0
    pinned: Pinned | None = None
    timings: dict[str, float] = field(default_factory=dict)
    optional: tuple[str, ...] = ()  # the stack's optional packages the lock holds
    optional_left_out: str | None = None  # why the stack's optional packages are not in the lock


def check(settings: Settings) -> Prepared:
    """Steps 1–3. The lock is written next to where the venv would go."""
    try:
        return _prepare(settings, {})
    finally:
        discard(scratch_dir(settings.env_dir))


def init(settings: Settings) -> dict[str, Any]:
    """Steps 1–6. Returns the report written to report.json."""
    started = time.monotonic()
    timings: dict[str, float] = {}
    _clear_outputs(settings)
    try:
        prepared = _prepare(settings, timings)
        cache = _cache(settings)
        if prepared.chosen.backend == "mlflow":  # before verify, which imports it
            write_server_package(settings.server_lib, settings.python)
        else:
            write_mlserver_runtime(settings.models_dir, settings.python)
        try:
            cache_hit = _install(prepared, cache, timings)
        except VerifyError as exc:
            if not prepared.slim:
                raise
            log.warning("the model does not load with mlflow-skinny (%s); installing full mlflow", exc.message)
            prepared = _relock(prepared, slim=False, timings=timings)
            cache_hit = _install(prepared, cache, timings)
    finally:
        discard(scratch_dir(settings.env_dir))
    with step("configure", timings):
        write_json(settings.model_settings_file, model_settings(
            settings.name, settings.model_dir, settings.models_dir, backend=prepared.chosen.backend,
            max_batch_size=settings.max_batch_size, max_batch_time=settings.max_batch_time,
        ))  # fmt: skip
        timings["total"] = round(time.monotonic() - started, 3)
        report = _report(prepared, cache_hit, timings)
        write_json(settings.report_file, report)
    log.info(
        "ready: %s served as %r by the %s backend (%d packages, MLflow %s, %s) in %.1fs; %s",
        redact(settings.model_uri), settings.name, prepared.chosen.backend, len(prepared.lock.packages),
        prepared.plan.mlflow_version, prepared.chosen.stack.describe(), timings["total"], prepared.chosen.reason,
        extra={"step": "init", "backend": prepared.chosen.backend},
    )  # fmt: skip
    return report


def _prepare(settings: Settings, timings: dict[str, float]) -> Prepared:
    with step("fetch", timings):
        pinned = pin_for_fetch(settings.model_uri, settings.fetch_retries)
        uri = pinned.uri if pinned else settings.model_uri
        fetched = fetch_model(uri, settings.model_dir, retries=settings.fetch_retries)
    with step("plan", timings):
        interpreter = probe(settings.python)
        plan = make_plan(settings.model_dir, settings, interpreter.version)
        for warning in plan.warnings:
            log.warning("%s", warning, extra={"step": "plan"})
        if settings.slim and settings.installer != "uv":
            raise ConfigError("--slim needs the uv installer", "drop --installer pip, or drop --slim")
    with step("lock", timings):
        chosen, locked = choose(
            plan.backends, lambda stack: _lock(settings, plan, interpreter, stack, slim=settings.slim)
        )
    log.info("backend %s: %s", chosen.backend, chosen.reason, extra={"step": "lock", "backend": chosen.backend})
    model_bytes = getattr(fetched, "bytes", 0) or dir_bytes(settings.model_dir)
    return Prepared(
        settings, interpreter, plan, chosen, locked.request, locked.lock, settings.slim, locked.cached, model_bytes,
        pinned, timings, optional=locked.optional, optional_left_out=locked.left_out,
    )  # fmt: skip


def _relock(prepared: Prepared, *, slim: bool, timings: dict[str, float]) -> Prepared:
    """The same backend's lock again, e.g. with full mlflow after the model did not load with mlflow-skinny."""
    with step("lock", timings):
        locked = _lock(prepared.settings, prepared.plan, prepared.interpreter, prepared.chosen.stack, slim=slim)
    return replace(prepared, request=locked.request, lock=locked.lock, slim=slim, lock_cached=locked.cached,
                   optional=locked.optional, optional_left_out=locked.left_out)  # fmt: skip


@dataclass(frozen=True)
class Locked:
    request: LockRequest
    lock: Lock
    cached: bool
    optional: tuple[str, ...] = ()  # the stack's optional packages this lock holds
    left_out: str | None = None  # why the stack's optional packages are not in it


def _lock(settings: Settings, plan: Plan, interpreter: Interpreter, stack: ServingStack, *, slim: bool) -> Locked:
    """The lock of the model's set with ``stack``'s packages, and its optional ones (the mlflow backend's
    accelerators) when they resolve with it too: tried first, left out on a conflict, as MLServer's pins would be
    refused (serving_stack.toml); only wheels of them are taken, so nothing is built in the pod for them."""
    left_out = None
    if stack.optional:
        try:
            request, lock, cached = _resolve(settings, plan, interpreter, stack, slim=slim, optional=stack.optional)
            return Locked(request, lock, cached, stack.optional)
        except ConflictError as exc:
            left_out = f"they do not resolve with the model's requirements ({exc.installer}): {exc.detail}"
            log.warning("optional %s left out: %s", " ".join(stack.optional), left_out, extra={"step": "lock"})
    request, lock, cached = _resolve(settings, plan, interpreter, stack, slim=slim, optional=())
    return Locked(request, lock, cached, (), left_out)


def _resolve(
    settings: Settings, plan: Plan, interpreter: Interpreter, stack: ServingStack, *, slim: bool,
    optional: tuple[str, ...],
) -> tuple[LockRequest, Lock, bool]:  # fmt: skip
    """Resolve the model's set with ``stack``'s packages (and ``optional``) and write the lock file. With a cache,
    a resolution (or a conflict) is memoised under the request, the interpreter and the backend."""
    request = _lock_request(plan, settings, interpreter, stack, slim=slim, optional=optional)
    cache = _cache(settings)
    key = ""
    if cache:
        parts = request.cache_parts(interpreter.version, interpreter.platform)
        key = cache.input_key({**parts, "backend": stack.backend})
        conflict = cache.get_conflict(key)
        if conflict:
            raise ConflictError(conflict["detail"], conflict["installer"], CONFLICT_HINT)
    text = cache.get_lock(key) if cache else None
    if text:
        lock = Lock(text)
    else:
        try:
            with _using_tools(cache):
                lock = resolve(request, settings.installer, _tool_cache(settings, cache))
        except ConflictError as exc:
            if cache:
                cache.put_conflict(key, {"detail": exc.detail, "installer": exc.installer})
            raise
        if cache:
            cache.put_lock(key, lock.text)
    lock.write(settings.lock_file)
    log.info("locked %d packages%s", len(lock.packages), " (from cache)" if text else "", extra={"step": "lock"})
    return request, lock, bool(text)


def _lock_request(
    plan: Plan, settings: Settings, interpreter: Interpreter, stack: ServingStack, *, slim: bool,
    optional: tuple[str, ...] = (),
) -> LockRequest:  # fmt: skip
    index = IndexConfig.from_operator(settings.index_url, settings.extra_index_url)
    if plan.index_options:
        index = index.with_model_options(*_split_index_options(plan.index_options))
    requirements = list(dict.fromkeys((*plan.requirements(stack), *optional)))
    excludes: tuple[str, ...] = ()
    if slim:
        requirements = [r for r in requirements if _name(r) != "mlflow"]
        requirements.append(f"mlflow-skinny=={plan.mlflow_version}")
        excludes = ("mlflow",)
    constraints = (*plan.constraints, *stack.constraints)
    binary = tuple(_name(r) for r in optional)  # --only-binary takes names
    return LockRequest(tuple(requirements), constraints, excludes, index, python=interpreter.path, only_binary=binary)


def _install(prepared: Prepared, cache: Any, timings: dict[str, float]) -> bool:
    """Steps 4 and 5: leave a complete, verified venv at settings.venv_dir; True when it came from the cache.

    The model is loaded inside the build, before the venv is published to the cache or renamed into place:
    a venv that cannot load the model is never kept, and loading writes the bytecode of exactly the modules
    the backend's server imports (compiling all of a 10,000-file venv took longer than the load itself).
    """
    settings = prepared.settings
    backend = prepared.chosen.backend
    server_lib = settings.server_lib if backend == "mlflow" else settings.models_dir  # what verify imports from
    installer = make_installer(settings.installer, _tool_cache(settings, cache))
    index = prepared.request.index

    def build(path: Path) -> None:
        with step("install", timings), _using_tools(cache):
            installer.create_venv(path, settings.python)
            installer.install(path, settings.lock_file, index)
        with step("verify", timings):
            if settings.verify:
                verify_model(path, settings.model_dir, backend, server_lib, grpc=settings.grpc)
            else:
                compile_bytecode(path)

    if cache is None:
        tmp = build_dir(settings.env_dir)
        try:
            build(tmp)
            tmp.rename(settings.venv_dir)
        finally:
            discard(tmp)  # a failed build; nothing once renamed
        return False

    from mlflow_kserve.cache import EnvCache, model_digest

    key = EnvCache.env_key(prepared.lock.text, prepared.interpreter.version, prepared.interpreter.platform, backend)
    digest = model_digest(settings.model_dir)
    started = time.monotonic()
    hit = cache.provide_env(key, settings.venv_dir, build)
    elapsed = time.monotonic() - started
    # On a miss the build's own steps are timed already; what is left is publishing and linking/copying.
    name = "restore" if hit else "publish"
    timings[name] = round(elapsed - (0 if hit else timings.get("install", 0) + timings.get("verify", 0)), 3)
    log.info(
        "environment %s in %.1fs (cache key %s)", "restored from the cache" if hit else "published to the cache",
        timings[name], key[:12], extra={"step": name},
    )  # fmt: skip
    if settings.verify:
        if hit and cache.is_verified(key, digest):
            log.info("this model loaded in this environment before: verify skipped", extra={"step": "verify"})
        else:
            if hit:
                with step("verify", timings):
                    verify_model(settings.venv_dir, settings.model_dir, backend, server_lib, grpc=settings.grpc)
            cache.mark_verified(key, digest)
    return hit


def _clear_outputs(settings: Settings) -> None:
    """A re-run (after a crash or a restart of the init container) starts from nothing that looks ready."""
    for path in (settings.report_file, settings.model_settings_file, settings.lock_file):
        path.unlink(missing_ok=True)
    discard(settings.server_lib)
    discard(settings.models_dir / RUNTIME_PACKAGE)
    settings.env_dir.mkdir(parents=True, exist_ok=True)
    clear_leftovers(settings.env_dir, settings.venv_dir)
    settings.models_dir.mkdir(parents=True, exist_ok=True)


def _cache(settings: Settings) -> Any:
    if settings.cache_dir is None:
        return None
    from mlflow_kserve.cache import EnvCache

    return EnvCache(settings.cache_dir, settings.cache_max_bytes, serve_from_cache=settings.serve_from_cache)


def _tool_cache(settings: Settings, cache: Any) -> Path:
    """uv's download cache lives inside the environment cache (pip gets a sibling folder). Without one, a
    scratch cache beside the venv, removed when done: the install reuses what the lock step fetched, and uv
    hard-links from it instead of copying 120 packages (the venv and the scratch share the env volume)."""
    if cache is None:
        return scratch_dir(settings.env_dir)
    return cache.uv_cache_dir if settings.installer == "uv" else Path(settings.cache_dir) / "pip"


def _using_tools(cache: Any) -> AbstractContextManager[None]:
    return cache.using_tools() if cache is not None else nullcontext()


def _name(requirement: str) -> str:
    try:
        return canonicalize_name(Requirement(requirement).name)
    except InvalidRequirement:
        return ""


def _split_index_options(lines: tuple[str, ...]) -> tuple[str | None, tuple[str, ...], tuple[str, ...]]:
    """Allowed model index lines (``--index-url X``, ``--extra-index-url X``, ``-f X``) as IndexConfig parts."""
    index_url: str | None = None
    extras: list[str] = []
    links: list[str] = []
    for line in lines:
        option, _, value = line.replace("=", " ", 1).partition(" ")
        value = value.strip()
        if option in ("--index-url", "-i"):
            index_url = value
        elif option == "--extra-index-url":
            extras.append(value)
        elif option in ("--find-links", "-f"):
            links.append(value)
    return index_url, tuple(extras), tuple(links)


def _report(prepared: Prepared, cache_hit: bool, timings: dict[str, float]) -> dict[str, Any]:
    settings, plan = prepared.settings, prepared.plan
    return {
        "mlflow_kserve_version": __version__,
        "model_uri": redact(settings.model_uri),
        "registry": prepared.pinned.as_dict() if prepared.pinned else None,
        "name": settings.name,
        "mlflow_version": plan.mlflow_version,
        "python": {"model": plan.env.python_version, "interpreter": prepared.interpreter.version},
        "backend": {
            "name": prepared.chosen.backend,
            "requested": settings.backend,
            "reason": prepared.chosen.reason,
        },
        "serving_stack": [*plan.added(prepared.chosen.stack), *prepared.optional],
        "optional": {"added": list(prepared.optional), "left_out": prepared.optional_left_out},
        "grpc": plan.grpc or prepared.chosen.backend == "mlserver",
        "installer": settings.installer,
        "slim": prepared.slim,
        "index": prepared.request.index.describe(),
        "cache": {"enabled": settings.cache_dir is not None, "hit": cache_hit, "lock_hit": prepared.lock_cached},
        "packages": prepared.lock.packages,
        "venv": str(settings.venv_dir.resolve()),  # the cache entry's venv with --serve-from-cache
        "bytes": {"model": prepared.model_bytes, "venv": dir_bytes(settings.venv_dir.resolve())},
        "seconds": timings,
        "warnings": list(plan.warnings),
    }
