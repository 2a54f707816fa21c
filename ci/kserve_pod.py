"""The predictor pod KServe v0.20.0 builds from (InferenceService, ServingRuntime, ClusterStorageContainer), without
a cluster: the proof that mlflow-kserve's KServe-native mode (charts/mlflow-kserve-runtime) works the way KServe
will run it.

Only the rules that mode relies on are mirrored, each citing the file and line of kserve/kserve at tag v0.20.0 (or
of the Kubernetes library KServe calls) it follows. Not mirrored: credentials from the ServiceAccount's secrets
(injector.go:569-596: the e2e passes them as the chart's extraEnv instead), the model agent, batcher, logger,
modelcar/OCI, PVC and multi-URI storage paths, multi-node workers, transformers, Istio's sidecar-status path of
SetIstioCniSecurityContext (injector.go:812-900), Knative's own admission (see tests/chart/knative.py).

    pod = predictor_pod(isvc, cluster_runtimes=[csr], storage_containers=[csc, kserve_default_csc])
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

# pkg/constants/constants.go (v0.20.0), by line.
KSERVE_CONTAINER = "kserve-container"  # :493 InferenceServiceContainerName
STORAGE_INITIALIZER = "storage-initializer"  # :494 StorageInitializerContainerName
TRANSFORMER_CONTAINER = "transformer-container"  # TransformerContainerName
PROVISION_VOLUME = "kserve-provision-location"  # :210 StorageInitializerVolumeName
MODEL_MOUNT = "/mnt/models"  # :508 DefaultModelLocalMountPath
READONLY_ANNOTATION = "storage.kserve.io/readonly"  # :130 StorageReadonlyAnnotationKey
SOURCE_URI_ANNOTATION = "internal.serving.kserve.io/storage-initializer-sourceuri"  # :157-158
STORAGE_CONTAINER_ANNOTATION = "internal.serving.kserve.io/storage-container-name"  # :162
ISTIO_UID_ANNOTATION = "serving.kserve.io/storage-initializer-uid"  # :227 IstioSidecarUIDAnnotationKey
ISVC_POD_LABEL = "serving.kserve.io/inferenceservice"  # :61 InferenceServicePodLabelKey
COMPONENT_LABEL = "component"  # :403 KServiceComponentLabel
ISVC_NAME_ENV = "INFERENCE_SERVICE_NAME"  # :340 InferenceServiceNameEnvVarKey
STORAGE_URI_ENV = "STORAGE_URI"  # :333 CustomSpecStorageUriEnvVarKey
CA_BUNDLE_NAME_ENV = "CA_BUNDLE_CONFIGMAP_NAME"  # :521
CA_BUNDLE_PATH_ENV = "CA_BUNDLE_VOLUME_MOUNT_POINT"  # :522
DEFAULT_CA_MOUNT = "/etc/ssl/custom-certs"  # :511 DefaultCaBundleVolumeMountPath
GLOBAL_CA_BUNDLE = "global-ca-bundle"  # :517 DefaultGlobalCaBundleConfigMapName
KSERVE_NAMESPACE = "kserve"  # :41 KServeNamespace (the controller's namespace)
CA_VOLUME = "cabundle-cert"  # pkg/webhook/admission/pod/storage_initializer_injector.go:45
# :534-540 ServiceAnnotationDisallowedList: InferenceService annotations never copied to the pod.
DISALLOWED_ANNOTATIONS = (
    "autoscaling.knative.dev/min-scale",  # knative.dev/serving pkg/apis/autoscaling/register.go:47
    "autoscaling.knative.dev/max-scale",  # register.go:52
    SOURCE_URI_ANNOTATION,
    "kubectl.kubernetes.io/last-applied-configuration",
    "modelFormat",  # :139 ModelFormatAnnotationKey
)
# pkg/controller/v1beta1/inferenceservice/utils/utils.go:48 SupportedStorageURIPrefixList
DEFAULT_URI_PREFIXES = ("gs://", "s3://", "pvc://", "file://", "https://", "http://", "hdfs://", "webhdfs://",
                        "oci://", "oci+native://", "hf://")  # fmt: skip
# pkg/constants/constants.go: GetProtocolVersionInt order (v1 < v2 < grpc-v1 < grpc-v2); unset means v1
# (pkg/apis/serving/v1beta1/predictor_model.go:66-71).
PROTOCOL_ORDER = {"v1": 0, "v2": 1, "grpc-v1": 2, "grpc-v2": 3}
# The predictor's own fields that are not PodSpec fields (pkg/apis/serving/v1beta1/predictor.go:38-86 and
# component.go:85-139); everything else in spec.predictor is the inline PodSpec (predictor.go:84).
PREDICTOR_FIELDS = {
    "name", "sklearn", "xgboost", "tensorflow", "pytorch", "triton", "onnx", "huggingface", "pmml", "lightgbm",
    "paddle", "model", "storageUris", "storageContainerName", "workerSpec", "minReplicas", "maxReplicas",
    "scaleTarget", "scaleMetric", "scaleMetricType", "autoScaling", "containerConcurrency", "timeout",
    "canaryTrafficPercent", "logger", "batcher", "labels", "annotations", "deploymentStrategy",
}  # fmt: skip
# ModelSpec's own fields (predictor_model.go:43-53, predictor.go:125-147); the rest is the inline Container
# (predictor.go:135).
MODEL_FIELDS = {"modelFormat", "runtime", "storageUri", "runtimeVersion", "protocolVersion", "storage", "confidential"}
# k8s.io/api@v0.34.5 core/v1/types.go patchMergeKey tags, for the strategic merges KServe runs.
MERGE_KEYS = {
    "container": {"ports": "containerPort", "env": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath"},
    # types.go:2944 ports, :2961 env, :3012 volumeMounts, :3019 volumeDevices
    "podSpec": {"volumes": "name", "initContainers": "name", "containers": "name", "imagePullSecrets": "name",
                "ephemeralContainers": "name"},
    # types.go:4096 volumes, :4114 initContainers, :4123 containers, :4228 imagePullSecrets
}  # fmt: skip


class KServeRefusal(Exception):
    """What KServe would refuse: a webhook denial or a reconcile error (the message is KServe's)."""


@dataclass(frozen=True)
class StorageInitializerConfig:
    """The `storageInitializer` entry of KServe's inferenceservice-config ConfigMap
    (config/configmap/inferenceservice.yaml:650-658: the values KServe ships)."""

    image: str = "kserve/storage-initializer:latest"
    cpu_request: str = "100m"
    cpu_limit: str = "1"
    memory_request: str = "100Mi"
    memory_limit: str = "1Gi"
    ca_bundle_configmap: str = ""
    ca_bundle_mount_path: str = DEFAULT_CA_MOUNT


# --- storage containers ------------------------------------------------------------------------------------------


def uri_supported(spec: Obj, uri: str) -> bool:
    """pkg/apis/serving/v1alpha1/storage_container_types.go:87-104: a prefix is matched with HasPrefix, a regex
    with Go's regexp.MatchString, which is unanchored (a match anywhere in the URI counts)."""
    for fmt in spec.get("supportedUriFormats", []):
        if fmt.get("prefix"):
            if uri.startswith(fmt["prefix"]):
                return True
        elif fmt.get("regex") and re.search(fmt["regex"], uri):
            return True
    return False


def _eligible(csc: Obj) -> bool:
    """injector.go:136-141: not disabled (storage_container_types.go:83-85), workloadType initContainer (the CRD
    defaults it: storage_container_types.go:35-36)."""
    return not csc.get("disabled") and csc["spec"].get("workloadType", "initContainer") == "initContainer"


def matching_storage_containers(uri: str, storage_containers: list[Obj]) -> list[Obj]:
    """Every eligible ClusterStorageContainer claiming ``uri``. KServe takes the first one its List returns
    (injector.go:135-149), an order nothing guarantees: more than one match is ambiguous."""
    return [c for c in storage_containers if _eligible(c) and uri_supported(c["spec"], uri)]


def storage_container_spec(uri: str, storage_containers: list[Obj], name: str | None = None) -> Obj | None:
    """GetStorageContainerSpec (injector.go:123-152), by name when the predictor names one (:124-127, :158-183)."""
    if name:
        found = [c for c in storage_containers if c["metadata"]["name"] == name]
        if not found:
            raise KServeRefusal(f'ClusterStorageContainer "{name}" not found')  # :162
        csc = found[0]
        if csc.get("disabled"):
            raise KServeRefusal(f'ClusterStorageContainer "{name}" is disabled')  # :167
        if csc["spec"].get("workloadType", "initContainer") != "initContainer":
            raise KServeRefusal(f'ClusterStorageContainer "{name}" has another workloadType')  # :169-173
        if not uri_supported(csc["spec"], uri):
            raise KServeRefusal(f'ClusterStorageContainer "{name}" does not support storageUri "{uri}"')  # :179-181
        return csc["spec"]
    matches = matching_storage_containers(uri, storage_containers)
    return matches[0]["spec"] if matches else None


def validate_storage_uri(uri: str, storage_containers: list[Obj]) -> None:
    """ValidateStorageURI (pkg/controller/v1beta1/inferenceservice/utils/utils.go:411-442): a storage container
    claiming the URI makes it valid; else a local path or one of the default prefixes (or Azure blob URLs)."""
    if storage_container_spec(uri, storage_containers) is not None:  # :416-423
        return
    if not re.search(r"\w+?://", uri):  # :427-429
        return
    if "blob.core.windows.net" in uri or uri.startswith(DEFAULT_URI_PREFIXES):  # :432-439
        return
    raise KServeRefusal(f"StorageURI not supported: storage uri {uri} is not supported")  # :441, predictor.go:302


# --- serving runtimes ---------------------------------------------------------------------------------------------


def _protocol(isvc: Obj) -> str:
    """ModelSpec.GetProtocol (predictor_model.go:66-71): v1 when unset."""
    return isvc["spec"]["predictor"]["model"].get("protocolVersion") or "v1"


def _format_labels(model: Obj, formats: list[Obj]) -> set[str]:
    """predictor_model.go:149-163: a runtime's formats count only with autoSelect, unless `runtime:` names it."""
    labels = set()
    for fmt in formats:
        if model.get("runtime") or fmt.get("autoSelect"):
            labels.add(f"mt:{fmt['name']}")
            if fmt.get("version") is not None:
                labels.add(f"mt:{fmt['name']}:{fmt['version']}")
    return labels


def runtime_supports_model(model: Obj, spec: Obj) -> bool:
    """RuntimeSupportsModel (predictor_model.go:133-147): the model's `mt:<name>[:<version>]` label is among the
    runtime's."""
    fmt = model["modelFormat"]
    label = f"mt:{fmt['name']}" + (f":{fmt['version']}" if fmt.get("version") is not None else "")
    return label in _format_labels(model, spec.get("supportedModelFormats", []))


def protocol_supported(spec: Obj, protocol: str) -> bool:
    """IsProtocolVersionSupported (servingruntime_types.go:304-314): a runtime listing no protocol takes any."""
    versions = spec.get("protocolVersions") or []
    return not protocol or not versions or protocol in versions


def _priority(spec: Obj, format_name: str) -> int | None:
    """GetPriority (servingruntime_types.go:317-324): the first format of that name decides."""
    for fmt in spec.get("supportedModelFormats", []):
        if fmt["name"] == format_name:
            return fmt.get("priority")
    return None


def _protocol_priority(spec: Obj) -> int:
    """GetProtocolVersionPriority (predictor_model.go:222-232): the runtime's lowest protocol; Unknown when none."""
    versions = spec.get("protocolVersions") or []
    return min(PROTOCOL_ORDER.get(v, 99) for v in versions) if versions else 99


def _list_order(runtimes: list[Obj]) -> list[Obj]:
    """sortServingRuntimeList / sortClusterServingRuntimeList (predictor_model.go:165-203): lowest protocol
    first, then newest first (creationTimestamp, RFC 3339), then by name."""
    out = sorted(runtimes, key=lambda rt: rt["metadata"]["name"])
    out.sort(key=lambda rt: rt["metadata"].get("creationTimestamp", ""), reverse=True)  # stable, newest first
    out.sort(key=lambda rt: _protocol_priority(rt["spec"]))
    return out


def _by_priority(found: list[tuple[str, Obj]], format_name: str) -> list[tuple[str, Obj]]:
    """sortSupportedRuntimeByPriority (predictor_model.go:205-220): higher priority first; a runtime with a priority
    before one without; a stable sort keeps the list order otherwise."""

    def key(item: tuple[str, Obj]) -> tuple[int, int]:
        priority = _priority(item[1], format_name)
        return (1, 0) if priority is None else (0, -priority)

    return sorted(found, key=key)


def supporting_runtimes(isvc: Obj, runtimes: list[Obj], cluster_runtimes: list[Obj]) -> list[tuple[str, Obj]]:
    """GetSupportingRuntimes (predictor_model.go:88-130): namespaced runtimes first, each group by priority; only
    enabled, single-model, single-node runtimes that support the model's format and protocol."""
    model = isvc["spec"]["predictor"]["model"]
    protocol = _protocol(isvc)

    def fits(spec: Obj) -> bool:  # :114-115, :122-123
        return (
            not spec.get("disabled")
            and not spec.get("multiModel")
            and runtime_supports_model(model, spec)
            and protocol_supported(spec, protocol)
            and spec.get("workerSpec") is None
        )

    fmt = model["modelFormat"]["name"]
    namespaced = [(rt["metadata"]["name"], rt["spec"]) for rt in _list_order(runtimes) if fits(rt["spec"])]
    cluster = [(rt["metadata"]["name"], rt["spec"]) for rt in _list_order(cluster_runtimes) if fits(rt["spec"])]
    return _by_priority(namespaced, fmt) + _by_priority(cluster, fmt)  # :119, :127-128


def select_runtime(isvc: Obj, runtimes: list[Obj], cluster_runtimes: list[Obj]) -> tuple[str, Obj, Obj]:
    """reconcileModel (pkg/controller/v1beta1/inferenceservice/components/predictor.go:325-417): the named runtime
    (a namespaced one before a cluster one: utils.go:304-321), checked; else the first supporting one. Sets the
    InferenceService's protocolVersion from the runtime when unset (:406-414). Returns (name, spec, annotations)."""
    model = isvc["spec"]["predictor"]["model"]
    name = model.get("runtime")
    if name:
        found = [rt for rt in runtimes if rt["metadata"]["name"] == name] or [
            rt for rt in cluster_runtimes if rt["metadata"]["name"] == name
        ]
        if not found:
            raise KServeRefusal(f"No ServingRuntimes or ClusterServingRuntimes with the name: {name}")  # utils.go:320
        runtime = found[0]
        if runtime["spec"].get("disabled"):
            raise KServeRefusal(f"specified runtime {name} is disabled")  # :341-347
        if model.get("protocolVersion") and not protocol_supported(runtime["spec"], model["protocolVersion"]):
            raise KServeRefusal(f"specified runtime {name} does not support specified protocol version")  # :349-356
        if not runtime_supports_model(model, runtime["spec"]):
            raise KServeRefusal(f"specified runtime {name} does not support specified framework/version")  # :359-365
        chosen = (name, runtime["spec"], runtime["metadata"].get("annotations") or {})
    else:
        found_specs = supporting_runtimes(isvc, runtimes, cluster_runtimes)  # :379
        if not found_specs:
            raise KServeRefusal(
                f"no runtime found to support predictor with model type: {model['modelFormat']}"  # :383-389
            )
        name, spec = found_specs[0]  # :391-392
        every = runtimes + cluster_runtimes
        annotations = next(rt["metadata"].get("annotations") or {} for rt in every if rt["metadata"]["name"] == name)
        chosen = (name, spec, annotations)
    set_runtime_defaults(isvc, chosen[0], chosen[2])  # :368, :404
    if not model.get("protocolVersion"):  # :407-414
        versions = sorted(chosen[1].get("protocolVersions") or ["v1"], key=lambda v: PROTOCOL_ORDER.get(v, 99))
        model["protocolVersion"] = versions[0]
    return chosen


def set_runtime_defaults(isvc: Obj, runtime_name: str, runtime_annotations: Obj) -> None:
    """SetRuntimeDefaults (pkg/apis/serving/v1beta1/inference_service_defaults.go:392-410): MLServer's defaults
    (:412-453) for a runtime annotated `serving.kserve.io/server-type: mlserver` or named kserve-mlserver
    (constants.go:152, :596, :628-645). mlflow-kserve's runtime carries neither: MLSERVER_MODEL_URI would make
    MLServer load /mnt/models itself."""
    server_type = runtime_annotations.get("serving.kserve.io/server-type")
    if server_type is None and runtime_name == "kserve-mlserver":
        server_type = "mlserver"
    if server_type != "mlserver":
        return
    model = isvc["spec"]["predictor"]["model"]
    model.setdefault("protocolVersion", "v2")  # :414-417
    env = model.setdefault("env", [])
    names = {e["name"] for e in env}
    if model.get("storageUri") is None and model.get("storage") is None:  # :419-425
        extra = [{"name": "MLSERVER_LOAD_MODELS_AT_STARTUP", "value": "false"}]
    else:  # :426-436
        extra = [{"name": "MLSERVER_MODEL_NAME", "value": isvc["metadata"]["name"]},
                 {"name": "MLSERVER_MODEL_URI", "value": MODEL_MOUNT}]  # fmt: skip
    env += [e for e in extra if e["name"] not in names]
    classes = {"xgboost": "mlserver_xgboost.XGBoostModel", "lightgbm": "mlserver_lightgbm.LightGBMModel",
               "mlflow": "mlserver_mlflow.MLflowRuntime"}  # constants.go:662-665  # fmt: skip
    model_class = classes.get(model["modelFormat"]["name"], "mlserver_sklearn.SKLearnModel")  # :439-447
    isvc["metadata"].setdefault("labels", {})["modelClass"] = model_class  # :448-452


def priority_conflict(new: Obj, existing: Obj) -> str | None:
    """The ClusterServingRuntime webhook's priority rules (pkg/webhook/admission/servingruntime/
    servingruntime_webhook.go:162-208): within one runtime a format keeps one priority; across runtimes that share
    a protocol, two auto-selected equal formats (name and version) may not share a priority. Returns KServe's
    denial, or None."""
    new_spec, old_spec = new["spec"], existing["spec"]
    seen: dict[str, int | None] = {}
    for fmt in new_spec.get("supportedModelFormats", []):  # :167-178
        if fmt.get("autoSelect"):
            if fmt["name"] in seen:
                if (
                    seen[fmt["name"]] is not None
                    and fmt.get("priority") is not None
                    and seen[fmt["name"]] != fmt["priority"]
                ):
                    return f"different priorities assigned for the model format {fmt['name']}"
            else:
                seen[fmt["name"]] = fmt.get("priority")
    if (
        bool(new_spec.get("multiModel")) != bool(old_spec.get("multiModel"))
        or old_spec.get("disabled")
        or new["metadata"]["name"] == existing["metadata"]["name"]
    ):  # :184-186
        return None
    if not set(old_spec.get("protocolVersions") or []) & set(new_spec.get("protocolVersions") or []):  # :188-195
        return None
    for old_fmt in old_spec.get("supportedModelFormats", []):  # :196-205
        for new_fmt in new_spec.get("supportedModelFormats", []):
            same = old_fmt["name"].lower() == new_fmt["name"].lower() and old_fmt.get("version") == new_fmt.get(
                "version"
            )  # :154-160
            if old_fmt.get("autoSelect") and new_fmt.get("autoSelect") and same:
                if old_fmt.get("priority") is not None and old_fmt.get("priority") == new_fmt.get("priority"):
                    return (
                        f"same priority assigned for the model format {new_fmt['name']} in the clusterservingruntimes "
                        f"{existing['metadata']['name']} and {new['metadata']['name']}"
                    )  # :41-43, :137
    return None


# --- merges ------------------------------------------------------------------------------------------------------


def strategic_merge(original: Any, patch: Any, merge_keys: dict[str, str]) -> Any:
    """k8s.io/apimachinery@v0.34.5 pkg/util/strategicpatch/patch.go, for the shapes KServe merges: maps merge
    key by key, null deletes (mergeMap :1322-1438); lists whose field has a patchMergeKey merge item by item
    (mergeSliceWithoutSpecialElements :1606-1636), patch items in patch order with the original's other items
    interleaved by their original position (normalizeElementOrder/mergeSortedSlice :404-467); other lists are
    replaced (mergeSliceHandler :1477-1490)."""
    if not isinstance(original, dict) or not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(original)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif key not in out or type(out[key]) is not type(value):
            out[key] = copy.deepcopy(value)
        elif isinstance(value, dict):
            out[key] = strategic_merge(out[key], value, {})
        elif isinstance(value, list) and key in merge_keys:
            out[key] = _merge_list(out[key], value, merge_keys[key])
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge_list(original: list[Obj], patch: list[Obj], key: str) -> list[Obj]:
    merged = [copy.deepcopy(item) for item in original]
    for item in patch:  # :1607-1634
        index = next((i for i, old in enumerate(merged) if old.get(key) == item[key]), None)
        if index is None:
            merged.append(copy.deepcopy(item))
        else:
            merged[index] = strategic_merge(merged[index], item, {})
    patch_keys = [item[key] for item in patch]
    original_keys = [item.get(key) for item in original]
    patch_items = sorted((m for m in merged if m.get(key) in patch_keys), key=lambda m: patch_keys.index(m[key]))
    server_only = [m for m in merged if m.get(key) not in patch_keys]
    out: list[Obj] = []
    i = j = 0
    while i < len(server_only) or j < len(patch_items):  # mergeSortedSlice :427-467
        if j >= len(patch_items) or (
            i < len(server_only)
            and patch_items[j].get(key) in original_keys
            and original_keys.index(server_only[i].get(key)) < original_keys.index(patch_items[j][key])
        ):
            out.append(server_only[i])
            i += 1
        else:
            out.append(patch_items[j])
            j += 1
    return out


def merge_container(base: Obj, overlay: Obj) -> Obj:
    """MergeContainerWithPatch (pkg/utils/container_merge.go:32-63): a strategic merge of ``overlay`` over
    ``base``; an env var left with both value and valueFrom keeps the overlay's choice (:69-89); the base's name
    when the overlay has none (:58-60)."""
    merged = strategic_merge(base, overlay, MERGE_KEYS["container"])
    overlay_env = {e["name"]: e for e in overlay.get("env", [])}
    for env in merged.get("env", []):
        if env.get("value") and env.get("valueFrom") and env["name"] in overlay_env:
            if overlay_env[env["name"]].get("valueFrom") is not None:
                del env["value"]
            elif overlay_env[env["name"]].get("value"):
                del env["valueFrom"]
    if not merged.get("name"):
        merged["name"] = base.get("name", "")
    return merged


def merge_runtime_container(runtime_container: Obj, isvc_container: Obj) -> Obj:
    """MergeRuntimeContainers (utils.go:253-263): the InferenceService's container over the runtime's; args
    concatenated, runtime's first."""
    merged = merge_container(runtime_container, isvc_container)
    args = [*runtime_container.get("args", []), *isvc_container.get("args", [])]
    merged.pop("args", None)
    if args:
        merged["args"] = args
    return merged


def merge_pod_spec(runtime_spec: Obj, predictor_pod_spec: Obj) -> Obj:
    """MergePodSpec (utils.go:267-297): from the runtime only nodeSelector, affinity, tolerations, volumes,
    imagePullSecrets and schedulerName (:268-275), with the predictor's PodSpec strategic-merged over them."""
    base = {k: runtime_spec[k] for k in ("nodeSelector", "affinity", "tolerations", "volumes", "imagePullSecrets",
                                           "schedulerName") if runtime_spec.get(k)}  # fmt: skip
    return strategic_merge(base, predictor_pod_spec, MERGE_KEYS["podSpec"])


def replace_placeholders(container: Obj, meta: Obj) -> Obj:
    """ReplacePlaceholders (utils.go:324-336): the container's JSON as a Go template over the InferenceService's
    ObjectMeta. Mirrored for the fields runtimes use: {{.Name}}, {{.Namespace}}, {{.Labels.<key>}},
    {{.Annotations.<key>}} (a missing key renders as Go's "<no value>"); anything else is refused here."""
    text = json.dumps(container)

    def value(match: re.Match[str]) -> str:
        path = match.group(1).strip()
        if path == ".Name":
            return meta["name"]
        if path == ".Namespace":
            return meta.get("namespace", "")
        for field in ("Labels", "Annotations"):
            if path.startswith(f".{field}."):
                return (meta.get(field.lower()) or {}).get(path[len(field) + 2 :], "<no value>")
        raise KServeRefusal(f"template {match.group(0)} is not mirrored by ci/kserve_pod.py")

    return json.loads(re.sub(r"{{\s*([^}]*)}}", value, text))


# --- the predictor pod -------------------------------------------------------------------------------------------


def _container_env(container: Obj, name: str, value: str) -> None:
    """AddEnvVarToPodSpec (utils.go:445-474): overwrite the value, or append the variable."""
    for env in container.setdefault("env", []):
        if env["name"] == name:
            env["value"] = value
            return
    container["env"].append({"name": name, "value": value})


def _union(*maps: dict[str, str] | None) -> dict[str, str]:
    """pkg/utils Union: later maps win."""
    out: dict[str, str] = {}
    for m in maps:
        out.update(m or {})
    return out


def pod_template(isvc: Obj, runtimes: list[Obj], cluster_runtimes: list[Obj], storage_containers: list[Obj]) -> Obj:
    """The controller's half (components/predictor.go:99-181): the Deployment's (or Knative revision's) pod
    template for a predictor with a `model:` spec, before the pod webhook. In Serverless, Knative validates its
    spec; the storage container is injected after that."""
    isvc = copy.deepcopy(isvc)
    meta, predictor = isvc["metadata"], isvc["spec"]["predictor"]
    model = predictor["model"]
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in DISALLOWED_ANNOTATIONS}
    uri = model.get("storageUri")  # :116-120, addStorageInitializerAnnotations :294-309
    if uri is not None:
        annotations[SOURCE_URI_ANNOTATION] = uri
        validate_storage_uri(uri, storage_containers)
    if predictor.get("storageContainerName"):
        annotations[STORAGE_CONTAINER_ANNOTATION] = predictor["storageContainerName"]

    _name, runtime, _runtime_annotations = select_runtime(isvc, runtimes, cluster_runtimes)  # :128-135
    containers = runtime.get("containers") or []
    index = next((i for i, c in enumerate(containers) if c["name"] == KSERVE_CONTAINER), None)
    if index is None:  # utils.go:487-495
        raise KServeRefusal(f"failed to find {KSERVE_CONTAINER} in ServingRuntime containers")
    isvc_container = {k: v for k, v in model.items() if k not in MODEL_FIELDS}  # predictor.go:135
    pred = merge_runtime_container(containers[index], isvc_container)  # buildPodSpec :432, utils.go:497
    pod_spec = merge_pod_spec(runtime, {k: v for k, v in predictor.items() if k not in PREDICTOR_FIELDS})  # :507
    pred = replace_placeholders(pred, meta)  # :438
    pod_spec["containers"] = [pred]  # :449-450
    pod_spec["containers"] += [c for c in containers if c["name"] not in (KSERVE_CONTAINER, TRANSFORMER_CONTAINER)]
    pod_spec["containers"] += [c for c in predictor.get("containers", []) if c["name"] != TRANSFORMER_CONTAINER]
    for container in pod_spec["containers"]:  # :149-157
        _container_env(container, ISVC_NAME_ENV, meta["name"])

    labels = _union(
        runtime.get("labels"), meta.get("labels"), predictor.get("labels"),
        {ISVC_POD_LABEL: meta["name"], COMPONENT_LABEL: "predictor"},
    )  # buildObjectMeta :498-518  # fmt: skip
    pod_annotations = _union(runtime.get("annotations"), annotations, predictor.get("annotations"))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"{meta['name']}-predictor", "namespace": meta.get("namespace", "default"),
                     "labels": labels, "annotations": pod_annotations},
        "spec": pod_spec,
    }  # fmt: skip


