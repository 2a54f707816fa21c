{{/*
mlflow-kserve.name: the chart name, overridable; used in labels.
*/}}
{{- define "mlflow-kserve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
mlflow-kserve.fullname: the InferenceService name (KServe derives <name>-predictor from it); the release
name alone unless overridden, so `helm install fraud` serves at fraud-predictor.
*/}}
{{- define "mlflow-kserve.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 45 | trimSuffix "-" }}
{{- else }}
{{- .Release.Name | trunc 45 | trimSuffix "-" }}
{{- end }}
{{- end }}

{{/*
mlflow-kserve.modelName: the name MLServer serves the model under (/v2/models/<name>).
*/}}
{{- define "mlflow-kserve.modelName" -}}
{{- default .Release.Name .Values.model.name }}
{{- end }}

{{/*
mlflow-kserve.labels: standard labels on every object.
*/}}
{{- define "mlflow-kserve.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "mlflow-kserve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.labels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
mlflow-kserve.modelAlias: the registry alias the model URI names or was pinned from (`model.alias`, set by a
rollout that ran `mlflow-kserve resolve`); empty for a URI without one.
*/}}
{{- define "mlflow-kserve.modelAlias" -}}
{{- if .Values.model.alias }}
{{- .Values.model.alias }}
{{- else if regexMatch "^models:/[^/@]+@[^/@]+/?$" .Values.model.uri }}
{{- regexReplaceAll "^models:/[^/@]+@([^/@]+)/?$" .Values.model.uri "${1}" }}
{{- end }}
{{- end }}

{{/*
mlflow-kserve.metricsAnnotations: KServe's scraping conventions (kserve v0.20
pkg/webhook/admission/pod/metrics_aggregate_injector.go). Serverless: `enable-prometheus-scraping` makes the pod
webhook write `prometheus.io/port|path`, pointing at queue-proxy, which with `enable-metric-aggregation` also
serves the server's metrics (read from `prometheus.kserve.io/port|path`). RawDeployment has no queue-proxy, and
the webhook would point `prometheus.io/port` at its absent port 9091: scraping stays off there and the chart
annotates the server's own port.
*/}}
{{- define "mlflow-kserve.metricsAnnotations" -}}
{{- with .Values.metrics }}
{{- if .enabled }}
prometheus.kserve.io/port: {{ .port | quote }}
prometheus.kserve.io/path: {{ .path | quote }}
prometheus.io/scrape: "true"
{{- if eq $.Values.deploymentMode "Serverless" }}
serving.kserve.io/enable-prometheus-scraping: "true"
serving.kserve.io/enable-metric-aggregation: {{ .aggregate | quote }}
{{- else }}
serving.kserve.io/enable-prometheus-scraping: "false"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: {{ .path | quote }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{/*
mlflow-kserve.serviceAccountName: the ServiceAccount the predictor runs as (created or existing).
*/}}
{{- define "mlflow-kserve.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "mlflow-kserve.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
mlflow-kserve.image: "<repository>:<tag>" of one image; both default to <appVersion>-py<pythonVersion> so the
init and server images share their Python (the venv's interpreter path must exist in both).
*/}}
{{- define "mlflow-kserve.image" -}}
{{- $image := index .root.Values.image .which }}
{{- $tag := default (printf "%s-py%s" .root.Chart.AppVersion (toString .root.Values.pythonVersion)) $image.tag }}
{{- printf "%s:%s" $image.repository $tag }}
{{- end }}

{{/*
mlflow-kserve.caFile: where the custom CA bundle is mounted, when one is configured.
*/}}
{{- define "mlflow-kserve.caFile" -}}
{{- if or .Values.caBundle.configMap .Values.caBundle.secret }}/etc/mlflow-kserve/ca/{{ .Values.caBundle.key }}{{- end }}
{{- end }}

{{/*
mlflow-kserve.caEnv: the variables that make Python, requests, boto3, pip and uv trust the custom CA bundle.
*/}}
{{- define "mlflow-kserve.caEnv" -}}
{{- $ca := include "mlflow-kserve.caFile" . }}
{{- if $ca }}
{{- range list "SSL_CERT_FILE" "REQUESTS_CA_BUNDLE" "AWS_CA_BUNDLE" "PIP_CERT" "CURL_CA_BUNDLE" }}
- name: {{ . }}
  value: {{ $ca | quote }}
{{- end }}
{{- end }}
{{- end }}

{{/*
mlflow-kserve.caMount: the CA bundle volume mount, when one is configured.
*/}}
{{- define "mlflow-kserve.caMount" -}}
{{- if include "mlflow-kserve.caFile" . }}
- name: ca-bundle
  mountPath: /etc/mlflow-kserve/ca
  readOnly: true
{{- end }}
{{- end }}

{{/*
mlflow-kserve.initEnv: the init container's configuration. Only MLFLOW_KSERVE_* variables that
`mlflow-kserve init` reads (tests check them against the CLI's option definitions) and standard ones;
credentials only through secretKeyRef.
*/}}
{{- define "mlflow-kserve.initEnv" -}}
{{- $deps := .Values.dependencies }}
- name: MLFLOW_KSERVE_MODEL_URI
  value: {{ .Values.model.uri | quote }}
- name: MLFLOW_KSERVE_NAME
  value: {{ include "mlflow-kserve.modelName" . | quote }}
- name: MLFLOW_KSERVE_MODELS_DIR
  value: /mnt/models
- name: MLFLOW_KSERVE_ENV_DIR
  value: /mnt/env
- name: MLFLOW_KSERVE_BACKEND
  value: {{ .Values.server.backend | quote }}
{{- if .Values.server.grpc.enabled }}
- name: MLFLOW_KSERVE_GRPC
  value: "true"
{{- end }}
- name: MLFLOW_KSERVE_INSTALLER
  value: {{ $deps.installer | quote }}
- name: MLFLOW_KSERVE_PYTHON_POLICY
  value: {{ $deps.pythonPolicy | quote }}
- name: MLFLOW_KSERVE_SLIM
  value: {{ $deps.slim | quote }}
- name: MLFLOW_KSERVE_VERIFY
  value: {{ $deps.verify | quote }}
- name: MLFLOW_KSERVE_FETCH_RETRIES
  value: {{ $deps.fetchRetries | quote }}
- name: MLFLOW_KSERVE_LOG_FORMAT
  value: {{ $deps.logFormat | quote }}
{{- if gt (int .Values.server.maxBatchSize) 1 }}
- name: MLFLOW_KSERVE_MAX_BATCH_SIZE
  value: {{ .Values.server.maxBatchSize | quote }}
- name: MLFLOW_KSERVE_MAX_BATCH_TIME
  value: {{ .Values.server.maxBatchTime | quote }}
{{- end }}
{{- with $deps.extraRequirements }}
- name: MLFLOW_KSERVE_EXTRA_REQUIREMENT
  value: {{ join "\n" . | quote }}
{{- end }}
{{- with $deps.constraints }}
- name: MLFLOW_KSERVE_CONSTRAINT
  value: {{ join "\n" . | quote }}
{{- end }}
{{- with $deps.allow }}
- name: MLFLOW_KSERVE_ALLOW
  value: {{ join " " . | quote }}
{{- end }}
{{- if $deps.privateIndex.existingSecret }}
- name: PRIVATE_INDEX_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ $deps.privateIndex.existingSecret }}
      key: {{ $deps.privateIndex.usernameKey }}
- name: PRIVATE_INDEX_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $deps.privateIndex.existingSecret }}
      key: {{ $deps.privateIndex.passwordKey }}
