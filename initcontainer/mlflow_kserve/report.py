"""How ``check`` shows a plan: a readable table, or JSON for machines."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mlflow_kserve.errors import redact
from mlflow_kserve.lock import requirement_name

if TYPE_CHECKING:
    from mlflow_kserve.pipeline import Prepared


def plan_dict(result: Prepared, lock_kept: bool = True) -> dict[str, Any]:
    """``lock_kept``: False when check ran in a temporary env dir, whose lock file is gone once it prints."""
    plan, settings, stack = result.plan, result.settings, result.chosen.stack
    return {
        "model_uri": redact(settings.model_uri),
        "registry": result.pinned.as_dict() if result.pinned else None,
        "name": settings.name,
        "mlflow_version": plan.mlflow_version,
        "env_source": plan.env.source,
        "python": {"model": plan.env.python_version, "interpreter": result.interpreter.version},
        "backend": {"name": stack.backend, "requested": settings.backend, "reason": result.chosen.reason},
        "serving_stack": {
            "backend": stack.backend,
            "mlflow": stack.mlflow,
            "python": stack.python,
            "requirements": result.stack_packages,
            "constraints": list(stack.constraints),
            "grpc": _grpc(plan.grpc, stack),
            "optional": {
                "tried": list(stack.optional),
                "added": list(result.optional),
                "left_out": result.optional_left_out,
            },
        },
        "model_requirements": list(plan.model_requirements),
        "extra_requirements": list(plan.extra_requirements),
        "constraints": list(plan.constraints),
        "installer": settings.installer,
        "slim": result.slim,
        "index": result.request.index.describe(),
        "warnings": list(plan.warnings),
        "lock_file": str(settings.lock_file) if lock_kept else None,
        "resolution": resolution_dict(result),
        "packages": result.lock.packages,
    }


def resolution_dict(result: Prepared) -> dict[str, Any]:
    """How the set was resolved: the mode and its date or the model's lock digest, and each package that is not
    the model's own (exempt from the date, or added around the lock) with who added it."""
    plan, stack = result.plan, result.chosen.stack
    who: dict[str, str] = {}
    for texts, source in (
        (plan.completions, "the model's MLflow, missing from its lock"),
        (result.settings.constraint, "operator (--constraint)"),
        (plan.extra_requirements, "operator (--extra-requirement)"),
        (stack.constraints, f"{stack.backend} backend (constraint)"),
        (stack.requirements, f"{stack.backend} backend"),
        (stack.grpc if plan.grpc else (), f"{stack.backend} backend (--grpc)"),
        (result.optional, f"{stack.backend} backend (optional)"),
    ):
        who.update((requirement_name(text), source) for text in texts)
    return {**plan.resolution.to_dict(), "exempt": {name: who.get(name, "added") for name in result.request.exempt}}


def _grpc(requested: bool, stack: Any) -> str:
    """One line: whether the server will serve gRPC, and what that adds."""
    if stack.backend == "mlserver":
        return "served by MLServer (it always serves gRPC; nothing added for it)"
    if not requested:
        return "off (--grpc serves it, adding grpcio)"
    return f"on: adds {', '.join(stack.grpc)}"


def _optional(optional: dict[str, Any]) -> str:
    if not optional["tried"]:
        return "-"
    if optional["added"]:
        return f"{' '.join(optional['added'])} (optional: they resolve with the model's requirements)"
    return f"left out: {' '.join(optional['tried'])}: {optional['left_out']}"


def plan_json(result: Prepared, lock_kept: bool = True) -> str:
    return json.dumps(plan_dict(result, lock_kept), indent=2)


def plan_table(result: Prepared, lock_kept: bool = True) -> str:
    data = plan_dict(result, lock_kept)
    python, backend, stack = data["python"], data["backend"], data["serving_stack"]
    constraints = [f"constraint {c}" for c in data["constraints"]]
    rows = [
        ("model", data["model_uri"]),
        ("name", data["name"]),
        ("MLflow", f"{data['mlflow_version']} (requirements from {data['env_source']})"),
        ("Python", f"model {python['model'] or 'unknown'}, serving {python['interpreter']}"),
        ("backend", f"{backend['name']}  ({backend['reason']})"),
        ("serving stack", (" ".join(stack["requirements"]) or "no package added")
         + f"  (for MLflow {stack['mlflow']}, Python {stack['python']})"),
        ("gRPC", stack["grpc"]),
        ("accelerators", _optional(stack["optional"])),
        ("model requires", ", ".join(data["model_requirements"]) or "-"),
        ("operator adds", ", ".join(data["extra_requirements"] + constraints) or "-"),
        ("installer", data["installer"] + (" (slim: mlflow-skinny)" if data["slim"] else "")),
        ("index", data["index"]),
        ("resolution", result.plan.resolution.describe()),
        ("lock", data["lock_file"] or "not kept (a temporary directory; --env-dir keeps it)"),
    ]  # fmt: skip
    exempt = data["resolution"]["exempt"]
    if exempt:
        around = "around the lock" if data["resolution"]["mode"] == "lock" else "as of now"
        rows.insert(-1, ("not the model's", f"{', '.join(sorted(exempt))} ({around})"))
    width = max(len(key) for key, _ in rows)
    lines = [f"{key:<{width}}  {value}" for key, value in rows]
    for warning in data["warnings"]:
        lines.append(f"{'warning':<{width}}  {warning}")
    packages = data["packages"]
    lines.append("")
    lines.append(f"locked packages ({len(packages)}):")
    name_width = max((len(n) for n in packages), default=0)
    lines.extend(
        f"  {name:<{name_width}}  {version}{'  (' + exempt[name] + ')' if name in exempt else ''}"
        for name, version in sorted(packages.items())
    )
    return "\n".join(lines)
