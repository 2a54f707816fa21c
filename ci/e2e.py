"""End to end, as a user deploys: helm template → the predictor pod as rendered → podman kube play →
init container → the server (auto: the mlflow backend) → V2 requests with a real V2 client, compared with the
model's local predict.

    .venv/bin/python ci/e2e.py        (ci/e2e wraps it: installs podman, builds the base and both images)

Scenarios: (1) sklearn MLflow 3.x model from S3 (auto: the mlflow backend); (2) a model needing a package outside
the serving stack, served by MLServer (`server.backend=mlserver`);
(3) a forbidden requirement line: the init container exits 5 and the server never starts; (4) scenario 1's
pod twice with the cache volume mounted: both init durations; (5) a model logged from a uv project (protobuf 7
pinned, which MLServer refuses): auto chooses the mlflow backend; (6) a model logged on Python 3.13, in the pod of
the 3.13 images: auto chooses the mlflow backend. Every served scenario checks the backend report.json
names. Scenarios run for the Python minors whose images ci/e2e built (E2E_PYTHON_VERSIONS). KServe-native mode
(charts/mlflow-kserve-runtime, the pod built by ci/kserve_pod.py as KServe v0.20 would): (7) a models:/name@alias
model from a real registry, with a per-model annotation; (8) an mlflow+s3:// model; (9) a bad annotation: the
storage container exits 2; (10, 11) scenario 1's model from gs:// (gcp-storage-emulator) and wasbs:// (Azurite)
with the chart's default image; (12) the environment store: the chart's prebuild Job (its pod spec as rendered)
builds scenario 1's model and publishes to the S3 server, then the model's pod, its package index at a closed
port, starts from the store. Every served row gives, beside the seconds to ready from `podman kube play`, the
server container's own seconds from its start to ready, and a timeline of the pod (podman's events and the
server's log timestamps: when each container started and ended, when the server logged what). After every chart
scenario the chart's `helm test` Pod, as rendered (only the
Service URL changed), must pass on a ready model and fail on one that never gets ready, and on scenario 1's
server once stopped. Exits non-zero if any scenario fails.
E2E_SCENARIOS="1 3" runs only the scenarios with those numbers; E2E_CHART renders another chart (a packaged
.tgz, e.g. a released one) instead of charts/mlflow-kserve.

    .venv/bin/python ci/e2e.py [--only chart|native]
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import requests
import tritonclient.http as httpclient
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "ci"), str(ROOT / "tests")]

from e2e_pod import LOCAL_CHANGES, job_pod, local_pod, local_test_pod, localize  # noqa: E402
from kserve_pod import StorageInitializerConfig, predictor_pod  # noqa: E402
from support import variants  # noqa: E402
from support.cli import v2_request  # noqa: E402
from support.emulators import Azure, azurite, gcs_emulator  # noqa: E402
from support.models import build  # noqa: E402
from support.services import S3, mlflow_server, moto_s3, register  # noqa: E402

HELM = ROOT / ".tools" / "bin" / "helm"
HOST_PORT = int(os.environ.get("E2E_HOST_PORT", "18080"))  # another value lets two e2e runs share a machine
ENGINE_ENV = {**os.environ, "CONTAINERS_CONF": str(ROOT / "ci" / "containers.conf")}
CA_BUNDLE = os.environ.get("E2E_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
CHART = os.environ.get("E2E_CHART", str(ROOT / "charts" / "mlflow-kserve"))
SCENARIOS = os.environ.get("E2E_SCENARIOS", "").split()  # empty: all


def podman(*args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["podman", *args], capture_output=True, text=True, env=ENGINE_ENV, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args)}: {proc.stderr[-2000:]}")
    return proc


PYTHONS = os.environ.get("E2E_PYTHON_VERSIONS", "3.11").split()


HOST = "10.0.2.2"  # the host's loopback, seen from a pod on slirp4netns with allow_host_loopback
NETWORK = "slirp4netns:allow_host_loopback=true"


def render(uri: str, endpoint: str, extra: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The InferenceService and the `helm test` Pod, as helm renders them."""
    chart, values = CHART, ROOT / "ci" / "e2e-values.yaml"
    cmd = [str(HELM), "template", "e2e", str(chart), "-f", str(values),
           "--set", f"model.uri={uri}", "--set", f"storage.s3.endpoint={endpoint}", *extra]  # fmt: skip
    docs = [d for d in yaml.safe_load_all(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout) if d]
    return next(d for d in docs if d["kind"] == "InferenceService"), next(d for d in docs if d["kind"] == "Pod")


