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

{{- define "airflow-knative.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
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
{{- include "airflow-knative.componentName" (list . "metadata") -}}
{{- else -}}
{{- required "database.externalSecret is required when postgresql.enabled is false: name a Secret with key \"connection\" holding the SQLAlchemy URL of your database" .Values.database.externalSecret -}}
{{- end -}}
{{- end -}}

{{/*
A secret value that is generated once and then kept: on upgrade the value is
read back from the Secret already in the cluster, so upgrades never rotate the
Fernet key (which would make stored connections unreadable) or passwords.
Returns the base64 data. Args: dict "ctx" $ "name" secretName "key" key "value" freshValue
*/}}
{{- define "airflow-knative.keptSecretData" -}}
{{- $existing := lookup "v1" "Secret" .ctx.Release.Namespace .name -}}
{{- if and $existing $existing.data (hasKey $existing.data .key) -}}
{{- index $existing.data .key -}}
{{- else -}}
{{- .value | b64enc -}}
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

{{/* Container security context; the subset Knative accepts, so workers use it too. */}}
{{- define "airflow-knative.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 50000
runAsGroup: 0
allowPrivilegeEscalation: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Logging settings shared by Airflow components and workers. */}}
{{- define "airflow-knative.loggingEnv" -}}
- name: AIRFLOW__LOGGING__BASE_LOG_FOLDER
  value: /opt/airflow/logs
{{- if .Values.logs.remote.enabled }}
- name: AIRFLOW__LOGGING__REMOTE_LOGGING
  value: "True"
- name: AIRFLOW__LOGGING__REMOTE_BASE_LOG_FOLDER
  value: {{ required "logs.remote.baseLogFolder is required when logs.remote.enabled is true (e.g. s3://bucket/airflow-logs)" .Values.logs.remote.baseLogFolder | quote }}
- name: AIRFLOW__LOGGING__REMOTE_LOG_CONN_ID
  value: {{ .Values.logs.remote.connId | quote }}
{{- end }}
{{- end -}}

{{/*
Environment of every Airflow component (not of workers: they get no database
connection, Fernet key or JWT secret). Secrets come from Secrets, never values.
*/}}
{{- define "airflow-knative.airflowEnv" -}}
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
{{- with .Values.airflow.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Init container that holds a component until `airflow db migrate` has run. */}}
{{- define "airflow-knative.waitForMigrations" -}}
- name: wait-for-migrations
  image: {{ include "airflow-knative.image" . }}
  imagePullPolicy: {{ .Values.image.pullPolicy }}
  command: ["airflow", "db", "check-migrations", "--migration-wait-timeout", "600"]
  env:
    {{- include "airflow-knative.airflowEnv" . | nindent 4 }}
  securityContext:
    {{- include "airflow-knative.containerSecurityContext" . | nindent 4 }}
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
{{- $ := index . 0 -}}
{{- $name := index . 1 -}}
{{- $generated := omit (index . 2) "tasks" -}}
{{- $override := get $.Values.workers.overrides $name | default dict -}}
{{- $settings := mergeOverwrite (deepCopy $.Values.workers.defaults) (deepCopy $generated) (deepCopy $override) -}}
{{- $min := $settings.minScale | int -}}
{{- $max := $settings.maxScale | int -}}
{{- if and (gt $max 0) (gt $min $max) -}}
{{- fail (printf "worker service %s: minScale %d is above maxScale %d (from workers.defaults, the DAG's executor_config or workers.overrides.%s): Knative refuses it" $name $min $max $name) -}}
{{- end -}}
{{- if gt (int $settings.timeoutSeconds) (int $.Values.workers.maxTimeoutSeconds) -}}
{{- fail (printf "worker service %s: timeoutSeconds %d (execution_timeout or executor_config of its task) exceeds workers.maxTimeoutSeconds %d, Knative's max-revision-timeout-seconds: lower it, or raise both that cluster setting and workers.maxTimeoutSeconds" $name (int $settings.timeoutSeconds) (int $.Values.workers.maxTimeoutSeconds)) -}}
{{- end -}}
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
{{- end -}}

{{- define "airflow-knative.workerVolumes" -}}
- name: worker-secret
  secret:
    secretName: {{ include "airflow-knative.workerSecretName" . }}
    items:
      - key: secret
        path: secret
{{ include "airflow-knative.logsVolume" . }}
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
  resources:
    {{- toYaml $.Values.gateway.resources | nindent 4 }}
  securityContext:
    {{- include "airflow-knative.containerSecurityContext" $ | nindent 4 }}
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
