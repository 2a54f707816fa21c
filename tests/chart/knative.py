"""Knative Serving's admission of a revision's PodSpec, without a cluster: what KServe's Serverless mode hands to
Knative is rejected when a field lies outside Knative's masks or needs a feature flag that is off.

The masks and the flags' defaults and ConfigMap keys are read from the vendored upstream sources (ci/knative/,
knative-v1.21.1: fieldmask.go, features.go); the validation walk that applies them mirrors k8s_validation.go by
hand, each rule citing its line there. A mask condition this parser does not know fails loudly, so a refreshed
vendored file cannot silently change the rules.

    rejections(pod_spec, flags({"kubernetes.podspec-init-containers": "enabled"})) -> ["spec.initContainers: …"]
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
VENDORED = ROOT / "ci" / "knative"
RELEASE = "knative-v1.21.1"
VALIDATION = "k8s_validation.go"

# Go struct fields that are inline in JSON: their keys belong to the enclosing object, and another mask checks them.
INLINE = {"VolumeSource", "ProbeHandler", "LocalObjectReference"}


def json_name(go: str) -> str:
    """A Kubernetes Go field's JSON name: FSGroup -> fsGroup, HostIPC -> hostIPC, HTTPGet -> httpGet."""
    acronym = re.match(r"^([A-Z]+)(?=[A-Z][a-z]|$)", go)
    if acronym:
        return acronym.group(1).lower() + go[len(acronym.group(1)) :]
    return go[0].lower() + go[1:]


@dataclass(frozen=True)
class Field:
    name: str  # JSON name ("*" for an inline struct: any key, checked by another mask)
    condition: str | None  # None: always allowed; else a key of CONDITIONS


# The mask conditions fieldmask.go uses besides "always" and "flag X is not Disabled", by their Go text.
CONDITIONS = {
    "in.AutomountServiceAccountToken != nil && !*in.AutomountServiceAccountToken": "value-false",
    "in.Privileged != nil && !*in.Privileged": "value-false",
    "fieldRef": "fieldref",
    "config.FromContextOrDefaults(ctx).Features.ContainerSpecAddCapabilities == config.Enabled": "flag-enabled:"
    "ContainerSpecAddCapabilities",
}


@cache
def masks() -> dict[str, list[Field]]:
    """fieldmask.go's ``func XMask(...)`` bodies -> the fields each copies, with the condition they are copied
    under: ``if cfg.Features.F != config.Disabled`` blocks become ``flag:F``; an ``if …F == config.Disabled {
    return out }`` guard puts the rest of the function under ``flag:F``; the other conditions must be in
    CONDITIONS (or be a SecurePodDefaults branch, which this mirror treats as Disabled, Knative's default)."""
    text = (VENDORED / f"{RELEASE}-fieldmask.go").read_text()
    out: dict[str, list[Field]] = {}
    for match in re.finditer(r"^func (\w+)Mask\(.*?\n}\n", text, re.S | re.M):
        name, body = match.group(1), match.group(0)
        fields: list[Field] = []
        stack: list[str | None] = []
        guard: str | None = None
        lines = body.splitlines()[1:]
        for index, raw in enumerate(lines):
            line = raw.strip()
            cond = re.match(r"^(?:} else )?if (.*) {$", line)
            if cond:
                text_cond = cond.group(1)
                if line.startswith("} else"):
                    stack.pop()
                flag = re.search(r"Features\.(\w+) != config\.Disabled$", text_cond)
                early = re.search(r"Features\.(\w+) == config\.Disabled$", text_cond)
                if flag:
                    stack.append(f"flag:{flag.group(1)}")
                elif early and lines[index + 1].strip() == "return out":
                    guard = f"flag:{early.group(1)}"
                    stack.append("skip")
                elif (
                    "SecurePodDefaults" in text_cond
                    or text_cond.startswith(("in == nil", "in.SeccompProfile"))
                    or (text_cond.startswith("seccomp ==") or text_cond.startswith("slices.Equal(in.Add"))
                ):
                    stack.append("skip")  # SecurePodDefaults paths: Disabled by default (features.go)
                elif text_cond in CONDITIONS:
                    stack.append(CONDITIONS[text_cond])
                else:
                    raise AssertionError(f"{name}Mask: unknown condition {text_cond!r}: mirror it in CONDITIONS")
                continue
            if line == "} else {":
                stack[-1] = "skip"
                continue
            if line == "}" and stack:
                stack.pop()
                continue
            assign = re.match(r"^out\.(\w+) = (?:in\.\w+|append\(out\.\w+, in\.\w+\.\.\.\))$", line) or re.match(
                r"^(\w+):\s+in\.\w+,$", line
            )
            if assign and "skip" not in stack:
                conditions = [c for c in [guard, *stack] if c]
                go = assign.group(1)
                fields.append(Field("*" if go in INLINE else json_name(go), conditions[-1] if conditions else None))
        out[name] = fields
    return out


