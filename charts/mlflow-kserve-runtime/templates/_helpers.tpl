{{/*
mlflow-kserve-runtime.name: the chart name, overridable; used in labels.
*/}}
{{- define "mlflow-kserve-runtime.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
mlflow-kserve-runtime.fullname: the name of both cluster objects; users name the ClusterServingRuntime in
`runtime:` and the ClusterStorageContainer in `storageContainerName:` (both optional).
*/}}
{{- define "mlflow-kserve-runtime.fullname" -}}
{{- default .Release.Name .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
mlflow-kserve-runtime.labels: standard labels on both objects.
*/}}
{{- define "mlflow-kserve-runtime.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
app.kubernetes.io/name: {{ include "mlflow-kserve-runtime.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.labels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
mlflow-kserve-runtime.image: "<repository>:<tag>"; both tags default to <appVersion>-py<pythonVersion> so the
venv the storage container builds finds its interpreter in the server image.
*/}}
{{- define "mlflow-kserve-runtime.image" -}}
{{- $image := index .root.Values.image .which }}
{{- $tag := default (printf "%s-py%s" .root.Chart.AppVersion (toString .root.Values.pythonVersion)) $image.tag }}
{{- printf "%s:%s" $image.repository $tag }}
{{- end }}

{{/*
mlflow-kserve-runtime.annotationEnv: one env var per `mlflow-kserve.io/<key>` annotation, read from the pod by
fieldRef (KServe copies the InferenceService's annotations onto the predictor pod; absent ones read as "").
The keys are the CLI's (options.ANNOTATIONS); `mlflow-kserve storage-initializer` validates each value like
the flag it names and exits 2 naming the annotation.
*/}}
{{- define "mlflow-kserve-runtime.annotationEnv" -}}
{{- range list "extra-requirements" "constraints" "python-policy" "allow" "backend" "slim" "resolve-as-of" }}
- name: MLFLOW_KSERVE_ANNOTATION_{{ . | upper | replace "-" "_" }}
  valueFrom:
    fieldRef:
      fieldPath: metadata.annotations['mlflow-kserve.io/{{ . }}']
{{- end }}
{{- end }}

{{/*
mlflow-kserve-runtime.storageEnv: the storage container's configuration: only MLFLOW_KSERVE_* variables that
`mlflow-kserve storage-initializer` reads (a test checks them against the CLI's options) and standard ones;
credentials only through secretKeyRef.
*/}}
{{- define "mlflow-kserve-runtime.storageEnv" -}}
{{- $deps := .Values.dependencies }}
- name: MLFLOW_KSERVE_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.labels['serving.kserve.io/inferenceservice']
- name: MLFLOW_KSERVE_INSTALLER
  value: {{ $deps.installer | quote }}
- name: MLFLOW_KSERVE_PYTHON_POLICY
  value: {{ $deps.pythonPolicy | quote }}
- name: MLFLOW_KSERVE_SLIM
  value: {{ $deps.slim | quote }}
- name: MLFLOW_KSERVE_RESOLVE_AS_OF
  value: {{ $deps.resolveAsOf | quote }}
- name: MLFLOW_KSERVE_VERIFY
  value: {{ $deps.verify | quote }}
- name: MLFLOW_KSERVE_FETCH_RETRIES
  value: {{ $deps.fetchRetries | quote }}
- name: MLFLOW_KSERVE_LOG_FORMAT
  value: {{ $deps.logFormat | quote }}
{{- if ne .Values.server.backend "auto" }}
- name: MLFLOW_KSERVE_BACKEND
  value: {{ .Values.server.backend | quote }}
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
{{- with .Values.annotations.mayAllow }}
- name: MLFLOW_KSERVE_ANNOTATIONS_MAY_ALLOW
  value: {{ join " " . | quote }}
{{- end }}
{{- include "mlflow-kserve-runtime.annotationEnv" . }}
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
{{- with .Values.envStore }}
{{- if .uri }}
- name: MLFLOW_KSERVE_ENV_STORE
  value: {{ .uri | quote }}
{{- if .publish }}
- name: MLFLOW_KSERVE_ENV_STORE_PUBLISH
  value: "true"
{{- end }}
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
{{- with .Values.caBundle.file }}
{{- $ca := . }}
{{- range list "SSL_CERT_FILE" "REQUESTS_CA_BUNDLE" "AWS_CA_BUNDLE" "PIP_CERT" "CURL_CA_BUNDLE" }}
- name: {{ . }}
  value: {{ $ca | quote }}
{{- end }}
{{- end }}
{{- with .Values.storageContainer.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
mlflow-kserve-runtime.cacheVolume: the cache volume the runtime declares (a ClusterStorageContainer cannot
declare volumes; its container's mounts survive KServe's merge, so it mounts this one).
*/}}
{{- define "mlflow-kserve-runtime.cacheVolume" -}}
- name: mlflow-kserve-cache
  {{- if eq .Values.cache.type "hostPath" }}
  hostPath:
    path: {{ .Values.cache.hostPath }}
    type: DirectoryOrCreate
  {{- else }}
  persistentVolumeClaim:
    claimName: {{ .Values.cache.existingClaim }}
  {{- end }}
{{- end }}

{{/*
mlflow-kserve-runtime.validate: rules the JSON schema cannot express; each message names the value and the fix.
*/}}
{{- define "mlflow-kserve-runtime.validate" -}}
{{- if and .Values.cache.enabled (eq .Values.cache.type "existingPVC") (not .Values.cache.existingClaim) }}
{{- fail "cache.type=existingPVC needs cache.existingClaim (a claim of that name in every namespace that deploys models)" }}
{{- end }}
{{- if and .Values.cache.enabled (eq .Values.cache.type "hostPath") (not .Values.cache.hostPath) }}
{{- fail "cache.type=hostPath needs cache.hostPath (a directory on every node)" }}
{{- end }}
{{- if and .Values.dependencies.privateIndex.existingSecret (not .Values.dependencies.privateIndex.host) }}
{{- fail "dependencies.privateIndex.existingSecret needs dependencies.privateIndex.host (e.g. pypi.corp.example/simple)" }}
{{- end }}
{{- if and (eq .Values.dependencies.installer "pip") .Values.dependencies.slim }}
{{- fail "dependencies.slim needs dependencies.installer=uv" }}
{{- end }}
{{- if and .Values.envStore.publish (not .Values.envStore.uri) }}
{{- fail "envStore.publish needs envStore.uri" }}
{{- end }}
{{- if not .Values.runtime.modelFormatVersions }}
{{- fail "runtime.modelFormatVersions is empty: list the MLflow major versions to serve (\"2\", \"3\")" }}
{{- end }}
{{- end }}
