"""Pinned rollouts against the real registry (`mlflow server` + sqlite, artifacts in moto S3): `mlflow-kserve
resolve` prints the version an alias points at now, examples/helmfile.yaml pins aliases when it renders (an alias
move changes the rendered manifests), and init records the version it fetched."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from chart.conftest import ROOT, TOOLS, tool
from mlflow import MlflowClient
from support.cli import MLFLOW_KSERVE, last_error, mlflow_kserve
from support.services import S3, Registry, register

HELMFILE_MODELS = ("fraud", "churn", "credit-risk")  # the releases of examples/helmfile.yaml


def _artifacts(tmp_path: Path, label: str) -> Path:
    """A registered version's files: resolve and helmfile read the registry only, never the artifacts."""
    folder = tmp_path / label
    folder.mkdir()
    (folder / "MLmodel").write_text(f"# {label}\nflavors: {{}}\n")
    return folder


def _two_versions(registry: Registry, s3: S3, tmp_path: Path, name: str, alias: str) -> MlflowClient:
    """Register versions 1 and 2 of ``name``; ``alias`` points at version 1, ``staging`` at version 2."""
    for label in ("v1", "v2"):
        register(registry, s3, name, _artifacts(tmp_path, f"{name}-{alias}-{label}"), alias=alias)
    client = MlflowClient(registry.tracking_uri)
    client.set_registered_model_alias(name, alias, "1")
    client.set_registered_model_alias(name, "staging", "2")
    return client


def test_resolve_prints_the_version_an_alias_points_at(
    registry: Registry, s3: S3, cli_env: dict[str, str], tmp_path: Path
) -> None:
    client = _two_versions(registry, s3, tmp_path, "resolve-me", "champion")
    proc = mlflow_kserve(["resolve", "--model-uri", "models:/resolve-me@champion"], cli_env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "models:/resolve-me/1"

    client.set_registered_model_alias("resolve-me", "champion", "2")
    proc = mlflow_kserve(["resolve", "--model-uri", "models:/resolve-me@champion", "--json"], cli_env, timeout=600)
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    v2 = client.get_model_version("resolve-me", "2")
    assert data["uri"] == "models:/resolve-me/2"
    assert (data["version"], data["alias"], data["run_id"]) == ("2", "champion", v2.run_id)
    assert data["source"] == v2.source and data["pinned"] is True

    # A pinned URI stays itself; `latest` is the newest version.
    for uri, expected in (
        ("models:/resolve-me/1", "models:/resolve-me/1"),
        ("models:/resolve-me/latest", "models:/resolve-me/2"),
    ):
        proc = mlflow_kserve(["resolve", "--model-uri", uri], cli_env, timeout=600)
        assert (proc.returncode, proc.stdout.strip()) == (0, expected), proc.stderr


@pytest.mark.parametrize(
    ("uri", "code", "words"),
    [
        ("models:/resolve-missing@champion", 3, "not in the registry"),
        ("models:/resolve-missing/3", 3, "not in the registry"),
        ("models:/", 2, "not a model registry URI"),
        ("models:/a/b/c", 2, "not a model registry URI"),
    ],
)
def test_resolve_errors_have_exit_codes(
    uri: str, code: int, words: str, registry: Registry, cli_env: dict[str, str]
) -> None:
    proc = mlflow_kserve(["resolve", "--model-uri", uri], cli_env, timeout=600)
    assert proc.returncode == code, proc.stderr
    assert words in last_error(proc) and "fix:" in last_error(proc)
    assert proc.stdout == ""


def test_resolve_prints_other_uris_unchanged(cli_env: dict[str, str]) -> None:
    for uri in ("s3://models/fraud/", "runs:/abc/model", "/srv/models/fraud"):
        proc = mlflow_kserve(["resolve", "--model-uri", uri, "--json"], cli_env, timeout=600)
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout) == {"uri": uri, "pinned": False}


def _helmfile_template(env: dict[str, str], environment: str = "prod") -> dict[str, dict]:
    """The InferenceService of each release of examples/helmfile.yaml, rendered for ``environment``."""
    import yaml

    proc = subprocess.run(
        [tool("helmfile"), "--file", ROOT / "examples" / "helmfile.yaml", "--environment", environment, "template",
         "--skip-deps", "--helm-binary", tool("helm")],
        capture_output=True, text=True, timeout=900, env=env, cwd=ROOT / "examples",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == "InferenceService"}


def test_helmfile_pins_aliases_when_it_renders(
    registry: Registry, s3: S3, cli_env: dict[str, str], tmp_path: Path
) -> None:
    clients = [_two_versions(registry, s3, tmp_path, name, "champion") for name in HELMFILE_MODELS]
    # helmfile's `exec` runs mlflow-kserve from PATH; the registry comes from the environment, as in CI/CD.
    path = f"{Path(MLFLOW_KSERVE).parent}{os.pathsep}{TOOLS}{os.pathsep}{cli_env['PATH']}"
    env = {**cli_env, "PATH": path, "HOME": str(tmp_path)}

    dev = _helmfile_template(env, "dev")  # alias staging: version 2 of each
    assert {n: _uri(d) for n, d in dev.items()} == {n: f"models:/{n}/2" for n in HELMFILE_MODELS}
    assert {d["metadata"]["namespace"] for d in dev.values()} == {"models-dev"}
    before = _helmfile_template(env)  # prod, alias champion: version 1; values-prod.yaml requires pinned URIs
    fraud = before["fraud"]
    init_env = {e["name"]: e.get("value") for e in fraud["spec"]["predictor"]["initContainers"][0]["env"]}
    assert init_env["MLFLOW_KSERVE_MODEL_URI"] == "models:/fraud/1"
    assert fraud["metadata"]["annotations"]["mlflow-kserve.io/model-alias"] == "champion"
    assert {n: _uri(d) for n, d in before.items()} == {n: f"models:/{n}/1" for n in HELMFILE_MODELS}

    clients[0].set_registered_model_alias("fraud", "champion", "2")  # the alias moves: the rollout changes
    after = _helmfile_template(env)
    assert _uri(after["fraud"]) == "models:/fraud/2"
    assert (_uri(after["churn"]), _uri(after["credit-risk"])) == ("models:/churn/1", "models:/credit-risk/1")


def _uri(isvc: dict) -> str:
    env = isvc["spec"]["predictor"]["initContainers"][0]["env"]
    return next(e["value"] for e in env if e["name"] == "MLFLOW_KSERVE_MODEL_URI")


def test_check_records_the_version_it_fetched(
    registry_models: dict[str, str], cli_env: dict[str, str], tmp_path: Path
) -> None:
    uri = registry_models["sklearn-columns"]
    proc = mlflow_kserve(
        ["check", "--model-uri", uri, "--models-dir", str(tmp_path / "m"), "--env-dir", str(tmp_path / "e"), "--json"],
        cli_env,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    version = MlflowClient(cli_env["MLFLOW_TRACKING_URI"]).get_model_version_by_alias("sklearn-columns", "champion")
    pinned = json.loads(proc.stdout)["registry"]
    assert (pinned["uri"], pinned["run_id"]) == (f"models:/sklearn-columns/{version.version}", version.run_id)
    assert f"is version {version.version} of 'sklearn-columns' (run {version.run_id})" in proc.stderr
