"""Chart tests use the real helm 3, helm 4 and helmfile binaries that ci/install-tools.sh puts in .tools/bin."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "mlflow-kserve"
RUNTIME_CHART = ROOT / "charts" / "mlflow-kserve-runtime"
TOOLS = ROOT / ".tools" / "bin"
SCENARIOS = sorted((CHART / "ci").glob("*-values.yaml"))
RUNTIME_SCENARIOS = sorted((RUNTIME_CHART / "ci").glob("*-values.yaml"))


def tool(name: str) -> Path:
    path = TOOLS / name
    if not path.exists():
        pytest.fail(f"{path} is missing: run `bash ci/install-tools.sh` (make setup does)")
    return path


def helm_template(
    values: Path, helm: str = "helm", *extra: str, chart: Path = CHART
) -> subprocess.CompletedProcess[str]:
    release = "mlflow-kserve" if chart == RUNTIME_CHART else "fraud"
    return subprocess.run(
        [tool(helm), "template", release, chart, "--namespace", "models", "-f", values, *extra],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def render(values: Path, *extra: str, chart: Path = CHART) -> list[dict[str, Any]]:
    proc = helm_template(values, "helm", *extra, chart=chart)
    assert proc.returncode == 0, proc.stderr
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def yamllint(*paths: Path) -> subprocess.CompletedProcess[str]:
    """chart-testing's yamllint rules (ci/lintconf.yaml) over ``paths``."""
    linter = Path(sys.executable).with_name("yamllint")
    return subprocess.run([linter, "-c", ROOT / "ci" / "lintconf.yaml", *paths], capture_output=True, text=True)


def checkov(directory: Path, config: str) -> subprocess.CompletedProcess[str]:
    """checkov over the manifests in ``directory`` with ci/<config> (its skips, each with its reason)."""
    return subprocess.run(
        [tool("checkov"), "--config-file", ROOT / "ci" / config, "--directory", directory, "--compact",
         "--skip-download", "--quiet"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip


@pytest.fixture(params=SCENARIOS, ids=lambda p: p.name.removesuffix("-values.yaml"))
def scenario(request: pytest.FixtureRequest) -> Path:
    return request.param


@pytest.fixture(params=RUNTIME_SCENARIOS, ids=lambda p: p.name.removesuffix("-values.yaml"))
def runtime_scenario(request: pytest.FixtureRequest) -> Path:
    return request.param