@cache
def features() -> tuple[dict[str, str], dict[str, str]]:
    """features.go: (Go field -> default flag, ConfigMap key -> Go field)."""
    text = (VENDORED / f"{RELEASE}-features.go").read_text()
    defaults = dict(re.findall(r"^\t\t(\w+):\s+(Enabled|Disabled|Allowed),$", text, re.M))
    consts = dict(re.findall(r'^\t(Feature\w+)\s+= "([^"]+)"$', text, re.M))
    keys = {}
    for key, field in re.findall(r"as(?:SecurePodDefaults)?Flag\(([^,]+), &nc\.(\w+)\)", text):
        keys[consts.get(key, key.strip('"'))] = field
    return defaults, keys


def flags(config_features: dict[str, str] | None = None) -> dict[str, str]:
    """The Features a cluster has: Knative's defaults with the `config-features` entries given (case-insensitive
    values, as asFlag parses them: features.go:205-217)."""
    defaults, keys = features()
    if (config_features or {}).get("secure-pod-defaults", "disabled").lower() != "disabled":
        raise NotImplementedError(
            "secure-pod-defaults changes the masks in ways tests/chart/knative.py does not mirror"
        )
    out = dict(defaults)
    for key, value in (config_features or {}).items():
        if key not in keys:
            raise KeyError(f"{key} is not a Knative {RELEASE} feature flag")
        for flag in ("Enabled", "Allowed", "Disabled"):
            if value.lower() == flag.lower():
                out[keys[key]] = flag
    return out


def flag_key(field: str) -> str:
    """The `config-features` key of a Features field, for messages: PodSpecAffinity -> kubernetes.podspec-affinity."""
    return next(key for key, name in features()[1].items() if name == field)


def _allowed(mask: str, obj: dict[str, Any], cfg: dict[str, str], **context: bool) -> tuple[set[str], bool]:
    """The keys ``mask`` lets through for ``obj`` under ``cfg`` (and whether any key may pass: an inline field)."""
    allowed, inline = set(), False
    for field in masks()[mask]:
        cond = field.condition
        ok = (
            cond is None
            or (cond.startswith("flag:") and cfg[cond[5:]] != "Disabled")
            or (cond.startswith("flag-enabled:") and cfg[cond[13:]] == "Enabled")
            or (cond == "value-false" and obj.get(field.name) is False)
            or (cond == "fieldref" and context.get("fieldref", False))
        )
        if ok:
            if field.name == "*":
                inline = True
            allowed.add(field.name)
    return allowed, inline


def _disallowed(mask: str, obj: dict[str, Any], path: str, cfg: dict[str, str], **context: bool) -> list[str]:
    """knative.dev/pkg apis.CheckDisallowedFields(obj, *XMask(obj)): every set field the mask drops, naming the
    feature flag that would let it through, if any."""
    allowed, inline = _allowed(mask, obj, cfg, **context)
    if inline:
        return []
    gates: dict[str, str] = {}
    for field in masks()[mask]:
        if field.condition:
            gates.setdefault(field.name, field.condition)  # the first: PodSpecSecurityContext before SecurePodDefaults
    out = []
    for key in obj:
        if key in allowed:
            continue
        gate = gates.get(key) or ""
        flag = {"fieldref": "PodSpecFieldRef"}.get(gate) or gate.partition(":")[2]
        out.append(f"{path}.{key}: must not set the field ({mask}Mask)" + (f" ({flag_key(flag)})" if flag else ""))
    return out


