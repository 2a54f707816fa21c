"""The dependency policy (docs/dependencies.md): requirement lines are data from the model's author, not commands.

Index options (a line of their own, or after a requirement: pip applies both to the whole install), -e,
VCS / URL / local-path requirements and includes outside the model directory are rejected (exit 5) unless the
operator allows them; any other option after a requirement (only --hash is accepted there) is rejected always.
A model logged with another Python minor warns, or fails under the strict Python policy.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from mlflow_kserve.errors import PolicyError
from mlflow_kserve.requirements import ModelEnv, RequirementLine, split_option

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
    index_options: tuple[str, ...]  # allowed index lines as "--long-option=value", passed to the lock step
    warnings: tuple[str, ...]


def apply_policy(env: ModelEnv, model_dir: Path, allow: frozenset[str]) -> PolicyResult:
    """Keep the lines the policy allows; PolicyError (exit 5) on the first that it does not, naming the line,
    its source and the allowance that would permit it."""
    requirements: list[str] = []
    constraints: list[str] = []
    index_options: list[str] = []
    warnings: list[str] = []
    for line in env.lines:
        if line.kind == "requirement-option":
            raise PolicyError(
                f"{line.source}: {line.shown} is an option on a requirement line; only --hash is accepted there",
                "remove the option from the model's requirement line (indexes come only from the operator)",
            )
        if line.kind in RULES:
            allowance, what = RULES[line.kind]
            if allowance not in allow:
                raise PolicyError(
                    f"{line.source}: {line.shown} {what}",
                    f"remove the line from the model, or allow it with --allow {allowance} "
                    f"(MLFLOW_KSERVE_ALLOW, chart: dependencies.allow)",
                )
            if line.kind == "index-option":
                index_options.append(_normalized_option(line.text))
            elif line.kind in ("local-path", "editable"):
                requirements.append(_absolute(line, model_dir))
            elif line.kind != "external-include":
                requirements.append(line.text)
        elif line.kind == "requirement":
            requirements.append(line.text)
        elif line.kind == "constraint":
            constraints.append(line.text)
        else:
            warnings.append(f"{line.source}: ignored option {line.shown}")
    if env.conda_only:
        warnings.append(
            f"conda-only packages in {env.source} are not installed (pip environment): " + ", ".join(env.conda_only)
        )
    return PolicyResult(tuple(requirements), tuple(constraints), tuple(index_options), tuple(warnings))


def check_lock_entry(source: str, what: str, kind: str, allow: frozenset[str]) -> None:
    """A model's lock is held to the same rules as its requirement lines: an entry that installs from a VCS URL,
    a direct URL or a local path (``kind``, a RULES key) is refused (exit 5) unless the operator allows it.
    ``what`` names the entry ("protobuf 7.36.2"), ``source`` the lock ("uv.lock")."""
    allowance, does = RULES[kind]
    if allowance not in allow:
        raise PolicyError(
            f"the model's {source}: {what} {does}",
            f"log the model from a lock without it, or allow it with --allow {allowance} "
            f"(MLFLOW_KSERVE_ALLOW, chart: dependencies.allow)",
        )


def check_lock_index(source: str, package: str, index: str, allowed: bool) -> None:
    """An index a model's lock takes a package from, other than PyPI and the operator's own: refused (exit 5)
    unless the operator allowed the model's index options; the index is named, its credentials never."""
    if not allowed:
        raise PolicyError(
            f"the model's {source} takes {package} from the index {index}, which the operator has not allowed; "
            "indexes come only from the operator",
            "add that index with --extra-index-url (chart: dependencies.extraIndexUrls), or allow the model's "
            "indexes with --allow index-options",
        )


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


_LONG = {"-i": "--index-url", "-f": "--find-links"}


def _normalized_option(text: str) -> str:
    """``-i URL`` / ``--index-url URL`` / ``--index-url=URL`` → ``--index-url=URL`` (one form for the lock step)."""
    option, value = split_option(text)
    option = _LONG.get(option, option)
    return f"{option}={value}" if value else option


def _absolute(line: RequirementLine, model_dir: Path) -> str:
    """An allowed relative path is relative to the file that names it, not to wherever the resolver runs."""
    base = line.base or model_dir.resolve()
    text = line.text
    prefix = ""
    if line.kind == "editable":
        match = re.match(r"(-e|--editable)(?:\s*=\s*|\s+)?(.*)$", text)
        if not match:
            return text
        prefix, text = "-e ", match.group(2).strip()
    name, sep, location = text.partition("@")
    if sep and not re.fullmatch(r"\s*[A-Za-z0-9][A-Za-z0-9._-]*\s*(\[[^\]]*\])?\s*", name):
        name, sep, location = "", "", text  # "@" inside a path or URL, not "name @ location"
    target = (location if sep else text).strip()
    path, semicolon, marker = target.partition(";")
    path = path.strip()
    if re.match(r"^[a-z][a-z0-9+.-]*:", path, re.IGNORECASE) or path.startswith(("/", "~")):
        return prefix + text
    resolved = (base / path).resolve()
    rest = f" ;{marker}" if semicolon else ""
    if sep:
        return f"{prefix}{name.strip()} @ {resolved.as_uri()}{rest}"
    return f"{prefix}{resolved}{rest}"
