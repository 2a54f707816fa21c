"""The six steps (docs/architecture.md) wired together: ``check`` runs fetch → plan → lock; ``init`` runs all six;
``build`` runs them and publishes the environment to the store.

Each step is a module with one job; this one only orders them, times them, and keeps the invariant that
nothing looks ready before everything is: stale outputs are removed first and report.json is written last.

With an environment store (``--env-store``), init reads it after plan: the key is a function of the lock
requests the lock step would resolve (env_store/key.py), so a hit skips lock and install, and nothing asks the
package index. Any fault of the store (a miss, down, a digest that does not match, an archive that does not
unpack) is one line, and init goes on as without a store; after a build, it publishes when it may
(``--env-store-publish``, always for ``build``). The environment's source (built, local cache, store) is in
report.json and the ready line.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from mlflow_kserve import __version__
from mlflow_kserve.backends import Chosen, choose
from mlflow_kserve.configure import (
    MLSERVER_LOG_CONFIG,
    MLSERVER_LOGGING,
    RUNTIME_PACKAGE,
    model_settings,
    write_json,
    write_mlserver_runtime,
    write_server_package,
)
from mlflow_kserve.env_store import EnvStore, Manifest, Restored, StoreFault, StoreKey, store_key, unkeyable
from mlflow_kserve.env_store.trail import StoreTrail
from mlflow_kserve.envdir import RUN, build_dir, clear_leftovers, scratch_dir
from mlflow_kserve.errors import ConfigError, ConflictError, InstallError, VerifyError, redact
from mlflow_kserve.fetch import fetch_model
from mlflow_kserve.files import dir_bytes, discard
from mlflow_kserve.index import IndexConfig
from mlflow_kserve.installers import make_installer
from mlflow_kserve.interpreter import Interpreter, probe
from mlflow_kserve.lock import CONFLICT_HINT, Lock, LockRequest, resolve
from mlflow_kserve.logs import get_logger, step
from mlflow_kserve.plan import Plan, make_plan
from mlflow_kserve.registry import Pinned, pin_for_fetch
from mlflow_kserve.report import resolution_dict
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

    @property
    def stack_packages(self) -> list[str]:
        """What the serving stack adds to the model's set: its required packages (gRPC's with --grpc) and the
        optional ones the lock holds (check's plan and report.json both list these)."""
        return [*self.plan.added(self.chosen.stack), *self.optional]


def check(settings: Settings) -> Prepared:
    """Steps 1–3. The lock is written next to where the venv would go."""
    try:
        return _prepare(settings, {})
    finally:
        discard(scratch_dir(settings.env_dir))


@dataclass(frozen=True)
class Planned:
    """The outcome of fetch and plan: everything the lock step and the store key need."""

    settings: Settings
    interpreter: Interpreter
    plan: Plan
    model_bytes: int
    pinned: Pinned | None
    slim: bool  # --slim, unless the model's own lock installs its mlflow


SOURCES = ("built", "local cache", "store")  # where an environment came from (report.json, the ready line)


def init(settings: Settings) -> dict[str, Any]:
    """Steps 1–6. Returns the report written to report.json."""
    return _run(settings, building=False)


def build(settings: Settings) -> dict[str, Any]:
    """Steps 1–5 and publish to the store (when one is given): no serving. An environment the store already
    has for this model's inputs is not built again. Returns the report written to report.json."""
    return _run(settings, building=True)


def _run(settings: Settings, *, building: bool) -> dict[str, Any]:
    started = time.monotonic()
    timings: dict[str, float] = {}
    _clear_outputs(settings)
    store = _env_store(settings)
    trail = StoreTrail(store.location) if store else None
    if building and not store:
        log.warning("no --env-store: the environment is built and verified, and published nowhere")
    source = "built"
    try:
        planned = _fetch_and_plan(settings, timings)
        cache = _cache(settings)
        from_store = None
        if store and trail:
            trail.key = _store_key(planned, trail)
            if trail.key and building:  # build reads only the manifest: an entry there is not built again
                if _already_published(store, trail, planned):
                    return _finish_published(planned, trail, timings, started)
            elif trail.key:
                from_store = _from_store(planned, store, trail, cache, timings)
        if from_store:
            prepared, source = from_store
        else:
            prepared = _lock_step(planned, timings)
            prepared, hit = _install_verified(prepared, cache, timings)
            source = "local cache" if hit else "built"
    finally:
        discard(scratch_dir(settings.env_dir))
    with step("configure", timings):
        if not building:
            write_json(settings.model_settings_file, model_settings(
                settings.name, settings.model_dir, settings.models_dir, backend=prepared.chosen.backend,
                max_batch_size=settings.max_batch_size, max_batch_time=settings.max_batch_time,
            ))  # fmt: skip
            if prepared.chosen.backend == "mlserver":
                write_json(settings.env_dir / MLSERVER_LOGGING, MLSERVER_LOG_CONFIG)
        timings["total"] = round(time.monotonic() - started, 3)
        report = _report(prepared, source, trail, timings)
    if store and trail and trail.key and source != "store" and (building or settings.env_store_publish):
        _publish(store, trail, prepared, report, building=building)
        report["store"] = trail.as_dict()
        timings["total"] = round(time.monotonic() - started, 3)
    write_json(settings.report_file, report)
    where = {"built": "built here", "local cache": "from the local cache", "store": "from the env store"}[source]
    log.info(
        "%s: %s %s by the %s backend (%d packages, MLflow %s, %s) in %.1fs; environment %s; %s",
        "built" if building else "ready", redact(settings.model_uri),
        "verified" if building else f"served as {settings.name!r}", prepared.chosen.backend,
        len(prepared.lock.packages), prepared.plan.mlflow_version, prepared.chosen.stack.describe(), timings["total"],
        where, prepared.chosen.reason, extra={"step": "init", "backend": prepared.chosen.backend, "source": source},
    )  # fmt: skip
    return report


def _install_verified(prepared: Prepared, cache: Any, timings: dict[str, float]) -> tuple[Prepared, bool]:
    """Steps 4 and 5 from the lock; with --slim, a model that does not load with mlflow-skinny gets full mlflow."""
    settings = prepared.settings
    _write_server_code(settings, prepared.chosen.backend)
    try:
        try:
            return prepared, _install(prepared, cache, timings)
        except VerifyError as exc:
            if not prepared.slim:
                raise
            log.warning("the model does not load with mlflow-skinny (%s); installing full mlflow", exc.message)
            prepared = _relock(prepared, slim=False, timings=timings)
            return prepared, _install(prepared, cache, timings)
    except BaseException:
        _discard_server_code(settings)  # no environment: nothing of ours beside it either
        raise


def _write_server_code(settings: Settings, backend: str) -> None:
    """Our code the backend's server runs, before verify, which imports it: the mlflow backend's server package,
    or the MLServer runtime beside the model settings."""
    if backend == "mlflow":
        write_server_package(settings.server_lib, settings.python)
    else:
        write_mlserver_runtime(settings.models_dir, settings.python)


def _discard_server_code(settings: Settings) -> None:
    discard(settings.server_lib)
    discard(settings.models_dir / RUNTIME_PACKAGE)


def _prepare(settings: Settings, timings: dict[str, float]) -> Prepared:
    return _lock_step(_fetch_and_plan(settings, timings), timings)


def _fetch_and_plan(settings: Settings, timings: dict[str, float]) -> Planned:
    with step("fetch", timings):
        pinned = pin_for_fetch(settings.model_uri, settings.fetch_retries)
        uri = pinned.uri if pinned else settings.model_uri
        fetched = fetch_model(uri, settings.model_dir, retries=settings.fetch_retries)
    with step("plan", timings):
        interpreter = probe(settings.python)
        plan = make_plan(settings.model_dir, settings, interpreter)
        for warning in plan.warnings:
            log.warning("%s", warning, extra={"step": "plan"})
        if settings.slim and settings.installer != "uv":
            raise ConfigError("--slim needs the uv installer", "drop --installer pip, or drop --slim")
        slim = settings.slim
        if slim and plan.model_lock is not None:
            log.warning("--slim ignored: the model's %s installs its own mlflow", plan.resolution.lock_source)
            slim = False
        resolution = plan.resolution
        log.info(
            "resolving %s", resolution.describe(),
            extra={"step": "plan", "resolve_mode": resolution.mode, "resolve_as_of": resolution.as_of,
                   "lock_digest": resolution.lock_digest},
        )  # fmt: skip
    model_bytes = getattr(fetched, "bytes", 0) or dir_bytes(settings.model_dir)
    return Planned(settings, interpreter, plan, model_bytes, pinned, slim)


def _lock_step(planned: Planned, timings: dict[str, float]) -> Prepared:
    settings, plan, interpreter, slim = planned.settings, planned.plan, planned.interpreter, planned.slim
    with step("lock", timings):
        chosen, locked = choose(plan.backends, lambda stack: _lock(settings, plan, interpreter, stack, slim=slim))
    log.info("backend %s: %s", chosen.backend, chosen.reason, extra={"step": "lock", "backend": chosen.backend})
    return Prepared(
        settings, interpreter, plan, chosen, locked.request, locked.lock, slim, locked.cached, planned.model_bytes,
        planned.pinned, timings, optional=locked.optional, optional_left_out=locked.left_out,
    )  # fmt: skip


# -- the environment store ----------------------------------------------------------------------------------
def _env_store(settings: Settings) -> EnvStore | None:
    return EnvStore(settings.env_store) if settings.env_store else None


def _store_key(planned: Planned, trail: StoreTrail) -> StoreKey | None:
    """The key of this model's environment (env_store/key.py): from the lock requests of the backends the lock
    step would try, built by the same function as theirs. None (logged) when the key cannot name the packages."""
    settings, plan, interpreter = planned.settings, planned.plan, planned.interpreter
    candidates = [
        (
            stack.backend,
            _lock_request(plan, settings, interpreter, stack, slim=planned.slim, optional=_optional(plan, stack)),
        )
        for stack in plan.backends.stacks
    ]
    reason = unkeyable(candidates)
    if reason:
        trail.skipped(reason)
        return None
    return store_key(candidates, requested_backend=plan.backends.requested, installer=settings.installer,
                     slim=planned.slim, interpreter=interpreter)  # fmt: skip


def _from_store(
    planned: Planned, store: EnvStore, trail: StoreTrail, cache: Any, timings: dict[str, float]
) -> tuple[Prepared, str] | None:
    """The environment from the store, in place and verified: (prepared, "store" or "local cache"), or None
    after one line saying why not (the caller builds). Asks nothing of the package index."""
    settings, plan, interpreter = planned.settings, planned.plan, planned.interpreter
    assert trail.key is not None
    restored: list[Restored] = []
    try:
        with step("store", timings):
            manifest = store.lookup(trail.key)
            stack = next((s for s in plan.backends.stacks if s.backend == manifest.backend), None)
            if stack is None:  # the candidates are in the key: only a hand-edited manifest gets here
                raise StoreFault("unreadable manifest", f"backend {manifest.backend!r} is not a candidate")
            lock = Lock(store.read_lock(manifest))
            lock.write(settings.lock_file)
            tried = _optional(plan, stack)
            optional = tuple(r for r in tried if _name(r) in lock.packages)
            request = _lock_request(plan, settings, interpreter, stack, slim=manifest.slim, optional=optional)
            left_out = "left out by the build that published this environment" if optional != tried else None
            prepared = Prepared(
                settings, interpreter, plan, Chosen(stack, manifest.reason), request, lock, manifest.slim, False,
                planned.model_bytes, planned.pinned, timings, optional=optional, optional_left_out=left_out,
            )  # fmt: skip
            _write_server_code(settings, stack.backend)

            def unpack(path: Path) -> None:
                restored.append(store.restore(manifest, path))

            hit = _place(settings, cache, lock, interpreter, stack.backend, unpack)
    except StoreFault as fault:
        trail.fault(fault)
        settings.lock_file.unlink(missing_ok=True)
        _discard_server_code(settings)
        return None
    trail.hit(manifest, restored[0] if restored else None)
    try:
        _verify_restored(prepared, manifest, cache)
    except VerifyError as exc:
        if not manifest.slim:
            raise
        log.warning("the model does not load with the stored mlflow-skinny environment (%s); building", exc.message)
        return None
    return prepared, "local cache" if hit else "store"


def _place(settings: Settings, cache: Any, lock: Lock, interpreter: Interpreter, backend: str,
           unpack: Callable[[Path], None]) -> bool:  # fmt: skip
    """Put the store's venv at settings.venv_dir through ``unpack`` (into a new folder, renamed when complete).
    With a local cache, into a cache entry (True: the cache had it, nothing was downloaded)."""
    if cache is None:
        _into_venv_dir(settings, unpack)
        return False
    from mlflow_kserve.cache import EnvCache

    key = EnvCache.env_key(lock.text, interpreter.version, interpreter.platform, backend)
    return cache.provide_env(key, settings.venv_dir, unpack)


def _verify_restored(prepared: Prepared, manifest: Manifest, cache: Any) -> None:
    """Load the model unless it loaded in this environment before (the build that published it, or this node)."""
    settings = prepared.settings
    if not settings.verify:
        return
    from mlflow_kserve.cache import EnvCache, model_digest

    digest = model_digest(settings.model_dir)
    interpreter, backend = prepared.interpreter, prepared.chosen.backend
    key = EnvCache.env_key(prepared.lock.text, interpreter.version, interpreter.platform, backend) if cache else ""
    if digest in manifest.verified or (cache and cache.is_verified(key, digest)):
        log.info("this model loaded in this environment when it was built: verify skipped", extra={"step": "verify"})
    else:
        with step("verify", prepared.timings):
            server_lib = settings.server_lib if backend == "mlflow" else None
            verify_model(settings.venv_dir, settings.model_dir, backend, server_lib, grpc=settings.grpc)
    if cache:
        cache.mark_verified(key, digest)


def _already_published(store: EnvStore, trail: StoreTrail, planned: Planned) -> bool:
    """``build`` on a key the store has: nothing to build (a corrupt entry is rebuilt and replaced)."""
    assert trail.key is not None
    try:
        manifest = store.lookup(trail.key)
    except StoreFault as fault:
        if fault.kind not in ("miss", "unreadable manifest"):
            raise InstallError(
                f"cannot read the env store {store.location} ({fault.kind}: {fault.detail})",
                "check the store's URI and the build's credentials (it needs read and write access)",
            ) from fault
        trail.fault(fault)
        return False
    trail.lookup, trail.build = "hit", manifest.build
    return True


def _finish_published(planned: Planned, trail: StoreTrail, timings: dict[str, float], started: float) -> dict[str, Any]:
    settings = planned.settings
    timings["total"] = round(time.monotonic() - started, 3)
    report = {
        "mlflow_kserve_version": __version__,
        "model_uri": redact(settings.model_uri),
        "name": settings.name,
        "mlflow_version": planned.plan.mlflow_version,
        "environment": {"source": "store"},
        "store": trail.as_dict(),
        "seconds": timings,
    }
    write_json(settings.report_file, report)
    log.info(
        "built: %s is in the env store %s already (key %s, build %s); nothing to build", redact(settings.model_uri),
        trail.location, trail.key.short if trail.key else "-", trail.build, extra={"step": "build", "source": "store"},
    )  # fmt: skip
    return report


def _publish(store: EnvStore, trail: StoreTrail, prepared: Prepared, report: dict[str, Any], *, building: bool) -> None:
    """Publish the verified venv under the key (the store's lookup missed or failed). ``build`` fails (exit 7) when
    it cannot; init only says so."""
    settings = prepared.settings
    if trail.lookup == "hit":  # a stored environment that this model needed rebuilt (slim): keep the entry
        return
    from mlflow_kserve.cache import model_digest

    assert trail.key is not None
    verified = (model_digest(settings.model_dir),) if settings.verify else ()
    try:
        with step("publish", prepared.timings):
            published = store.publish(
                trail.key, settings.venv_dir, settings.env_dir / f".store-{RUN}", lock_text=prepared.lock.text,
                report=report, backend=prepared.chosen.backend, reason=prepared.chosen.reason, slim=prepared.slim,
                verified=verified, venv_bytes=report["bytes"]["venv"],
            )  # fmt: skip
    except StoreFault as fault:
        if building:
            raise InstallError(
                f"could not publish the environment to the env store {store.location} ({fault.kind}: {fault.detail})",
                "give the build write access to the store (chart: envStore.prebuild credentials)",
            ) from fault
        trail.publish_failed(fault)
        return
    trail.publish_done(published)


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


def _optional(plan: Plan, stack: ServingStack) -> tuple[str, ...]:
    """The stack's optional packages to try: none under the model's own lock, which is served as it is."""
    return () if plan.model_lock is not None else stack.optional


def _lock(settings: Settings, plan: Plan, interpreter: Interpreter, stack: ServingStack, *, slim: bool) -> Locked:
    """The lock of the model's set with ``stack``'s packages, and its optional ones (the mlflow backend's
    accelerators) when they resolve with it too: tried first, left out on a conflict, as MLServer's pins would be
    refused (serving_stack.toml); only wheels of them are taken, so nothing is built in the pod for them."""
    left_out = None
    optional = _optional(plan, stack)
    if stack.optional and not optional:
        left_out = f"the model's {plan.resolution.lock_source or 'lock'} is served as it is"
    if optional:
        try:
            request, lock, cached = _resolve(settings, plan, interpreter, stack, slim=slim, optional=optional)
            return Locked(request, lock, cached, optional)
        except ConflictError as exc:
            if not _names_any(exc.detail, optional):  # not theirs (e.g. a package the index lacks): the same
                raise  # without them, so no second resolution
            left_out = f"they do not resolve with the model's requirements ({exc.installer}): {exc.detail}"
            log.warning("optional %s left out: %s", " ".join(optional), left_out, extra={"step": "lock"})
    request, lock, cached = _resolve(settings, plan, interpreter, stack, slim=slim, optional=())
    return Locked(request, lock, cached, (), left_out)


def _names_any(detail: str, requirements: tuple[str, ...]) -> bool:
    """The resolver's explanation names one of ``requirements``' packages (uv and pip name every package in the
    chain of a conflict)."""
    text = detail.lower().replace("_", "-")
    return any(_name(r) in text for r in requirements)


def _resolve(
    settings: Settings, plan: Plan, interpreter: Interpreter, stack: ServingStack, *, slim: bool,
    optional: tuple[str, ...],
) -> tuple[LockRequest, Lock, bool]:  # fmt: skip
    """Resolve the model's set with ``stack``'s packages (and ``optional``) and write the lock file. With a cache,
    a resolution (or a conflict) is memoised under the request (its resolution mode and date or lock digest
    included), the interpreter and the backend; one as of now never is: it is what the index says at this moment
    (the environment it locks is still reused when the lock text is the same)."""
    request = _lock_request(plan, settings, interpreter, stack, slim=slim, optional=optional)
    cache = _cache(settings)
    memo = cache if request.resolve_mode != "now" else None
    key = ""
    if memo:
        parts = request.cache_parts(interpreter.version, interpreter.platform)
        key = memo.input_key({**parts, "backend": stack.backend})
        conflict = memo.get_conflict(key)
        if conflict:
            raise ConflictError(conflict["detail"], conflict["installer"], conflict.get("hint") or CONFLICT_HINT)
    text = memo.get_lock(key) if memo else None
    if text:
        lock = Lock(text)
    else:
        try:
            with _using_tools(cache):
                lock = resolve(request, settings.installer, _tool_cache(settings, cache))
        except ConflictError as exc:
            if memo:
                memo.put_conflict(key, {"detail": exc.detail, "installer": exc.installer, "hint": exc.hint or ""})
            raise
        if memo:
            memo.put_lock(key, lock.text)
    lock.write(settings.lock_file)
    log.info(
        "locked %d packages%s, %s", len(lock.packages), " (from cache)" if text else "", plan.resolution.describe(),
        extra={"step": "lock", "resolve_mode": request.resolve_mode, "resolve_as_of": request.resolve_as_of,
               "lock_digest": request.lock_digest},
    )  # fmt: skip
    return request, lock, bool(text)


def _lock_request(
    plan: Plan, settings: Settings, interpreter: Interpreter, stack: ServingStack, *, slim: bool,
    optional: tuple[str, ...] = (),
) -> LockRequest:  # fmt: skip
    index = IndexConfig.from_operator(settings.index_url, settings.extra_index_url)
    if plan.index_options:
        index = index.with_model_options(*_split_index_options(plan.index_options))
    if plan.model_lock is not None and plan.model_lock.indexes:  # allowed by the operator (modellock.read)
        index = index.with_model_options(None, plan.model_lock.indexes, ())
    requirements = list(dict.fromkeys((*plan.requirements(stack), *optional)))
    model_requirements = list(plan.model_requirements)
    excludes: tuple[str, ...] = ()
    if slim:
        skinny = f"mlflow-skinny=={plan.mlflow_version}"
        requirements = [*(r for r in requirements if _name(r) != "mlflow"), skinny]
        model_requirements = [*(r for r in model_requirements if _name(r) != "mlflow"), skinny]
        excludes = ("mlflow",)
    constraints = (*plan.constraints, *stack.constraints)
    resolution = plan.resolution
    return LockRequest(
        tuple(requirements), constraints, excludes, index, python=interpreter.path,
        only_binary=tuple(_name(r) for r in optional),  # --only-binary takes names
        resolve_mode=resolution.mode, resolve_as_of=resolution.as_of, lock_digest=resolution.lock_digest,
        lock_source=resolution.lock_source, model_requirements=tuple(model_requirements),
        model_constraints=plan.model_constraints,
        model_lock_text=plan.model_lock.text if plan.model_lock is not None else None,
    )  # fmt: skip


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
        _into_venv_dir(settings, build)
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


def _into_venv_dir(settings: Settings, fill: Callable[[Path], None]) -> None:
    """``fill`` a new folder, renamed to settings.venv_dir once complete: a failed fill leaves nothing behind."""
    tmp = build_dir(settings.env_dir)
    try:
        fill(tmp)
        tmp.rename(settings.venv_dir)
    finally:
        discard(tmp)  # a failed fill; nothing once renamed


def _clear_outputs(settings: Settings) -> None:
    """A re-run (after a crash or a restart of the init container) starts from nothing that looks ready."""
    outputs = (
        settings.report_file,
        settings.model_settings_file,
        settings.lock_file,
        settings.env_dir / MLSERVER_LOGGING,
    )
    for path in outputs:
        path.unlink(missing_ok=True)
    _discard_server_code(settings)
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


def _report(prepared: Prepared, source: str, trail: StoreTrail | None, timings: dict[str, float]) -> dict[str, Any]:
    settings, plan = prepared.settings, prepared.plan
    cache_hit = source == "local cache"
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
        "serving_stack": prepared.stack_packages,
        "optional": {"added": list(prepared.optional), "left_out": prepared.optional_left_out},
        "grpc": plan.grpc or prepared.chosen.backend == "mlserver",
        "resolution": resolution_dict(prepared),
        "installer": settings.installer,
        "slim": prepared.slim,
        "index": prepared.request.index.describe(),
        "cache": {"enabled": settings.cache_dir is not None, "hit": cache_hit, "lock_hit": prepared.lock_cached},
        "environment": {"source": source},
        "store": trail.as_dict() if trail else None,
        "packages": prepared.lock.packages,
        "venv": str(settings.venv_dir.resolve()),  # the cache entry's venv with --serve-from-cache
        "bytes": {"model": prepared.model_bytes, "venv": dir_bytes(settings.venv_dir.resolve())},
        "seconds": timings,
        "warnings": list(plan.warnings),
    }
