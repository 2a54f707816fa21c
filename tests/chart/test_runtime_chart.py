"""charts/mlflow-kserve-runtime, as strict as the per-model chart: every scenario lints (helm 3 and 4, --strict),
renders the same with both, validates against KServe v0.20's CRDs with unknown fields rejected and against
Kubernetes' own schemas, passes yamllint, checkov and chart-testing's Chart.yaml schema; the storage container
is configured exactly by what `mlflow-kserve storage-initializer` reads."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version
from mlflow_kserve import cli, options, storage_initializer
from mlflow_kserve.settings import Settings

from .conftest import ROOT, RUNTIME_CHART, RUNTIME_SCENARIOS, checkov, helm_template, render, tool, yamllint
from .crds import crd_schema

sys.path.insert(0, str(ROOT / "ci"))
import kserve_pod

SECRET_ENV = re.compile(r"SECRET|PASSWORD|TOKEN|ACCESS_KEY|CREDENTIAL", re.IGNORECASE)
EXAMPLE = yaml.safe_load((ROOT / "examples" / "kserve-native" / "inferenceservice.yaml").read_text())


def _objects(scenario: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    docs = render(scenario, chart=RUNTIME_CHART)
    assert sorted(d["kind"] for d in docs) == ["ClusterServingRuntime", "ClusterStorageContainer"]
    return (
        next(d for d in docs if d["kind"] == "ClusterStorageContainer"),
        next(d for d in docs if d["kind"] == "ClusterServingRuntime"),
    )


@pytest.mark.parametrize("helm", ["helm", "helm4"])
def test_helm_lint_strict(runtime_scenario: Path, helm: str) -> None:
    proc = subprocess.run(
        [tool(helm), "lint", "--strict", RUNTIME_CHART, "-f", runtime_scenario], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_helm4_renders_what_helm3_renders(runtime_scenario: Path) -> None:
    helm4 = helm_template(runtime_scenario, "helm4", chart=RUNTIME_CHART)
    helm3 = helm_template(runtime_scenario, chart=RUNTIME_CHART)
    assert helm4.returncode == 0, helm4.stderr
    assert list(yaml.safe_load_all(helm4.stdout)) == list(yaml.safe_load_all(helm3.stdout))


def test_both_objects_match_kserve_crds(runtime_scenario: Path) -> None:
    for doc in _objects(runtime_scenario):
        validator = jsonschema.Draft7Validator(crd_schema(doc["apiVersion"], doc["kind"]))
        errors = sorted(validator.iter_errors(doc), key=str)
        assert not errors, [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors]


def test_strict_crd_schemas_reject_unknown_fields() -> None:
    csc, csr = _objects(RUNTIME_SCENARIOS[0])
    csc["spec"]["container"]["imagePullPolicyy"] = "Always"
    csr["spec"]["supportedModelFormats"][0]["autoselect"] = True
    for doc, field in ((csc, "imagePullPolicyy"), (csr, "autoselect")):
        errors = list(jsonschema.Draft7Validator(crd_schema(doc["apiVersion"], doc["kind"])).iter_errors(doc))
        assert errors and field in errors[0].message


@pytest.mark.parametrize("version", ["1.29.0", latest_version()])
def test_containers_and_volumes_match_kubernetes_schemas(runtime_scenario: Path, version: str) -> None:
    """A ClusterStorageContainer's container and a runtime's containers and volumes are Kubernetes objects: as a
    Pod they must pass Kubernetes' own schema (strict)."""
    csc, csr = _objects(runtime_scenario)
    spec = {"initContainers": [csc["spec"]["container"]], "containers": csr["spec"]["containers"],
            "volumes": csr["spec"].get("volumes", [])}  # fmt: skip
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "runtime"}, "spec": spec}
    kubernetes_validate.validate(pod, version, strict=True)


def test_yamllint_clean(runtime_scenario: Path, tmp_path: Path) -> None:
    out = tmp_path / "rendered.yaml"
    out.write_text(helm_template(runtime_scenario, chart=RUNTIME_CHART).stdout)
    proc = yamllint(out, RUNTIME_CHART / "values.yaml", runtime_scenario)
    assert proc.returncode == 0, proc.stdout