- name: MLFLOW_KSERVE_INDEX_URL
  value: "https://$(PRIVATE_INDEX_USERNAME):$(PRIVATE_INDEX_PASSWORD)@{{ $deps.privateIndex.host }}"
{{- else if $deps.indexUrl }}
- name: MLFLOW_KSERVE_INDEX_URL
  value: {{ $deps.indexUrl | quote }}
{{- end }}
{{- with $deps.extraIndexUrls }}
- name: MLFLOW_KSERVE_EXTRA_INDEX_URL
  value: {{ join " " . | quote }}
{{- end }}
{{- if .Values.cache.enabled }}
- name: MLFLOW_KSERVE_CACHE_DIR
  value: /mnt/cache
{{- if gt (int64 .Values.cache.maxBytes) 0 }}
- name: MLFLOW_KSERVE_CACHE_MAX_BYTES
  value: {{ .Values.cache.maxBytes | int64 | quote }}
{{- end }}
{{- if .Values.cache.serveFromCache }}
- name: MLFLOW_KSERVE_SERVE_FROM_CACHE
  value: "true"
{{- end }}
{{- end }}
{{- with .Values.storage.s3 }}
{{- if .existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .accessKeyIdKey }}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ .existingSecret }}
      key: {{ .secretAccessKeyKey }}
{{- end }}
{{- if .endpoint }}
- name: MLFLOW_S3_ENDPOINT_URL
  value: {{ .endpoint | quote }}
