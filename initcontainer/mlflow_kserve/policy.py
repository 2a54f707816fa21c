"""The dependency policy (DESIGN.md): requirement lines are data from the model's author, not commands.

Index options, -e, VCS / URL / local-path requirements and includes outside the model directory are rejected
(exit 5) unless the operator allows them; a model logged with another Python minor warns, or fails under
the strict Python policy.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from mlflow_kserve.errors import PolicyError
from mlflow_kserve.requirements import ModelEnv, RequirementLine

# kind of line -> (allowance that permits it, what the line does)
RULES: dict[str, tuple[str, str]] = {
    "index-option": ("index-options", "sets a package index; indexes come only from the operator"),
    "editable": ("editable", "is an editable install"),
    "vcs": ("vcs", "installs from a version-control URL"),
    "url": ("url", "installs from a direct URL"),
    "local-path": ("local-path", "installs from a local path"),
    "external-include": ("external-include", "includes a file outside the model directory"),
}


@dataclass(frozen=True)
class PolicyResult:
    requirements: tuple[str, ...]  # what goes to the resolver
    constraints: tuple[str, ...]  # from the model's own -c files
    index_options: tuple[str, ...]  # allowed index lines
    warnings: tuple[str, ...]


def apply_policy(env: ModelEnv, model_dir: Path, allow: frozenset[str]) -> PolicyResult:
    requirements: list[str] = []
    constraints: list[str] = []
    index_options: list[str] = []
    warnings: list[str] = []
    for line in env.lines:
        if line.kind in RULES:
            allowance, what = RULES[line.kind]
            if allowance not in allow:
                raise PolicyError(
                    f"{line.source}: {line.text!r} {what}",
                    f"remove the line from the model, or allow it with --allow {allowance} "
                    f"(MLFLOW_KSERVE_ALLOW, chart: dependencies.allow)",
                )
            if line.kind == "index-option":
                index_options.append(line.text)
            elif line.kind == "local-path":
                requirements.append(_absolute(line, model_dir))
            elif line.kind != "external-include":
                requirements.append(line.text)
        elif line.kind == "requirement":
            requirements.append(line.text)
        elif line.kind == "constraint":
            constraints.append(line.text)
        else:
            warnings.append(f"{line.source}: ignored option {line.text!r}")
    if env.conda_only:
        warnings.append("conda-only packages are not installed (pip environment): " + ", ".join(env.conda_only))
    return PolicyResult(tuple(requirements), tuple(constraints), tuple(index_options), tuple(warnings))


def check_python(model_python: str | None, interpreter: str, policy: str) -> str | None:
    """A warning when the model was logged with another Python minor; PolicyError under ``strict``."""
    if not model_python:
        return None
    model_minor = ".".join(model_python.split(".")[:2])
    serving_minor = ".".join(interpreter.split(".")[:2])
    if model_minor == serving_minor:
        return None
    message = f"the model was logged with Python {model_python}, the serving interpreter is {interpreter}"
    if policy == "strict":
        raise PolicyError(
            message,
            f"use the images built for Python {model_minor} (chart: pythonVersion), or --python-policy warn",
        )
    return message + " (--python-policy warn)"


def _absolute(line: RequirementLine, model_dir: Path) -> str:
    """Allowed relative paths are relative to the model directory, not to wherever the resolver runs."""
    text = line.text
    name, sep, location = text.partition("@")
    target = location.strip() if sep else text
    if target.startswith(("./", "../")):
        resolved = (model_dir / target).resolve()
        return f"{name.strip()} @ file://{resolved}" if sep else str(resolved)
    return text
