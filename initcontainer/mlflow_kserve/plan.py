"""Step 2: from the fetched model and the operator's settings, the requirement set to resolve, how (as of which
date, or from the model's own lock: resolution.py, modellock.py), and the serving backends whose table rows fit
the model (the lock step picks one: backends.choose)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from mlflow_kserve import modellock
from mlflow_kserve.backends import Candidates, candidates
from mlflow_kserve.errors import ConfigError, NotServableError
from mlflow_kserve.index import IndexConfig
from mlflow_kserve.interpreter import Interpreter
from mlflow_kserve.mlmodel import ModelInfo, read_mlmodel
from mlflow_kserve.modellock import ModelLock
from mlflow_kserve.policy import apply_policy, check_python
from mlflow_kserve.requirements import ModelEnv, read_model_env
from mlflow_kserve.resolution import Resolution, decide
from mlflow_kserve.serving_stack import ServingStack
from mlflow_kserve.settings import Settings
from mlflow_kserve.tools import pip_resolves_as_of


@dataclass(frozen=True)
class Plan:
    model: ModelInfo
    env: ModelEnv
    interpreter_python: str
    model_requirements: tuple[str, ...]
    index_options: tuple[str, ...]
    backends: Candidates
    extra_requirements: tuple[str, ...]
    constraints: tuple[str, ...]
    warnings: tuple[str, ...]
    mlflow_version: str
    resolution: Resolution = field(default_factory=lambda: Resolution("now"))  # as of when, or the model's lock
    model_lock: ModelLock | None = None
    model_constraints: tuple[str, ...] = ()  # the model's own (-c files); constraints has the operator's too
    completions: tuple[str, ...] = ()  # added to the model's set by the plan: mlflow, when its lock has none
    grpc: bool = False

    def added(self, stack: ServingStack) -> tuple[str, ...]:
        """What the serving stack adds to the model's packages: ``stack``'s (none for the mlflow backend), and its
        gRPC packages with --grpc (grpcio for the mlflow backend)."""
        return (*stack.requirements, *(stack.grpc if self.grpc else ()))

    def requirements(self, stack: ServingStack) -> tuple[str, ...]:
        """Model (and what the plan completes it with) + what the stack adds + operator's extras, textual
        duplicates dropped, order kept."""
        parts = (*self.model_requirements, *self.completions, *self.added(stack), *self.extra_requirements)
        return tuple(dict.fromkeys(parts))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able, for ``check --json`` and report.json."""
        return {
            "mlflow_version": self.mlflow_version,
            "env_source": self.env.source,
            "python": {"model": self.env.python_version, "interpreter": self.interpreter_python},
            "model": {
                "flavors": list(self.model.flavors),
                "loader_module": self.model.loader_module,
                "mlmodel_mlflow_version": self.model.mlflow_version,
                "run_id": self.model.run_id,
                "model_uuid": self.model.model_uuid,
            },
            "grpc": self.grpc,
            "backends": {
                "requested": self.backends.requested,
                "candidates": [asdict(stack) for stack in self.backends.stacks],
                "ruled_out": dict(self.backends.ruled_out),
            },
            "model_requirements": list(self.model_requirements),
            "index_options": list(self.index_options),
            "extra_requirements": list(self.extra_requirements),
            "constraints": list(self.constraints),
            "warnings": list(self.warnings),
            "conda_only": list(self.env.conda_only),
            "resolution": self.resolution.to_dict(),
            "model_lock": None if self.model_lock is None else {
                "source": self.model_lock.source,
                "digest": self.model_lock.digest,
                "packages": self.model_lock.versions(),
                "indexes": list(self.model_lock.indexes),
            },
        }  # fmt: skip


def make_plan(model_dir: Path, settings: Settings, interpreter: Interpreter) -> Plan:
    """Read the model, apply the policy, find the backends that fit; raises exit 2, 4, 5 or 6 errors."""
    interpreter_python = interpreter.version
    extra_requirements = _validated(settings.extra_requirement, "--extra-requirement")
    operator_constraints = _validated(settings.constraint, "--constraint")
    info = read_mlmodel(model_dir)
    env = read_model_env(model_dir, info, follow_external="external-include" in settings.allow)
    lock_source, lock_warning = modellock.find(model_dir)
    warnings = [lock_warning] if lock_warning else []
    python_warning = check_python(env.python_version or info.python_version, interpreter_python, settings.python_policy)
    if python_warning:
        warnings.append(python_warning)
    model_lock: ModelLock | None = None
    completions: tuple[str, ...] = ()
    if lock_source:
        # The lock supersedes requirements.txt (MLflow's restore prefers it too); the policy is applied to it.
        index = IndexConfig.from_operator(settings.index_url, settings.extra_index_url)
        model_lock = modellock.read(model_dir, lock_source, interpreter, index, settings.allow)
        requirements = list(model_lock.pins)
        mlflow_version, completions = _lock_mlflow(model_lock, info, warnings)
        model_constraints: tuple[str, ...] = ()
        index_options: tuple[str, ...] = ()
        resolution = Resolution("lock", lock_source=lock_source, lock_digest=model_lock.digest)
        if settings.resolve_as_of != "model":
            warnings.append(
                f"--resolve-as-of {settings.resolve_as_of} does not apply: the model's {lock_source} says which "
                "versions to install"
            )
    else:
        policy = apply_policy(env, model_dir, settings.allow)
        warnings += policy.warnings
        requirements = list(policy.requirements)
        mlflow_version = _mlflow_version(requirements, info)
        if any(_name(r) in ("mlflow", "mlflow-skinny") for r in requirements):
            requirements = [_pin_mlflow(r, mlflow_version, warnings) for r in requirements]
        else:
            requirements.append(f"mlflow=={mlflow_version}")
        model_constraints, index_options = policy.constraints, policy.index_options
        resolution = _resolution(settings, info, warnings)
    backends = candidates(settings.backend, mlflow_version, interpreter_python)
    return Plan(
        model=info,
        env=env,
        interpreter_python=interpreter_python,
        model_requirements=tuple(requirements),
        index_options=index_options,
        backends=backends,
        extra_requirements=extra_requirements,
        constraints=(*model_constraints, *operator_constraints),
        warnings=tuple(warnings),
        mlflow_version=mlflow_version,
        resolution=resolution,
        model_lock=model_lock,
        model_constraints=model_constraints,
        completions=completions,
        grpc=settings.grpc,
    )


