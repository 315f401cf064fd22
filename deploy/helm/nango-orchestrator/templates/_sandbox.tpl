{{/*
The worker container's securityContext: worker.securityContext, with the chart's Localhost
seccomp/AppArmor profiles in place of Unconfined where sandboxProfiles selects them.
*/}}
{{- define "nango.workerSecurityContext" -}}
{{- $sc := deepCopy .Values.worker.securityContext -}}
{{- $p := .Values.sandboxProfiles -}}
{{- if $p.seccomp }}
{{- $_ := set $sc "seccompProfile" (dict "type" "Localhost" "localhostProfile" $p.seccompProfileName) }}
{{- end }}
{{- if $p.appArmor }}
{{- $_ := set $sc "appArmorProfile" (dict "type" "Localhost" "localhostProfile" $p.appArmorProfileName) }}
{{- end }}
{{- toYaml $sc }}
{{- end -}}

{{/* The AppArmor profile as shipped, under the name the values choose. */}}
{{- define "nango.appArmorProfile" -}}
{{- .Files.Get "files/worker-sandbox-apparmor" | replace "nango-worker-sandbox" .Values.sandboxProfiles.appArmorProfileName -}}
{{- end -}}
