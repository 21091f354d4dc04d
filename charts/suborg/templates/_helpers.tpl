{{/* The release's full name, at most 63 characters. */}}
{{- define "suborg.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "suborg.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "suborg.labels" -}}
{{ include "suborg.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "suborg.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "suborg.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Refuses values that cannot work, with a message that says why. */}}
{{- define "suborg.validate" -}}
{{- if and (gt (int .Values.replicaCount) 1) (ne .Values.store.type "postgres") -}}
{{- fail (printf "replicaCount is %d but store.type is %q: more than one replica needs store.type=postgres (a SQLite file has a single writer)" (int .Values.replicaCount) .Values.store.type) -}}
{{- end -}}
{{- range $k, $_ := .Values.podLabels -}}
{{- if or (eq $k "app.kubernetes.io/name") (eq $k "app.kubernetes.io/instance") -}}
{{- fail (printf "podLabels sets %s, which the chart's selector uses: the Deployment would select no pods; choose another label" $k) -}}
{{- end -}}
{{- end -}}
{{- if and (eq .Values.store.type "postgres") (not .Values.store.postgres.existingSecret) -}}
{{- fail "store.type is postgres but store.postgres.existingSecret is empty: name an existing Secret holding the DSN (the DSN is never a plain value)" -}}
{{- end -}}
{{- end -}}
