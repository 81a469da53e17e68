{{/*
Names. Every object name is cut to 63 characters (a DNS label); component
suffixes are added to a full name that is cut to 40 first, so the longest
suffix ("-dag-processor", "-create-user-<revision>") still fits whole.
*/}}
{{- define "airflow-knative.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "airflow-knative.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<component>", e.g. include "airflow-knative.componentName" (list $ "api-server") */}}
{{- define "airflow-knative.componentName" -}}
{{- printf "%s-%s" (include "airflow-knative.fullname" (index . 0)) (index . 1) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "airflow-knative.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "airflow-knative.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "airflow-knative.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Selector labels of a component: include "airflow-knative.selectorLabels" (list $ "scheduler") */}}
{{- define "airflow-knative.selectorLabels" -}}
{{- $ := index . 0 -}}
app.kubernetes.io/name: {{ include "airflow-knative.name" $ }}
app.kubernetes.io/instance: {{ $.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* Standard labels of a component: include "airflow-knative.labels" (list $ "scheduler") */}}
{{- define "airflow-knative.labels" -}}
{{- $ := index . 0 -}}
{{ include "airflow-knative.selectorLabels" . }}
app.kubernetes.io/part-of: airflow-knative
app.kubernetes.io/version: {{ $.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $.Release.Service }}
helm.sh/chart: {{ include "airflow-knative.chart" $ }}
{{- end -}}

{{/*
An image reference from {repository, tag, digest}: a digest (sha256:...) wins
over the tag, so a release can be pinned to exactly the image that was tested.
Args: list imageValues defaultTag
*/}}
{{- define "airflow-knative.imageRef" -}}
{{- $image := index . 0 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default (index . 1) ($image.tag | toString)) -}}
{{- end -}}
{{- end -}}

{{- define "airflow-knative.image" -}}
{{- include "airflow-knative.imageRef" (list .Values.image .Chart.AppVersion) -}}
{{- end -}}

{{/* In-cluster URLs. */}}
{{- define "airflow-knative.apiServerUrl" -}}
{{- printf "http://%s.%s.svc.%s:%d" (include "airflow-knative.componentName" (list . "api-server")) .Release.Namespace .Values.clusterDomain (int .Values.apiServer.port) -}}
{{- end -}}

{{- define "airflow-knative.executionApiUrl" -}}
{{- printf "%s/execution/" (include "airflow-knative.apiServerUrl" .) -}}
{{- end -}}

{{/* URL the routing table gives a worker service; Knative cluster-local services and plain Services both answer here. */}}
{{- define "airflow-knative.serviceUrl" -}}
{{- $ := index . 0 -}}
{{- printf "http://%s.%s.svc.%s" (index . 1) $.Release.Namespace $.Values.clusterDomain -}}
{{- end -}}

{{/* Secret names. */}}
{{- define "airflow-knative.airflowSecretName" -}}
{{- default (include "airflow-knative.componentName" (list . "airflow")) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "airflow-knative.workerSecretName" -}}
{{- default (include "airflow-knative.componentName" (list . "worker-secret")) .Values.secrets.workerExistingSecret -}}
{{- end -}}

{{- define "airflow-knative.adminSecretName" -}}
{{- default (include "airflow-knative.componentName" (list . "admin")) .Values.auth.admin.existingSecret -}}
{{- end -}}

{{- define "airflow-knative.metadataSecretName" -}}
{{- if .Values.postgresql.enabled -}}
{{- default (include "airflow-knative.componentName" (list . "metadata")) .Values.postgresql.existingSecret -}}
{{- else -}}
{{- .Values.database.externalSecret -}}{{/* required with postgresql.enabled=false: check-values.yaml */}}
{{- end -}}
{{- end -}}

{{/*
A secret value that is generated once and then kept: on upgrade the value is
read back from the Secret already in the cluster, so upgrades never rotate the
Fernet key (which would make stored connections unreadable) or passwords.
A render that cannot see the cluster (helm template, Argo CD, client-side
--dry-run) cannot read it back: it fails (see airflow-knative.requireClusterForSecrets)
unless secrets.generateWithoutCluster allows a throwaway value.
Returns the base64 data. Args: dict "ctx" $ "name" secretName "key" key "value" freshValue
*/}}
{{- define "airflow-knative.keptSecretData" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .name -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) -}}
{{- index $existing.data .key -}}
{{- else -}}
{{- include "airflow-knative.requireClusterForSecrets" (dict "ctx" .ctx "name" .name "key" .key) -}}
{{- .value | b64enc -}}
{{- end -}}
{{- end -}}

{{/*
Fails a render that would generate a secret without seeing the cluster. Helm's
`lookup` answers an empty map exactly when there is no cluster to ask, while a
reachable cluster answers a list (maybe with no items) for all Secrets of a namespace.
Args: dict "ctx" $ "name" secretName "key" key
*/}}
{{- define "airflow-knative.requireClusterForSecrets" -}}
{{- if and (not .ctx.Values.secrets.generateWithoutCluster) (not (lookup "v1" "Secret" .ctx.Release.Namespace "")) -}}
{{- fail (printf "\n\nSecret %s (key %s) would be generated by a render that cannot see the cluster (helm template, Argo CD, helm install/upgrade --dry-run without =server): every such render makes new values, so applying it rotates the Fernet key, passwords and tokens.\nName Secrets you manage instead: secrets.existingSecret (keys fernet-key, jwt-secret, api-secret-key), secrets.workerExistingSecret (key secret), auth.admin.existingSecret (key password), postgresql.existingSecret (keys password, connection) or an external database (postgresql.enabled=false, database.externalSecret).\nFor a throwaway render (tests, CI, a cluster you recreate) set secrets.generateWithoutCluster=true. See docs/chart.md, \"Secrets\"." .name .key) -}}
{{- end -}}
{{- end -}}

{{/* Pod security context of the Airflow image (user airflow, uid 50000, group 0). */}}
{{- define "airflow-knative.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 50000
runAsGroup: 0
fsGroup: 0
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
Container security context; the subset Knative accepts, so workers use it too.
The root filesystem is read-only: what Airflow writes goes to /tmp (emptyDir),
the logs volume, or nowhere (airflow.cfg comes from a ConfigMap, see configVolume).
*/}}
{{- define "airflow-knative.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 50000
runAsGroup: 0
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
checkov skip annotations (https://www.checkov.io/2.Basics/Suppressing%20and%20Skipping%20Policies.html),
one per check that does not fit this product, each with its reason.
Args: list $ (list "CKV_K8S_xx=reason" ...). Renders "checkov.io/skipN: ..." lines.
*/}}
{{- define "airflow-knative.checkovSkips" -}}
{{- range $index, $skip := index . 1 }}
checkov.io/skip{{ add1 $index }}: {{ $skip | quote }}
{{- end }}
{{- end -}}

{{/* The skips every Airflow-image workload shares. Args: $ */}}
{{- define "airflow-knative.imageSkips" -}}
{{- $skips := list "CKV_K8S_15=image.pullPolicy is a value: kind needs Never (images loaded into the node); a pinned image.digest makes IfNotPresent exact" -}}
{{- if not .Values.image.digest -}}
{{- $skips = append $skips "CKV_K8S_43=image.digest pins the image by digest when set; the default tag fits an image built by make image and loaded into kind" -}}
{{- end -}}
{{- toJson $skips -}}
{{- end -}}

{{/* Skips of pods that get Airflow's own secrets as environment variables. */}}
{{- define "airflow-knative.airflowEnvSkip" -}}
CKV_K8S_35=Airflow reads its database URL, Fernet key and JWT secret from AIRFLOW__* environment variables, as in the official Airflow chart
{{- end -}}

{{/* /tmp as an emptyDir: the only writable place besides the logs volume. */}}
{{- define "airflow-knative.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmp.sizeLimit }}
{{- end -}}

{{- define "airflow-knative.tmpVolumeMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/*
airflow.cfg from a ConfigMap: the `airflow` command writes a default airflow.cfg
into AIRFLOW_HOME when none exists, which a read-only root filesystem refuses.
Every setting still comes from AIRFLOW__* environment variables.
*/}}
{{- define "airflow-knative.configVolume" -}}
- name: config
  configMap:
    name: {{ include "airflow-knative.componentName" (list . "config") }}
{{- end -}}

{{- define "airflow-knative.configVolumeMount" -}}
- name: config
  mountPath: /opt/airflow/chart-config
  readOnly: true
{{- end -}}

{{/* Volumes and mounts of every Airflow component (not workers): config, /tmp, logs. */}}
{{- define "airflow-knative.airflowVolumes" -}}
{{ include "airflow-knative.configVolume" . }}
{{ include "airflow-knative.tmpVolume" . }}
{{ include "airflow-knative.logsVolume" . }}
{{- end -}}

{{- define "airflow-knative.airflowVolumeMounts" -}}
{{ include "airflow-knative.configVolumeMount" . }}
{{ include "airflow-knative.tmpVolumeMount" . }}
- name: logs
  mountPath: /opt/airflow/logs
{{- end -}}

{{/* An `airflow jobs check` probe command for a job type (SchedulerJob, DagProcessorJob, TriggererJob). */}}
{{- define "airflow-knative.jobsCheckProbe" -}}
exec:
  command: ["airflow", "jobs", "check", "--job-type", {{ . | quote }}, "--local"]
{{- end -}}

{{/*
NetworkPolicy peers: the pods of this release with one of the given components.
Args: list $ (list "scheduler" ...)
*/}}
{{- define "airflow-knative.componentPeers" -}}
{{- $ := index . 0 -}}
- podSelector:
    matchLabels:
      app.kubernetes.io/name: {{ include "airflow-knative.name" $ }}
      app.kubernetes.io/instance: {{ $.Release.Name }}
    matchExpressions:
      - key: app.kubernetes.io/component
        operator: In
        values:
          {{- toYaml (index . 1) | nindent 10 }}
{{- end -}}

{{/*
NetworkPolicy ingress rules for Knative's data path to a revision pod. A request
to a Knative Service never comes from the caller's pod: it goes through the
networking layer's gateway (e.g. Kourier), which forwards it to the activator
(while the revision scales from zero or is buffered) or straight to the pod's
queue-proxy sidecar (8012 HTTP/1, 8013 h2c, 8112 HTTPS with system-internal-tls).
The autoscaler scrapes queue-proxy metrics on 9090. The user container itself
listens on localhost only to the queue-proxy, so no rule names its port.
*/}}
{{- define "airflow-knative.knativeIngressRules" -}}
{{- $knative := .Values.networkPolicies.knative -}}
- from:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ $knative.servingNamespace }}
      podSelector:
        matchLabels:
          app: activator
    {{- with $knative.ingressNamespaces }}
    - namespaceSelector:
        matchExpressions:
          - key: kubernetes.io/metadata.name
            operator: In
            values:
              {{- toYaml . | nindent 14 }}
    {{- end }}
  ports:
    - port: 8012
      protocol: TCP
    - port: 8013
      protocol: TCP
    - port: 8112
      protocol: TCP
- from:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: {{ $knative.servingNamespace }}
      podSelector:
        matchLabels:
          app: autoscaler
  ports:
    - port: 9090
      protocol: TCP
{{- end -}}

{{/*
Prometheus scrape annotations of a worker or gateway pod (GET /metrics on its
container port), when metrics.prometheus.scrapeAnnotations is on.
Args: list $ port
*/}}
{{- define "airflow-knative.scrapeAnnotations" -}}
{{- $ := index . 0 -}}
{{- if $.Values.metrics.prometheus.scrapeAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ index . 1 | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{/*
NetworkPolicy ingress rule that lets metrics.prometheus.networkPolicy.from
scrape a pod on its container port; nothing when that list is empty.
Args: list $ port
*/}}
{{- define "airflow-knative.scrapeIngressRule" -}}
{{- $ := index . 0 -}}
{{- $port := index . 1 -}}
{{- with $.Values.metrics.prometheus.networkPolicy.from }}
- from:
    {{- toYaml . | nindent 4 }}
  ports:
    - port: {{ $port }}
      protocol: TCP
{{- end }}
{{- end -}}

{{/* Airflow's [metrics] StatsD settings (metrics.statsd), for every Airflow component. */}}
{{- define "airflow-knative.statsdEnv" -}}
{{- if .Values.metrics.statsd.enabled }}
- name: AIRFLOW__METRICS__STATSD_ON
  value: "True"
- name: AIRFLOW__METRICS__STATSD_HOST
  value: {{ .Values.metrics.statsd.host | quote }}
- name: AIRFLOW__METRICS__STATSD_PORT
  value: {{ .Values.metrics.statsd.port | quote }}
- name: AIRFLOW__METRICS__STATSD_PREFIX
  value: {{ .Values.metrics.statsd.prefix | quote }}
{{- end }}
{{- end -}}

{{/* Logging settings shared by Airflow components and workers. */}}
{{- define "airflow-knative.loggingEnv" -}}
- name: AIRFLOW__LOGGING__BASE_LOG_FOLDER
  value: /opt/airflow/logs
{{- if .Values.logs.remote.enabled }}
- name: AIRFLOW__LOGGING__REMOTE_LOGGING
  value: "True"
- name: AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER
  value: {{ .Values.logs.remote.baseLogFolder | quote }}{{/* required when remote: check-values.yaml */}}
- name: AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID
  value: {{ .Values.logs.remote.connId | quote }}
{{- end }}
{{- end -}}

{{/*
Environment of every Airflow component (not of workers: they get no database
connection, Fernet key or JWT secret). Secrets come from Secrets, never values.
*/}}
{{- define "airflow-knative.airflowEnv" -}}
- name: AIRFLOW_CONFIG
  value: /opt/airflow/chart-config/airflow.cfg
- name: AIRFLOW__CORE__EXECUTOR
  value: airflow_knative.executor.KnativeExecutor
- name: AIRFLOW__CORE__AUTH_MANAGER
  value: airflow.providers.fab.auth_manager.fab_auth_manager.FabAuthManager
- name: AIRFLOW__CORE__LOAD_EXAMPLES
  value: "False"
- name: AIRFLOW__CORE__DAGS_FOLDER
  value: {{ .Values.airflow.dagsFolder | quote }}
- name: AIRFLOW__CORE__EXECUTION_API_SERVER_URL
  value: {{ include "airflow-knative.executionApiUrl" . | quote }}
- name: AIRFLOW__DATABASE__SQL_ALCHEMY_CONN
  valueFrom:
    secretKeyRef:
      name: {{ include "airflow-knative.metadataSecretName" . }}
      key: connection
- name: AIRFLOW__CORE__FERNET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "airflow-knative.airflowSecretName" . }}
      key: fernet-key
- name: AIRFLOW__API_AUTH__JWT_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "airflow-knative.airflowSecretName" . }}
      key: jwt-secret
