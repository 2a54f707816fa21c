"""Bad values fail `helm template` with a message naming the value; good scenarios keep the pod safe: security
defaults on every container, credentials only from Secrets, and an init container configured exactly by the
variables `mlflow-kserve init` reads."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from mlflow_kserve import cli
from mlflow_kserve.settings import Settings

from .conftest import CHART, RUNTIME_CHART, SCENARIOS, checkov, helm_template, render

BAD = sorted((Path(__file__).parent / "bad-values").glob("*.yaml"))
RUNTIME_BAD = sorted((Path(__file__).parent / "runtime-bad-values").glob("*.yaml"))
SECRET_ENV = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL", re.IGNORECASE)


def test_there_are_at_least_twelve_bad_values_files_per_chart() -> None:
    assert len(BAD) >= 12 and len(RUNTIME_BAD) >= 12


@pytest.mark.parametrize(
    ("chart", "values"),
    [(CHART, v) for v in BAD] + [(RUNTIME_CHART, v) for v in RUNTIME_BAD],
    ids=lambda x: x.stem if x.suffix else x.name,
)
def test_bad_values_fail_naming_the_value(chart: Path, values: Path) -> None:
    expected = values.read_text().splitlines()[0].removeprefix("# expect: ").strip()
    proc = helm_template(values, chart=chart)
    assert proc.returncode != 0, f"{values.name} rendered"
    pointer = "/" + expected.split("=")[0].split(" ")[0].replace(".", "/")
    assert expected in proc.stderr or pointer in proc.stderr, proc.stderr


def _pods(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    specs = [d["spec"]["predictor"] for d in docs if d["kind"] == "InferenceService"]
    return specs + [d["spec"] for d in docs if d["kind"] == "Pod"]


def test_every_container_has_the_security_defaults(scenario: Path) -> None:
    """On the pod or, in Serverless without Knative's pod security-context flag, on each container."""
    for pod in _pods(render(scenario)):
        for container in pod.get("initContainers", []) + pod["containers"]:
            context = {**pod.get("securityContext", {}), **container["securityContext"]}
            assert context["runAsNonRoot"] is True, container["name"]
            assert context["runAsNonRoot"] is True, container["name"]
            assert context["readOnlyRootFilesystem"] is True, container["name"]
            assert context["allowPrivilegeEscalation"] is False, container["name"]
            assert context["capabilities"]["drop"] == ["ALL"], container["name"]
            assert context["seccompProfile"] == {"type": "RuntimeDefault"}, container["name"]
            assert "limits" in container["resources"], container["name"]


