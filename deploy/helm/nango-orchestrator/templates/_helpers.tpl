{{/* Names ------------------------------------------------------------------------------------ */}}

{{- define "nango.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nango.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<component>", kept within 63 characters. Call with (list $ "api"). */}}
{{- define "nango.componentName" -}}
{{- $root := index . 0 -}}
{{- $component := index . 1 -}}
{{- printf "%s-%s" (include "nango.fullname" $root | trunc (sub 62 (len $component) | int) | trimSuffix "-") $component -}}
{{- end -}}

{{- define "nango.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nango.selectorLabels" -}}
app.kubernetes.io/name: {{ include "nango.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "nango.labels" -}}
helm.sh/chart: {{ include "nango.chart" . }}
{{ include "nango.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: nango-orchestrator
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels of one component. Call with (list $ "api"). */}}
{{- define "nango.componentLabels" -}}
{{- $root := index . 0 -}}
{{ include "nango.labels" $root }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "nango.componentSelectorLabels" -}}
{{- $root := index . 0 -}}
{{ include "nango.selectorLabels" $root }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{/* metadata.annotations (indented for metadata, with its own leading newline): (list $ $extra). */}}
{{- define "nango.annotations" -}}
{{- $root := index . 0 -}}
{{- $all := merge (dict) (index . 1 | default dict) ($root.Values.commonAnnotations | default dict) -}}
{{- with $all }}
  annotations:
    {{- toYaml . | nindent 4 }}
{{- end }}
{{- end -}}

{{- define "nango.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "nango.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "nango.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}
{{- end -}}

{{/*
Full name a dependency chart gives its objects, with the same rule the three subcharts use
(temporal, bitnami postgresql and minio all follow Helm's scaffold): fullnameOverride, else the
release name when it contains the chart name, else "<release>-<chart name>".
Call with (list $ "temporal").
*/}}
{{- define "nango.dependencyFullname" -}}
{{- $root := index . 0 -}}
{{- $chart := index . 1 -}}
{{- $values := index $root.Values $chart | default dict -}}
{{- if $values.fullnameOverride -}}
{{- $values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default $chart $values.nameOverride -}}
{{- if contains $name $root.Release.Name -}}
{{- $root.Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" $root.Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Addresses: the bundled subchart's service when it is enabled, the configured one otherwise. */}}

{{- define "nango.temporalAddress" -}}
{{- if .Values.temporal.enabled -}}
{{- $fullname := include "nango.dependencyFullname" (list . "temporal") -}}
{{- printf "%s-frontend:7233" ($fullname | trunc 54 | trimSuffix "-") -}}
{{- else -}}
{{- required "config.temporal.address is required (or temporal.enabled=true)" .Values.config.temporal.address -}}
{{- end -}}
{{- end -}}

{{- define "nango.minioEndpoint" -}}
{{- if .Values.minio.enabled -}}
{{- printf "%s:9000" (include "nango.dependencyFullname" (list . "minio")) -}}
{{- else -}}
{{- required "config.minio.endpoint is required (or minio.enabled=true)" .Values.config.minio.endpoint -}}
{{- end -}}
{{- end -}}

{{/* "url" when the DSN comes whole from a Secret, "parts" when the chart builds it. */}}
{{- define "nango.databaseMode" -}}
{{- if .Values.postgresql.enabled -}}
parts
{{- else if and .Values.existingSecret .Values.existingSecretKeys.databaseUrl -}}
url
{{- else if and (not .Values.existingSecret) .Values.config.database.url -}}
url
{{- else -}}
parts
{{- end -}}
{{- end -}}

{{/* DATABASE_URL built from the parts, without the password (that is DATABASE_PASSWORD). */}}
{{- define "nango.databaseUrl" -}}
{{- $db := .Values.config.database -}}
{{- $host := $db.host -}}
{{- $port := $db.port | int -}}
{{- $user := $db.user -}}
{{- $name := $db.name -}}
{{- if .Values.postgresql.enabled -}}
{{- $host = include "nango.dependencyFullname" (list . "postgresql") -}}
{{- $port = 5432 -}}
{{- $user = dig "auth" "username" "nango" .Values.postgresql -}}
{{- $name = dig "auth" "database" "nango" .Values.postgresql -}}
{{- end -}}
{{- $url := printf "postgresql://%s@%s:%d/%s" (urlquery $user) (required "config.database.host is required" $host) $port (urlquery $name) -}}
{{- $query := list -}}
{{- if and $db.sslmode (not .Values.postgresql.enabled) -}}
{{- $query = append $query (printf "sslmode=%s" $db.sslmode) -}}
{{- end -}}
{{- if and $db.sslrootcert (not .Values.postgresql.enabled) -}}
{{- $query = append $query (printf "sslrootcert=%s" (urlquery $db.sslrootcert)) -}}
{{- end -}}
{{- with $query -}}
{{- $url = printf "%s?%s" $url (join "&" .) -}}
{{- end -}}
{{- $url -}}
{{- end -}}

{{- define "nango.publicUrl" -}}
{{- if .Values.config.publicUrl -}}
{{- .Values.config.publicUrl -}}
{{- else if and .Values.ingress.enabled .Values.ingress.hosts -}}
{{- $host := (first .Values.ingress.hosts).host -}}
{{- printf "%s://%s" (ternary "https" "http" (gt (len .Values.ingress.tls) 0)) $host -}}
{{- end -}}
{{- end -}}

{{/* Non-secret settings: the ConfigMap's data (shared by the migrations' hook copy). */}}
{{- define "nango.configData" -}}
{{- $c := .Values.config -}}
LOG_LEVEL: {{ $c.logLevel | quote }}
METRICS_ENABLED: {{ $c.metricsEnabled | toString | quote }}
RECORDS_RETENTION_DAYS: {{ $c.retention.recordsDays | toString | quote }}
JOBS_RETENTION_DAYS: {{ $c.retention.jobsDays | toString | quote }}
WEBHOOKS_RETENTION_DAYS: {{ $c.retention.webhooksDays | toString | quote }}
PUBLIC_URL: {{ include "nango.publicUrl" . | quote }}
EGRESS_ALLOW: {{ (($c.egress | default dict).allow | default "") | quote }}
TEMPORAL_ADDRESS: {{ include "nango.temporalAddress" . | quote }}
TEMPORAL_NAMESPACE: {{ $c.temporal.namespace | quote }}
TEMPORAL_TLS: {{ $c.temporal.tls | toString | quote }}
TEMPORAL_TLS_CERT: {{ $c.temporal.tlsCertFile | quote }}
TEMPORAL_TLS_KEY: {{ $c.temporal.tlsKeyFile | quote }}
TEMPORAL_TLS_CA: {{ $c.temporal.tlsCaFile | quote }}
TEMPORAL_TLS_SERVER_NAME: {{ $c.temporal.tlsServerName | quote }}
TEMPORAL_API_KEY_FILE: {{ $c.temporal.apiKeyFile | quote }}
TEMPORAL_REGISTER_SEARCH_ATTRIBUTES: {{ $c.temporal.registerSearchAttributes | toString | quote }}
TASK_QUEUE_PREFIX: {{ $c.temporal.taskQueuePrefix | quote }}
TEMPORAL_UI_URL: {{ $c.temporal.uiUrl | quote }}
{{- if eq (include "nango.databaseMode" .) "parts" }}
DATABASE_URL: {{ include "nango.databaseUrl" . | quote }}
{{- end }}
DATABASE_POOL_MIN: {{ $c.database.poolMin | toString | quote }}
DATABASE_POOL_MAX: {{ $c.database.poolMax | toString | quote }}
MINIO_ENDPOINT: {{ include "nango.minioEndpoint" . | quote }}
MINIO_BUCKET: {{ $c.minio.bucket | quote }}
MINIO_SECURE: {{ and $c.minio.secure (not .Values.minio.enabled) | toString | quote }}
MINIO_REGION: {{ $c.minio.region | quote }}
BUNDLE_CACHE_DIR: {{ $c.bundleCacheDir | quote }}
BUNDLE_MAX_BYTES: {{ $c.bundles.maxBytes | int64 | toString | quote }}
BUNDLE_MAX_UNPACKED_BYTES: {{ $c.bundles.maxUnpackedBytes | int64 | toString | quote }}
BUNDLE_MAX_FILES: {{ $c.bundles.maxFiles | toString | quote }}
BUNDLE_MAX_RATIO: {{ $c.bundles.maxRatio | toString | quote }}
API_HOST: "0.0.0.0"
API_PORT: {{ $c.api.port | toString | quote }}
API_RETRY_AFTER_S: {{ $c.api.retryAfterSeconds | toString | quote }}
TRUSTED_PROXIES: {{ $c.api.trustedProxies | join "," | quote }}
SESSION_COOKIE_SECURE: {{ $c.api.sessionCookieSecure | toString | quote }}
STARTUP_WAIT_MAX_S: {{ $c.startupWaitMaxSeconds | toString | quote }}
PROVIDERS_FILE: {{ $c.providersFile | default "" | quote }}
SECRET_KEY_GRACE_S: {{ $c.api.secretKeyGraceSeconds | toString | quote }}
RECONCILE_INTERVAL_S: {{ $c.api.reconcileIntervalSeconds | toString | quote }}
TOKEN_REFRESH_INTERVAL_S: {{ $c.api.tokenRefreshIntervalSeconds | toString | quote }}
RECONCILE_CONCURRENCY: {{ $c.api.reconcileConcurrency | toString | quote }}
WORKER_HEALTH_PORT: {{ $c.worker.healthPort | toString | quote }}
WORKER_HEALTH_HOST: {{ $c.worker.healthHost | quote }}
WORKER_TASK_QUEUES: {{ $c.worker.taskQueues | quote }}
WORKER_MAX_CONCURRENT_SYNCS: {{ $c.worker.maxConcurrentSyncs | toString | quote }}
WORKER_MAX_CONCURRENT_ACTIONS: {{ $c.worker.maxConcurrentActions | toString | quote }}
WORKER_MAX_CONCURRENT_WEBHOOKS: {{ $c.worker.maxConcurrentWebhooks | toString | quote }}
WORKER_MAX_CONCURRENT_EVENTS: {{ $c.worker.maxConcurrentEvents | toString | quote }}
WORKER_MAX_CONCURRENT_PER_ENVIRONMENT: {{ $c.worker.maxConcurrentPerEnvironment | toString | quote }}
WORKER_SHUTDOWN_GRACE_S: {{ $c.worker.shutdownGraceSeconds | toString | quote }}
RUNNER_MEMORY_MB: {{ $c.runner.memoryMb | toString | quote }}
RUNNER_SYNC_TIMEOUT_S: {{ $c.runner.syncTimeoutSeconds | toString | quote }}
RUNNER_ACTION_TIMEOUT_S: {{ $c.runner.actionTimeoutSeconds | toString | quote }}
RUNNER_WEBHOOK_TIMEOUT_S: {{ $c.runner.webhookTimeoutSeconds | toString | quote }}
RUNNER_EVENT_TIMEOUT_S: {{ $c.runner.eventTimeoutSeconds | toString | quote }}
RUNNER_HEARTBEAT_TIMEOUT_S: {{ $c.runner.heartbeatTimeoutSeconds | toString | quote }}
RUNNER_CPU_SECONDS: {{ $c.runner.cpuSeconds | toString | quote }}
RUNNER_FRAME_TIMEOUT_S: {{ $c.runner.frameTimeoutSeconds | toString | quote }}
RUNNER_WARM_CHILDREN: {{ $c.runner.warmChildren | toString | quote }}
RUNNER_ISOLATION: {{ $c.runner.isolation | quote }}
RUNNER_REQUIRE_ISOLATION: {{ $c.runner.requireIsolation | toString | quote }}
RUNNER_TMP_SIZE_MB: {{ $c.runner.tmpSizeMb | toString | quote }}
RUNNER_SHM_SIZE_MB: {{ $c.runner.shmSizeMb | toString | quote }}
RUNNER_FILE_SIZE_MB: {{ $c.runner.fileSizeMb | toString | quote }}
RUNNER_PIDS_CGROUP: {{ $c.runner.pidsCgroup | toString | quote }}
RUNNER_SANDBOX_PROC: {{ $c.runner.sandboxProc | quote }}
RUNNER_CHILD_NICE: {{ $c.runner.childNice | toString | quote }}
RUNNER_FORK_SERVER: {{ $c.runner.forkServer | toString | quote }}
RUNNER_MAX_LOG_LINES: {{ $c.runner.maxLogLines | toString | quote }}
RUNNER_MAX_LOG_BYTES: {{ $c.runner.maxLogBytes | toString | quote }}
RUNNER_MAX_RPC_IN_FLIGHT: {{ $c.runner.maxRpcInFlight | toString | quote }}
RUNNER_MAX_RECORDS_PER_BATCH: {{ $c.runner.maxRecordsPerBatch | toString | quote }}
RUNNER_MAX_RECORD_BYTES: {{ $c.runner.maxRecordBytes | toString | quote }}
{{- end -}}

{{/*
The encryption key: from values, else the one already in the release's Secret (lookup), else a new
one, but only on install and only when the operator asked for it (generateEncryptionKey). Anything
else fails the render: an offline render (helm template, Argo CD) cannot look the old key up, and a
silently new key makes every stored credential unreadable (issue 17).
*/}}
{{- define "nango.encryptionKey" -}}
{{- if .Values.encryptionKey -}}
{{- .Values.encryptionKey -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" .Release.Namespace (include "nango.fullname" .) -}}
{{- if and $existing $existing.data (hasKey $existing.data "ENCRYPTION_KEY") -}}
{{- index $existing.data "ENCRYPTION_KEY" | b64dec -}}
{{- else if and .Release.IsInstall .Values.generateEncryptionKey -}}
{{- randBytes 32 -}}
{{- else -}}
{{- fail (printf "encryptionKey is not set and the key in Secret %s/%s could not be read (an upgrade, or an offline render such as helm template or Argo CD). Set encryptionKey to the key in use (kubectl -n %s get secret %s -o jsonpath='{.data.ENCRYPTION_KEY}' | base64 -d) or use existingSecret; only on a first install may generateEncryptionKey=true generate one" .Release.Namespace (include "nango.fullname" .) .Release.Namespace (include "nango.fullname" .)) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Secret settings as EnvVar entries with secretKeyRef. Each one names its Secret: the chart's,
existingSecret, or the bundled subchart's. Call with
(dict "root" $ "secret" "<chart secret name>" "only" (list "DATABASE_URL" ...)) — "only" limits the
list (the migrations need the database only, the worker no API-only secret); omit it for all.
The optional ones (DASHBOARD_PASSWORD, ADMIN_SECRET_KEY: empty disables their feature) are
referenced with optional: true, so a Secret without the key leaves the setting at its default.
*/}}
{{- define "nango.secretEnv" -}}
{{- $root := .root -}}
{{- $v := $root.Values -}}
{{- $own := .secret -}}
{{- $only := .only | default (concat (include "nango.workerSecretNames" $root | fromJsonArray) (include "nango.apiOnlySecretNames" $root | fromJsonArray)) -}}
{{- $refs := list -}}
{{- /* ENCRYPTION_KEY */ -}}
{{- if $v.existingSecret -}}
{{- $refs = append $refs (list "ENCRYPTION_KEY" $v.existingSecret $v.existingSecretKeys.encryptionKey) -}}
{{- else -}}
{{- $refs = append $refs (list "ENCRYPTION_KEY" $own "ENCRYPTION_KEY") -}}
{{- end -}}
{{- /* ENCRYPTION_KEY_PREVIOUS: optional, set only while the key is rotated */ -}}
{{- if $v.existingSecret -}}
{{- with $v.existingSecretKeys.previousEncryptionKey -}}
{{- $refs = append $refs (list "ENCRYPTION_KEY_PREVIOUS" $v.existingSecret . true) -}}
{{- end -}}
{{- else -}}
{{- $refs = append $refs (list "ENCRYPTION_KEY_PREVIOUS" $own "ENCRYPTION_KEY_PREVIOUS" true) -}}
{{- end -}}
{{- /* DATABASE_URL (url mode) or DATABASE_PASSWORD (parts mode) */ -}}
{{- if $v.postgresql.enabled -}}
{{- $pgSecret := dig "auth" "existingSecret" "" $v.postgresql | default (include "nango.dependencyFullname" (list $root "postgresql")) -}}
{{- $pgKey := dig "auth" "secretKeys" "userPasswordKey" "password" $v.postgresql -}}
{{- $refs = append $refs (list "DATABASE_PASSWORD" $pgSecret $pgKey) -}}
{{- else if eq (include "nango.databaseMode" $root) "url" -}}
{{- if $v.existingSecret -}}
{{- $refs = append $refs (list "DATABASE_URL" $v.existingSecret $v.existingSecretKeys.databaseUrl) -}}
{{- else -}}
{{- $refs = append $refs (list "DATABASE_URL" $own "DATABASE_URL") -}}
{{- end -}}
{{- else if $v.existingSecret -}}
{{- $refs = append $refs (list "DATABASE_PASSWORD" $v.existingSecret $v.existingSecretKeys.databasePassword) -}}
{{- else if $v.config.database.password -}}
{{- $refs = append $refs (list "DATABASE_PASSWORD" $own "DATABASE_PASSWORD") -}}
{{- end -}}
{{- /* MINIO_ACCESS_KEY / MINIO_SECRET_KEY */ -}}
{{- if $v.minio.enabled -}}
{{- $minioSecret := $v.minio.existingSecret | default (include "nango.dependencyFullname" (list $root "minio")) -}}
{{- $refs = append $refs (list "MINIO_ACCESS_KEY" $minioSecret "rootUser") -}}
{{- $refs = append $refs (list "MINIO_SECRET_KEY" $minioSecret "rootPassword") -}}
{{- else if $v.existingSecret -}}
{{- $refs = append $refs (list "MINIO_ACCESS_KEY" $v.existingSecret $v.existingSecretKeys.minioAccessKey) -}}
{{- $refs = append $refs (list "MINIO_SECRET_KEY" $v.existingSecret $v.existingSecretKeys.minioSecretKey) -}}
{{- else -}}
{{- if $v.config.minio.accessKey -}}
{{- $refs = append $refs (list "MINIO_ACCESS_KEY" $own "MINIO_ACCESS_KEY") -}}
{{- end -}}
{{- if $v.config.minio.secretKey -}}
{{- $refs = append $refs (list "MINIO_SECRET_KEY" $own "MINIO_SECRET_KEY") -}}
{{- end -}}
{{- end -}}
{{- /* DASHBOARD_PASSWORD / ADMIN_SECRET_KEY: optional */ -}}
{{- if $v.existingSecret -}}
{{- with $v.existingSecretKeys.dashboardPassword -}}
{{- $refs = append $refs (list "DASHBOARD_PASSWORD" $v.existingSecret . true) -}}
{{- end -}}
{{- with $v.existingSecretKeys.adminSecretKey -}}
{{- $refs = append $refs (list "ADMIN_SECRET_KEY" $v.existingSecret . true) -}}
{{- end -}}
{{- else -}}
{{- $refs = append $refs (list "DASHBOARD_PASSWORD" $own "DASHBOARD_PASSWORD" true) -}}
{{- $refs = append $refs (list "ADMIN_SECRET_KEY" $own "ADMIN_SECRET_KEY" true) -}}
{{- end -}}
{{- range $refs }}
{{- if has (index . 0) $only }}
- name: {{ index . 0 }}
  valueFrom:
    secretKeyRef:
      name: {{ index . 1 | quote }}
      key: {{ index . 2 | quote }}
      {{- if gt (len .) 3 }}
      optional: true
      {{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/*
OpenTelemetry variables of one component's container, as EnvVar entries: only when
tracing.otlpEndpoint is set (otherwise nothing, and the process sets up no tracing). The SDK reads
them itself; they are not Settings. Call with (list $ "api").
*/}}
{{- define "nango.tracingEnv" -}}
{{- $root := index . 0 -}}
{{- $t := $root.Values.tracing -}}
{{- if $t.otlpEndpoint }}
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ $t.otlpEndpoint | quote }}
- name: OTEL_SERVICE_NAME
  value: {{ printf "%s-%s" $t.serviceName (index . 1) | quote }}
{{- with $t.resourceAttributes }}
{{- $pairs := list }}
{{- range $k, $v := . }}
{{- $pairs = append $pairs (printf "%s=%s" $k $v) }}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $pairs | quote }}
{{- end }}
{{- with $t.headersSecret.name }}
- name: OTEL_EXPORTER_OTLP_HEADERS
  valueFrom:
    secretKeyRef:
      name: {{ . | quote }}
      key: {{ $t.headersSecret.key | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Secret settings every pod of the platform reads (a JSON list, for nango.secretEnv's "only"). */}}
{{- define "nango.workerSecretNames" -}}
{{- list "ENCRYPTION_KEY" "ENCRYPTION_KEY_PREVIOUS" "DATABASE_URL" "DATABASE_PASSWORD" "MINIO_ACCESS_KEY" "MINIO_SECRET_KEY" | toJson -}}
{{- end -}}

{{/* Secret settings only the API reads: the dashboard login and the admin API. */}}
{{- define "nango.apiOnlySecretNames" -}}
{{- list "DASHBOARD_PASSWORD" "ADMIN_SECRET_KEY" | toJson -}}
{{- end -}}

{{/* stringData of the chart's own Secret (not rendered with existingSecret). */}}
{{- define "nango.secretData" -}}
{{- $v := .Values -}}
{{- if eq (include "nango.databaseMode" .) "url" }}
DATABASE_URL: {{ $v.config.database.url | quote }}
{{- else if and $v.config.database.password (not $v.postgresql.enabled) }}
DATABASE_PASSWORD: {{ $v.config.database.password | quote }}
{{- end }}
{{- if not $v.minio.enabled }}
{{- with $v.config.minio.accessKey }}
MINIO_ACCESS_KEY: {{ . | quote }}
{{- end }}
{{- with $v.config.minio.secretKey }}
MINIO_SECRET_KEY: {{ . | quote }}
{{- end }}
{{- end }}
{{- with $v.previousEncryptionKey }}
ENCRYPTION_KEY_PREVIOUS: {{ . | quote }}
{{- end }}
{{- with $v.config.api.dashboardPassword }}
DASHBOARD_PASSWORD: {{ . | quote }}
{{- end }}
{{- with $v.config.api.adminSecretKey }}
ADMIN_SECRET_KEY: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* Value combinations the schema cannot express; included by the ConfigMap. */}}
{{- define "nango.validate" -}}
{{- $c := .Values.config -}}
{{- if le (int .Values.worker.terminationGracePeriodSeconds) (int $c.worker.shutdownGraceSeconds) -}}
{{- fail (printf "worker.terminationGracePeriodSeconds (%d) must exceed config.worker.shutdownGraceSeconds (%d): Kubernetes would kill the worker while it drains" (int .Values.worker.terminationGracePeriodSeconds) (int $c.worker.shutdownGraceSeconds)) -}}
{{- end -}}
{{- if eq $c.runner.isolation "process" -}}
{{- fail "config.runner.isolation=process runs scripts without the sandbox, which the workers refuse (RUNNER_ALLOW_UNSANDBOXED is for local development and the chart never sets it; the deprecated requireIsolation cannot lift this)" -}}
{{- end -}}
{{- end -}}

{{/* Volumes every pod mounts: the root filesystem is read-only. */}}
{{- define "nango.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.config.tmpSizeLimit }}
- name: bundle-cache
  emptyDir:
    sizeLimit: {{ .Values.config.bundleCacheSizeLimit }}
{{- with .Values.extraVolumes }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "nango.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
- name: bundle-cache
  mountPath: {{ .Values.config.bundleCacheDir }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Pod template annotations that roll the pods when the configuration changes. */}}
{{- define "nango.checksums" -}}
checksum/config: {{ include "nango.configData" . | sha256sum }}
{{- if not .Values.existingSecret }}
checksum/secret: {{ print (include "nango.secretData" .) .Values.encryptionKey | sha256sum }}
{{- end }}
{{- end -}}

{{/* Where the migrations hook runs: after install when a bundled dependency must come up first. */}}
{{- define "nango.migrationsHook" -}}
{{- if or .Values.postgresql.enabled .Values.temporal.enabled -}}
post-install,pre-upgrade
{{- else -}}
pre-install,pre-upgrade
{{- end -}}
{{- end -}}