- name: AIRFLOW__API__SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "airflow-knative.airflowSecretName" . }}
      key: api-secret-key
{{ include "airflow-knative.loggingEnv" . }}
{{- with include "airflow-knative.statsdEnv" . }}
{{ . }}
{{- end }}
{{- with .Values.airflow.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
Init container that holds a component until `airflow db migrate` has run; it
runs with the resources of the component it precedes.
Args: list $ resources
*/}}
{{- define "airflow-knative.waitForMigrations" -}}
{{- $ := index . 0 -}}
- name: wait-for-migrations
  image: {{ include "airflow-knative.image" $ }}
  imagePullPolicy: {{ $.Values.image.pullPolicy }}
  command: ["airflow", "db", "check-migrations", "--migration-wait-timeout", "600"]
  env:
    {{- include "airflow-knative.airflowEnv" $ | nindent 4 }}
  resources:
    {{- toYaml (index . 1) | nindent 4 }}
  securityContext:
    {{- include "airflow-knative.containerSecurityContext" $ | nindent 4 }}
  volumeMounts:
    {{- include "airflow-knative.airflowVolumeMounts" $ | nindent 4 }}
{{- end -}}

{{- define "airflow-knative.logsVolume" -}}
{{- if .Values.logs.persistence.enabled }}
- name: logs
  persistentVolumeClaim:
    claimName: {{ include "airflow-knative.componentName" (list . "logs") }}
{{- else }}
- name: logs
  emptyDir: {}
{{- end }}
{{- end -}}