RESERVED_PATHS = {"/", "/dev", "/dev/log"}  # k8s_validation.go:44-48
RESERVED_CONTAINER_NAMES = {"queue-proxy"}  # :50-52
RESERVED_ENV = {"PORT", "K_SERVICE", "K_CONFIGURATION", "K_REVISION"}  # :54-59 (sidecars and init: PORT allowed, :69)
RESERVED_PORTS = {8012, 8013, 8022, 9090, 9091, 8008}  # :61-67 (networking.* ports, profiling)
PORT_NAMES = {"h2c", "http1", ""}  # :75-79
FLAG_MESSAGES = {  # validateVolume :122-140, validatePersistentVolumeClaims :105-120
    "persistentVolumeClaim": "PodSpecPersistentVolumeClaim",
    "emptyDir": "PodSpecVolumesEmptyDir",
    "hostPath": "PodSpecVolumesHostPath",
    "csi": "PodSpecVolumesCSI",
    "image": "PodSpecVolumesImage",
}


def default(pod_spec: dict[str, Any]) -> dict[str, Any]:
    """The revision defaulting that changes what validation sees (knative/serving pkg/apis/serving/v1/
    revision_defaults.go:100-192): readiness-probe thresholds (:172-192), and read-only mounts in containers for
    volumes other than emptyDir and PVC (:146-157)."""
    spec = copy.deepcopy(pod_spec)
    writable = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v or "persistentVolumeClaim" in v}
    for container in spec.get("containers", []):
        probe = container.get("readinessProbe")
        if probe is not None:
            probe.setdefault("successThreshold", 1)
            if probe.get("periodSeconds"):
                probe.setdefault("failureThreshold", 3)
                probe.setdefault("timeoutSeconds", 1)
        for mount in container.get("volumeMounts", []):
            if mount["name"] not in writable:
                mount["readOnly"] = True
    return spec


def rejections(pod_spec: dict[str, Any], cfg: dict[str, str]) -> list[str]:
    """What ValidatePodSpec (k8s_validation.go:391-436) rejects in ``pod_spec`` (after default()) under ``cfg``;
    each message names the feature flag when one would allow it."""
    spec = default(pod_spec)
    errors = _disallowed("PodSpec", spec, "spec", cfg)  # :398
    errors += _pod_security_context(spec.get("securityContext"), cfg)  # :400
    containers, inits = spec.get("containers", []), spec.get("initContainers", [])
    mounted = {m["name"] for c in inits + containers for m in c.get("volumeMounts", [])}  # AllMountedVolumes :489
    volumes: dict[str, dict[str, Any]] = {}
    for volume in spec.get("volumes", []):  # ValidateVolumes :83-103
        path = f"spec.volumes[{volume['name']}]"
        if volume["name"] in volumes:
            errors.append(f"{path}: duplicate volume name")
        if volume["name"] not in mounted:
            errors.append(f"{path}: volume with name {volume['name']!r} not mounted")
        errors += _volume(volume, path, cfg)
        volumes[volume["name"]] = volume
    if inits:  # validateInitContainers :438-461
        if cfg["PodSpecInitContainers"] != "Enabled":
            errors.append(
                f"spec.initContainers: pod spec support for init-containers is off, but found {len(inits)} init "
                f"containers ({flag_key('PodSpecInitContainers')})"
            )
        else:
            for c in inits:
                path = f"spec.initContainers[{c['name']}]"
                for probe in ("livenessProbe", "readinessProbe", "startupProbe", "lifecycle"):  # :558-584
                    if probe in c:
                        errors.append(f"{path}.{probe}: field not allowed in an init container")
                errors += _container(c, path, volumes, cfg, init=True)
    ports = [p for c in containers for p in c.get("ports", [])]  # validateContainersPorts :501-534
    if len(ports) > 1:
        errors.append("spec.containers[*].ports: more than one container port is set")
    for c in containers:  # :421-429 (one container: the user container; several: by ports, :463-486)
        path = f"spec.containers[{c['name']}]"
        user = len(containers) == 1 or bool(c.get("ports"))
        errors += _container(c, path, volumes, cfg, init=False, sidecar=not user)
    return errors