def custom_predictor_pod_spec(isvc: Obj) -> Obj:
    """The PodSpec KServe makes for a predictor with `containers:` and no `model:` (charts/mlflow-kserve):
    components/predictor.go:139-147 (the predictor's PodSpec, its kserve-container as given:
    predictor_custom.go:95-104) and the InferenceService name env (:149-157). In Serverless this is the Knative
    revision's PodSpec; the pod webhook adds nothing to it (no storageUri)."""
    predictor = isvc["spec"]["predictor"]
    spec = copy.deepcopy({k: v for k, v in predictor.items() if k not in PREDICTOR_FIELDS})
    for container in spec["containers"]:
        _container_env(container, ISVC_NAME_ENV, isvc["metadata"]["name"])
    return spec


def _init_container(config: StorageInitializerConfig, args: list[str]) -> Obj:
    """CreateInitContainerWithConfig (pkg/utils/storage.go:311-334)."""
    return {
        "name": STORAGE_INITIALIZER,
        "image": config.image,
        "args": args,
        "terminationMessagePolicy": "FallbackToLogsOnError",
        "resources": {
            "limits": {"cpu": config.cpu_limit, "memory": config.memory_limit},
            "requests": {"cpu": config.cpu_request, "memory": config.memory_request},
        },
    }