def play(isvc: dict[str, Any], work: Path) -> None:
    play_pod(local_pod(isvc, HOST_PORT), work, "e2e-ca", "ca.crt")


def play_pod(pod: dict[str, Any], work: Path, ca_name: str, ca_key: str) -> None:
    """Run ``pod`` with a ConfigMap ``ca_name`` holding this machine's CA bundle under ``ca_key``."""
    pod_file, cm_file = work / "pod.yaml", work / "ca.yaml"
    pod_file.write_text(yaml.safe_dump(pod))
    ca = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": ca_name},
          "data": {ca_key: Path(CA_BUNDLE).read_text()}}  # fmt: skip
    cm_file.write_text(yaml.safe_dump(ca))
    podman("pod", "rm", "-f", "--all", check=False)
    # kube play returns when the init container has exited; its code says how init went.
    podman("kube", "play", "--configmap", str(cm_file), "--network", NETWORK, str(pod_file), check=False, timeout=1200)


def helm_test(test_pod: dict[str, Any], work: Path) -> tuple[int | None, str]:
    """Run the chart's `helm test` Pod (LOCAL_CHANGES applied) next to the predictor pod: (exit code, its log)."""
    pod_file = work / "test-pod.yaml"
    pod_file.write_text(yaml.safe_dump(local_test_pod(test_pod, f"http://{HOST}:{HOST_PORT}")))
    name = f"{test_pod['metadata']['name']}-{test_pod['spec']['containers'][0]['name']}"
    podman("kube", "play", "--network", NETWORK, str(pod_file), timeout=300)
    waited = podman("wait", name, check=False, timeout=600)
    logs = podman("logs", name, check=False)
    podman("pod", "rm", "-f", test_pod["metadata"]["name"], check=False)
    code = int(waited.stdout.strip()) if waited.stdout.strip().lstrip("-").isdigit() else None
    return code, (logs.stdout + logs.stderr).strip()


def init_log(container: str = "e2e-predictor-model-init") -> str:
    return podman("logs", container, check=False).stdout + podman("logs", container, check=False).stderr


def state(container: str) -> dict[str, Any]:
    out = podman("inspect", container, "--format", "{{json .State}}", check=False).stdout
    return json.loads(out) if out.strip() else {}


def wait_ready(timeout: float = 300) -> float:
    start = time.monotonic()
    url = f"http://127.0.0.1:{HOST_PORT}/v2/models/e2e/ready"
    while time.monotonic() - start < timeout:
        try:
            if requests.get(url, timeout=2).status_code == 200:
                return time.monotonic() - start
        except requests.ConnectionError:
            pass
        server = state("e2e-predictor-kserve-container")
        if server.get("Status") == "exited":
            logs = podman("logs", "e2e-predictor-kserve-container", check=False).stderr[-2000:]
            raise RuntimeError(f"server exited {server.get('ExitCode')}: {logs}")
        time.sleep(0.5)
    init = state("e2e-predictor-model-init")
    raise RuntimeError(f"not ready in {timeout:.0f}s; init container {init.get('Status', 'absent')} "
                       f"(exit {init.get('ExitCode')}), its log ends: {init_log()[-1500:]}")  # fmt: skip


def _epoch(stamp: str) -> float:
    """podman's RFC 3339 times (nanoseconds, 'Z' or an offset) as seconds since the epoch."""
    from datetime import datetime

    stamp = stamp.strip().replace("Z", "+00:00")
    if "." in stamp:  # datetime takes microseconds at most
        head, rest = stamp.split(".", 1)
        digits = "".join(c for c in rest if c.isdigit())
        stamp = f"{head}.{digits[:6]}{rest[len(digits) :]}"
    return datetime.fromisoformat(stamp).timestamp()


SERVER_MARKS = {  # a server log line -> its name in the timeline (the first line containing it)
    "mlflow-kserve-server: starting": "server: entrypoint starts the server",
    "Loaded model": "server: model loaded",
    "Uvicorn running on": "server: HTTP listening",
}