def _pod_security_context(sc: dict[str, Any] | None, cfg: dict[str, str]) -> list[str]:
    """ValidatePodSecurityContext (k8s_validation.go:941-978) with PodSecurityContextMask (fieldmask.go:663-702)."""
    if sc is None:
        return []
    return _disallowed("PodSecurityContext", sc, "spec.securityContext", cfg)


def _volume(volume: dict[str, Any], path: str, cfg: dict[str, str]) -> list[str]:
    """validateVolume (k8s_validation.go:122-214) and validatePersistentVolumeClaims (:105-120)."""
    errors = []
    for kind, flag in FLAG_MESSAGES.items():
        if kind in volume and cfg[flag] != "Enabled":
            errors.append(f"{path}.{kind}: {kind} volume support is disabled ({flag_key(flag)})")
    claim = volume.get("persistentVolumeClaim")
    if claim is not None and not claim.get("readOnly") and cfg["PodSpecPersistentVolumeWrite"] != "Enabled":
        errors.append(
            f"{path}: Persistent volume write support is disabled, but found persistent volume claim "
            f"{claim.get('claimName')} that is not read-only ({flag_key('PodSpecPersistentVolumeWrite')})"
        )
    errors += _disallowed("Volume", volume, path, cfg)  # :141
    source = {k: v for k, v in volume.items() if k != "name"}
    errors += [e for e in _disallowed("VolumeSource", source, path, cfg) if "support is disabled" not in e]  # :148
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", volume.get("name", "")):  # :142-146
        errors.append(f"{path}.name: invalid value")
    for kind in ("secret", "configMap"):
        for j, item in enumerate((volume.get(kind) or {}).get("items", [])):  # :150-161, validateKeyToPath
            errors += _disallowed("KeyToPath", item, f"{path}.{kind}.items[{j}]", cfg)
    if "emptyDir" in volume and (volume["emptyDir"] or {}).get("medium") not in (None, "", "Memory"):  # :311-322
        errors.append(f"{path}.emptyDir.medium: invalid value")
    return errors


def _container(
    c: dict[str, Any], path: str, volumes: dict[str, Any], cfg: dict[str, str], *, init: bool, sidecar: bool = False
) -> list[str]:
    """validate (k8s_validation.go:597-646), with the probe rules of ValidateUserContainer (:589-595) and
    validateSidecarContainer (:537-556)."""
    errors = _disallowed("Container", c, path, cfg)  # :602
    if c["name"] in RESERVED_CONTAINER_NAMES:  # :604-609
        errors.append(f"{path}.name: {c['name']!r} is a reserved container name")
    reserved = RESERVED_ENV - {"PORT"} if (init or sidecar) else RESERVED_ENV  # :332-337
    fieldref = cfg["PodSpecFieldRef"] != "Disabled"
    for env in c.get("env", []):  # validateEnv :339-360
        where = f"{path}.env[{env['name']}]"
        errors += _disallowed("EnvVar", env, where, cfg)
        if env["name"] in reserved:
            errors.append(f"{where}: {env['name']!r} is a reserved environment variable")
        source = env.get("valueFrom")
        if source is not None:  # validateEnvValueFrom :324-330
            errors += _disallowed("EnvVarSource", source, f"{where}.valueFrom", cfg, fieldref=fieldref)
            for kind, mask in (("secretKeyRef", "SecretKeySelector"), ("configMapKeyRef", "ConfigMapKeySelector")):
                if kind in source:
                    errors += _disallowed(mask, source[kind], f"{where}.valueFrom.{kind}", cfg)
    for i, env_from in enumerate(c.get("envFrom", [])):  # validateEnvFrom :362-388
        errors += _disallowed("EnvFromSource", env_from, f"{path}.envFrom[{i}]", cfg)
    if not c.get("image"):  # :616-617
        errors.append(f"{path}.image: missing field")
    for port in c.get("ports", []):  # validateContainerPorts :753-807
        where = f"{path}.ports[{port.get('name', '')}]"
        errors += _disallowed("ContainerPort", port, where, cfg)
        if port.get("containerPort") in RESERVED_PORTS:
            errors.append(f"{where}: {port['containerPort']} is a reserved port")
        if not init and port is c["ports"][0]:
            if port.get("name", "") not in PORT_NAMES:
                errors.append(f"{where}: Port name {port['name']} is not allowed")
            if port.get("protocol", "TCP") != "TCP":
                errors.append(f"{where}.protocol: invalid value")
    errors += _disallowed("ResourceRequirements", c.get("resources") or {}, f"{path}.resources", cfg)  # :648-653
    sc = c.get("securityContext")
    if sc is not None:  # validateSecurityContext :662-684
        errors += _disallowed("SecurityContext", sc, f"{path}.securityContext", cfg)
        if sc.get("capabilities") is not None:
            errors += _disallowed("Capabilities", sc["capabilities"], f"{path}.securityContext.capabilities", cfg)
    if c.get("terminationMessagePolicy", "") not in ("File", "FallbackToLogsOnError", ""):  # :637-641
        errors.append(f"{path}.terminationMessagePolicy: invalid value")
    errors += _volume_mounts(c.get("volumeMounts", []), path, volumes, cfg)  # :643
    for kind in ("livenessProbe", "readinessProbe") if not init else ():  # startupProbe: the mask only
        probe = c.get(kind)
        if probe is None:
            continue
        if sidecar and cfg["MultiContainerProbing"] != "Enabled":  # validateSidecarContainer :537-547
            errors.append(f"{path}.{kind}: must not set the field (sidecar probes need multi-container-probing)")
        else:  # ValidateUserContainer :589-595
            errors += _probe(probe, f"{path}.{kind}", c, cfg, readiness=kind == "readinessProbe")
    return errors