def test_chart_yaml_passes_chart_testing_schema() -> None:
    import yamale

    schema = yamale.make_schema(str(ROOT / "ci" / "chart_schema.yaml"))
    yamale.validate(schema, yamale.make_data(str(RUNTIME_CHART / "Chart.yaml")))


def test_the_storage_container_is_kserves_storage_initializer(runtime_scenario: Path) -> None:
    """Named storage-initializer (else KServe injects it twice), no args (KServe's [storageUri, /mnt/models]
    must survive the merge), our subcommand as the command."""
    container = _objects(runtime_scenario)[0]["spec"]["container"]
    assert container["name"] == "storage-initializer"
    assert "args" not in container
    assert container["command"] == ["mlflow-kserve", "storage-initializer"]
    assert "storage-initializer" in cli.cli.commands


def test_storage_env_is_exactly_what_the_cli_reads(runtime_scenario: Path) -> None:
    """Against the storage-initializer command's own click options, not a copy of them; then the values parse
    into Settings the way the command builds them, under KServe's /mnt/models."""
    command = cli.cli.commands["storage-initializer"]
    known = {p.envvar: p for p in command.params if isinstance(p, click.Option)}
    container = _objects(runtime_scenario)[0]["spec"]["container"]
    env = {e["name"]: e for e in container["env"]}
    ours = {name for name in env if name.startswith("MLFLOW_KSERVE_")}
    assert ours <= set(known), ours - set(known)
    plain = {n: e["value"] for n, e in env.items() if n in ours and "value" in e}
    with pytest.MonkeyPatch.context() as mp:
        for name in known:
            mp.delenv(name, raising=False)
        for name, value in plain.items():
            mp.setenv(name, re.sub(r"\$\((\w+)\)", "x", value))
        mp.setenv("MLFLOW_KSERVE_NAME", "fraud")
        ctx = command.make_context("storage-initializer", ["mlflow+s3://b/fraud", "/mnt/models"])
    init_params = {p.name: p for p in cli.init.params if p.name}
    values = storage_initializer.apply_annotations(ctx.params, init_params, ctx)
    settings = Settings.from_options(
        **{**values, "model_uri": storage_initializer.store_uri("mlflow+s3://b/fraud"),
           **storage_initializer.layout("/mnt/models")}
    )  # fmt: skip
    assert settings.model_uri == "s3://b/fraud"
    assert settings.venv_dir == Path("/mnt/models/.env/venv") and settings.model_dir == Path("/mnt/models/model")
    mounts = {m["mountPath"] for m in container.get("volumeMounts", [])}
    assert settings.cache_dir is None or str(settings.cache_dir) in mounts


def test_every_annotation_the_cli_knows_is_passed_by_fieldref() -> None:
    container = _objects(RUNTIME_SCENARIOS[0])[0]["spec"]["container"]
    refs = {
        e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"]
        for e in container["env"]
        if "fieldRef" in e.get("valueFrom", {})
    }
    expected = {
        options.env_name(f"--annotation-{key}"): f"metadata.annotations['{options.ANNOTATION_PREFIX}{key}']"
        for key in options.ANNOTATIONS
    }
    assert {k: v for k, v in refs.items() if k != "MLFLOW_KSERVE_NAME"} == expected
    assert refs["MLFLOW_KSERVE_NAME"] == "metadata.labels['serving.kserve.io/inferenceservice']"


def test_the_server_reads_the_layout_the_storage_container_writes(runtime_scenario: Path) -> None:
    _csc, csr = _objects(runtime_scenario)
    [server] = csr["spec"]["containers"]
    env = {e["name"]: e["value"] for e in server["env"]}
    layout = storage_initializer.layout(kserve_pod.MODEL_MOUNT)
    assert env["MLFLOW_KSERVE_MODELS_DIR"] == layout["models_dir"]
    assert env["MLFLOW_KSERVE_ENV_DIR"] == layout["env_dir"]
    assert env["MLSERVER_METRICS_DIR"].startswith("/tmp/")
    assert {"name": "mlflow-kserve-tmp", "mountPath": "/tmp"} in server["volumeMounts"]
    assert [p["containerPort"] for p in server["ports"]] == [8080]  # Knative allows one port
    assert server["readinessProbe"]["httpGet"]["path"] == "/v2/models/{{.Name}}/ready"
    assert "serving.kserve.io/server-type" not in (csr["metadata"].get("annotations") or {})