def test_server_has_startup_readiness_and_liveness_probes(scenario: Path) -> None:
    server = _pods(render(scenario))[0]["containers"][0]
    name = server["readinessProbe"]["httpGet"]["path"].split("/")[3]
    assert server["startupProbe"]["httpGet"]["path"] == f"/v2/models/{name}/ready"
    assert server["startupProbe"]["failureThreshold"] * server["startupProbe"]["periodSeconds"] >= 300
    assert server["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"


def test_istio_cni_runs_the_init_container_as_the_proxy_uid() -> None:
    docs = render(CHART / "ci" / "raw-istio-hpa-values.yaml")
    pod = _pods(docs)[0]
    assert pod["initContainers"][0]["securityContext"]["runAsUser"] == 1337
    assert "runAsUser" not in pod["containers"][0]["securityContext"]


def test_credentials_only_come_from_secrets(scenario: Path) -> None:
    docs = render(scenario)
    assert not [d for d in docs if d["kind"] == "Secret"], "the chart never holds credentials"
    for pod in _pods(docs):
        for container in pod.get("initContainers", []) + pod["containers"]:
            for env in container.get("env", []):
                if SECRET_ENV.search(env["name"]) and not env["name"].endswith(("_KEY_ID_KEY",)):
                    if env["name"] == "AWS_ACCESS_KEY_ID":
                        assert "secretKeyRef" in env["valueFrom"]
                        continue
                    assert "valueFrom" in env and "secretKeyRef" in env["valueFrom"], env


def test_private_index_credentials_are_expanded_in_the_pod_not_the_spec() -> None:
    docs = render(CHART / "ci" / "private-index-ca-cache-values.yaml")
    env = {e["name"]: e for e in _pods(docs)[0]["initContainers"][0]["env"]}
    assert env["MLFLOW_KSERVE_INDEX_URL"]["value"] == (
        "https://$(PRIVATE_INDEX_USERNAME):$(PRIVATE_INDEX_PASSWORD)@pypi.corp.example/simple"
    )
    assert env["PRIVATE_INDEX_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "pypi-credentials", "key": "password"}
    assert env["SSL_CERT_FILE"]["value"] == "/etc/mlflow-kserve/ca/ca-bundle.crt"


def _expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\((\w+)\)", lambda m: env.get(m.group(1), "x"), value)


def test_init_env_is_exactly_what_the_cli_reads(scenario: Path) -> None:
    """Against the CLI's own click option definitions, not a copy of them."""
    known = {p.envvar: p for p in cli.init.params if isinstance(p, click.Option)}
    init = _pods(render(scenario))[0]["initContainers"][0]
    assert init["args"] == ["init"]
    env = {e["name"]: e.get("value", "secret") for e in init["env"]}
    ours = {name for name in env if name.startswith("MLFLOW_KSERVE_")}
    assert ours <= set(known), ours - set(known)
    assert {"MLFLOW_KSERVE_MODEL_URI", "MLFLOW_KSERVE_MODELS_DIR", "MLFLOW_KSERVE_ENV_DIR"} <= ours
    # The values parse as the CLI parses them, and land where the pod mounts volumes.
    resolved = {name: _expand(value, env) for name, value in env.items() if name in ours}
    with pytest.MonkeyPatch.context() as mp:
        for name in known:
            mp.delenv(name, raising=False)
        for name, value in resolved.items():
            mp.setenv(name, value)
        ctx = cli.init.make_context("init", [])
        settings = Settings.from_options(**ctx.params)
    mounts = {m["mountPath"] for m in init["volumeMounts"]}
    assert str(settings.models_dir) in mounts and str(settings.env_dir) in mounts
    assert settings.cache_dir is None or str(settings.cache_dir) in mounts


def test_grpc_port_is_declared_when_mlserver_or_server_grpc_serves_it(scenario: Path) -> None:
    values = yaml.safe_load(scenario.read_text())
    pod = _pods(render(scenario))[0]
    ports = {p["name"]: p["containerPort"] for p in pod["containers"][0]["ports"]}
    backend = values.get("server", {}).get("backend", "auto")
    grpc = values.get("server", {}).get("grpc", {}).get("enabled", False)
    serverless = values.get("deploymentMode") == "Serverless"
    assert ("h2c" in ports) == ((backend == "mlserver" or grpc) and not serverless), (backend, ports)
    init_env = {e["name"]: e.get("value") for e in pod["initContainers"][0]["env"]}
    server_env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert init_env["MLFLOW_KSERVE_BACKEND"] == backend
    assert init_env.get("MLFLOW_KSERVE_GRPC") == ("true" if grpc else None), "init adds grpcio"
    assert server_env.get("MLFLOW_KSERVE_SERVER_GRPC") == ("true" if grpc else None), "the server serves it"
    if grpc:
        assert server_env["MLFLOW_KSERVE_SERVER_GRPC_PORT"] == str(ports["h2c"]) == server_env["MLSERVER_GRPC_PORT"]


def test_server_mounts_the_shared_volumes_read_only(scenario: Path) -> None:
    server = _pods(render(scenario))[0]["containers"][0]
    mounts = {m["mountPath"]: m for m in server["volumeMounts"]}
    assert mounts["/mnt/models"]["readOnly"] is True and mounts["/mnt/env"]["readOnly"] is True
    assert "/tmp" in mounts and {"name": "MLSERVER_METRICS_DIR", "value": "/tmp/mlserver-metrics"} in server["env"]


def _cache_wiring(docs: list[dict[str, Any]]) -> tuple[dict[str, str], dict[str, Any] | None]:
    pod = _pods(docs)[0]
    env = {e["name"]: e.get("value", "") for e in pod["initContainers"][0]["env"]}
    server_mounts = {m["mountPath"]: m for m in pod["containers"][0]["volumeMounts"]}
    return env, server_mounts.get(env.get("MLFLOW_KSERVE_CACHE_DIR", "/mnt/cache"))


def test_serving_from_the_cache_mounts_it_read_only_at_the_init_path() -> None:
    values = CHART / "ci" / "private-index-ca-cache-values.yaml"
    env, mount = _cache_wiring(render(values))
    assert env["MLFLOW_KSERVE_SERVE_FROM_CACHE"] == "true"
    assert mount == {"name": "cache", "mountPath": env["MLFLOW_KSERVE_CACHE_DIR"], "readOnly": True}
    docs = list(yaml.safe_load_all(helm_template(values, "helm", "--set", "cache.serveFromCache=false").stdout))
    env, mount = _cache_wiring([d for d in docs if d])
    assert "MLFLOW_KSERVE_SERVE_FROM_CACHE" not in env and env["MLFLOW_KSERVE_CACHE_DIR"] == "/mnt/cache"
    assert mount is None, "copying the venv: the server does not see the cache"


def test_gpu_scenario_requests_the_gpu() -> None:
    server = _pods(render(CHART / "ci" / "gpu-values.yaml"))[0]["containers"][0]
    assert server["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert server["image"].endswith(":0.1.0-py3.12")


def test_checkov_reports_no_failed_check(tmp_path: Path) -> None:
    for values in SCENARIOS:
        (tmp_path / f"{values.stem}.yaml").write_text(helm_template(values).stdout)
    proc = checkov(tmp_path, "checkov.yaml")
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