{{- define "airflow-knative.podCommon" -}}
serviceAccountName: {{ include "airflow-knative.serviceAccountName" . }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/*
Effective settings of one worker service, as YAML: workers.overrides.<name>
wins over the DAG code (files/services.yaml), which wins over workers.defaults.
Args: list $ name generatedEntry
*/}}
{{- define "airflow-knative.workerSettings" -}}
{{- /* minScale <= maxScale and timeoutSeconds <= workers.maxTimeoutSeconds: check-values.yaml */ -}}
{{- $ := index . 0 -}}
{{- $name := index . 1 -}}
{{- $generated := omit (index . 2) "tasks" -}}
{{- $override := get $.Values.workers.overrides $name | default dict -}}
{{- $settings := mergeOverwrite (deepCopy $.Values.workers.defaults) (deepCopy $generated) (deepCopy $override) -}}
{{- toYaml $settings -}}
{{- end -}}

{{/* Tasks one worker pod runs at once: containerConcurrency, or the autoscaling target when that is unlimited (0). */}}
{{- define "airflow-knative.workerConcurrency" -}}
{{- if gt (int .containerConcurrency) 0 -}}
{{- .containerConcurrency | int -}}
{{- else -}}
{{- .target | default 10 | int -}}
{{- end -}}
{{- end -}}