def test_every_container_has_the_security_defaults(runtime_scenario: Path) -> None:
    csc, csr = _objects(runtime_scenario)
    for container in [csc["spec"]["container"], *csr["spec"]["containers"]]:
        context = container["securityContext"]
        assert context["runAsNonRoot"] is True
        assert context["readOnlyRootFilesystem"] is True
        assert context["allowPrivilegeEscalation"] is False
        assert context["capabilities"]["drop"] == ["ALL"]
        assert context["seccompProfile"] == {"type": "RuntimeDefault"}
        assert "limits" in container["resources"]


def test_istio_cni_uid_runs_only_the_storage_container_as_the_proxy() -> None:
    csc, csr = _objects(RUNTIME_CHART / "ci" / "corporate-values.yaml")
    assert csc["spec"]["container"]["securityContext"]["runAsUser"] == 1337
    assert csr["spec"]["containers"][0]["securityContext"]["runAsUser"] == 1000


def test_credentials_only_come_from_secrets(runtime_scenario: Path) -> None:
    docs = render(runtime_scenario, chart=RUNTIME_CHART)
    for doc in docs:
        spec = doc["spec"]
        containers = [spec["container"]] if doc["kind"] == "ClusterStorageContainer" else spec["containers"]
        for container in containers:
            for env in container.get("env", []):
                if SECRET_ENV.search(env["name"]):
                    assert "secretKeyRef" in env["valueFrom"], env


def test_the_cache_is_declared_by_the_runtime_and_mounted_by_both(runtime_scenario: Path) -> None:
    """A ClusterStorageContainer cannot declare volumes; KServe keeps its container's mounts (strategic merge)
    and takes volumes from the runtime (MergePodSpec): the cache works when both come from this chart."""
    csc, csr = _objects(runtime_scenario)
    values = yaml.safe_load(runtime_scenario.read_text())
    volumes = {v["name"] for v in csr["spec"].get("volumes", [])}
    init_mounts = {m["name"]: m for m in csc["spec"]["container"].get("volumeMounts", [])}
    server_mounts = {m["name"]: m for m in csr["spec"]["containers"][0]["volumeMounts"]}
    if values.get("cache", {}).get("enabled"):
        assert "mlflow-kserve-cache" in volumes
        assert init_mounts["mlflow-kserve-cache"] == {"name": "mlflow-kserve-cache", "mountPath": "/mnt/cache"}
        assert server_mounts["mlflow-kserve-cache"]["readOnly"] is True
        isvc = {**EXAMPLE, "metadata": {"name": "fraud", "namespace": "models"}}
        pod = kserve_pod.predictor_pod(isvc, cluster_runtimes=[csr], storage_containers=[csc])
        pod_volumes = {v["name"] for v in pod["spec"]["volumes"]}
        init = pod["spec"]["initContainers"][0]
        assert {m["name"] for m in init["volumeMounts"]} <= pod_volumes
    else:
        assert "mlflow-kserve-cache" not in volumes and not init_mounts


def test_checkov_reports_no_failed_check_on_the_pods_kserve_builds(tmp_path: Path) -> None:
    """The cluster objects are not pods; checkov looks at the predictor pod KServe builds from them."""
    for scenario in RUNTIME_SCENARIOS:
        csc, csr = _objects(scenario)
        model = {**EXAMPLE["spec"]["predictor"]["model"], "runtime": csr["metadata"]["name"]}
        meta = {"name": "fraud", "namespace": "models"}
        named = {**EXAMPLE, "metadata": meta, "spec": {"predictor": {"model": model}}}
        pod = kserve_pod.predictor_pod(named, cluster_runtimes=[csr], storage_containers=[csc])
        (tmp_path / f"{scenario.stem}.yaml").write_text(yaml.safe_dump(pod))
    proc = checkov(tmp_path, "checkov-runtime.yaml")
    assert proc.returncode == 0, proc.stdout[-5000:] + proc.stderr[-2000:]
