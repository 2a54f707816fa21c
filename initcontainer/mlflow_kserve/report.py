"""How ``check`` shows a plan: a readable table, or JSON for machines."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mlflow_kserve.errors import redact

if TYPE_CHECKING:
    from mlflow_kserve.pipeline import Prepared


def plan_dict(result: Prepared) -> dict[str, Any]:
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
            "requirements": [*plan.added(stack), *result.optional],
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
        "lock_file": str(settings.lock_file),
        "packages": result.lock.packages,
    }


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


def plan_json(result: Prepared) -> str:
    return json.dumps(plan_dict(result), indent=2)


def plan_table(result: Prepared) -> str:
    data = plan_dict(result)
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
        ("lock", data["lock_file"]),
    ]  # fmt: skip
    width = max(len(key) for key, _ in rows)
    lines = [f"{key:<{width}}  {value}" for key, value in rows]
    for warning in data["warnings"]:
        lines.append(f"{'warning':<{width}}  {warning}")
    packages = data["packages"]
    lines.append("")
    lines.append(f"locked packages ({len(packages)}):")
    name_width = max((len(n) for n in packages), default=0)
    lines.extend(f"  {name:<{name_width}}  {version}" for name, version in sorted(packages.items()))
    return "\n".join(lines)