{{/* Environment of a worker: the shared secret as a file, the Execution API URL, logging. No DB, no Fernet key. */}}
{{- define "airflow-knative.workerEnv" -}}
{{- $ := index . 0 -}}
{{- $settings := index . 1 -}}
- name: AIRFLOW_CONFIG
  value: /opt/airflow/chart-config/airflow.cfg
- name: AIRFLOW_KNATIVE_SECRET_FILE
  value: /opt/airflow/secrets/worker/secret
- name: AIRFLOW_KNATIVE_EXECUTION_API_URL
  value: {{ include "airflow-knative.executionApiUrl" $ | quote }}
- name: AIRFLOW_KNATIVE_WORKER_CONCURRENCY
  value: {{ include "airflow-knative.workerConcurrency" $settings | quote }}
- name: AIRFLOW__CORE__EXECUTION_API_SERVER_URL
  value: {{ include "airflow-knative.executionApiUrl" $ | quote }}
- name: AIRFLOW__CORE__DAGS_FOLDER
  value: {{ $.Values.airflow.dagsFolder | quote }}
- name: AIRFLOW__CORE__LOAD_EXAMPLES
  value: "False"
{{ include "airflow-knative.loggingEnv" $ }}
{{- with $.Values.workers.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "airflow-knative.workerVolumeMounts" -}}
- name: worker-secret
  mountPath: /opt/airflow/secrets/worker
  readOnly: true