def _add_model_mount(spec: Obj, container_name: str, read_only: bool) -> None:
    """AddModelMount (pkg/utils/storage.go:107-163) for the emptyDir: the mount (init containers always
    read-write: :136), and the volume once (:143-160); an existing mount of that volume is kept (:76-82)."""
    target, is_init = None, False
    for container in spec["containers"]:
        if container["name"] == container_name:
            target = container
    if target is None:
        for container in spec.get("initContainers", []):
            if container["name"] == container_name:
                target, is_init = container, True
    if target is None:
        return
    if any(m["name"] == PROVISION_VOLUME for m in target.get("volumeMounts", [])):
        return
    target.setdefault("volumeMounts", []).append(
        {"name": PROVISION_VOLUME, "mountPath": MODEL_MOUNT, "readOnly": False if is_init else read_only}
    )
    if not any(v["name"] == PROVISION_VOLUME for v in spec.setdefault("volumes", [])):
        spec["volumes"].append({"name": PROVISION_VOLUME, "emptyDir": {}})


def inject_storage_initializer(pod: Obj, storage_containers: list[Obj], config: StorageInitializerConfig) -> None:
    """The pod webhook (pkg/webhook/admission/pod/mutator.go:131-149): InjectStorageInitializer
    (storage_initializer_injector.go:716-784) on the single-URI path of CommonStorageInitialization (:291-694),
    then SetIstioCniSecurityContext's annotation rule (:803-811)."""
    meta, spec = pod["metadata"], pod["spec"]
    annotations = meta.get("annotations") or {}
    uri = annotations.get(SOURCE_URI_ANNOTATION)
    if uri is None:  # :718-721
        return
    read_only = annotations.get(READONLY_ANNOTATION) != "false"  # :256-265, :755
    csc = storage_container_spec(uri, storage_containers, annotations.get(STORAGE_CONTAINER_ANNOTATION))  # :759-767
    if any(c["name"] == STORAGE_INITIALIZER for c in spec.get("initContainers", [])):  # :389-393
        return
    user = next((c for c in spec["containers"] if c["name"] == KSERVE_CONTAINER), None)  # :405-417
    if user is None:
        raise KServeRefusal("Invalid configuration: cannot find container")
    mount_names = [user["name"]]  # :521-524
    mount_names += [c["name"] for c in spec["containers"] if c["name"] == TRANSFORMER_CONTAINER]
    if uri.startswith("pvc://"):
        raise KServeRefusal("pvc:// URIs are not mirrored by ci/kserve_pod.py")
    init = _init_container(config, [uri, MODEL_MOUNT])  # :542-543
    spec.setdefault("initContainers", []).append(init)  # :546-548
    mount_names.append(STORAGE_INITIALIZER)
    for name in mount_names:  # :553-558
        _add_model_mount(spec, name, read_only)
    for env in user.get("env", []):  # :562-566
        if env["name"] == STORAGE_URI_ENV and env.get("value"):
            env["value"] = MODEL_MOUNT
    init = spec["initContainers"][-1]
    ca_name, ca_path = "", ""
    needs_ca = bool(config.ca_bundle_configmap)  # needCaBundleMount :905-915 (AWS_CA_BUNDLE_CONFIGMAP: not mirrored)
    if needs_ca:  # :603-613
        ca_name = config.ca_bundle_configmap if meta.get("namespace") == KSERVE_NAMESPACE else GLOBAL_CA_BUNDLE
        ca_path = config.ca_bundle_mount_path or DEFAULT_CA_MOUNT
    if csc is not None:  # :626-632
        init = merge_container(init, csc["container"])
        spec["initContainers"][-1] = init
    if needs_ca:  # :636-682
        names = {e["name"] for e in init.get("env", [])}
        if CA_BUNDLE_NAME_ENV not in names:
            init.setdefault("env", []).append({"name": CA_BUNDLE_NAME_ENV, "value": ca_name})
        if CA_BUNDLE_PATH_ENV not in names:
            init.setdefault("env", []).append({"name": CA_BUNDLE_PATH_ENV, "value": ca_path})
        spec.setdefault("volumes", []).append({"name": CA_VOLUME, "configMap": {"name": ca_name}})
        init.setdefault("volumeMounts", []).append({"name": CA_VOLUME, "mountPath": ca_path, "readOnly": True})
    for name, value in (("HF_HUB_ENABLE_HF_TRANSFER", "1"), ("HF_XET_HIGH_PERFORMANCE", "1"),
                        ("HF_XET_NUM_CONCURRENT_RANGE_GETS", "8")):  # :687, pkg/utils/storage.go:244-278  # fmt: skip
        if not any(e["name"] == name for e in init.get("env", [])):
            init.setdefault("env", []).append({"name": name, "value": value})
    uid = annotations.get(ISTIO_UID_ANNOTATION)  # SetIstioCniSecurityContext :805-811
    if uid is not None and re.fullmatch(r"-?\d+", uid):
        init.setdefault("securityContext", {})["runAsUser"] = int(uid)


def predictor_pod(
    isvc: Obj,
    *,
    runtimes: list[Obj] | None = None,
    cluster_runtimes: list[Obj] | None = None,
    storage_containers: list[Obj] | None = None,
    config: StorageInitializerConfig | None = None,
) -> Obj:
    """The predictor pod as KServe v0.20.0 creates it: the controller's pod template, then the pod webhook.
    ``runtimes`` are namespaced ServingRuntimes, ``cluster_runtimes`` ClusterServingRuntimes."""
    pod = pod_template(isvc, runtimes or [], cluster_runtimes or [], storage_containers or [])
    inject_storage_initializer(pod, storage_containers or [], config or StorageInitializerConfig())
    return pod
