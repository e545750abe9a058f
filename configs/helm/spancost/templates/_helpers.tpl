{{/* The prefix of every object: "spancost" for a release named so, else "<release>-spancost". */}}
{{- define "spancost.fullname" -}}
{{- if eq .Release.Name "spancost" -}}spancost{{- else -}}{{ printf "%s-spancost" .Release.Name | trunc 45 | trimSuffix "-" }}{{- end -}}
{{- end -}}

{{- define "spancost.labels" -}}
app.kubernetes.io/part-of: spancost
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "spancost.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "spancost.twoTier" -}}
{{- if eq .Values.mode "twoTier" -}}true{{- else if eq .Values.mode "oneTier" -}}{{- else -}}{{- fail (printf "mode: %q is neither twoTier nor oneTier" .Values.mode) -}}{{- end -}}
{{- end -}}

{{- define "spancost.dbSecret" -}}
{{- if .Values.database.existingSecret -}}{{ .Values.database.existingSecret }}{{- else if .Values.database.url -}}{{ include "spancost.fullname" . }}-db{{- else -}}{{- fail "database: give existingSecret (a Secret with the database URL) or url" -}}{{- end -}}
{{- end -}}

{{- define "spancost.dbEnv" -}}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "spancost.dbSecret" . }}
      key: {{ .Values.database.secretKey }}
{{- end -}}

{{- define "spancost.gatewayTlsSecret" -}}
{{ .Values.gateway.tls.existingSecret | default (printf "%s-gateway-tls" (include "spancost.fullname" .)) }}
{{- end -}}

{{- define "spancost.tokenSecret" -}}
{{ .Values.gateway.token.existingSecret | default (printf "%s-agents-token" (include "spancost.fullname" .)) }}
{{- end -}}

{{- define "spancost.podSecurity" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "spancost.containerSecurity" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities:
  drop: ["ALL"]
{{- end -}}

{{/* The projected service account token, mounted by hand where the API is read. */}}
{{- define "spancost.kubeApiAccess" -}}
- name: kube-api-access
  projected:
    defaultMode: 0444
    sources:
      - serviceAccountToken:
          path: token
          expirationSeconds: 3607
      - configMap:
          name: kube-root-ca.crt
          items:
            - key: ca.crt
              path: ca.crt
      - downwardAPI:
          items:
            - path: namespace
              fieldRef:
                apiVersion: v1
                fieldPath: metadata.namespace
{{- end -}}

{{/* The guard's pod spec, shared by the CronJob and the loop (dict root, name, loop). */}}
{{- define "spancost.guardPod" -}}
{{- $root := .root -}}
serviceAccountName: {{ .name }}
automountServiceAccountToken: true
securityContext:
  runAsNonRoot: true
  runAsUser: 10001
  runAsGroup: 10001
  seccompProfile:
    type: RuntimeDefault
containers:
  - name: guard
    image: {{ include "spancost.image" $root }}
    imagePullPolicy: {{ $root.Values.image.pullPolicy }}
    {{- if .loop }}
    command: ["spancost", "guard", "--interval", {{ $root.Values.guard.interval | quote }}, "--budgets", "/etc/spancost-guard/budgets.yaml", "--metrics-listen", "0.0.0.0:9465"]
    ports:
      - name: metrics
        containerPort: 9465
        protocol: TCP
    {{- else }}
    command: ["spancost", "guard", "--once", "--budgets", "/etc/spancost-guard/budgets.yaml"]
    {{- end }}
    env:
      {{- include "spancost.dbEnv" $root | nindent 6 }}
      {{- with $root.Values.guard.alertsSecret }}
      - name: PAGERDUTY_ROUTING_KEY
        valueFrom:
          secretKeyRef: {name: {{ . }}, key: pagerduty-routing-key}
      {{- end }}
      - name: SPANCOST_LOG_LEVEL
        value: info
      {{- if .loop }}
      - name: POD_NAME
        valueFrom:
          fieldRef: {fieldPath: metadata.name}
      - name: POD_NAMESPACE
        valueFrom:
          fieldRef: {fieldPath: metadata.namespace}
      - name: POD_UID
        valueFrom:
          fieldRef: {fieldPath: metadata.uid}
      {{- end }}
    resources:
      requests: {cpu: 50m, memory: 96Mi}
      limits: {memory: 256Mi}
    securityContext:
      {{- include "spancost.containerSecurity" $root | nindent 6 }}
    volumeMounts:
      - name: budgets
        mountPath: /etc/spancost-guard
        readOnly: true
volumes:
  - name: budgets
    configMap:
      name: {{ .name }}-budgets
{{- end -}}
