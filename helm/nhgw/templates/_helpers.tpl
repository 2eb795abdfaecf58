{{/* Names */}}
{{- define "nhgw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nhgw.fullname" -}}
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

{{/* Derived names stay within 63 characters whatever the release is called. */}}
{{- define "nhgw.suffixed" -}}
{{- $root := index . 0 -}}
{{- $suffix := index . 1 -}}
{{- printf "%s-%s" (include "nhgw.fullname" $root | trunc (int (sub 62 (len $suffix))) | trimSuffix "-") $suffix -}}
{{- end -}}

{{- define "nhgw.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nhgw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "nhgw.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels: common ones on every object; selector labels take a component. */}}
{{- define "nhgw.labels" -}}
helm.sh/chart: {{ include "nhgw.chart" . }}
app.kubernetes.io/name: {{ include "nhgw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "nhgw.selectorLabels" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ include "nhgw.name" $root }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "nhgw.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* Sizing */}}

{{/* The gateway's CPU request in millicores: resources.requests.cpu when given, else gateway.cpu.
     Accepts 2, "2", 1.5, "1500m". */}}
{{- define "nhgw.cpuMillis" -}}
{{- $cpu := .Values.gateway.cpu -}}
{{- with .Values.resources -}}{{- with .requests -}}{{- with .cpu -}}{{- $cpu = . -}}{{- end -}}{{- end -}}{{- end -}}
{{- $s := toString $cpu -}}
{{- if hasSuffix "m" $s -}}
{{- trimSuffix "m" $s | int -}}
{{- else -}}
{{- mulf (float64 $s) 1000 | ceil | int -}}
{{- end -}}
{{- end -}}

{{/* Worker processes: gateway.workers, else one per whole CPU requested (at least 1). */}}
{{- define "nhgw.workers" -}}
{{- if gt (int .Values.gateway.workers) 0 -}}
{{- int .Values.gateway.workers -}}
{{- else -}}
{{- max 1 (div (add (include "nhgw.cpuMillis" . | int) 999) 1000) -}}
{{- end -}}
{{- end -}}

{{/* Sessions closed per second per worker while draining: drain.rate, else the expected sessions
     of a worker spread over 80 % of the drain deadline. */}}
{{- define "nhgw.drainRate" -}}
{{- if gt (int .Values.drain.rate) 0 -}}
{{- int .Values.drain.rate -}}
{{- else -}}
{{- $workers := include "nhgw.workers" . | int -}}
{{- $perWorker := div (add (int .Values.sizing.expectedSessionsPerPod) (sub $workers 1)) $workers -}}
{{- $spread := max 1 (div (mul (int .Values.drain.timeoutSeconds) 4) 5) -}}
{{- max 1 (div (add $perWorker (sub $spread 1)) $spread) -}}
{{- end -}}
{{- end -}}

{{/* terminationGracePeriodSeconds: longer than the preStop sleep, the drain deadline and the 5 s
     after it in which nhgw's master still waits for its workers (README.md "Drain"). */}}
{{- define "nhgw.gracePeriod" -}}
{{- $min := add (int .Values.drain.preStopSleepSeconds) (int .Values.drain.timeoutSeconds) 5 -}}
{{- $set := .Values.drain.terminationGracePeriodSeconds -}}
{{- if kindIs "invalid" $set -}}
{{- add $min (max 1 (sub (int .Values.drain.graceMarginSeconds) 5)) -}}
{{- else if le (int $set) $min -}}
{{- fail (printf "drain.terminationGracePeriodSeconds (%d) must exceed drain.preStopSleepSeconds + drain.timeoutSeconds + 5 (%d): the kubelet would kill the gateway mid-drain" (int $set) $min) -}}
{{- else -}}
{{- int $set -}}
{{- end -}}
{{- end -}}

{{/* Memory request in MiB from bench/RESULTS.md's per-session figures. */}}
{{- define "nhgw.memoryRequestMiB" -}}
{{- $s := .Values.sizing -}}
{{- $bytes := div (mul (int $s.expectedSessionsPerPod) (add (int $s.userBytesPerSession) (int $s.kernelBytesPerSession)) (add 100 (int $s.headroomPercent))) 100 -}}
{{- add (int $s.baseMemoryMiB) (div (add $bytes 1048575) 1048576) -}}
{{- end -}}

{{- define "nhgw.resources" -}}
{{- if .Values.resources -}}
{{- toYaml .Values.resources -}}
{{- else -}}
{{- $mem := include "nhgw.memoryRequestMiB" . | int -}}
requests:
  cpu: {{ printf "%dm" (include "nhgw.cpuMillis" . | int) | quote }}
  memory: {{ printf "%dMi" $mem }}
limits:
  memory: {{ printf "%dMi" (div (mul $mem (int .Values.sizing.limitFactorPercent)) 100) }}
{{- end -}}
{{- end -}}

{{/* Certificates: where each Secret is mounted. */}}
{{- define "nhgw.tlsDir" -}}/etc/nhgw/tls{{- end -}}

{{- define "nhgw.serverSecret" -}}
{{- .Values.tls.server.secretName | default (include "nhgw.suffixed" (list . "tls")) -}}
{{- end -}}

{{- define "nhgw.deviceCASecret" -}}
{{- .Values.tls.deviceCA.secretName | default (include "nhgw.suffixed" (list . "device-ca")) -}}
{{- end -}}

{{/* The options the chart owns; gateway.extraConfig may not set them. */}}
{{- define "nhgw.ownedOptions" -}}
listen admin-listen workers drain-rate drain-timeout cert key device-ca crl ticket-key-file expired-certs link nats-url link-prefix link-timeout redis log-level log-format config
{{- end -}}

{{/* A config-file value: whole numbers without an exponent (YAML numbers arrive as float64). */}}
{{- define "nhgw.confValue" -}}
{{- if and (kindIs "float64" .) (eq (floor .) .) -}}
{{- printf "%.0f" . -}}
{{- else -}}
{{- . -}}
{{- end -}}
{{- end -}}
