"""Step 2: from the fetched model and the operator's settings, the requirement set to resolve, and the serving
backends whose table rows fit the model (the lock step picks one: backends.choose)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from mlflow_kserve.backends import Candidates, candidates
from mlflow_kserve.errors import ConfigError, NotServableError
from mlflow_kserve.mlmodel import ModelInfo, read_mlmodel
from mlflow_kserve.policy import apply_policy, check_python
from mlflow_kserve.requirements import ModelEnv, read_model_env
from mlflow_kserve.serving_stack import ServingStack
from mlflow_kserve.settings import Settings


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
    grpc: bool = False

    def added(self, stack: ServingStack) -> tuple[str, ...]:
        """What the serving stack adds to the model's packages: ``stack``'s (none for the mlflow backend), and its
        gRPC packages with --grpc (grpcio for the mlflow backend)."""
        return (*stack.requirements, *(stack.grpc if self.grpc else ()))

    def requirements(self, stack: ServingStack) -> tuple[str, ...]:
        """Model + what the stack adds + operator's extras, textual duplicates dropped, order kept."""
        return tuple(dict.fromkeys((*self.model_requirements, *self.added(stack), *self.extra_requirements)))

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
        }


def make_plan(model_dir: Path, settings: Settings, interpreter_python: str) -> Plan:
    """Read the model, apply the policy, find the backends that fit; raises exit 2, 4, 5 or 6 errors."""
    extra_requirements = _validated(settings.extra_requirement, "--extra-requirement")
    operator_constraints = _validated(settings.constraint, "--constraint")
    info = read_mlmodel(model_dir)
    env = read_model_env(model_dir, info, follow_external="external-include" in settings.allow)
    policy = apply_policy(env, model_dir, settings.allow)
    warnings = list(policy.warnings)
    python_warning = check_python(env.python_version or info.python_version, interpreter_python, settings.python_policy)
    if python_warning:
        warnings.append(python_warning)
    requirements = list(policy.requirements)
    mlflow_version = _mlflow_version(requirements, info)
    if any(_name(r) in ("mlflow", "mlflow-skinny") for r in requirements):
        requirements = [_pin_mlflow(r, mlflow_version, warnings) for r in requirements]
    else:
        requirements.append(f"mlflow=={mlflow_version}")
    backends = candidates(settings.backend, mlflow_version, interpreter_python)
    return Plan(
        model=info,
        env=env,
        interpreter_python=interpreter_python,
        model_requirements=tuple(requirements),
        index_options=policy.index_options,
        backends=backends,
        extra_requirements=extra_requirements,
        constraints=(*policy.constraints, *operator_constraints),
        warnings=tuple(warnings),
        mlflow_version=mlflow_version,
        grpc=settings.grpc,
    )


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