- name: AWS_ENDPOINT_URL_S3
  value: {{ .endpoint | quote }}
{{- end }}
{{- if .region }}
- name: AWS_DEFAULT_REGION
  value: {{ .region | quote }}
- name: AWS_REGION
  value: {{ .region | quote }}
{{- end }}
{{- end }}
{{- with .Values.mlflow }}
{{- if .trackingUri }}
- name: MLFLOW_TRACKING_URI
  value: {{ .trackingUri | quote }}
{{- end }}
{{- if .tokenSecret }}
- name: MLFLOW_TRACKING_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .tokenSecret }}
      key: {{ .tokenKey }}
{{- end }}
{{- end }}
- name: HOME
  value: /tmp
{{- include "mlflow-kserve.caEnv" . }}
{{- with .Values.initContainer.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
mlflow-kserve.podSecurityOnPod: "true" when podSecurityContext goes on the pod: always in RawDeployment; in
Serverless only when the cluster enables Knative's kubernetes.podspec-securitycontext (knative/serving
pkg/apis/serving/fieldmask.go:256-261, :683-685: no pod security field passes otherwise).
*/}}
{{- define "mlflow-kserve.podSecurityOnPod" -}}
{{- if or (ne .Values.deploymentMode "Serverless") .Values.knative.podSecurityContextEnabled }}true{{ end }}
{{- end }}

{{/*
mlflow-kserve.containerSecurityContext: one container's securityContext. When the pod carries none (Serverless
without the flag), the pod-level fields Knative accepts per container (fieldmask.go:715-727) move onto it;
the container's own values win. `uid` (optional) overrides runAsUser (Istio CNI).
*/}}
{{- define "mlflow-kserve.containerSecurityContext" -}}
{{- $context := deepCopy .root.Values.containerSecurityContext }}
{{- if not (include "mlflow-kserve.podSecurityOnPod" .root) }}
{{- $context = merge $context (pick .root.Values.podSecurityContext "runAsUser" "runAsGroup" "runAsNonRoot" "seccompProfile") }}
{{- end }}
{{- if .uid }}
{{- $_ := set $context "runAsUser" .uid }}
{{- end }}
{{- toYaml $context }}
{{- end }}

