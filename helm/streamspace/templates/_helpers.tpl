{{/* Names, labels and the pieces every workload of the chart shares. */}}

{{- define "streamspace.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's prefix: the release name alone when it already says streamspace. */}}
{{- define "streamspace.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "streamspace.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "streamspace.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: streamspace
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component: include with (list $ "operator"). */}}
{{- define "streamspace.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "streamspace.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "streamspace.componentLabels" -}}
{{ include "streamspace.labels" (index . 0) }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "streamspace.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{- define "streamspace.operatorServiceAccount" -}}{{ include "streamspace.fullname" . }}-operator{{- end -}}
{{- define "streamspace.facadeServiceAccount" -}}{{ include "streamspace.fullname" . }}-facade{{- end -}}
{{- define "streamspace.facadeService" -}}{{ include "streamspace.fullname" . }}-api{{- end -}}
{{- define "streamspace.authSecret" -}}
{{- .Values.auth.existingSecret | default (printf "%s-secrets" (include "streamspace.fullname" .)) -}}
{{- end -}}
{{- define "streamspace.databaseSecret" -}}
{{- .Values.database.existingSecret | default (printf "%s-postgresql" (include "streamspace.fullname" .)) -}}
{{- end -}}
{{- define "streamspace.databaseKey" -}}
{{- if .Values.database.existingSecret }}{{ .Values.database.key }}{{ else }}DATABASE_URL{{ end -}}
{{- end -}}

{{/* The restricted Pod Security Standard, for every pod of the chart. */}}
{{- define "streamspace.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "streamspace.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "streamspace.imagePullSecrets" -}}
{{- with .Values.image.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Environment of both processes: the settings ConfigMap, then the values' extraEnv. */}}
{{- define "streamspace.envFrom" -}}
envFrom:
  - configMapRef:
      name: {{ include "streamspace.fullname" . }}-config
{{- end -}}

{{- define "streamspace.databaseEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "streamspace.databaseSecret" . }}
      key: {{ include "streamspace.databaseKey" . }}
{{- end -}}

{{/* The gate's URL: set, or the facade Service's /auth/session when sessions get Ingresses. */}}
{{- define "streamspace.authUrl" -}}
{{- if .Values.sessions.authUrl -}}
{{- .Values.sessions.authUrl -}}
{{- else if .Values.sessions.ingressDomain -}}
{{- printf "http://%s.%s.svc:%d/auth/session" (include "streamspace.facadeService" .) .Release.Namespace (int .Values.facade.service.port) -}}
{{- end -}}
{{- end -}}

{{/* The operator's instances as JSON, for fromJsonArray: [{"name": "", "namespaces": []}] for
one operator, else operator.shards once checked: allNamespaces on (the facade serves every
shard's Sessions), shard names unique, each namespace in one shard only, the release namespace
(where the API creates Sessions) in one of them. */}}
{{- define "streamspace.operatorInstances" -}}
{{- $shards := .Values.operator.shards -}}
{{- if not $shards -}}
[{"name": "", "namespaces": []}]
{{- else -}}
{{- if not .Values.allNamespaces -}}
{{- fail "operator.shards needs allNamespaces: true: the facade serves the Sessions of every shard" -}}
{{- end -}}
{{- $names := dict -}}
{{- $owner := dict -}}
{{- range $shards -}}
{{- if hasKey $names .name -}}
{{- fail (printf "operator.shards: two shards are named %q" .name) -}}
{{- end -}}
{{- $_ := set $names .name true -}}
{{- $shard := .name -}}
{{- range .namespaces -}}
{{- if hasKey $owner . -}}
{{- fail (printf "operator.shards: namespace %q is in shard %q and again in shard %q; a namespace belongs to one shard only (two operators would both reconcile its Sessions)" . (get $owner .) $shard) -}}
{{- end -}}
{{- $_ := set $owner . $shard -}}
{{- end -}}
{{- end -}}
{{- if not (hasKey $owner .Release.Namespace) -}}
{{- fail (printf "operator.shards: no shard serves the release namespace %q, where the API creates Sessions; add it to one shard" .Release.Namespace) -}}
{{- end -}}
{{- toJson $shards -}}
{{- end -}}
{{- end -}}

{{/* The name of an operator instance (its Deployment and ServiceAccount): (list $ shard). */}}
{{- define "streamspace.operatorName" -}}
{{- $root := index . 0 -}}
{{- $shard := index . 1 -}}
{{- include "streamspace.operatorServiceAccount" $root }}{{ with $shard }}-{{ . }}{{ end -}}
{{- end -}}

{{/* The users of every operator ServiceAccount, comma-separated (admission trusts them). */}}
{{- define "streamspace.operatorUsers" -}}
{{- $root := . -}}
{{- $users := list -}}
{{- range fromJsonArray (include "streamspace.operatorInstances" .) -}}
{{- $users = append $users (printf "system:serviceaccount:%s:%s" $root.Release.Namespace (include "streamspace.operatorName" (list $root .name))) -}}
{{- end -}}
{{- join "," $users -}}
{{- end -}}
