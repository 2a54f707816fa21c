"""`mlflow-kserve check`: fetch, plan and lock only, the plan printed as a table or JSON; and JSON logs."""

from __future__ import annotations

import json
from pathlib import Path

from support.cli import mlflow_kserve


def _dirs(tmp_path: Path) -> list[str]:
    return ["--models-dir", str(tmp_path / "models"), "--env-dir", str(tmp_path / "env")]


def test_check_json_shows_the_plan_without_installing(
    s3_models: dict[str, str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    proc = mlflow_kserve(["check", "--model-uri", s3_models["sklearn-mlflow213"], "--json", *_dirs(tmp_path)], cli_env)
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert plan["mlflow_version"] == "2.13.2"
    assert plan["serving_stack"]["requirements"] == ["mlserver==1.6.1", "mlserver-mlflow==1.6.1", "uvloop<0.22",
                                                     "setuptools<82"]  # fmt: skip
    assert plan["packages"]["mlflow"] == "2.13.2" and plan["packages"]["mlserver"] == "1.6.1"
    assert plan["packages"]["scikit-learn"] == "1.3.2"
    assert (tmp_path / "env" / "requirements.lock").is_file()
    assert not (tmp_path / "env" / "venv").exists(), "check installs nothing"


def test_check_table_and_json_logs(models: dict[str, object], cli_env: dict[str, str], tmp_path: Path) -> None:
    model = models["custom-extra-dep"].path  # type: ignore[attr-defined]
    args = ["check", "--model-uri", str(model), "--extra-requirement", "prometheus-client<1", "--log-format", "json"]
    proc = mlflow_kserve([*args, *_dirs(tmp_path)], cli_env)
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout
    for needle in ("mlflow  (auto: MLflow 3.17.2 has", "no package added", "model requires", "roman==5.2",
                   "prometheus-client<1", "locked packages ("):  # fmt: skip
        assert needle in table
    logs = [json.loads(line) for line in proc.stderr.splitlines() if line.strip()]
    steps = {entry["step"]: entry["seconds"] for entry in logs if "seconds" in entry}
    assert set(steps) == {"fetch", "plan", "lock"}
    assert all(entry["level"] in ("info", "warning") for entry in logs)