- name: logs
  mountPath: /opt/airflow/logs
{{ include "airflow-knative.configVolumeMount" . }}
{{ include "airflow-knative.tmpVolumeMount" . }}
{{- end -}}

{{- define "airflow-knative.workerVolumes" -}}
- name: worker-secret
  secret:
    secretName: {{ include "airflow-knative.workerSecretName" . }}
    items:
      - key: secret
        path: secret
{{ include "airflow-knative.logsVolume" . }}
{{ include "airflow-knative.configVolume" . }}
{{ include "airflow-knative.tmpVolume" . }}
{{- end -}}

{{/* The generated per-service data (files/services.yaml), as a dict. */}}
{{- define "airflow-knative.generatedServices" -}}
{{- $data := .Files.Get "files/services.yaml" | fromYaml -}}
{{- if hasKey $data "Error" -}}
{{- fail (printf "files/services.yaml does not parse (%s): run `make generate`" $data.Error) -}}
{{- end -}}
{{- toYaml (get $data "services" | default dict) -}}
{{- end -}}

{{/* The gateway container, shared by its Knative Service and its Deployment. Args: list $ knative(bool) */}}
{{- define "airflow-knative.gatewayContainer" -}}
{{- $ := index . 0 -}}
{{- $knative := index . 1 -}}
- name: gateway
  image: {{ include "airflow-knative.image" $ }}
  imagePullPolicy: {{ $.Values.image.pullPolicy }}
  command: ["airflow-knative", "gateway", "--host", "0.0.0.0"]
  env:
    - name: AIRFLOW_KNATIVE_AIRFLOW_URL
      value: {{ include "airflow-knative.apiServerUrl" $ | quote }}
    - name: AIRFLOW_KNATIVE_GATEWAY_WAIT_TIMEOUT  # ends before Knative's timeoutSeconds
      value: {{ sub (int $.Values.gateway.timeoutSeconds) 15 | quote }}
    {{- if not $knative }}
    - name: PORT
      value: {{ $.Values.gateway.port | quote }}
    {{- end }}
  ports:
    - name: {{ if $knative }}http1{{ else }}http{{ end }}
      containerPort: {{ $.Values.gateway.port }}
  readinessProbe:
    httpGet:
      path: /healthz
      {{- if not $knative }}
      port: http
      {{- end }}
    periodSeconds: 5
  livenessProbe:
    httpGet:
      path: /healthz
      {{- if not $knative }}
      port: http
      {{- end }}
    periodSeconds: 30
    timeoutSeconds: 10
    failureThreshold: 3
  resources:
    {{- toYaml $.Values.gateway.resources | nindent 4 }}
  securityContext:
    {{- include "airflow-knative.containerSecurityContext" $ | nindent 4 }}
  volumeMounts:
    {{- include "airflow-knative.tmpVolumeMount" $ | nindent 4 }}
{{- end -}}

