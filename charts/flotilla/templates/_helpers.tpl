{{/* Names, labels and the operator's RBAC rules, shared by the templates. */}}

{{- define "flotilla.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's name when it contains the chart's name, else "<release>-flotilla": release
"flotilla" gets kustomize's names (ClusterRole flotilla, ServiceAccount flotilla ...).
*/}}
{{- define "flotilla.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "flotilla.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "flotilla.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The operator's ServiceAccount, as the bindings name it. */}}
{{- define "flotilla.subjects" -}}
- kind: ServiceAccount
  name: {{ include "flotilla.serviceAccountName" . }}
  namespace: {{ .Release.Namespace }}
{{- end }}

{{/* The metrics Service: flotilla-metrics for release "flotilla", as config/prometheus names it. */}}
{{- define "flotilla.metricsServiceName" -}}
{{- printf "%s-metrics" (include "flotilla.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The fixed name of the policy ConfigMap (kustomize's carries a hash instead). */}}
{{- define "flotilla.policyName" -}}
{{- printf "%s-policy" (include "flotilla.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The policy file's text as the ConfigMap holds it: the chart's copy of config/manager/policy.yaml
unless overridden, ending in one newline. checksum/policy is its sha256.
*/}}
{{- define "flotilla.policy" -}}
{{- $text := .Files.Get "files/policy.yaml" }}
{{- if and .Values.policy (kindIs "string" .Values.policy) }}
{{- $text = .Values.policy }}
{{- else if .Values.policy }}
{{- $text = toYaml .Values.policy }}
{{- end }}
{{- regexReplaceAll `\n*\z` $text "" }}
{{ end }}

{{/*
The leader Lease: the operator's default name (flotilla-leader) for the release's default
names, else one of the release's own, so that two releases in one namespace do not share it.
*/}}
{{- define "flotilla.leaseName" -}}
{{- printf "%s-leader" (include "flotilla.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "flotilla.selectorLabels" -}}
app.kubernetes.io/name: {{ include "flotilla.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "flotilla.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "flotilla.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
The rules of config/rbac/role.yaml. With "namespaced" true, those a RoleBinding can grant in a
watched namespace: all but reading DatabaseClasses and CRDs, which are cluster-scoped (see
"flotilla.databaseClassRules").
*/}}
{{- define "flotilla.rules" -}}
# The API it serves: read specs, write status only (never a Microservice's spec).
- apiGroups: [flotilla.dev]
  resources: {{ ternary "[microservices]" "[microservices, databaseclasses]" .namespaced }}
  verbs: [get, list, watch]
- apiGroups: [flotilla.dev]
  resources: [microservices/status]
  verbs: [get, patch, update]
# Only to add and remove the database finalizer (metadata); the spec is never written.
- apiGroups: [flotilla.dev]
  resources: [microservices]
  verbs: [patch]
# Owner references with blockOwnerDeletion need this where OwnerReferencesPermissionEnforcement is on.
- apiGroups: [flotilla.dev]
  resources: [microservices/finalizers]
  verbs: [update]
# The children.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [services, serviceaccounts]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies, ingresses]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [get, list, watch, create, patch, update, delete]
# Databases: the embedded StatefulSet, its credentials and binding Secrets, and its volume claim.
- apiGroups: [apps]
  resources: [statefulsets]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch, update, delete]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [get, patch, delete]
# Events about Microservices.
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- if not .namespaced }}
# Which custom kinds are served (database claims, Gateway API routes): names only are kept.
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
{{- end }}
{{- end }}

{{- define "flotilla.databaseClassRules" -}}
- apiGroups: [flotilla.dev]
  resources: [databaseclasses]
  verbs: [get, list, watch]
- apiGroups: [apiextensions.k8s.io]
  resources: [customresourcedefinitions]
  verbs: [get, list, watch]
{{- end }}