def _probe(probe: dict[str, Any], path: str, c: dict[str, Any], cfg: dict[str, str], *, readiness: bool) -> list[str]:
    """validateProbe (k8s_validation.go:856-910) and validateReadinessProbe (:809-854)."""
    errors = _disallowed("Probe", probe, path, cfg)
    handler = {k: v for k, v in probe.items() if k in ("exec", "httpGet", "tcpSocket", "grpc")}
    errors += _disallowed("Handler", handler, path, cfg)
    if len(handler) != 1:
        errors.append(f"{path}: expected exactly one of exec, httpGet, tcpSocket, grpc")
    for kind, mask in (("httpGet", "HTTPGetAction"), ("tcpSocket", "TCPSocketAction")):
        if kind in handler:
            errors += _disallowed(mask, handler[kind], f"{path}.{kind}", cfg)
            port = handler[kind].get("port")
            names = [p.get("name") for p in c.get("ports", [])]
            if isinstance(port, str) and names and port != names[0]:
                errors.append(f"{path}.{kind}.port: Probe port must match container port")
    if readiness and probe.get("periodSeconds", 0) > 0:
        if probe.get("timeoutSeconds", 0) < 1 or probe.get("failureThreshold", 0) < 1:
            errors.append(f"{path}: timeoutSeconds and failureThreshold must be at least 1")
    return errors


def _volume_mounts(mounts: list[dict[str, Any]], path: str, volumes: dict[str, Any], cfg: dict[str, str]) -> list[str]:
    """validateVolumeMounts (k8s_validation.go:686-751)."""
    errors, seen = [], set()
    for mount in mounts:
        where = f"{path}.volumeMounts[{mount.get('mountPath')}]"
        errors += _disallowed("VolumeMount", mount, where, cfg)
        volume = volumes.get(mount["name"])
        if volume is None:
            errors.append(f"{where}: volumeMount has no matching volume")
            continue
        clean = re.sub(r"/+$", "", mount["mountPath"]) or "/"
        if clean in RESERVED_PATHS:
            errors.append(f"{where}: mountPath {clean!r} is a reserved path")
        if clean in seen:
            errors.append(f"{where}: mountPath must be unique")
        seen.add(clean)
        if "emptyDir" not in volume and "persistentVolumeClaim" not in volume and not mount.get("readOnly"):
            errors.append(f"{where}: volume mount should be readOnly for this type of volume")  # :720-726
        if (volume.get("persistentVolumeClaim") or {}).get("readOnly") and not mount.get("readOnly"):
            errors.append(f"{where}: volume is readOnly but volume mount is not")  # :741-748
    return errors