{{/*
mlflow-kserve.validateKnative: in Serverless, refuse what Knative Serving (knative-v1.21.1) would reject under
the flags the knative.* values confirm, naming the flag (tests/chart/knative.py checks every Serverless render
against the vendored masks in ci/knative/).
*/}}
{{- define "mlflow-kserve.validateKnative" -}}
{{- $k := .Values.knative }}
{{- $fix := "in the knative-serving `config-features` ConfigMap" }}
{{- if not $k.initContainersEnabled }}
{{- fail "deploymentMode=Serverless needs init containers, which Knative rejects unless the cluster enables `kubernetes.podspec-init-containers: enabled` in the knative-serving `config-features` ConfigMap; enable it, then set knative.initContainersEnabled=true (or use deploymentMode=RawDeployment, or the KServe-native mode: charts/mlflow-kserve-runtime)" }}
{{- end }}
{{- $pvcCache := and .Values.cache.enabled (ne .Values.cache.type "hostPath") }}
{{- if not $k.podSecurityContextEnabled }}
{{- range $key, $_ := .Values.podSecurityContext }}
{{- if not (has $key (list "runAsUser" "runAsGroup" "runAsNonRoot" "seccompProfile" "fsGroup")) }}
{{- fail (printf "podSecurityContext.%s: Knative rejects pod security fields unless the cluster enables `kubernetes.podspec-securitycontext: enabled` %s; enable it and set knative.podSecurityContextEnabled=true, or remove podSecurityContext.%s" $key $fix $key) }}
{{- end }}
{{- end }}
{{- if and $pvcCache (not (kindIs "invalid" .Values.podSecurityContext.fsGroup)) }}
{{- fail (printf "podSecurityContext.fsGroup (which makes the cache PVC writable by the pod) needs `kubernetes.podspec-securitycontext: enabled` %s in Serverless; enable it and set knative.podSecurityContextEnabled=true, or set podSecurityContext.fsGroup=null if the volume is writable as is" $fix) }}
{{- end }}
{{- end }}
{{- range $value, $flag := dict "nodeSelector" "kubernetes.podspec-nodeselector" "tolerations" "kubernetes.podspec-tolerations" "affinity" "kubernetes.podspec-affinity" }}
{{- if and (index $.Values $value) (not (index $k (printf "%sEnabled" $value))) }}
{{- fail (printf "%s: Knative rejects it unless the cluster enables `%s: enabled` %s; enable it and set knative.%sEnabled=true, or remove %s" $value $flag $fix $value $value) }}
{{- end }}
{{- end }}
{{- if and .Values.cache.enabled (eq .Values.cache.type "hostPath") }}
{{- fail "cache.type=hostPath in Serverless: Knative allows hostPath volumes (kubernetes.podspec-volumes-hostpath) only mounted read-only, and the init container writes the cache; use cache.type=newPVC or existingPVC (with knative.persistentVolumeClaimEnabled and knative.persistentVolumeWriteEnabled), or deploymentMode=RawDeployment" }}
{{- end }}
{{- $pvcs := list }}
{{- if $pvcCache }}{{ $pvcs = append $pvcs "cache" }}{{ end }}
{{- range .Values.extraVolumes }}
{{- if hasKey . "persistentVolumeClaim" }}{{ $pvcs = append $pvcs (printf "extraVolumes[%s]" .name) }}{{ end }}
{{- end }}
{{- range $pvcs }}
{{- if not $k.persistentVolumeClaimEnabled }}
{{- fail (printf "%s: a PersistentVolumeClaim in Serverless needs `kubernetes.podspec-persistent-volume-claim: enabled` %s; enable it and set knative.persistentVolumeClaimEnabled=true (or use deploymentMode=RawDeployment)" . $fix) }}
{{- end }}
{{- end }}
{{- if and $pvcCache (not $k.persistentVolumeWriteEnabled) }}
{{- fail (printf "cache: the init container writes the cache PVC, which Knative allows only when the cluster enables `kubernetes.podspec-persistent-volume-write: enabled` %s; enable it and set knative.persistentVolumeWriteEnabled=true" $fix) }}
{{- end }}
{{- range .Values.extraVolumes }}
{{- $volume := . }}
{{- range $kind, $flag := dict "hostPath" "kubernetes.podspec-volumes-hostpath" "csi" "kubernetes.podspec-volumes-csi" "image" "kubernetes.podspec-volumes-image" }}
{{- if hasKey $volume $kind }}
{{- fail (printf "extraVolumes[%s].%s: Knative rejects it unless the cluster enables `%s: enabled`, and then only mounted read-only; this chart does not render it in Serverless: use deploymentMode=RawDeployment" $volume.name $kind $flag) }}
{{- end }}
{{- end }}
{{- end }}
{{- if not $k.fieldRefEnabled }}
{{- range .Values.initContainer.extraEnv }}
{{- if and .valueFrom (or .valueFrom.fieldRef .valueFrom.resourceFieldRef) }}
{{- fail (printf "initContainer.extraEnv[%s].valueFrom: Knative rejects fieldRef and resourceFieldRef unless the cluster enables `kubernetes.podspec-fieldref: enabled` %s; enable it and set knative.fieldRefEnabled=true" .name $fix) }}
{{- end }}
{{- end }}
{{- end }}
{{- range $key, $value := .Values.containerSecurityContext }}
{{- if not (has $key (list "capabilities" "readOnlyRootFilesystem" "runAsUser" "runAsGroup" "runAsNonRoot" "allowPrivilegeEscalation" "seccompProfile" "privileged")) }}
{{- fail (printf "containerSecurityContext.%s: Knative rejects it on a container (no flag allows it); remove it, or use deploymentMode=RawDeployment" $key) }}
{{- end }}
{{- end }}
{{- if .Values.containerSecurityContext.privileged }}
{{- fail "containerSecurityContext.privileged: Knative accepts only privileged=false; remove it, or use deploymentMode=RawDeployment" }}
{{- end }}
{{- with .Values.containerSecurityContext.capabilities }}
{{- if .add }}
{{- fail (printf "containerSecurityContext.capabilities.add: Knative rejects added capabilities unless the cluster enables `kubernetes.containerspec-addcapabilities: enabled` %s; this chart adds none in Serverless: remove it, or use deploymentMode=RawDeployment" $fix) }}
{{- end }}
{{- end }}
{{- end }}

