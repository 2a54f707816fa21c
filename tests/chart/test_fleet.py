"""Fleet values: metrics the KServe way (kserve v0.20 pkg/webhook/admission/pod/metrics_aggregate_injector.go), the
PodMonitor, server settings (workers, extra env, adaptive batching into model-settings.json) and pinned models."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import click
import pytest
from mlflow_kserve import cli
from mlflow_kserve.configure import model_settings
from mlflow_kserve.settings import Settings

from .conftest import CHART, render, tool

FLEET = CHART / "ci" / "fleet-pinned-metrics-values.yaml"
MINIMAL = CHART / "ci" / "minimal-values.yaml"
SERVERLESS = CHART / "ci" / "serverless-canary-values.yaml"


def _render(values: Path, *sets: str) -> list[dict[str, Any]]:
    args = [tool("helm"), "template", "fraud", CHART, "--namespace", "models", "-f", values]
    for item in sets:
        args += ["--set", item]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    import yaml

    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def _isvc(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return next(d for d in docs if d["kind"] == "InferenceService")


def _server(docs: list[dict[str, Any]]) -> dict[str, Any]:
    return _isvc(docs)["spec"]["predictor"]["containers"][0]


def _env(container: dict[str, Any]) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_raw_deployment_annotates_the_servers_own_metrics_port() -> None:
    docs = render(MINIMAL)
    annotations, server = _isvc(docs)["metadata"]["annotations"], _server(docs)
    ports = {p["name"]: p["containerPort"] for p in server["ports"]}
    # KServe's webhook would point prometheus.io/port at queue-proxy's 9091, which Raw pods do not have.
    assert annotations["serving.kserve.io/enable-prometheus-scraping"] == "false"
    assert (annotations["prometheus.io/scrape"], annotations["prometheus.io/port"]) == ("true", "8082")
    assert annotations["prometheus.io/path"] == "/metrics"
    assert ports["metrics"] == 8082 == int(_env(server)["MLSERVER_METRICS_PORT"])
    assert not [d for d in docs if d["kind"] == "PodMonitor"]


def test_serverless_lets_queue_proxy_aggregate_the_servers_metrics() -> None:
    docs = render(SERVERLESS)
    annotations, server = _isvc(docs)["metadata"]["annotations"], _server(docs)
    assert annotations["serving.kserve.io/enable-prometheus-scraping"] == "true"
    assert annotations["serving.kserve.io/enable-metric-aggregation"] == "true"
    assert (annotations["prometheus.kserve.io/port"], annotations["prometheus.kserve.io/path"]) == ("8082", "/metrics")
    assert "prometheus.io/port" not in annotations  # the webhook writes it (9088, queue-proxy's aggregate port)
    assert [p["containerPort"] for p in server["ports"]] == [8080]  # Knative allows one port


def test_metrics_off_leaves_no_annotation_and_no_port() -> None:
    docs = _render(MINIMAL, "metrics.enabled=false")
    annotations = _isvc(docs)["metadata"]["annotations"]
    assert not [k for k in annotations if "prometheus" in k]
    assert "metrics" not in {p["name"] for p in _server(docs)["ports"]}


@pytest.mark.parametrize(("values", "port"), [(FLEET, "metrics"), (SERVERLESS, "aggr-metric")])
def test_podmonitor_selects_the_predictor_pods_on_a_metrics_port(values: Path, port: str) -> None:
    docs = _render(values, "metrics.podMonitor.enabled=true")
    monitor = next(d for d in docs if d["kind"] == "PodMonitor")
    assert monitor["spec"]["selector"]["matchLabels"] == {
        "serving.kserve.io/inferenceservice": _isvc(docs)["metadata"]["name"],
        "component": "predictor",
    }
    endpoint = monitor["spec"]["podMetricsEndpoints"][0]
    assert (endpoint["port"], endpoint["path"]) == (port, "/metrics")
    if port == "metrics":  # Raw: a port the server container declares; Serverless: KServe's queue-proxy port
        assert port in {p["name"] for p in _server(docs)["ports"]}
        assert endpoint["interval"] == "30s" and monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"


def test_server_settings_reach_mlserver() -> None:
    docs = render(FLEET)
    env = _env(_server(docs))
    assert env["MLSERVER_PARALLEL_WORKERS"] == "1"
    assert list(env)[-1] == "MLSERVER_LOGGING_LEVEL"  # extraEnv last: it overrides the chart's own
    # Batching goes through the init container's CLI into model-settings.json.
    init_env = _env(_isvc(docs)["spec"]["predictor"]["initContainers"][0])
    known = {p.envvar for p in cli.init.params if isinstance(p, click.Option)}
    with pytest.MonkeyPatch.context() as mp:
        for name in known:
            mp.delenv(name, raising=False)
        for name, value in init_env.items():
            if name in known:
                mp.setenv(name, value)
        settings = Settings.from_options(**cli.init.make_context("init", []).params)
    written = model_settings(
        settings.name, settings.model_dir, settings.models_dir,
        max_batch_size=settings.max_batch_size, max_batch_time=settings.max_batch_time,
    )  # fmt: skip
    assert (written["max_batch_size"], written["max_batch_time"]) == (16, 0.05)
    assert "max_batch_size" not in model_settings("m", Path("/mnt/models/model"), Path("/mnt/models"))


def test_default_workers_is_zero() -> None:
    assert _env(_server(render(MINIMAL)))["MLSERVER_PARALLEL_WORKERS"] == "0"


@pytest.mark.parametrize(
    ("sets", "alias"),
    [
        (["model.uri=models:/fraud@champion"], "champion"),
        (["model.uri=models:/fraud/7", "model.alias=champion", "model.requirePinned=true"], "champion"),
        (["model.uri=models:/fraud/7"], None),
        (["model.uri=s3://models/fraud/"], None),
    ],
)
def test_the_inferenceservice_records_the_alias(sets: list[str], alias: str | None) -> None:
    annotations = _isvc(_render(MINIMAL, *sets))["metadata"]["annotations"]
    assert annotations.get("mlflow-kserve.io/model-alias") == alias


@pytest.mark.parametrize("uri", ["models:/fraud@champion", "models:/fraud/latest", "models:/fraud/Production"])
def test_require_pinned_refuses_uris_that_move_naming_resolve(uri: str) -> None:
    proc = subprocess.run(
        [tool("helm"), "template", "fraud", CHART, "-f", MINIMAL, "--set", f"model.uri={uri}",
         "--set", "model.requirePinned=true"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "model.requirePinned" in proc.stderr and f"mlflow-kserve resolve --model-uri {uri}" in proc.stderr


def test_podmonitor_schema_is_strict() -> None:
    import copy

    import jsonschema

    from .crds import crd_schema

    monitor = next(d for d in render(FLEET) if d["kind"] == "PodMonitor")
    validator = jsonschema.Draft7Validator(crd_schema(monitor["apiVersion"], monitor["kind"]))
    assert not list(validator.iter_errors(monitor))
    bad = copy.deepcopy(monitor)
    bad["spec"]["podMetricsEndpoints"][0]["portt"] = "metrics"
    bad["spec"]["podMetricsEndpoints"][0]["interval"] = "30 seconds"
    errors = " ".join(e.message for e in validator.iter_errors(bad))
    assert "portt" in errors and "30 seconds" in errors
