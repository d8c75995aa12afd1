{{- define "orion-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "orion-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "orion-operator.labels" -}}
{{ include "orion-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "orion-operator.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "orion-operator.alertSecret" -}}
{{ .Values.alerts.existingSecret | default (printf "%s-alerts" (include "orion-operator.fullname" .)) }}
{{- end -}}

{{- /*
Rules for the objects the operator works on, in each watched namespace (a Role each) or
cluster-wide (a ClusterRole). Each line is a verb the code uses; nothing is `*`.
*/ -}}
{{- define "orion-operator.namespacedRules" -}}
- apiGroups: [orion.io]
  resources: [tenants, backups, backupschedules, restores, apideployments, databasemaintenances]
  verbs: [get, list, watch, patch]
- apiGroups: [orion.io]
  resources: [backups, backupschedules]
  verbs: [create, delete]
- apiGroups: [orion.io]
  resources:
    - tenants/status
    - backups/status
    - backupschedules/status
    - restores/status
    - apideployments/status
    - databasemaintenances/status
  verbs: [patch]
# blockOwnerDeletion on owned objects needs this where OwnerReferencesPermissionEnforcement is on.
- apiGroups: [orion.io]
  resources: [apideployments/finalizers, backups/finalizers, backupschedules/finalizers, restores/finalizers, tenants/finalizers]
  verbs: [update]
# Backup and restore runs, and the pods whose termination messages carry their failures.
- apiGroups: [batch]
  resources: [jobs]
  verbs: [get, list, watch, create]
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
# The API an ApiDeployment owns.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch]
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch]
# Database URLs, S3 keys and tokens named by the objects' secretRefs.
- apiGroups: [""]
  resources: [secrets]
  verbs: [get]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
- apiGroups: [kopf.dev]
  resources: [kopfpeerings]
  verbs: [list, watch, patch]
{{- end -}}