def _resolution(settings: Settings, info: ModelInfo, warnings: list[str]) -> Resolution:
    """--resolve-as-of for this model. pip without --uploaded-prior-to (pip < 26) cannot: under an explicit date
    that is exit 2; under the default, ``model``, it resolves as of now and says so (a pip image keeps working)."""
    resolution, warning = decide(settings.resolve_as_of, info.utc_time_created)
    if warning:
        warnings.append(warning)
    if resolution.as_of is None or settings.installer != "pip" or pip_resolves_as_of():
        return resolution
    if resolution.mode == "date":
        raise ConfigError(
            f"--resolve-as-of {settings.resolve_as_of}: this pip cannot resolve as of a date (it has no "
            "--uploaded-prior-to; pip >= 26 has)",
            "use --installer uv, an init image with pip >= 26, or --resolve-as-of now",
        )
    warnings.append(
        "this pip cannot resolve as of the model's day (no --uploaded-prior-to; pip >= 26 has): resolving as of now; "
        "use --installer uv or pip >= 26 for the same versions on every init"
    )
    return decide("now", None)[0]


def _lock_mlflow(model_lock: ModelLock, info: ModelInfo, warnings: list[str]) -> tuple[str, tuple[str, ...]]:
    """The MLflow the lock installs (mlflow, else mlflow-skinny); a lock without either gets MLmodel's MLflow
    added, resolved around the lock like the backend's packages."""
    versions = model_lock.versions()
    for name in ("mlflow", "mlflow-skinny"):
        if versions.get(name):
            if info.mlflow_version and versions[name] != info.mlflow_version:
                warnings.append(
                    f"the model's {model_lock.source} has {name} {versions[name]}, MLmodel says it was logged with "
                    f"MLflow {info.mlflow_version}: the lock's is installed"
                )
            return versions[name], ()
    version = _mlflow_version([], info)
    warnings.append(f"the model's {model_lock.source} has no mlflow: mlflow=={version} (MLmodel's) is added to it")
    return version, (f"mlflow=={version}",)


def _mlflow_version(requirements: list[str], info: ModelInfo) -> str:
    """The exact pin of mlflow (or mlflow-skinny) in the model's requirements, else MLmodel's mlflow_version."""
    for text in requirements:
        if _name(text) in ("mlflow", "mlflow-skinny"):
            specs = list(Requirement(text).specifier)
            if len(specs) == 1 and specs[0].operator in ("==", "===") and "*" not in specs[0].version:
                return specs[0].version
    if info.mlflow_version:
        return info.mlflow_version
    raise NotServableError(
        "the model names no MLflow version (no mlflow pin, no mlflow_version in MLmodel)",
        "log the model again with MLflow, or pin mlflow==<version> in its requirements.txt",
    )


def _pin_mlflow(text: str, version: str, warnings: list[str]) -> str:
    """A loose mlflow requirement (``mlflow>=2``) is narrowed to the version that logged the model, so the
    resolver installs the MLflow the serving stack was chosen for (not the newest one)."""
    if _name(text) not in ("mlflow", "mlflow-skinny"):
        return text
    requirement = Requirement(text)
    if any(s.operator in ("==", "===") and "*" not in s.version for s in requirement.specifier):
        return text
    if not requirement.specifier.contains(version, prereleases=True):
        warnings.append(
            f"the model requires {text!r} but was logged with MLflow {version}; "
            f"the serving stack is chosen for MLflow {version}"
        )
        return text
    requirement.specifier &= SpecifierSet(f"=={version}")
    return str(requirement)


def _validated(values: tuple[str, ...], flag: str) -> tuple[str, ...]:
    for value in values:
        try:
            Requirement(value)
        except InvalidRequirement as exc:
            raise ConfigError(
                f"{flag} {value!r} is not a valid requirement ({exc})", f"fix the value of {flag}"
            ) from exc
    return values


def _name(text: str) -> str:
    try:
        return canonicalize_name(Requirement(text).name)
    except InvalidRequirement:
        return ""