def timeline(since: float, ready_at: float, pod: str = "e2e-predictor") -> dict[str, float]:
    """Seconds after ``since`` (when `podman kube play` was called) of each container's start and end (podman's
    events), of the server's log lines in SERVER_MARKS (podman's log timestamps), and of ready (``ready_at``)."""
    ago = f"{int(time.time() - since) + 2}s"
    events = podman("events", "--stream=false", "--since", ago, "--format", "json", "--filter", "type=container",
                    check=False, timeout=60).stdout  # fmt: skip
    marks: dict[str, float] = {}
    for line in events.splitlines():
        try:
            event = json.loads(line)
            name, status = event.get("Name", ""), event.get("Status", "")
            if not (name.startswith(pod) or name.endswith("-infra")) or status not in ("create", "start", "died"):
                continue
            # podman 4.3 writes Time (RFC 3339, nanoseconds); later ones also time / timeNano
            seconds = int(event["timeNano"]) / 1e9 if "timeNano" in event else _epoch(str(event["Time"]))
        except (ValueError, KeyError, TypeError):
            continue
        label = f"{'pod infra' if name.endswith('-infra') else name.removeprefix(pod + '-')} {status}"
        marks.setdefault(label, round(seconds - since, 2))
    logs = podman("logs", "-t", f"{pod}-kserve-container", check=False)
    for line in (logs.stdout + logs.stderr).splitlines():
        stamp, _, text = line.partition(" ")
        for needle, label in SERVER_MARKS.items():
            if needle in text and label not in marks:
                try:
                    marks[label] = round(_epoch(stamp) - since, 2)
                except ValueError:
                    pass
    marks["ready (first 200 from /ready)"] = round(ready_at - since, 2)
    return dict(sorted(marks.items(), key=lambda item: item[1]))


def server_seconds(ready_at: float, container: str = "e2e-predictor-kserve-container") -> float | None:
    """The server container's own seconds from its start (podman's StartedAt) to ready."""
    started = state(container).get("StartedAt")
    return round(ready_at - _epoch(started), 1) if started else None


def v2_infer(expected: dict[str, Any]) -> tuple[dict[str, Any], list[float]]:
    client = httpclient.InferenceServerClient(url=f"127.0.0.1:{HOST_PORT}")
    inputs, data = [], []
    if expected["kind"] == "columns":
        for column, values in expected["input"].items():
            item = httpclient.InferInput(column, [len(values)], "FP64")
            data.append(np.asarray(values, dtype=np.float64))
            item.set_data_from_numpy(data[-1], binary_data=False)
            inputs.append(item)
    else:
        array = np.asarray(expected["input"], dtype=np.float64)
        item = httpclient.InferInput("input-0", list(array.shape), "FP64")
        item.set_data_from_numpy(array, binary_data=False)
        inputs.append(item)
        data.append(array)
    result = client.infer("e2e", inputs)
    response = result.get_response()
    output = result.as_numpy(response["outputs"][0]["name"]).reshape(-1).tolist()
    request = {"inputs": [{"name": i.name(), "shape": i.shape(), "datatype": i.datatype(), "data": d.tolist()}
                          for i, d in zip(inputs, data, strict=True)]}  # fmt: skip
    return request, output


def report(path: str = "/mnt/env/report.json") -> dict[str, Any]:
    """report.json, read through the server container (it mounts the volume; podman removes finished init
    containers, so their logs and exit code are gone after a success)."""
    out = podman("exec", "e2e-predictor-kserve-container", "cat", path, check=False).stdout
    return json.loads(out) if out.strip() else {}


# --- KServe-native mode -----------------------------------------------------------------------------------------

NATIVE_REPORT = "/mnt/models/.env/report.json"  # the layout of `mlflow-kserve storage-initializer`
CRDS = ROOT / "ci" / "crds"


