"""Which server serves the model (``--backend auto|mlserver|mlflow``), and why.

auto takes the ``mlflow`` backend (the model's own MLflow scoring server plus the V2 routes; the project's reference
V2 implementation) whenever the model's MLflow has the FastAPI scoring server (>= 2.21) and the model's own set
resolves; else MLServer when one of its rows fits the model's MLflow and the interpreter AND its set resolves with
the model's pins; else exit 6 giving both reasons. Measured with real V2 clients, MLServer 1.7.1 answers 500 to
string outputs under pandas 3, leaks tracebacks, drops keep-alive after an error and uses about twice the memory
(docs/backends.md), so it serves only what the mlflow backend cannot: MLflow < 2.21, or when asked for.
An explicit backend is taken or refused (exit 6), never swapped for the other one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from mlflow_kserve.errors import ConflictError, ResolveError
from mlflow_kserve.logs import get_logger
from mlflow_kserve.serving_stack import BACKENDS, LABELS, NoStack, ServingStack, select_stack

CHOICES = ("auto", *BACKENDS)
log = get_logger()
T = TypeVar("T")
_MLFLOW_HINT = "--backend mlflow serves models of MLflow >= 2.21 with their own scoring server, adding no package"


@dataclass(frozen=True)
class Candidates:
    """The backends whose table row fits the model's MLflow and the interpreter, in auto's order."""

    requested: str  # auto, mlserver or mlflow
    mlflow_version: str
    python: str  # the serving interpreter's version
    stacks: tuple[ServingStack, ...]
    ruled_out: tuple[tuple[str, str], ...] = ()  # (backend, why its table rows do not fit)


@dataclass(frozen=True)
class Chosen:
    stack: ServingStack
    reason: str  # one line for the init log, report.json and `check`

    @property
    def backend(self) -> str:
        return self.stack.backend


def candidates(requested: str, mlflow_version: str, python: str) -> Candidates:
    """The table's part of the choice; NoStack / ResolveError (exit 6) when no backend's row fits."""
    stacks: list[ServingStack] = []
    ruled_out: list[tuple[str, str]] = []
    for backend in BACKENDS if requested == "auto" else (requested,):
        try:
            stacks.append(select_stack(backend, mlflow_version, python))
        except NoStack as exc:
            if requested != "auto":
                raise _refused(backend, exc.reason, exc.hint) from exc
            ruled_out.append((backend, exc.reason))
    if not stacks:
        raise _none_fits(ruled_out)
    return Candidates(requested, mlflow_version, python, tuple(stacks), tuple(ruled_out))


def choose(found: Candidates, lock: Callable[[ServingStack], T]) -> tuple[Chosen, T]:
    """Lock the candidates in order until one resolves: auto falls back on a conflict (ConflictError); any other
    error (an unreachable index, exit 7) is raised as it is, since the next backend would meet it too."""
    ruled_out = list(found.ruled_out)
    for index, stack in enumerate(found.stacks):
        try:
            result = lock(stack)
        except ConflictError as exc:
            if found.requested == "mlserver":
                raise _refused(stack.backend, _conflict_reason(stack, exc), exc.hint) from exc
            if found.requested == "mlflow":  # the model's own pins: the other backend only adds to them
                raise ResolveError(f"--backend mlflow: {_conflict_reason(stack, exc)}", exc.hint) from exc
            ruled_out.append((stack.backend, _conflict_reason(stack, exc)))
            if index + 1 == len(found.stacks):
                raise _none_fits(ruled_out) from exc
            log.info("%s: %s; trying the next backend", LABELS[stack.backend], ruled_out[-1][1], extra={"step": "lock"})
            continue
        return Chosen(stack, _reason(found, stack, ruled_out)), result
    raise AssertionError("candidates() returns at least one stack")  # pragma: no cover


def _reason(found: Candidates, stack: ServingStack, ruled_out: list[tuple[str, str]]) -> str:
    if found.requested != "auto":
        return f"--backend {stack.backend} (requested)"
    fits = f"MLflow {found.mlflow_version} on Python {found.python}"
    if stack.backend == "mlflow":
        return (
            f"auto: MLflow {found.mlflow_version} has the FastAPI scoring server (>= 2.21), so its own scoring server "
            f"serves {fits}: the mlflow backend, preferred over MLServer"
        )
    why_not = "; ".join(f"not {LABELS[backend]}: {reason}" for backend, reason in ruled_out)
    return f"auto: {why_not}; MLServer serves {fits} and resolves with the model's requirements"


def _conflict_reason(stack: ServingStack, exc: ConflictError) -> str:
    if stack.backend == "mlserver":
        return (
            f"the model's requirements conflict with MLServer's ({' '.join(stack.requirements)}) "
            f"({exc.installer}): {exc.detail}"
        )
    return f"the model's own requirements cannot be resolved ({exc.installer}): {exc.detail}"


def _refused(backend: str, reason: str, hint: str | None) -> ResolveError:
    if backend == "mlserver":
        return ResolveError(f"--backend mlserver: {reason}", f"{hint}; or {_MLFLOW_HINT}")
    return ResolveError(f"--backend mlflow: {reason}", f"{hint}; or use --backend mlserver (or auto)")


def _none_fits(ruled_out: list[tuple[str, str]]) -> ResolveError:
    reasons = "; ".join(f"{LABELS[backend]}: {reason}" for backend, reason in ruled_out)
    return ResolveError(
        f"no serving backend fits this model: {reasons}",
        "relax the model's conflicting pins or pass --constraint, use an image of another Python "
        "(chart value pythonVersion), or log the model again with a newer MLflow",
    )