{{/* A worker container, shared by both worker modes. Args: list $ settings knative(bool) */}}
{{- define "airflow-knative.workerContainer" -}}
{{- $ := index . 0 -}}
{{- $settings := index . 1 -}}
{{- $knative := index . 2 -}}
- name: worker
  image: {{ include "airflow-knative.image" $ }}
  imagePullPolicy: {{ $.Values.image.pullPolicy }}
  command: ["airflow-knative", "worker", "--host", "0.0.0.0"]
  env:
    {{- include "airflow-knative.workerEnv" (list $ $settings) | nindent 4 }}
    {{- if not $knative }}
    - name: PORT
      value: "8080"
    {{- end }}
  ports:
    - name: {{ if $knative }}http1{{ else }}http{{ end }}
      containerPort: 8080
  readinessProbe:
    httpGet:
      path: /readyz
      {{- if not $knative }}
      port: http
      {{- end }}
    periodSeconds: 2
  livenessProbe:
    httpGet:
      path: /healthz
      {{- if not $knative }}
      port: http
      {{- end }}
    periodSeconds: 30
    timeoutSeconds: 10
  resources:
    {{- toYaml $settings.resources | nindent 4 }}
  securityContext:
    {{- include "airflow-knative.containerSecurityContext" $ | nindent 4 }}
  volumeMounts:
    {{- include "airflow-knative.workerVolumeMounts" $ | nindent 4 }}
{{- end -}}

{{/* "dag.task, dag.task" of a generated entry, for a human-readable annotation. */}}
{{- define "airflow-knative.taskList" -}}
{{- $items := list -}}
{{- range .tasks -}}
{{- $items = append $items (printf "%s.%s" .dagId .taskId) -}}
{{- end -}}
{{- join ", " $items -}}
{{- end -}}