def render_runtime(work: Path, tracking_uri: str, endpoint: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The runtime chart's ClusterStorageContainer and ClusterServingRuntime, with ci/e2e-runtime-values.yaml and
    this run's registry and S3 endpoint."""
    values = yaml.safe_load((ROOT / "ci" / "e2e-runtime-values.yaml").read_text())
    values["mlflow"] = {"trackingUri": tracking_uri}
    values["storageContainer"]["extraEnv"].append({"name": "AWS_ENDPOINT_URL", "value": endpoint})
    (work / "runtime-values.yaml").write_text(yaml.safe_dump(values))
    cmd = [str(HELM), "template", "mlflow-kserve", str(ROOT / "charts" / "mlflow-kserve-runtime"),
           "-f", str(work / "runtime-values.yaml")]  # fmt: skip
    docs = [d for d in yaml.safe_load_all(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout) if d]
    return (next(d for d in docs if d["kind"] == "ClusterStorageContainer"),
            next(d for d in docs if d["kind"] == "ClusterServingRuntime"))  # fmt: skip


def native_pod(uri: str, annotations: dict[str, str], csc: dict[str, Any], csr: dict[str, Any]) -> dict[str, Any]:
    """The InferenceService of examples/kserve-native/, named e2e, as KServe v0.20 turns it into a pod beside its
    own default storage container and kserve-mlserver runtime, with its CA bundle config set."""
    isvc = yaml.safe_load((ROOT / "examples" / "kserve-native" / "inferenceservice.yaml").read_text())
    isvc["metadata"] = {"name": "e2e", "namespace": "e2e", "annotations": annotations}
    isvc["spec"]["predictor"]["model"]["storageUri"] = uri
    pod = predictor_pod(
        isvc,
        cluster_runtimes=[yaml.safe_load((CRDS / "kserve-v0.20.0-kserve-mlserver.yaml").read_text()), csr],
        storage_containers=[yaml.safe_load((CRDS / "kserve-v0.20.0-default-storagecontainer.yaml").read_text()), csc],
        config=StorageInitializerConfig(ca_bundle_configmap="kserve-ca-bundle"),
    )
    return localize(pod, HOST_PORT)


def native_scenarios(alias: str, uris: dict[str, str], csc: dict[str, Any], csr: dict[str, Any],
                     columns: dict[str, Any], extra: dict[str, Any]) -> list[tuple[Any, ...]]:  # fmt: skip
    """(title, pod, expected answer, storage-initializer exit code, packages report.json must list)."""
    return [
        ("7 KServe-native: models:/ alias from the registry",
         native_pod(alias, {"mlflow-kserve.io/extra-requirements": "roman==4.2"}, csc, csr), columns, 0,
         {"roman": "4.2"}),
        ("8 KServe-native: mlflow+s3:// from S3", native_pod("mlflow+" + uris["extra"], {}, csc, csr), extra, 0, {}),
        ("9 KServe-native: a bad annotation",
         native_pod("mlflow+" + uris["columns"], {"mlflow-kserve.io/python-policy": "lenient"}, csc, csr), None, 2,
         {}),
    ]  # fmt: skip


def run_native_scenarios(s3: S3, work: Path, endpoint: str, uris: dict[str, str], columns: Any,
                         extra: Any) -> list[dict[str, Any]]:  # fmt: skip
    """Scenarios 7-9, with a real `mlflow server` (sqlite registry, artifacts in the moto bucket) for models:/."""
    rows = []
    with mlflow_server(s3, work, startup_seconds=900) as registry:  # measured: over 5 min on a loaded 2-core machine
        alias = register(registry, s3, "e2e-native", columns.path)
        csc, csr = render_runtime(work, registry.tracking_uri.replace("127.0.0.1", "10.0.2.2"), endpoint)
        for title, pod, expected, want_code, packages in native_scenarios(
            alias, uris, csc, csr, columns.expected, extra.expected
        ):
            if SCENARIOS and title.split()[0] not in SCENARIOS:
                continue
            try:
                row = run_native(title, pod, work, expected, want_code, packages)
            except Exception as exc:  # a scenario's failure is reported, the others still run
                row = {"scenario": title, "result": "FAIL", "error": f"{type(exc).__name__}: {exc}"[-1500:]}
            finally:
                podman("pod", "rm", "-f", "--all", check=False)
            rows.append(row)
            print(json.dumps(row, default=str))
    return rows


def run_native(title: str, pod: dict[str, Any], work: Path, expected: Any, want_code: int,
               packages: dict[str, str]) -> dict[str, Any]:  # fmt: skip
    row: dict[str, Any] = {"scenario": title}
    started = time.monotonic()
    play_pod(pod, work, "global-ca-bundle", "cabundle.crt")  # KServe's copy of its CA ConfigMap (injector.go:606)
    if want_code:
        init = state("e2e-predictor-storage-initializer")
        row["init exit"] = init.get("ExitCode")
        row["init log"] = [ln for ln in init_log("e2e-predictor-storage-initializer").splitlines() if "error:" in ln][
            -1:
        ]
        server = state("e2e-predictor-kserve-container")
        row["server"] = server.get("Status")
        ok = init.get("ExitCode") == want_code and server.get("Status") != "running"
    else:
        wait_ready()
        ready_at = time.time()
        row["ready s"] = round(time.monotonic() - started, 1)
        row["server s"] = server_seconds(ready_at)
        facts = report(NATIVE_REPORT)
        row["init exit"] = 0 if facts else None
        row["init s"] = facts.get("seconds", {}).get("total")
        row["init steps"] = facts.get("seconds")
        request, answer = v2_infer(expected)
        row["request"], row["answer"], row["local predict"] = request, answer, expected["output"]
        listed = {k: facts.get("packages", {}).get(k) for k in packages}
        row["annotated packages"] = listed
        ok = bool(facts) and np.allclose(answer, expected["output"]) and listed == packages
    row["result"] = "PASS" if ok else "FAIL"
    return row


def main() -> int:
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else None  # chart | native
    work = Path(tempfile.mkdtemp(prefix="e2e-"))
    results: list[dict[str, Any]] = []
    print("pod changes from the rendered predictor (ci/e2e_pod.py):")
    for path, reason in LOCAL_CHANGES:
        print(f"  - {path}: {reason}")
    with moto_s3() as s3, gcs_emulator(work) as gcs, azurite(work) as azure:
        endpoint = s3.endpoint.replace("127.0.0.1", HOST)
        columns, extra_dep, uv_model = build("sklearn-columns"), build("custom-extra-dep"), build("uv-project")
        py313 = build("sklearn-py313") if "3.13" in PYTHONS else None
        forbidden = variants.with_requirement_lines(columns.path, work / "forbidden",
                                                    "--extra-index-url https://pypi.example.org/simple")  # fmt: skip
        uris = {
            "columns": s3.upload_dir(columns.path, "e2e/sklearn-columns"),
            "extra": s3.upload_dir(extra_dep.path, "e2e/custom-extra-dep"),
            "forbidden": s3.upload_dir(forbidden, "e2e/forbidden"),
            "uv": s3.upload_dir(uv_model.path, "e2e/uv-project"),
            "gs": gcs.upload_dir(columns.path, "e2e/sklearn-columns"),
            "wasbs": azure.upload_dir(columns.path, "e2e/sklearn-columns"),
        }
        # The init container reaches the emulators on the host; their client settings come from the chart's
        # initContainer.extraEnv, as a user's would (there: from secrets).
        in_pod_azure = Azure(azure.endpoint.replace("127.0.0.1", HOST))
        gs_env = [{"name": "STORAGE_EMULATOR_HOST", "value": gcs.endpoint.replace("127.0.0.1", HOST)}]
        azure_env = [{"name": "AZURE_STORAGE_CONNECTION_STRING", "value": in_pod_azure.connection_string()}]
        if py313:
            uris["py313"] = s3.upload_dir(py313.path, "e2e/sklearn-py313")
        cache_dir = work / "cache"
        cache_dir.mkdir()
        os.chmod(cache_dir, 0o777)
        cache = ["--set", "cache.enabled=true", "--set", "cache.type=hostPath", "--set", f"cache.hostPath={cache_dir}"]
        mlserver = ["--set", "server.backend=mlserver"]
        scenarios = [  # title, uri, chart flags, expected answer, init exit code, backend that must serve
            ("1 sklearn MLflow 3.x from S3", uris["columns"], [], columns.expected, 0, "mlflow"),
            ("2 package outside the stack, MLServer", uris["extra"], mlserver, extra_dep.expected, 0, "mlserver"),
            ("3 forbidden requirement line", uris["forbidden"], [], None, 5, None),
            ("4a cache volume, first start", uris["columns"], cache, columns.expected, 0, "mlflow"),
            ("4b cache volume, second start", uris["columns"], cache, columns.expected, 0, "mlflow"),
            ("5 uv project, protobuf 7 (auto)", uris["uv"], [], uv_model.expected, 0, "mlflow"),
        ]
        if py313:
            py313_flags = ["--set", "pythonVersion=3.13"]
            scenarios.append(("6 Python 3.13 model, 3.13 images (auto)", uris["py313"], py313_flags, py313.expected,
                              0, "mlflow"))  # fmt: skip
        scenarios += [
            ("10 gs:// from gcp-storage-emulator", uris["gs"], [*cache, *env_values(gs_env)], columns.expected, 0,
             "mlflow"),
            ("11 wasbs:// from Azurite", uris["wasbs"], [*cache, *env_values(azure_env)], columns.expected, 0,
             "mlflow"),
        ]  # fmt: skip
        store = ["--set", f"envStore.uri=s3://{s3.bucket}/e2e-environments", "--set", "envStore.prebuild.enabled=true"]
        blocked = ["--set", f"dependencies.indexUrl=http://{HOST}:{closed_port()}/simple"]
        scenarios.append(("12 env store: prebuild Job publishes, pod starts from it, index blocked", uris["columns"],
                          [*store, *blocked], columns.expected, 0, "mlflow"))  # fmt: skip
        scenarios = [] if only == "native" else scenarios
        for title, uri, extra, expected, want_code, backend in scenarios:
            if SCENARIOS and title.split()[0].rstrip("ab") not in SCENARIOS:
                continue
            row: dict[str, Any] = {"scenario": title}
            try:
                request = v2_request(expected or columns.expected)
                isvc, test_pod = render(uri, endpoint, [*extra, "--set-json", f"test.request={json.dumps(request)}"])
                if title.startswith("12 "):  # the prebuild Job first: it publishes what the pod then reads
                    row["prebuild"] = prebuild(uri, endpoint, extra, work)
                started, started_wall = time.monotonic(), time.time()
                play(isvc, work)
                if want_code:
                    init = state("e2e-predictor-model-init")
                    log = init_log()
                    row["init exit"] = init.get("ExitCode")
                    server = state("e2e-predictor-kserve-container")
                    row["init log"] = [ln for ln in log.splitlines() if "error:" in ln][-1:]
                    row["server"] = server.get("Status")
                    code, log = helm_test(test_pod, work)  # the model never gets ready: the test must fail
                    row["helm test"], row["helm test log"] = code, log.splitlines()[-1:]
                    ok = init.get("ExitCode") == want_code and server.get("Status") != "running"
                    ok = ok and code not in (0, None) and "not ready" in log
                else:
                    wait_ready()
                    ready_at = time.time()
                    row["ready s"] = round(time.monotonic() - started, 1)
                    row["server s"] = server_seconds(ready_at)
                    row["timeline"] = timeline(started_wall, ready_at)
                    facts = report()
                    row["init exit"] = 0 if facts else None
                    row["init s"] = facts.get("seconds", {}).get("total")
                    row["cache hit"] = facts.get("cache", {}).get("hit")
                    row["environment"] = facts.get("environment", {}).get("source")
                    if facts.get("store"):
                        row["store"] = {k: facts["store"].get(k) for k in ("lookup", "archive_bytes", "seconds")}
                    row["init steps"] = facts.get("seconds")
                    row["backend"] = facts.get("backend", {}).get("name")
                    request, answer = v2_infer(expected)
                    row["request"], row["answer"], row["local predict"] = request, answer, expected["output"]
                    ok = bool(facts) and np.allclose(answer, expected["output"]) and row["backend"] == backend
                    if title.startswith("12 "):
                        ok = ok and row["prebuild"].get("exit") == 0 and row["environment"] == "store"
                    code, log = helm_test(test_pod, work)
                    row["helm test"], row["helm test log"] = code, log.splitlines()
                    ok = ok and code == 0 and "answer:" in log
                    if title.startswith("1 "):  # a server that went away: the same test must now fail
                        podman("stop", "-t", "10", "e2e-predictor-kserve-container")
                        stopped, log = helm_test(test_pod, work)
                        row["helm test, server stopped"] = stopped
                        ok = ok and stopped not in (0, None) and "not ready" in log
                row["result"] = "PASS" if ok else "FAIL"
            except Exception as exc:  # a scenario's failure is reported, the others still run
                row["result"], row["error"] = "FAIL", f"{type(exc).__name__}: {exc}"[-1500:]
            finally:
                podman("pod", "rm", "-f", "--all", check=False)
            results.append(row)
            print(json.dumps(row, default=str))
        if only != "chart" and (not SCENARIOS or {"7", "8", "9"} & set(SCENARIOS)):
            try:
                results += run_native_scenarios(s3, work, endpoint, uris, columns, extra_dep)
            except Exception as exc:  # the registry did not start: reported like a failed scenario
                error = f"{type(exc).__name__}: {exc}"[-1500:]
                results.append({"scenario": "7-9 KServe-native", "result": "FAIL", "error": error})
                print(json.dumps(results[-1]))
    # The images are built once per run (by ci/e2e) and shared by every scenario.
    build_s = os.environ.get("E2E_BUILD_SECONDS", "-")
    print(f"\nimage build s (init+server): {build_s}")
    print("\n| scenario | backend | init exit | init s | environment | ready s | server s | helm test | result |")
    print("|---|---|---|---|---|---|---|---|---|")
    for row in results:
        cells = [row["scenario"], row.get("backend", "-"), row.get("init exit"), row.get("init s"),
                 row.get("environment", "-"), row.get("ready s", "-"), row.get("server s", "-"), _helm_test_cell(row),
                 row["result"]]  # fmt: skip
        print("| " + " | ".join(str(c) for c in cells) + " |")
    failed = [r for r in results if r["result"] != "PASS"]
    print(f"\n{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        print(f"the pods' volumes and logs are kept for a look: {work}")
    else:  # about 850 MB of pod volumes per run: a machine that runs the e2e often would fill its disk
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


def closed_port() -> int:
    """A port nothing listens on (bound, then released): the package index of scenario 12's pod."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def prebuild(uri: str, endpoint: str, extra: list[str], work: Path) -> dict[str, Any]:
    """Run the chart's prebuild Job as rendered (its pod template as a Pod; the index of ``extra`` left out: the
    build needs the real one) and wait for its container to exit: exit code, seconds, its published line."""
    pairs = [extra[i : i + 2] for i in range(0, len(extra), 2)]  # ["--set", "key=value"] pairs
    values = [item for pair in pairs if not pair[1].startswith("dependencies.indexUrl=") for item in pair]
    chart, base = CHART, ROOT / "ci" / "e2e-values.yaml"
    cmd = [str(HELM), "template", "e2e", str(chart), "-f", str(base), "--set", f"model.uri={uri}",
           "--set", f"storage.s3.endpoint={endpoint}", *values]  # fmt: skip
    docs = [d for d in yaml.safe_load_all(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout) if d]
    job = next(d for d in docs if d["kind"] == "Job")
    pod = job_pod(job)
    started = time.monotonic()
    play_pod(pod, work, "e2e-ca", "ca.crt")
    container = f"{pod['metadata']['name']}-{pod['spec']['containers'][0]['name']}"
    waited = podman("wait", container, check=False, timeout=1800)
    logs = podman("logs", container, check=False)
    text = logs.stdout + logs.stderr
    podman("pod", "rm", "-f", pod["metadata"]["name"], check=False)
    code = int(waited.stdout.strip()) if waited.stdout.strip().lstrip("-").isdigit() else None
    published = [ln for ln in text.splitlines() if "published the environment" in ln or "error:" in ln]
    return {"exit": code, "seconds": round(time.monotonic() - started, 1), "log": published[-1:]}


def env_values(env: list[dict[str, str]]) -> list[str]:
    return ["--set-json", f"initContainer.extraEnv={json.dumps(env)}"]


def _helm_test_cell(row: dict[str, Any]) -> str:
    """The `helm test` Pod's exit code(s): 0 = passed."""
    code = row.get("helm test", "-")
    return f"{code}, {row['helm test, server stopped']} stopped" if "helm test, server stopped" in row else str(code)


if __name__ == "__main__":
    sys.exit(main())