{{/*
mlflow-kserve.validate: rules the JSON schema cannot express; each message names the value and the fix.
*/}}
{{- define "mlflow-kserve.validate" -}}
{{- $serverless := eq .Values.deploymentMode "Serverless" }}
{{- if $serverless }}
{{- include "mlflow-kserve.validateKnative" . }}
{{- end }}
{{- if and (not $serverless) (eq (int .Values.autoscaling.minReplicas) 0) }}
{{- fail "autoscaling.minReplicas=0 (scale to zero) needs deploymentMode=Serverless; set autoscaling.minReplicas to 1 or more for RawDeployment" }}
{{- end }}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) }}
{{- fail "autoscaling.minReplicas must not exceed autoscaling.maxReplicas" }}
{{- end }}
{{- if and (not $serverless) (not (kindIs "invalid" .Values.canaryTrafficPercent)) }}
{{- fail "canaryTrafficPercent needs deploymentMode=Serverless (RawDeployment has no revisions); unset it" }}
{{- end }}
{{- if and .Values.cache.enabled (eq .Values.cache.type "existingPVC") (not .Values.cache.existingClaim) }}
{{- fail "cache.type=existingPVC needs cache.existingClaim (the claim's name)" }}
{{- end }}
{{- if and .Values.cache.enabled (eq .Values.cache.type "hostPath") (not .Values.cache.hostPath) }}
{{- fail "cache.type=hostPath needs cache.hostPath (a directory on the node)" }}
{{- end }}
{{- if and .Values.caBundle.configMap .Values.caBundle.secret }}
{{- fail "caBundle.configMap and caBundle.secret are exclusive; set one" }}
{{- end }}
{{- if and .Values.dependencies.privateIndex.existingSecret (not .Values.dependencies.privateIndex.host) }}
{{- fail "dependencies.privateIndex.existingSecret needs dependencies.privateIndex.host (e.g. pypi.corp.example/simple)" }}
{{- end }}
{{- if and .Values.istio.enabled (not .Values.istio.virtualService.hosts) }}
{{- fail "istio.enabled needs istio.virtualService.hosts (a host other than the one KServe's own VirtualService takes)" }}
{{- end }}
{{- if .Values.istio.enabled }}
{{- $isvc := include "mlflow-kserve.fullname" . }}
{{- $ns := .Release.Namespace }}
{{- range .Values.istio.virtualService.hosts }}
{{- if or (eq . $isvc) (hasPrefix (printf "%s.%s." $isvc $ns) .) (hasPrefix (printf "%s-predictor." $isvc) .) (hasPrefix (printf "%s-predictor-default." $isvc) .) }}
{{- fail (printf "istio.virtualService.hosts: %s is a host KServe's own VirtualService takes for this InferenceService (%s.%s.<domain>, %s-predictor.*); routing it twice breaks both: use another host, e.g. models.example.com" . $isvc $ns $isvc) }}
{{- end }}
{{- end }}
{{- end }}
{{- if and .Values.model.requirePinned (hasPrefix "models:" .Values.model.uri) (not (regexMatch "^models:/[^/@]+/[0-9]+/?$" .Values.model.uri)) }}
{{- fail (printf "model.uri=%s can move (an alias, a stage or latest) while model.requirePinned=true: pin it when rendering, e.g. --set model.uri=$(mlflow-kserve resolve --model-uri %s) --set model.alias=<alias> (examples/helmfile.yaml does this)" .Values.model.uri .Values.model.uri) }}
{{- end }}
{{- if and .Values.metrics.podMonitor.enabled (not .Values.metrics.enabled) }}
{{- fail "metrics.podMonitor.enabled needs metrics.enabled=true" }}
{{- end }}
{{- if and .Values.metrics.podMonitor.enabled $serverless (not .Values.metrics.aggregate) }}
{{- fail "metrics.podMonitor.enabled in Serverless needs metrics.aggregate=true (Knative pods declare no metrics port of the server: queue-proxy's aggregated port 9088 is what a PodMonitor can name)" }}
{{- end }}
{{- if and (eq .Values.dependencies.installer "pip") .Values.dependencies.slim }}
{{- fail "dependencies.slim needs dependencies.installer=uv" }}
{{- end }}
{{- if and .Values.server.grpc.enabled (eq .Values.deploymentMode "Serverless") }}
{{- fail "server.grpc.enabled needs deploymentMode=RawDeployment: Knative routes a single port per container, and this chart's is REST's (8080); use RawDeployment for gRPC, or REST in Serverless" }}
{{- end }}
{{- end }}
