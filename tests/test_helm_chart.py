"""The Helm chart and the container image, checked offline.

The chart is rendered with Helm's own engine (helm-python-sdk binds the Helm SDK; no helm binary,
no cluster) for the default values and the value sets in deploy/helm/nango-orchestrator/ci/,
linted strict, and every rendered object is validated against the Kubernetes schemas
(kubernetes-validate, schemas bundled). The environment the chart gives the pods is checked name
by name against orchestrator.config.settings.Settings.

The bundled dependencies (Temporal, PostgreSQL, MinIO subcharts) cannot be downloaded here: Helm
renders only the parent chart's templates when a declared dependency is absent from charts/, which
is what these tests check for the "bundled" value set (the parent's addresses and secret
references switch to the subcharts' in-cluster names).
"""

from __future__ import annotations

import base64
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.config.settings import Settings

helm = pytest.importorskip("helm_python", reason="helm-python-sdk is not installed")
kubernetes_validate = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")

ROOT = Path(__file__).resolve().parents[1]
CHART = ROOT / "deploy" / "helm" / "nango-orchestrator"
RELEASE = "nango"
NAMESPACE = "nango"
# The oldest Kubernetes the chart supports (Chart.yaml kubeVersion) and the newest bundled schema.
KUBE_VERSIONS = ("1.30.0", kubernetes_validate.latest_version())

# "default": the chart's defaults plus the one choice a first install must make about the key.
VALUE_SETS: dict[str, dict[str, Any]] = {"default": {"generateEncryptionKey": True}} | {
    path.stem.removesuffix("-values"): yaml.safe_load(path.read_text())
    for path in sorted((CHART / "ci").glob("*-values.yaml"))
}

SETTINGS = {name.upper() for name in Settings.model_fields}
# Settings the chart leaves to the application's default on purpose, each with its reason.
LEFT_TO_DEFAULTS = {
    "BUNDLE_DIR": "the chart always uses MinIO/S3; a local directory store cannot be shared by pods",
    "RUNNER_ALLOW_UNSANDBOXED": "local development only: the chart never runs scripts without the sandbox",
    "WORKER_STICKY_TIMEOUT_S": "Temporal's own default; the tests shorten it so a killed worker's runs go on sooner",
}
# Secret settings: they must never appear in the ConfigMap.
SECRET_SETTINGS = {"DATABASE_PASSWORD", "ENCRYPTION_KEY", "ENCRYPTION_KEY_PREVIOUS", "MINIO_ACCESS_KEY",
                   "MINIO_SECRET_KEY",
                   "DASHBOARD_PASSWORD", "ADMIN_SECRET_KEY"}
# Secret settings only the API reads (dashboard login, admin API): the worker, which runs user
# scripts, must not hold them. Optional: a Secret without the key leaves the feature off.
API_ONLY_SECRETS = {"DASHBOARD_PASSWORD", "ADMIN_SECRET_KEY"}
# Variables the OpenTelemetry SDK reads itself (tracing.*): not Settings, set only with tracing.otlpEndpoint.
OTEL_VARIABLES = {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_HEADERS",
                  "OTEL_RESOURCE_ATTRIBUTES"}

_rendered: dict[tuple[str, str], dict[str, str]] = {}


def render(value_set: str, release: str = RELEASE) -> dict[str, str]:
    key = (value_set, release)
    if key not in _rendered:
        with helm.Chart.load(str(CHART)) as chart:
            _rendered[key] = chart.render(VALUE_SETS[value_set], name=release, namespace=NAMESPACE,
                                          is_install=True)
    return _rendered[key]


def objects(value_set: str, release: str = RELEASE) -> list[dict[str, Any]]:
    docs = []
    for name, text in render(value_set, release).items():
        if name.endswith("NOTES.txt"):
            continue
        docs.extend(doc for doc in yaml.safe_load_all(text) if doc)
    return docs


def find(docs: list[dict[str, Any]], kind: str, suffix: str = "") -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].endswith(suffix)
               and "helm.sh/hook" not in (d["metadata"].get("annotations") or {})]
    assert len(matches) == 1, f"expected one {kind} *{suffix}, got {[d['metadata']['name'] for d in matches]}"
    return matches[0]


def hook(docs: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    matches = [d for d in docs if d["kind"] == kind and "helm.sh/hook" in (d["metadata"].get("annotations") or {})]
    assert len(matches) == 1, f"expected one {kind} hook"
    return matches[0]


def container_env(docs: list[dict[str, Any]], pod_spec: dict[str, Any]) -> dict[str, Any]:
    """Every environment variable of the pod's first container: name -> value or valueFrom."""
    container = pod_spec["containers"][0]
    env: dict[str, Any] = {}
    for source in container.get("envFrom", []):
        cm_name = source["configMapRef"]["name"]
        cms = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == cm_name]
        assert cms, f"envFrom names ConfigMap {cm_name}, which the chart does not render"
        env.update(cms[0]["data"])
    for var in container.get("env", []):
        assert var["name"] not in env, f"{var['name']} is set twice"
        env[var["name"]] = var.get("value", var.get("valueFrom"))
    return env


def workload(docs: list[dict[str, Any]], component: str) -> dict[str, Any]:
    if component == "migrations":
        return hook(docs, "Job")["spec"]["template"]["spec"]
    return find(docs, "Deployment", f"-{component}")["spec"]["template"]["spec"]


# The Prometheus Operator's kinds are CRDs, absent from the Kubernetes schemas: the fields the chart
# uses are checked against this schema, written from the operator's API reference (monitoring.coreos.com/v1).
_DURATION = {"type": "string", "minLength": 1,  # Prometheus' durations: units largest first, each once
             "pattern": "^(0|([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?)$"}
_ENDPOINT = {"type": "object", "additionalProperties": False, "required": ["port"], "properties": {
    "port": {"type": "string", "minLength": 1}, "path": {"type": "string", "pattern": "^/"},
    "interval": _DURATION, "scrapeTimeout": _DURATION}}
_STRINGS = {"type": "array", "items": {"type": "string"}}
MONITOR_SCHEMA = {
    "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"enum": ["ServiceMonitor", "PodMonitor"]},
        "spec": {"type": "object", "additionalProperties": False, "required": ["selector"], "properties": {
            "selector": {"type": "object", "additionalProperties": False, "properties": {
                "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}}}},
            "namespaceSelector": {"type": "object", "additionalProperties": False, "properties": {
                "any": {"type": "boolean"}, "matchNames": _STRINGS}},
            "podTargetLabels": _STRINGS,
            "endpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT},
            "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": _ENDPOINT}}}}}
MONITOR_KINDS = {"ServiceMonitor", "PodMonitor"}


def validate_object(doc: dict[str, Any], version: str) -> None:
    """Kubernetes' own schemas, or MONITOR_SCHEMA (and the Kubernetes object metadata) for a monitor."""
    if doc["kind"] in MONITOR_KINDS:
        import jsonschema

        jsonschema.validate(doc, MONITOR_SCHEMA)
        meta = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": doc["metadata"]}
        kubernetes_validate.validate(meta, version, strict=True)
        endpoints = "endpoints" if doc["kind"] == "ServiceMonitor" else "podMetricsEndpoints"
        assert set(doc["spec"]) & {"endpoints", "podMetricsEndpoints"} == {endpoints}, doc["metadata"]["name"]
        return
    kubernetes_validate.validate(doc, version, strict=True)


# --- rendering, schema, lint, Kubernetes schemas --------------------------------------------------

def test_value_sets_cover_the_issue() -> None:
    assert {"default", "external", "bundled", "existing-secret", "ingress-hpa"} <= set(VALUE_SETS)


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_values_match_the_schema(value_set: str) -> None:
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(VALUE_SETS[value_set])


@pytest.mark.parametrize("bad", [
    {"api": {"replicaCount": "three"}},
    {"unknownTopLevel": True},
    {"config": {"database": {"sslmode": "sometimes"}}},
    {"encryptionKey": "not-32-bytes"},
    {"image": {"pullPolicy": "Sometimes"}},
    {"config": {"runner": {"isolation": "gvisor"}}},
    {"config": {"runner": {"isolation": "unshare"}}},  # removed: it gave scripts the host's filesystem
    {"config": {"api": {"adminSecretKey": "short"}}},
    {"config": {"api": {"secretKeyGraceSeconds": 31 * 86400}}},
    {"config": {"worker": {"maxConcurrentPerEnvironment": -2}}},  # -1 means no per-environment limit
])
def test_schema_rejects_bad_values(bad: dict[str, Any]) -> None:
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema(bad)


def test_lint_strict(tmp_path: Path) -> None:
    # The declared subcharts are not downloaded (no network): lint says so and nothing else.
    report = helm.lint(str(CHART), strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
    assert set(report["errors"]) <= {"chart directory is missing these dependencies: temporal,postgresql,minio"}
    # A copy without the dependency list lints clean, strict, for every value set.
    copy = tmp_path / CHART.name
    shutil.copytree(CHART, copy)
    meta = yaml.safe_load((copy / "Chart.yaml").read_text())
    meta.pop("dependencies")
    (copy / "Chart.yaml").write_text(yaml.safe_dump(meta))
    for name, values in VALUE_SETS.items():
        report = helm.lint(str(copy), values, strict=True, namespace=NAMESPACE, kube_version="v1.30.0")
        assert report["errors"] == [], (name, report)
        assert all(m["severity"] < 2 for m in report["messages"]), (name, report["messages"])


def test_dependencies_are_optional_and_off() -> None:
    meta = yaml.safe_load((CHART / "Chart.yaml").read_text())
    deps = {d["name"]: d for d in meta["dependencies"]}
    assert deps["temporal"]["repository"] == "https://go.temporal.io/helm-charts"
    assert deps["minio"]["repository"] == "https://charts.min.io/"
    assert "bitnami" in deps["postgresql"]["repository"]
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())
    for name, dep in deps.items():
        assert dep["condition"] == f"{name}.enabled"
        assert defaults[name]["enabled"] is False


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_manifests_are_valid_kubernetes(value_set: str) -> None:
    docs = objects(value_set)
    assert docs
    for doc in docs:
        assert doc["metadata"].get("namespace") == NAMESPACE, doc["metadata"]["name"]
        for version in KUBE_VERSIONS:
            try:
                validate_object(doc, version)
            except kubernetes_validate.ValidationError as exc:
                path = ".".join(str(p) for p in exc.path)
                pytest.fail(f"{value_set}: {doc['kind']}/{doc['metadata']['name']} invalid for {version} at "
                            f"{path}: {exc.message}")


@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_expected_objects(value_set: str) -> None:
    docs = objects(value_set)
    kinds = sorted(d["kind"] for d in docs)
    for kind in ("Deployment", "Service", "ConfigMap", "PodDisruptionBudget", "NetworkPolicy", "Job"):
        assert kind in kinds, (value_set, kind)
    assert kinds.count("Deployment") == 2
    find(docs, "Service", "-api")
    values = VALUE_SETS[value_set]
    ingress_on = values.get("ingress", {}).get("enabled", False)
    hpa_on = values.get("worker", {}).get("autoscaling", {}).get("enabled", False)
    assert ("Ingress" in kinds) == ingress_on
    assert ("HorizontalPodAutoscaler" in kinds) == hpa_on
    worker = find(docs, "Deployment", "-worker")
    assert ("replicas" in worker["spec"]) != hpa_on, "replicas belong to the HPA when it is on"
    assert ("ServiceAccount" in kinds) == values.get("serviceAccount", {}).get("create", True)
    own_secrets = [d for d in docs if d["kind"] == "Secret" and "helm.sh/hook" not in d["metadata"].get(
        "annotations", {})]
    assert len(own_secrets) == (0 if values.get("existingSecret") else 1)


# --- environment: chart vs Settings ---------------------------------------------------------------

@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_every_variable_the_chart_sets_is_a_setting(value_set: str) -> None:
    docs = objects(value_set)
    for component in ("api", "worker", "migrations"):
        unknown = set(container_env(docs, workload(docs, component))) - SETTINGS - OTEL_VARIABLES
        assert not unknown, f"{value_set}/{component} sets variables Settings does not read: {sorted(unknown)}"
    for cm in (d for d in docs if d["kind"] == "ConfigMap"):
        assert not set(cm["data"]) & SECRET_SETTINGS, f"secret settings in ConfigMap {cm['metadata']['name']}"


@pytest.mark.parametrize("value_set", ["external", "bundled", "existing-secret"])
def test_every_setting_reaches_api_and_worker(value_set: str) -> None:
    assert set(LEFT_TO_DEFAULTS) <= SETTINGS, "the allowlist names a setting that no longer exists"
    assert API_ONLY_SECRETS <= SECRET_SETTINGS <= SETTINGS, "a secret setting that no longer exists"
    docs = objects(value_set)
    # One DSN source: a whole URL from a Secret, or a URL without password plus DATABASE_PASSWORD.
    url_mode = value_set == "existing-secret"
    expected = SETTINGS - set(LEFT_TO_DEFAULTS) - ({"DATABASE_PASSWORD"} if url_mode else set())
    for component in ("api", "worker"):
        env = container_env(docs, workload(docs, component))
        wanted = expected - (API_ONLY_SECRETS if component == "worker" else set())
        missing = wanted - set(env)
        assert not missing, f"{value_set}/{component} leaves settings unset: {sorted(missing)}"
        if component == "worker":
            assert not API_ONLY_SECRETS & set(env), "the worker gets API-only secrets"
        for name in API_ONLY_SECRETS & set(env):
            assert env[name]["secretKeyRef"]["optional"] is True, f"{name} must be optional"


def test_new_settings_are_passed_through() -> None:
    docs = objects("external")
    api_env = container_env(docs, workload(docs, "api"))
    worker = workload(docs, "worker")
    env = container_env(docs, worker)
    assert (env["SECRET_KEY_GRACE_S"], env["RECONCILE_INTERVAL_S"]) == ("3600", "120")
    assert (env["WORKER_MAX_CONCURRENT_PER_ENVIRONMENT"], env["WORKER_SHUTDOWN_GRACE_S"]) == ("8", "90")
    assert (env["RUNNER_HEARTBEAT_TIMEOUT_S"], env["RUNNER_CPU_SECONDS"]) == ("60", "3600")
    assert (env["RUNNER_WARM_CHILDREN"], env["RUNNER_ISOLATION"]) == ("4", "bwrap")
    secret = find(docs, "Secret")
    assert secret["stringData"]["DASHBOARD_PASSWORD"] == "d4shb0ard-pass"
    assert secret["stringData"]["ADMIN_SECRET_KEY"] == "0123456789abcdef0123456789abcdef"
    assert api_env["ADMIN_SECRET_KEY"] == {"secretKeyRef": {"name": secret["metadata"]["name"],
                                                            "key": "ADMIN_SECRET_KEY", "optional": True}}
    # The worker drains for WORKER_SHUTDOWN_GRACE_S; Kubernetes must not kill it before.
    for value_set in VALUE_SETS:
        docs = objects(value_set)
        worker = workload(docs, "worker")
        grace = int(container_env(docs, worker)["WORKER_SHUTDOWN_GRACE_S"])
        assert worker["terminationGracePeriodSeconds"] > grace, value_set
    # Defaults: empty optional secrets stay out of the chart's Secret (the features are off).
    default_secret = find(objects("default"), "Secret")["stringData"]
    assert not API_ONLY_SECRETS & set(default_secret)
    assert container_env(objects("default"), workload(objects("default"), "api"))["RUNNER_ISOLATION"] == ""


@pytest.mark.parametrize(("values", "message"), [
    ({"worker": {"terminationGracePeriodSeconds": 30}}, "must exceed config.worker.shutdownGraceSeconds"),
    ({"config": {"runner": {"isolation": "process"}}}, "runs scripts without the sandbox"),
    ({"config": {"runner": {"isolation": "process", "requireIsolation": False}}}, "runs scripts without the sandbox"),
])
def test_inconsistent_values_are_refused(values: dict[str, Any], message: str) -> None:
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmRenderError, match=message):
        chart.render({"generateEncryptionKey": True} | values, name=RELEASE, namespace=NAMESPACE, is_install=True)


def test_migrations_get_database_and_temporal() -> None:
    for value_set in VALUE_SETS:
        env = container_env(objects(value_set), workload(objects(value_set), "migrations"))
        assert {"DATABASE_URL", "TEMPORAL_ADDRESS", "TEMPORAL_NAMESPACE", "TEMPORAL_TLS"} <= set(env), value_set
        assert "ENCRYPTION_KEY" not in env, "migrations need no encryption key"


def test_external_settings_are_passed_through() -> None:
    docs = objects("external")
    env = container_env(docs, workload(docs, "worker"))
    assert env["TEMPORAL_ADDRESS"] == "temporal-frontend.temporal.svc.cluster.local:7233"
    assert env["TEMPORAL_NAMESPACE"] == "nango-prod"
    assert env["TEMPORAL_TLS"] == "true"
    assert env["TASK_QUEUE_PREFIX"] == "prod-"
    assert env["DATABASE_URL"] == "postgresql://nango@nango-db.abc123.eu-west-1.rds.amazonaws.com:5432/nango" \
        "?sslmode=require"
    assert env["MINIO_ENDPOINT"] == "s3.eu-west-1.amazonaws.com"
    assert env["MINIO_SECURE"] == "true"
    assert env["PUBLIC_URL"] == "https://nango.example.com"
    secret = find(docs, "Secret")
    assert secret["stringData"]["DATABASE_PASSWORD"] == "s3cr3t/p@ss"
    assert env["DATABASE_PASSWORD"] == {"secretKeyRef": {"name": secret["metadata"]["name"],
                                                         "key": "DATABASE_PASSWORD"}}
    # The migrations hook gets its own copy of the password, created before it.
    migration_secret = hook(docs, "Secret")
    assert migration_secret["stringData"] == {"DATABASE_PASSWORD": "s3cr3t/p@ss"}
    # Restricted egress still allows DNS.
    policy = find(docs, "NetworkPolicy", "-worker")
    assert "Egress" in policy["spec"]["policyTypes"]
    assert any(p.get("port") == 53 for rule in policy["spec"]["egress"] for p in rule.get("ports", []))


@pytest.mark.parametrize("release", ["nango", "temporal-prod"])
def test_bundled_dependencies_use_in_cluster_names(release: str) -> None:
    docs = objects("bundled", release)
    env = container_env(docs, workload(docs, "api"))
    # The subcharts name their objects "<release>-<chart>", or "<release>" when it contains the name.
    temporal = release if "temporal" in release else f"{release}-temporal"
    assert env["TEMPORAL_ADDRESS"] == f"{temporal}-frontend:7233"
    assert env["DATABASE_URL"] == f"postgresql://nango@{release}-postgresql:5432/nango"
    assert env["DATABASE_PASSWORD"] == {"secretKeyRef": {"name": f"{release}-postgresql", "key": "password"}}
    assert env["MINIO_ENDPOINT"] == f"{release}-minio:9000"
    assert env["MINIO_ACCESS_KEY"] == {"secretKeyRef": {"name": f"{release}-minio", "key": "rootUser"}}
    assert env["MINIO_SECRET_KEY"] == {"secretKeyRef": {"name": f"{release}-minio", "key": "rootPassword"}}
    # Bundled services do not exist before install: the migrations run after it.
    assert hook(docs, "Job")["metadata"]["annotations"]["helm.sh/hook"] == "post-install,pre-upgrade"


def test_existing_secret_is_used_for_every_secret() -> None:
    docs = objects("existing-secret")
    keys = VALUE_SETS["existing-secret"]["existingSecretKeys"]
    for component in ("api", "worker"):
        env = container_env(docs, workload(docs, component))
        refs = {name: v["secretKeyRef"] for name, v in env.items() if isinstance(v, dict)}
        expected = {
            "ENCRYPTION_KEY": {"name": "nango-platform", "key": keys["encryptionKey"]},
            "ENCRYPTION_KEY_PREVIOUS": {"name": "nango-platform", "key": "ENCRYPTION_KEY_PREVIOUS", "optional": True},
            "DATABASE_URL": {"name": "nango-platform", "key": keys["databaseUrl"]},
            "MINIO_ACCESS_KEY": {"name": "nango-platform", "key": keys["minioAccessKey"]},
            "MINIO_SECRET_KEY": {"name": "nango-platform", "key": keys["minioSecretKey"]},
        }
        if component == "api":
            expected |= {
                "DASHBOARD_PASSWORD": {"name": "nango-platform", "key": keys["dashboardPassword"], "optional": True},
                "ADMIN_SECRET_KEY": {"name": "nango-platform", "key": keys["adminSecretKey"], "optional": True},
            }
        assert refs == expected
        assert workload(docs, component)["serviceAccountName"] == "nango-platform"
    env = container_env(docs, workload(docs, "migrations"))
    assert env["DATABASE_URL"] == {"secretKeyRef": {"name": "nango-platform", "key": "database-url"}}
    assert not [d for d in docs if d["kind"] == "Secret"]


def test_default_values_generate_a_kept_encryption_key() -> None:
    docs = objects("default")
    secret = find(docs, "Secret")
    assert secret["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    assert len(base64.b64decode(secret["stringData"]["ENCRYPTION_KEY"])) == 32
    given = VALUE_SETS["external"]["encryptionKey"]
    assert find(objects("external"), "Secret")["stringData"]["ENCRYPTION_KEY"] == given


KEY = "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
OTHER_KEY = base64.b64encode(b"k" * 32).decode()


def render_as(values: dict[str, Any], *, upgrade: bool) -> dict[str, str]:
    with helm.Chart.load(str(CHART)) as chart:
        return chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=not upgrade, is_upgrade=upgrade)


@pytest.mark.parametrize(("values", "upgrade"), [
    ({}, True),                                # helm upgrade whose lookup found nothing
    ({"generateEncryptionKey": True}, True),   # generation is for installs only
    ({}, False),                               # helm template / Argo CD: offline, lookup is empty
])
def test_no_key_no_render(values: dict[str, Any], upgrade: bool) -> None:
    """Issue 17: two offline renders of an upgrade gave two keys; now a render without a key fails
    and says what to set, unless a first install asked for a generated key."""
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmRenderError) as failure:
        chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=not upgrade, is_upgrade=upgrade)
    message = str(failure.value)
    assert "encryptionKey is not set" in message
    assert "Set encryptionKey to the key in use" in message and "existingSecret" in message
    assert "get secret nango-nango-orchestrator" in message


@pytest.mark.parametrize("values", [{"encryptionKey": KEY}, {"encryptionKey": KEY, "generateEncryptionKey": True}])
def test_upgrades_with_a_key_render_the_same_key_every_time(values: dict[str, Any]) -> None:
    keys = set()
    for _ in range(2):
        docs = [d for d in yaml.safe_load_all(render_as(values, upgrade=True)[
            "nango-orchestrator/templates/secret.yaml"]) if d]
        keys.add(docs[0]["stringData"]["ENCRYPTION_KEY"])
    assert keys == {KEY}


def test_upgrade_with_an_existing_secret_needs_no_key() -> None:
    rendered = render_as(VALUE_SETS["existing-secret"], upgrade=True)
    assert not yaml.safe_load(rendered["nango-orchestrator/templates/secret.yaml"] or "null")


def test_generated_key_only_when_asked_on_install() -> None:
    first = find(objects("default"), "Secret")["stringData"]["ENCRYPTION_KEY"]
    again = render_as({"generateEncryptionKey": True}, upgrade=False)["nango-orchestrator/templates/secret.yaml"]
    assert len(base64.b64decode(first)) == 32
    assert yaml.safe_load(again)["stringData"]["ENCRYPTION_KEY"] != first  # a new one: install only


def test_previous_key_for_a_rotation() -> None:
    values = {"encryptionKey": OTHER_KEY, "previousEncryptionKey": KEY}
    rendered = render_as(values, upgrade=True)
    docs = [d for name, text in rendered.items() if not name.endswith("NOTES.txt")
            for d in yaml.safe_load_all(text) if d]
    secret = find(docs, "Secret")
    assert secret["stringData"]["ENCRYPTION_KEY_PREVIOUS"] == KEY
    assert secret["stringData"]["ENCRYPTION_KEY"] == OTHER_KEY
    for component in ("api", "worker"):
        env = container_env(docs, workload(docs, component))
        assert env["ENCRYPTION_KEY_PREVIOUS"] == {"secretKeyRef": {
            "name": secret["metadata"]["name"], "key": "ENCRYPTION_KEY_PREVIOUS", "optional": True}}
    assert "nango admin keys rotate-encryption" in rendered["nango-orchestrator/templates/NOTES.txt"]
    # Setting and removing the previous key rolls the pods (the Secret's checksum changes).
    def checksum(v: dict[str, Any]) -> str:
        text = render_as(v, upgrade=True)["nango-orchestrator/templates/api-deployment.yaml"]
        return yaml.safe_load(text)["spec"]["template"]["metadata"]["annotations"]["checksum/secret"]
    assert checksum(values) != checksum({"encryptionKey": OTHER_KEY})
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema({"previousEncryptionKey": "short"})


def test_migrations_run_before_install_against_external_services() -> None:
    docs = objects("external")
    job = hook(docs, "Job")
    annotations = job["metadata"]["annotations"]
    assert annotations["helm.sh/hook"] == "pre-install,pre-upgrade"
    assert job["spec"]["template"]["spec"]["containers"][0]["args"] == ["migrate"]
    # What the Job references exists as hooks created before it (lower weight).
    spec = job["spec"]["template"]["spec"]
    for kind, name in (("ConfigMap", spec["containers"][0]["envFrom"][0]["configMapRef"]["name"]),
                       ("ServiceAccount", spec["serviceAccountName"])):
        dep = hook(docs, kind)
        assert dep["metadata"]["name"] == name
        assert dep["metadata"]["annotations"]["helm.sh/hook"] == annotations["helm.sh/hook"]
        assert int(dep["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(annotations["helm.sh/hook-weight"])


# --- pods: commands, probes, security -------------------------------------------------------------

@pytest.mark.parametrize("value_set", list(VALUE_SETS))
def test_pods_are_non_root_read_only_and_drop_all(value_set: str) -> None:
    docs = objects(value_set)
    for component in ("api", "worker", "migrations"):
        spec = workload(docs, component)
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["runAsUser"] == 10001
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert not sc.get("privileged")
            mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
            volumes = {v["name"]: v for v in spec["volumes"]}
            assert "emptyDir" in volumes[mounts["/tmp"]]
            if component != "migrations":
                cache_dir = container_env(docs, spec)["BUNDLE_CACHE_DIR"]
                assert "emptyDir" in volumes[mounts[cache_dir]]
            assert "resources" in container and container["resources"]["requests"]


def test_worker_sandbox_settings() -> None:
    docs = objects("default")
    spec = workload(docs, "worker")
    env = container_env(docs, spec)
    assert env["RUNNER_REQUIRE_ISOLATION"] == "true"
    assert "RUNNER_ALLOW_UNSANDBOXED" not in env  # never in a cluster: the worker fails closed
    assert env["RUNNER_ISOLATION"] in ("", "bwrap")
    assert (env["RUNNER_TMP_SIZE_MB"], env["RUNNER_SHM_SIZE_MB"], env["RUNNER_FILE_SIZE_MB"]) == ("64", "16", "64")
    sc = spec["containers"][0]["securityContext"]
    # bubblewrap's unprivileged user namespaces: allowed by seccomp/AppArmor, no capability added.
    assert sc["seccompProfile"] == {"type": "Unconfined"}
    assert sc["appArmorProfile"] == {"type": "Unconfined"}
    assert "add" not in sc["capabilities"] and sc["capabilities"]["drop"] == ["ALL"]
    # what tests/test_worker_nonroot.py runs the sandbox as: uid 10001, no privilege
    assert sc["allowPrivilegeEscalation"] is False and not sc.get("privileged") and sc["runAsNonRoot"]
    assert spec["securityContext"]["runAsUser"] == 10001 and spec["securityContext"]["runAsNonRoot"]
    # The API keeps the runtime's default seccomp profile.
    api = workload(docs, "api")
    assert api["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert "seccompProfile" not in api["containers"][0]["securityContext"]


def test_commands_and_probes() -> None:
    docs = objects("default")
    api, worker = workload(docs, "api"), workload(docs, "worker")
    api_c, worker_c = api["containers"][0], worker["containers"][0]
    assert api_c["args"] == ["server"] and worker_c["args"] == ["worker"]
    env = container_env(docs, api)
    assert {p["name"]: p["containerPort"] for p in api_c["ports"]} == {"http": int(env["API_PORT"])}
    assert env["API_HOST"] == "0.0.0.0"
    # readiness is PostgreSQL only (a Temporal blip must not empty the Service); its check takes up to 3 s
    assert api_c["readinessProbe"]["httpGet"] == {"path": "/health/ready", "port": "http"}
    assert api_c["readinessProbe"]["timeoutSeconds"] > 3
    assert api_c["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "http"}
    health_port = int(container_env(docs, worker)["WORKER_HEALTH_PORT"])
    assert {p["name"]: p["containerPort"] for p in worker_c["ports"]} == {"health": health_port}
    # the worker: liveness process-local; startup and readiness once it reached PostgreSQL and Temporal
    assert worker_c["livenessProbe"]["httpGet"] == {"path": "/health/live", "port": "health"}
    for probe in ("startupProbe", "readinessProbe"):
        assert worker_c[probe]["httpGet"] == {"path": "/health/ready", "port": "health"}
    startup = worker_c["startupProbe"]
    assert startup["periodSeconds"] * startup["failureThreshold"] >= 300  # room to wait for the dependencies
    service = find(docs, "Service", "-api")
    assert service["spec"]["ports"][0]["targetPort"] == "http"


def test_ingress_and_hpa() -> None:
    docs = objects("ingress-hpa")
    ingress = find(docs, "Ingress")
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert ingress["spec"]["tls"] == [{"hosts": ["nango.example.com"], "secretName": "nango-tls"}]
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend["name"] == find(docs, "Service", "-api")["metadata"]["name"]
    hpa = find(docs, "HorizontalPodAutoscaler")
    assert hpa["spec"]["scaleTargetRef"]["name"] == find(docs, "Deployment", "-worker")["metadata"]["name"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (3, 20)
    assert {m["resource"]["name"] for m in hpa["spec"]["metrics"]} == {"cpu", "memory"}
    assert container_env(docs, workload(docs, "api"))["PUBLIC_URL"] == "https://nango.example.com"
    assert find(docs, "PodDisruptionBudget", "-api")["spec"]["minAvailable"] == 1


def render_inline(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Schema-check, render (an install) and Kubernetes-validate one value set given inline."""
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = [d for name, text in rendered.items() if not name.endswith("NOTES.txt")
            for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        kubernetes_validate.validate(doc, KUBE_VERSIONS[-1], strict=True)
    return docs


def readme_install_values() -> dict[str, Any]:
    """The `my-values.yaml` example of deploy/helm/README.md's install steps."""
    text = (CHART.parent / "README.md").read_text()
    block = text.split("Write `my-values.yaml`", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    return yaml.safe_load("\n".join(line[3:] for line in block.splitlines()))


def _size(value: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([kKmMgG]?)", value).groups()  # type: ignore[union-attr]
    return int(number) * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[unit.lower()]


def test_the_readme_ingress_example_takes_a_full_bundle_behind_trusted_proxies() -> None:
    """Issue 17: the dashboard behind an ingress. The README's example renders, its nginx body limit
    takes a bundle of BUNDLE_MAX_BYTES, and the API trusts the ingress pods' forwarded headers."""
    values = readme_install_values()
    docs = render_inline(values)
    ingress = find(docs, "Ingress")
    env = container_env(docs, workload(docs, "api"))
    body = ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/proxy-body-size"]
    assert _size(body) >= int(env["BUNDLE_MAX_BYTES"]) + 1024**2  # the zip plus the multipart form around it
    assert env["TRUSTED_PROXIES"] == "10.0.0.0/8"
    Settings(trusted_proxies=env["TRUSTED_PROXIES"])  # parses


def test_trusted_proxies_and_secure_cookie_values() -> None:
    docs = objects("default")
    env = container_env(docs, workload(docs, "api"))
    assert (env["TRUSTED_PROXIES"], env["SESSION_COOKIE_SECURE"]) == ("", "false")
    docs = render_inline({"existingSecret": "nango-platform", "config": {"api": {
        "trustedProxies": ["10.0.0.0/8", "fd00::/8"], "sessionCookieSecure": True}}})
    env = container_env(docs, workload(docs, "api"))
    assert (env["TRUSTED_PROXIES"], env["SESSION_COOKIE_SECURE"]) == ("10.0.0.0/8,fd00::/8", "true")
    assert Settings(trusted_proxies=env["TRUSTED_PROXIES"], session_cookie_secure=env["SESSION_COOKIE_SECURE"])
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema({"config": {"api": {"trustedProxies": ["the ingress"]}}})


def _egress_policies(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["labels"]["app.kubernetes.io/component"]: d["spec"] for d in docs
            if d["kind"] == "NetworkPolicy"}


def _denied(spec: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The (allowed CIDRs, excepted CIDRs) of a policy's ipBlock peers."""
    blocks = [p["ipBlock"] for rule in spec.get("egress", []) for p in rule.get("to", []) if "ipBlock" in p]
    return {b["cidr"] for b in blocks}, {c for b in blocks for c in b.get("except", [])}


def test_egress_denies_cloud_metadata_by_default() -> None:
    """Issue 17: a second wall behind the application's egress policy. Every pod's egress is open but for
    the metadata addresses; DNS (node-local caches live in 169.254.0.0/16) stays allowed."""
    docs = objects("default")
    policies = _egress_policies(docs)
    assert set(policies) == {"api", "worker", "migrations"}
    for component, spec in policies.items():
        assert "Egress" in spec["policyTypes"], component
        allowed, denied = _denied(spec)
        assert allowed == {"0.0.0.0/0", "::/0"} and denied == {"169.254.0.0/16", "fd00:ec2::254/128"}, component
        dns = [r for r in spec["egress"] if "to" not in r]
        assert {(p["port"], p["protocol"]) for r in dns for p in r["ports"]} == {(53, "UDP"), (53, "TCP")}


def test_egress_takes_an_operator_deny_list_and_can_drop_the_metadata_rule() -> None:
    docs = render_inline({"existingSecret": "nango-platform", "networkPolicy": {"egress": {
        "denyCidrs": ["10.0.0.0/8", "fd12:3456::/48", "192.168.0.0/16"]}}})
    for component, spec in _egress_policies(docs).items():
        blocks = {b["ipBlock"]["cidr"]: b["ipBlock"]["except"] for r in spec["egress"] for b in r.get("to", [])
                  if "ipBlock" in b}
        assert blocks == {"0.0.0.0/0": ["169.254.0.0/16", "10.0.0.0/8", "192.168.0.0/16"],
                          "::/0": ["fd00:ec2::254/128", "fd12:3456::/48"]}, component
    # off, with nothing else to deny: egress is not restricted at all (as before)
    docs = render_inline({"existingSecret": "nango-platform", "networkPolicy": {"egress": {"denyMetadata": False}}})
    for spec in _egress_policies(docs).values():
        assert spec["policyTypes"] == ["Ingress"] and "egress" not in spec
    docs = render_inline({"existingSecret": "nango-platform", "networkPolicy": {"egress": {
        "denyMetadata": False, "denyCidrs": ["10.0.0.0/8"]}}})
    assert _denied(_egress_policies(docs)["worker"]) == ({"0.0.0.0/0", "::/0"}, {"10.0.0.0/8"})
    # the bundled dependencies stay reachable by label when cluster ranges are denied
    docs = render_inline(VALUE_SETS["bundled"] | {"networkPolicy": {"egress": {"denyCidrs": ["10.0.0.0/8"]}}})
    worker = _egress_policies(docs)["worker"]
    assert any("podSelector" in p for r in worker["egress"] for p in r.get("to", []))
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema({"networkPolicy": {"egress": {"denyCidrs": ["metadata.internal"]}}})


def test_restricted_egress_keeps_its_allow_list() -> None:
    worker = _egress_policies(objects("external"))["worker"]
    allowed, _ = _denied(worker)
    assert "::/0" not in allowed  # restrict: true is an allow-list; the open rule is not added


def test_temporal_mtls_api_key_and_ca_bundles_render() -> None:
    """Issue 17: Temporal and PostgreSQL for real. mTLS and API-key file paths reach every pod's settings,
    the Secrets holding them are mounted in the API, worker and migrations pods, verify-full gets its CA."""
    volumes = [{"name": "temporal-tls", "secret": {"secretName": "temporal-client-tls"}},
               {"name": "pg-ca", "configMap": {"name": "rds-ca-bundle"}}]
    mounts = [{"name": "temporal-tls", "mountPath": "/etc/nango/temporal", "readOnly": True},
              {"name": "pg-ca", "mountPath": "/etc/nango/pg", "readOnly": True}]
    values = {"existingSecret": "nango-platform", "extraVolumes": volumes, "extraVolumeMounts": mounts,
              "config": {"temporal": {"address": "ns.acct.tmprl.cloud:7233", "namespace": "ns.acct",
                                      "tlsCertFile": "/etc/nango/temporal/tls.crt",
                                      "tlsKeyFile": "/etc/nango/temporal/tls.key",
                                      "tlsCaFile": "/etc/nango/temporal/ca.crt", "tlsServerName": "t.example",
                                      "apiKeyFile": "/etc/nango/temporal/api-key",
                                      "registerSearchAttributes": False},
                         "database": {"host": "db.example", "sslmode": "verify-full",
                                      "sslrootcert": "/etc/nango/pg/ca.pem"}}}
    docs = render_inline(values)
    for component in ("api", "worker", "migrations"):
        pod = workload(docs, component)
        env = container_env(docs, pod)
        assert {env[k] for k in ("TEMPORAL_TLS_CERT", "TEMPORAL_TLS_KEY", "TEMPORAL_TLS_CA")} == {
            "/etc/nango/temporal/tls.crt", "/etc/nango/temporal/tls.key", "/etc/nango/temporal/ca.crt"}
        assert (env["TEMPORAL_API_KEY_FILE"], env["TEMPORAL_TLS_SERVER_NAME"]) == (
            "/etc/nango/temporal/api-key", "t.example")
        assert env["TEMPORAL_REGISTER_SEARCH_ATTRIBUTES"] == "false"
        assert env["DATABASE_URL"] == "postgresql://nango@db.example:5432/nango?sslmode=verify-full" \
            "&sslrootcert=%2Fetc%2Fnango%2Fpg%2Fca.pem"
        assert [v for v in pod["volumes"] if v["name"] in ("temporal-tls", "pg-ca")] == volumes, component
        container_mounts = pod["containers"][0]["volumeMounts"]
        assert [m for m in container_mounts if m["name"] in ("temporal-tls", "pg-ca")] == mounts, component
        settings = Settings(**{k.lower(): v for k, v in env.items() if k.startswith("TEMPORAL_")})
        assert settings.temporal_tls_key and not settings.temporal_register_search_attributes
    # defaults: no TLS files, registration on, nothing extra mounted
    docs = objects("default")
    env = container_env(docs, workload(docs, "worker"))
    assert (env["TEMPORAL_TLS_CERT"], env["TEMPORAL_API_KEY_FILE"], env["TEMPORAL_REGISTER_SEARCH_ATTRIBUTES"]) \
        == ("", "", "true")
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema({"extraVolumeMounts": [{"name": "no-path"}]})


def test_the_migration_hook_timeout_is_documented_against_helms_default() -> None:
    """Helm waits 5m for a hook by default; the Job may run (and retry) up to activeDeadlineSeconds."""
    deadline = hook(objects("default"), "Job")["spec"]["activeDeadlineSeconds"]
    readme = (CHART.parent / "README.md").read_text()
    assert deadline > 300 and "--timeout 20m" in readme and "activeDeadlineSeconds" in readme
    assert f"{deadline} s" in readme


POOLS = {"syncs": {"queues": "syncs", "replicaCount": 4, "terminationGracePeriodSeconds": 600,
                   "shutdownGraceSeconds": 540, "resources": {"limits": {"memory": "6Gi"}}},
         "scripts": {"queues": "actions, webhooks,events", "replicaCount": 2,
                     "nodeSelector": {"pool": "scripts"}, "resources": {"limits": {"memory": "26Gi"}}}}


def _render_error(values: dict[str, Any]) -> str:
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmRenderError) as failure:
        chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    return str(failure.value)


def test_worker_pools_render_one_deployment_per_pool() -> None:
    """Issue 17: separate worker pools per kind with their own replicas, grace periods and resources."""
    docs = render_inline({"existingSecret": "nango-platform", "worker": {"pools": POOLS}})
    deployments = {d["metadata"]["name"]: d for d in docs if d["kind"] == "Deployment"}
    assert set(deployments) == {"nango-nango-orchestrator-api", "nango-nango-orchestrator-worker-syncs",
                                "nango-nango-orchestrator-worker-scripts"}  # no single worker Deployment
    syncs, scripts = (deployments[f"nango-nango-orchestrator-worker-{p}"] for p in ("syncs", "scripts"))
    for deployment, pool, replicas, grace, memory in ((syncs, "syncs", 4, 600, "6Gi"),
                                                      (scripts, "scripts", 2, 60, "26Gi")):
        spec = deployment["spec"]
        assert spec["replicas"] == replicas
        assert spec["selector"]["matchLabels"]["app.kubernetes.io/worker-pool"] == pool
        pod = spec["template"]["spec"]
        assert pod["terminationGracePeriodSeconds"] == grace
        assert pod["containers"][0]["resources"]["limits"]["memory"] == memory
        assert pod["containers"][0]["args"] == ["worker"]
        # the ConfigMap's settings, with the pool's own queues (and drain time) over them
        env = {v["name"]: v.get("value") for v in pod["containers"][0]["env"]}
        assert env["WORKER_TASK_QUEUES"] == {"syncs": "syncs", "scripts": "actions,webhooks,events"}[pool]
        assert spec["template"]["metadata"]["labels"]["app.kubernetes.io/component"] == "worker"  # policies
    assert {v["name"]: v.get("value") for v in syncs["spec"]["template"]["spec"]["containers"][0]["env"]}[
        "WORKER_SHUTDOWN_GRACE_S"] == "540"
    assert scripts["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "scripts"}
    # the pools' queues parse as the worker reads them
    for deployment in (syncs, scripts):
        queues = next(v["value"] for v in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
                      if v["name"] == "WORKER_TASK_QUEUES")
        assert Settings(worker_task_queues=queues).worker_task_queues == queues


@pytest.mark.parametrize(("pools", "message"), [
    ({**POOLS, "syncs": {**POOLS["syncs"], "resources": {"limits": {"memory": "4Gi"}}}},
     "worker.pools.syncs.resources.limits.memory (4Gi) is below its concurrency times runner.memoryMb: "
     "10 slots (syncs) x 512 MiB = 5120 MiB"),
    ({**POOLS, "scripts": {**POOLS["scripts"], "resources": {"limits": {"memory": "24000Mi"}}}},
     "50 slots (actions,webhooks,events) x 512 MiB = 25600 MiB"),
    ({**POOLS, "syncs": {**POOLS["syncs"], "resources": {"requests": {"memory": "6Gi"}}}},
     "worker.pools.syncs.resources.limits.memory is required"),
    ({"syncs": POOLS["syncs"]}, 'no pool polls "actions"'),
    ({**POOLS, "syncs": {**POOLS["syncs"], "terminationGracePeriodSeconds": 300}},
     "worker.pools.syncs: terminationGracePeriodSeconds (300) must exceed its shutdownGraceSeconds (540)"),
])
def test_worker_pools_that_cannot_work_fail_to_render(pools: dict[str, Any], message: str) -> None:
    assert message in _render_error({"existingSecret": "nango-platform", "worker": {"pools": pools}})


def test_worker_pools_schema() -> None:
    with helm.Chart.load(str(CHART)) as chart:
        for bad in ({"Syncs": POOLS["syncs"]}, {"syncs": {**POOLS["syncs"], "queues": "syncs,crons"}},
                    {"syncs": {"queues": "syncs"}}):
            with pytest.raises(helm.HelmValuesError):
                chart.validate_schema({"worker": {"pools": bad}})


def test_a_pool_can_scale_on_its_task_queue_backlog_with_keda() -> None:
    """Issue 17: an optional KEDA ScaledObject per pool on Temporal task-queue backlog instead of CPU."""
    pools = {**POOLS, "syncs": {**POOLS["syncs"], "keda": {
        "enabled": True, "minReplicaCount": 0, "maxReplicaCount": 20, "authenticationRef": "temporal-cloud"}},
        "scripts": {**POOLS["scripts"], "keda": {"enabled": True, "maxReplicaCount": 8, "targetQueueSize": 5}}}
    values = {"existingSecret": "nango-platform", "worker": {"pools": pools},
              "config": {"temporal": {"namespace": "prod", "taskQueuePrefix": "eu-", "tlsServerName": "t.example"}}}
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = [d for name, text in rendered.items() if not name.endswith("NOTES.txt")
            for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        if doc["kind"] != "ScaledObject":  # a CRD: not in the Kubernetes schemas
            kubernetes_validate.validate(doc, KUBE_VERSIONS[-1], strict=True)
    scaled = {d["spec"]["scaleTargetRef"]["name"]: d["spec"] for d in docs if d["kind"] == "ScaledObject"}
    assert set(scaled) == {"nango-nango-orchestrator-worker-syncs", "nango-nango-orchestrator-worker-scripts"}
    syncs, scripts = scaled["nango-nango-orchestrator-worker-syncs"], scaled["nango-nango-orchestrator-worker-scripts"]
    assert (syncs["minReplicaCount"], syncs["maxReplicaCount"]) == (0, 20)
    assert (scripts["minReplicaCount"], scripts["maxReplicaCount"]) == (1, 8)
    (trigger,) = syncs["triggers"]
    assert trigger["type"] == "temporal" and trigger["authenticationRef"] == {"name": "temporal-cloud"}
    assert trigger["metadata"] == {"endpoint": "temporal-frontend:7233", "namespace": "prod", "taskQueue": "eu-syncs",
                                   "queueTypes": "workflow,activity", "targetQueueSize": "10",
                                   "activationTargetQueueSize": "0", "tlsServerName": "t.example"}
    # one trigger per task queue of the pool, named as the worker names them
    from orchestrator.temporal import names
    assert [t["metadata"]["taskQueue"] for t in scripts["triggers"]] == [
        names.queue("eu-", k) for k in (names.ACTION_QUEUE, names.WEBHOOK_QUEUE, names.EVENT_QUEUE)]
    assert {t["metadata"]["targetQueueSize"] for t in scripts["triggers"]} == {"5"}
    # the scaled Deployments leave replicas to KEDA's HPA
    for doc in docs:
        if doc["kind"] == "Deployment" and "-worker-" in doc["metadata"]["name"]:
            assert "replicas" not in doc["spec"]
    assert "maxReplicaCount is required" in _render_error(
        {"existingSecret": "nango-platform", "worker": {"pools": {**POOLS, "syncs": {**POOLS["syncs"],
                                                                   "keda": {"enabled": True}}}}})


def test_pods_roll_when_the_configuration_changes() -> None:
    def checksum(value_set: str) -> str:
        docs = objects(value_set)
        return find(docs, "Deployment", "-api")["spec"]["template"]["metadata"]["annotations"]["checksum/config"]
    assert checksum("default") != checksum("external")


def test_notes_tell_how_to_reach_and_deploy() -> None:
    notes = render("external")["nango-orchestrator/templates/NOTES.txt"]
    assert "https://nango.example.com" in notes
    assert "https://temporal.example.com" in notes
    assert "nango deploy --server https://nango.example.com" in notes
    assert "NANGO_SECRET_KEY" in notes
    api = "deploy/nango-nango-orchestrator-api"
    assert f"kubectl -n nango exec {api} -- nango admin env create prod" in notes
    assert f"kubectl -n nango exec {api} -- nango admin env rotate-key prod" in notes
    # The admin API is offered only when ADMIN_SECRET_KEY can be set.
    assert "curl -X POST https://nango.example.com/admin/environments" in notes
    assert "/admin/environments -H" not in render("default")["nango-orchestrator/templates/NOTES.txt"]
    default_notes = render("default")["nango-orchestrator/templates/NOTES.txt"]
    assert "port-forward svc/nango-nango-orchestrator-api 3003:3003" in default_notes
    assert "ENCRYPTION_KEY was generated" in default_notes
    bundled_notes = render("bundled")["nango-orchestrator/templates/NOTES.txt"]
    assert "http://127.0.0.1:8080" in bundled_notes


# --- Dockerfile -----------------------------------------------------------------------------------

def test_dockerfile() -> None:
    text = (ROOT / "Dockerfile").read_text()
    instructions = [line.strip() for line in re.sub(r"\\\n", " ", text).splitlines()
                    if line.strip() and not line.lstrip().startswith("#")]
    froms = [i for i in instructions if i.upper().startswith("FROM ")]
    assert re.fullmatch(r"FROM \$\{PYTHON_IMAGE\} AS builder", froms[0])
    # the base pinned to an exact Python and Debian release (issue 17); a digest may follow it
    base = next(i for i in instructions if i.startswith("ARG PYTHON_IMAGE="))
    assert re.fullmatch(r"ARG PYTHON_IMAGE=python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?", base), base
    assert len(froms) == 2, "multi-stage: builder and runtime"
    runtime = instructions[instructions.index(froms[1]):]
    assert any("pip wheel" in i for i in instructions[:instructions.index(froms[1])])
    assert any("--no-index" in i and "pip install" in i for i in runtime), "runtime installs the built wheels"
    # with the tracing extra: the chart's tracing.otlpEndpoint makes a process without the SDK refuse to start
    assert any("pip install" in i and "nango-orchestrator[tracing]" in i for i in runtime)
    assert any("apt-get install" in i and "bubblewrap" in i for i in runtime)
    users = [i for i in runtime if i.upper().startswith("USER ")]
    assert users and users[-1].split()[1].split(":")[0] == "10001"
    # an init process as PID 1 reaps orphaned sandbox processes; it signals nango only (no -g)
    assert 'ENTRYPOINT ["/usr/bin/tini", "--", "nango"]' in runtime
    assert any("apt-get install" in i and " tini" in i for i in runtime)
    assert 'CMD ["server"]' in runtime
    dockerignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert "!orchestrator/" in dockerignore and "!pyproject.toml" in dockerignore


# --- issue 17: Localhost seccomp/AppArmor profiles for the worker, their installer, runtimeClassName ----------

SANDBOX_PROFILES_ON = {**VALUE_SETS["default"], "worker": {"runtimeClassName": "gvisor"},
                       "sandboxProfiles": {"seccomp": True, "appArmor": True, "install": True}}
SECCOMP_FILE = CHART / "files" / "worker-sandbox-seccomp.json"
APPARMOR_FILE = CHART / "files" / "worker-sandbox-apparmor"


def render_values(values: dict[str, Any]) -> list[dict[str, Any]]:
    """Render `values` (schema-checked first) and validate every object against the Kubernetes schemas."""
    with helm.Chart.load(str(CHART)) as chart:
        chart.validate_schema(values)
        rendered = chart.render(values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    docs = [d for name, text in rendered.items() if text and not name.endswith("NOTES.txt")
            for d in yaml.safe_load_all(text) if d]
    for doc in docs:
        for version in KUBE_VERSIONS:
            validate_object(doc, version)
    return docs


def test_sandbox_profiles_are_opt_in() -> None:
    docs = objects("default")
    assert not [d for d in docs if d["kind"] == "DaemonSet"]
    assert not [d for d in docs if d["metadata"]["name"].endswith("-sandbox-profiles")]
    pod = workload(docs, "worker")
    assert "runtimeClassName" not in pod
    sc = pod["containers"][0]["securityContext"]
    assert sc["seccompProfile"] == {"type": "Unconfined"} and sc["appArmorProfile"] == {"type": "Unconfined"}
    env = container_env(docs, pod)
    assert env["RUNNER_SANDBOX_PROC"] == "auto"


def test_worker_runs_with_localhost_profiles_and_a_runtime_class() -> None:
    docs = render_values(SANDBOX_PROFILES_ON)
    pod = workload(docs, "worker")
    assert pod["runtimeClassName"] == "gvisor"
    sc = pod["containers"][0]["securityContext"]
    assert sc["seccompProfile"] == {"type": "Localhost", "localhostProfile": "nango/worker-sandbox.json"}
    assert sc["appArmorProfile"] == {"type": "Localhost", "localhostProfile": "nango-worker-sandbox"}
    # the rest of worker.securityContext stays
    assert sc["runAsNonRoot"] and not sc["allowPrivilegeEscalation"] and sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["readOnlyRootFilesystem"] and not sc["privileged"]
    # the API's pods are untouched
    api = workload(docs, "api")["containers"][0]["securityContext"]
    assert api.get("seccompProfile", {}).get("type") != "Localhost" and "runtimeClassName" not in workload(docs, "api")


def test_each_profile_is_selected_on_its_own() -> None:
    docs = render_values({**VALUE_SETS["default"], "sandboxProfiles": {"seccomp": True}})
    sc = workload(docs, "worker")["containers"][0]["securityContext"]
    assert sc["seccompProfile"]["type"] == "Localhost" and sc["appArmorProfile"] == {"type": "Unconfined"}
    assert not [d for d in docs if d["kind"] == "DaemonSet"]  # installed by other means (SPO, node image)
    docs = render_values({**VALUE_SETS["default"], "sandboxProfiles": {
        "appArmor": True, "appArmorProfileName": "acme-bwrap"}})
    sc = workload(docs, "worker")["containers"][0]["securityContext"]
    assert sc["appArmorProfile"] == {"type": "Localhost", "localhostProfile": "acme-bwrap"}
    assert sc["seccompProfile"] == {"type": "Unconfined"}


def test_the_installer_daemonset_writes_what_the_worker_selects() -> None:
    values = {**SANDBOX_PROFILES_ON, "sandboxProfiles": {
        **SANDBOX_PROFILES_ON["sandboxProfiles"], "seccompProfileName": "acme/bwrap.json",
        "appArmorProfileName": "acme-bwrap", "installer": {"kubeletRoot": "/var/lib/k0s/kubelet",
                                                           "tolerations": [{"operator": "Exists"}]}},
              "worker": {"nodeSelector": {"pool": "workers"}}}
    docs = render_values(values)
    ds = find(docs, "DaemonSet", "-sandbox-profiles")
    pod = ds["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["securityContext"]["privileged"] is True and pod["automountServiceAccountToken"] is False
    assert container["image"] == "busybox:1.36.1"
    assert pod["nodeSelector"] == {"pool": "workers"}  # where the workers run, unless installer.nodeSelector
    assert pod["tolerations"] == [{"operator": "Exists"}]
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert mounts == {"profiles": "/profiles", "host": "/host", "securityfs": "/sys/kernel/security"}
    cm = find(docs, "ConfigMap", "-sandbox-profiles")
    assert pod["volumes"][0]["configMap"]["name"] == cm["metadata"]["name"]
    data = cm["data"]
    assert yaml.safe_load(data["seccomp.json"]) == yaml.safe_load(SECCOMP_FILE.read_text())
    assert "profile acme-bwrap " in data["apparmor"] and "nango-worker-sandbox" not in data["apparmor"]
    script = data["install.sh"]
    assert 'dest="/host/var/lib/k0s/kubelet/seccomp/acme/bwrap.json"' in script
    assert "apparmor_parser -r -W /etc/apparmor.d/acme-bwrap" in script
    worker = workload(docs, "worker")["containers"][0]["securityContext"]
    assert worker["seccompProfile"]["localhostProfile"] == "acme/bwrap.json"
    assert worker["appArmorProfile"]["localhostProfile"] == "acme-bwrap"


@pytest.mark.parametrize("bad", [
    {"sandboxProfiles": {"install": "yes"}},
    {"sandboxProfiles": {"seccompProfileName": "../../etc/evil.json"}},
    {"sandboxProfiles": {"seccompProfileName": "profile.yaml"}},
    {"sandboxProfiles": {"appArmorProfileName": "two words"}},
    {"sandboxProfiles": {"installer": {"kubeletRoot": "var/lib/kubelet"}}},
    {"sandboxProfiles": {"installer": {"image": {"repository": "busybox", "tag": ""}}}},  # pinned: a tag
    {"sandboxProfiles": {"unknown": True}},
    {"worker": {"runtimeClassName": 3}},
    {"config": {"runner": {"sandboxProc": "host"}}},  # the container's own /proc is never an option
])
def test_schema_rejects_bad_sandbox_profile_values(bad: dict[str, Any]) -> None:
    with helm.Chart.load(str(CHART)) as chart, pytest.raises(helm.HelmValuesError):
        chart.validate_schema(bad)


def test_the_seccomp_profile_is_the_runtime_default_plus_bubblewrap() -> None:
    profile = yaml.safe_load(SECCOMP_FILE.read_text())
    assert profile["defaultAction"] == "SCMP_ACT_ERRNO"  # an allowlist: unknown syscalls fail
    allowed = {n for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW" for n in rule["names"]}
    denied = {n for rule in profile["syscalls"] if rule["action"] == "SCMP_ACT_ERRNO" for n in rule["names"]}
    assert {"clone", "clone3", "unshare", "setns", "mount", "umount2", "pivot_root", "chroot"} <= allowed
    assert {"read", "write", "openat", "execve", "prctl", "seccomp", "capset", "setresuid", "wait4"} <= allowed
    assert {"kexec_load", "bpf", "init_module", "keyctl", "ptrace", "perf_event_open", "open_by_handle_at",
            "userfaultfd", "reboot", "fsopen", "move_mount"} <= denied
    assert not allowed & denied


def test_the_apparmor_profile_allows_user_namespaces_and_parses() -> None:
    text = APPARMOR_FILE.read_text()
    for rule in ("userns,", "mount,", "pivot_root,", "deny /sys/kernel/security/** rwklx,"):
        assert f"  {rule}\n" in text, rule
    parser = shutil.which("apparmor_parser")
    if parser is None:
        pytest.skip("apparmor_parser is absent: the profile's syntax is not checked here")
    import subprocess

    version = subprocess.run([parser, "--version"], capture_output=True, text=True, check=False).stdout
    major = int(re.search(r"version (\d+)", version).group(1)) if re.search(r"version (\d+)", version) else 0
    # before AppArmor 4.0 the installer drops the abi 4.0 line and the userns rule, as tested here
    source = text if major >= 4 else "\n".join(
        line for line in text.splitlines() if not line.startswith("abi ") and line != "  userns,")
    proc = subprocess.run([parser, "-Q", "-K", "/dev/stdin"], input=source, capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stderr


# --- issue 20: metrics ports, Prometheus Operator monitors, traces, the Grafana dashboard ------------

MONITORS_ON = {**VALUE_SETS["default"], "monitoring": {
    "serviceMonitor": {"enabled": True, "labels": {"release": "kps"}, "interval": "15s", "scrapeTimeout": "10s"},
    "podMonitor": {"enabled": True, "namespace": "monitoring", "namespaceSelector": {"any": True}}}}


def named_ports(container_or_service: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["name"]: p for p in container_or_service.get("ports", [])}


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return selector.items() <= labels.items()


def test_the_metrics_ports_are_named() -> None:
    """The API's /metrics is on its http port, each worker's on its health port (WORKER_HEALTH_PORT)."""
    docs = objects("external")
    for component, port_name, variable in (("api", "http", "API_PORT"), ("worker", "health", "WORKER_HEALTH_PORT")):
        pod = workload(docs, component)
        port = named_ports(pod["containers"][0])[port_name]
        assert str(port["containerPort"]) == container_env(docs, pod)[variable]
        assert container_env(docs, pod)["METRICS_ENABLED"] == "true"
    api, worker = find(docs, "Service", "-api"), find(docs, "Service", "-worker")
    assert named_ports(api["spec"])["http"]["targetPort"] == "http"
    assert worker["spec"]["clusterIP"] == "None"  # names the pods' port; nothing is load-balanced to a worker
    assert named_ports(worker["spec"])["metrics"]["targetPort"] == "health"
    worker_pods = find(docs, "Deployment", "-worker")["spec"]["template"]["metadata"]["labels"]
    api_pods = find(docs, "Deployment", "-api")["spec"]["template"]["metadata"]["labels"]
    assert selects(worker["spec"]["selector"], worker_pods) and not selects(worker["spec"]["selector"], api_pods)
    # the NetworkPolicy lets a scraper reach both (the API's port from networkPolicy.apiIngressFrom)
    policy = find(docs, "NetworkPolicy", "-worker")["spec"]["ingress"]
    assert policy == [{"ports": [{"port": "health", "protocol": "TCP"}]}]
    # without metrics the worker needs no Service
    off = render_values({**VALUE_SETS["default"], "config": {"metricsEnabled": False}})
    assert not [d for d in off if d["kind"] == "Service" and d["metadata"]["name"].endswith("-worker")]


def test_monitors_render_only_when_enabled() -> None:
    for value_set in ("default", "external", "bundled", "existing-secret"):
        assert not [d for d in objects(value_set) if d["kind"] in MONITOR_KINDS], value_set
    docs = render_values(MONITORS_ON)
    monitors = {(d["kind"], d["metadata"]["name"]): d for d in docs if d["kind"] in MONITOR_KINDS}
    assert set(monitors) == {(kind, f"nango-nango-orchestrator-{c}") for kind in MONITOR_KINDS
                             for c in ("api", "worker")}
    for (kind, _), monitor in monitors.items():
        spec = monitor["spec"]
        if kind == "ServiceMonitor":
            assert monitor["metadata"]["namespace"] == NAMESPACE
            assert monitor["metadata"]["labels"]["release"] == "kps"
            assert spec["namespaceSelector"] == {"matchNames": [NAMESPACE]}  # the release's, by default
            (endpoint,) = spec["endpoints"]
            assert (endpoint["interval"], endpoint["scrapeTimeout"]) == ("15s", "10s")
        else:
            assert monitor["metadata"]["namespace"] == "monitoring"
            assert "release" not in monitor["metadata"]["labels"]
            assert spec["namespaceSelector"] == {"any": True}
            (endpoint,) = spec["podMetricsEndpoints"]
            assert endpoint["interval"] == "30s" and "scrapeTimeout" not in endpoint
        assert endpoint["path"] == "/metrics"
    # one kind alone
    docs = render_values({**VALUE_SETS["default"], "monitoring": {"podMonitor": {"enabled": True}}})
    assert sorted(d["kind"] for d in docs if d["kind"] in MONITOR_KINDS) == ["PodMonitor", "PodMonitor"]


@pytest.mark.parametrize("pools", [False, True])
def test_monitor_selectors_match_the_services_and_pods(pools: bool) -> None:
    """Each monitor selects its component's Service or pods and no other, on a port they name."""
    values: dict[str, Any] = dict(MONITORS_ON)
    if pools:
        values |= {"existingSecret": "nango-platform", "worker": {"pools": POOLS}}
    docs = render_values(values)
    services = [d for d in docs if d["kind"] == "Service"]
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert len(deployments) == (3 if pools else 2)
    for monitor in (d for d in docs if d["kind"] in MONITOR_KINDS):
        component = monitor["metadata"]["name"].rsplit("-", 1)[1]
        selector = monitor["spec"]["selector"]["matchLabels"]
        assert NAMESPACE in monitor["spec"]["namespaceSelector"].get("matchNames", [NAMESPACE])
        if monitor["kind"] == "ServiceMonitor":
            (service,) = [s for s in services if selects(selector, s["metadata"]["labels"])]
            assert service["metadata"]["name"].endswith(f"-{component}")
            (endpoint,) = monitor["spec"]["endpoints"]
            port = named_ports(service["spec"])[endpoint["port"]]
            # the Service's port reaches the pods' named container port that serves /metrics
            pods = [d for d in deployments if selects(service["spec"]["selector"],
                                                      d["spec"]["template"]["metadata"]["labels"])]
            container_ports = [named_ports(p["spec"]["template"]["spec"]["containers"][0]) for p in pods]
        else:
            pods = [d for d in deployments if selects(selector, d["spec"]["template"]["metadata"]["labels"])]
            (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
            port = {"targetPort": endpoint["port"]}
            container_ports = [named_ports(p["spec"]["template"]["spec"]["containers"][0]) for p in pods]
        assert pods and all(p["metadata"]["name"].split("-")[3] == component for p in pods), monitor["kind"]
        assert len(pods) == (2 if pools and component == "worker" else 1)
        expected = "http" if component == "api" else "health"
        assert port["targetPort"] == expected
        assert all(expected in ports for ports in container_ports)
        if component == "worker":
            assert monitor["spec"]["podTargetLabels"] == ["app.kubernetes.io/worker-pool"]


def test_monitors_need_metrics_and_valid_values() -> None:
    message = _render_error({**VALUE_SETS["default"], "config": {"metricsEnabled": False},
                             "monitoring": {"serviceMonitor": {"enabled": True}}})
    assert "config.metricsEnabled=false" in message
    with helm.Chart.load(str(CHART)) as chart:
        for bad in ({"serviceMonitor": {"interval": "30"}}, {"serviceMonitor": {"interval": "1m30s5m"}},
                    {"podMonitor": {"scrapeTimeout": "soon"}}, {"podMonitor": {"port": "http"}},
                    {"serviceMonitor": {"namespaceSelector": {"matchLabels": {"a": "b"}}}},
                    {"grafanaDashboard": {"labels": {"grafana_dashboard": 1}}}):
            with pytest.raises(helm.HelmValuesError):
                chart.validate_schema({"monitoring": bad})


def test_otlp_settings_reach_api_and_workers_only_when_set() -> None:
    for value_set in ("default", "external", "bundled", "existing-secret"):
        docs = objects(value_set)
        for component in ("api", "worker", "migrations"):
            assert not OTEL_VARIABLES & set(container_env(docs, workload(docs, component))), (value_set, component)
    tracing = {"otlpEndpoint": "https://otlp.example.com:4318", "serviceName": "acme",
               "headersSecret": {"name": "otel-auth", "key": "headers"},
               "resourceAttributes": {"deployment.environment": "prod", "k8s.cluster.name": "eu-1"}}
    for extra in ({}, {"existingSecret": "nango-platform", "worker": {"pools": POOLS}}):
        docs = render_values({**VALUE_SETS["default"], **extra, "tracing": tracing})
        deployments = [d for d in docs if d["kind"] == "Deployment"]
        assert len(deployments) == (3 if extra else 2)
        for deployment in deployments:
            component = deployment["metadata"]["labels"]["app.kubernetes.io/component"]
            # the container's own env (a pool's also overrides a ConfigMap setting there)
            env = {v["name"]: v.get("value", v.get("valueFrom"))
                   for v in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
            assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == "https://otlp.example.com:4318"
            assert env["OTEL_SERVICE_NAME"] == f"acme-{component}"
            assert env["OTEL_EXPORTER_OTLP_HEADERS"] == {"secretKeyRef": {"name": "otel-auth", "key": "headers"}}
            assert env["OTEL_RESOURCE_ATTRIBUTES"] == "deployment.environment=prod,k8s.cluster.name=eu-1"
        assert not OTEL_VARIABLES & set(container_env(docs, workload(docs, "migrations")))
    # only the endpoint: no headers, no attributes; the service names the processes' own defaults
    docs = render_values({**VALUE_SETS["default"], "tracing": {"otlpEndpoint": "http://collector:4318"}})
    for component in ("api", "worker"):
        env = container_env(docs, workload(docs, component))
        assert OTEL_VARIABLES & set(env) == {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME"}
        assert env["OTEL_SERVICE_NAME"] == f"nango-{component}"
    with helm.Chart.load(str(CHART)) as chart:
        for bad in ({"otlpEndpoint": "collector:4318"}, {"resourceAttributes": {"a": "b,c=d"}},
                    {"serviceName": "two words"}):
            with pytest.raises(helm.HelmValuesError):
                chart.validate_schema({"tracing": bad})


# --- the Grafana dashboard ------------------------------------------------------------------------

DASHBOARD_FILE = CHART / "dashboards" / "nango.json"
# Identifiers of PromQL that are not metric names (functions and aggregations are followed by "(").
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                   "offset"}


def registry_sample_names() -> set[str]:
    """Every series name orchestrator/metrics.py's registry can expose (a counter's _total, a histogram's
    _bucket/_sum/_count...), read from its metric families, which exist before any sample."""
    from orchestrator import metrics

    suffixes = {"counter": ("_total", "_created"), "histogram": ("_bucket", "_sum", "_count", "_created"),
                "gauge": ("",), "summary": ("", "_sum", "_count", "_created"), "info": ("_info",)}
    names = set()
    for family in metrics.REGISTRY.collect():
        names |= {family.name + s for s in suffixes.get(family.type, ("",))}
        names |= {sample.name for sample in family.samples}
    return names


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression reads: what is left once strings, label matchers, ranges, grouping
    labels, Grafana variables, functions and keywords are taken out."""
    if match := re.fullmatch(r"\s*label_values\(\s*([A-Za-z_:][\w:]*)\s*(\{[^}]*\})?\s*,\s*\w+\s*\)\s*", expr):
        return {match.group(1)}
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\$\w+", "", text)
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    return {m.group(0) for m in re.finditer(r"[A-Za-z_:][\w:]*(?!\w)(?!\s*\()", text)
            if m.group(0) not in PROMQL_KEYWORDS}


def registry_labels() -> dict[str, set[str]]:
    """Series name -> the label names the platform gives it (a histogram's buckets also have `le`)."""
    from prometheus_client.metrics import MetricWrapperBase

    from orchestrator import metrics

    labels: dict[str, set[str]] = {}
    for metric in vars(metrics).values():
        if isinstance(metric, MetricWrapperBase):
            names = set(metric._labelnames)
            for suffix in ("", "_total", "_sum", "_count"):
                labels[metric._name + suffix] = names
            labels[metric._name + "_bucket"] = names | {"le"}
    return labels


def promql_label_names(expr: str) -> set[str]:
    """Label names an expression matches on or groups by (Grafana's legend templates excluded)."""
    matchers = re.findall(r"\{([^}]*)\}", re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr))
    names = {m for body in matchers for m in re.findall(r"(\w+)\s*[=!]~?", body)}
    for group in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", expr):
        names |= {n.strip() for n in group.split(",") if n.strip()}
    if match := re.fullmatch(r"\s*label_values\(.*,\s*(\w+)\s*\)\s*", expr):
        names.add(match.group(1))
    return names


def dashboard_queries(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_the_dashboard_configmap_is_off_by_default_and_labelled_for_the_sidecar() -> None:
    for value_set in ("default", "external", "bundled", "existing-secret"):
        assert not [d for d in objects(value_set) if d["metadata"]["name"].endswith("-grafana-dashboard")]
    docs = render_values({**VALUE_SETS["default"], "monitoring": {"grafanaDashboard": {
        "enabled": True, "namespace": "grafana", "annotations": {"grafana_folder": "Nango"}}}})
    cm = find(docs, "ConfigMap", "-grafana-dashboard")
    assert cm["metadata"]["namespace"] == "grafana"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["metadata"]["annotations"]["grafana_folder"] == "Nango"
    (name,) = cm["data"]
    assert name.endswith(".json")
    assert json.loads(cm["data"][name]) == json.loads(DASHBOARD_FILE.read_text())


def test_every_dashboard_query_reads_metrics_the_platform_exports() -> None:
    dashboard = json.loads(DASHBOARD_FILE.read_text())
    assert dashboard["uid"] and dashboard["title"]
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    exported = registry_sample_names()
    queries = dashboard_queries(dashboard)
    labels = registry_labels()
    used: set[str] = set()
    for expr in queries:
        names = promql_metric_names(expr)
        assert names, expr
        assert names <= exported, f"{sorted(names - exported)} not in orchestrator/metrics.py's registry: {expr}"
        used |= names
        # every label it filters or groups by is one these metrics have (namespace: Prometheus' target label)
        known = set.intersection(*(labels[n] for n in names)) | {"namespace"}
        assert promql_label_names(expr) <= known, f"{sorted(promql_label_names(expr) - known)}: {expr}"
    # what the issue asks the dashboard to show
    assert {"nango_runs_finished_total", "nango_run_duration_seconds_bucket", "nango_records_changed_total",
            "nango_provider_requests_total", "nango_provider_retries_total", "nango_webhook_deliveries_total",
            "nango_token_refreshes_total", "nango_worker_slots_in_use",
            "nango_records_api_duration_seconds_bucket"} <= used
    assert any('status="429"' in e and "nango_provider_requests_total" in e for e in queries)
    # every panel reads the dashboard's data source variable, so it works with any Prometheus data source
    for panel in dashboard["panels"]:
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    # the extraction itself: a name inside a matcher, a range or a grouping is not a metric
    example = 'sum by (le, kind) (rate(a_b{c="d_e", f!~"g"}[$__rate_interval])) / on (x) b_c'
    assert promql_metric_names(example) == {"a_b", "b_c"}
    assert promql_label_names(example) == {"le", "kind", "c", "f", "x"}


def test_the_dashboard_queries_parse_as_promql(tmp_path: Path) -> None:
    """promtool (Debian's prometheus package, `make metrics-tools`) parses each query as a recording rule."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.skip("promtool is absent: the queries' syntax is not checked here")
    import subprocess

    variables = {"$__rate_interval": "5m", "$__range": "1h"}
    rules = []
    for i, expr in enumerate(dashboard_queries(json.loads(DASHBOARD_FILE.read_text()))):
        if expr.startswith("label_values("):
            expr = expr[len("label_values("):].rsplit(",", 1)[0]  # its series selector
        for name, value in variables.items():
            expr = expr.replace(name, value)
        rules.append({"record": f"nango:dashboard_query_{i}", "expr": re.sub(r"\$\w+", ".*", expr)})
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    proc = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_notes_and_readme_cover_metrics_and_traces() -> None:
    with helm.Chart.load(str(CHART)) as chart:
        notes = chart.render(MONITORS_ON | {"tracing": {"otlpEndpoint": "http://collector:4318"}}, name=RELEASE,
                             namespace=NAMESPACE, is_install=True)["nango-orchestrator/templates/NOTES.txt"]
    assert "scrapes every pod twice" in notes  # both kinds on: a warning
    assert "OTLP to http://collector:4318 as nango-api and nango-worker" in notes
    assert "scrapes every pod twice" not in render("external")["nango-orchestrator/templates/NOTES.txt"]
    # every value of monitoring.* and tracing.* is in the chart README
    readme = (CHART.parent / "README.md").read_text()
    defaults = yaml.safe_load((CHART / "values.yaml").read_text())

    def leaves(tree: dict[str, Any], prefix: str) -> list[str]:
        return [name for key, value in tree.items() for name in (
            leaves(value, f"{prefix}.{key}") if isinstance(value, dict) and value and key != "labels"
            else [f"{prefix}.{key}"])]
    # "`a.b` / `.c`" in a table row documents a.b and a.c; a monitor's values are documented once for both kinds
    documented = set(re.findall(r"`([\w.*]+)`", readme))
    documented |= {f"{a}.{c}" for a, _, c in re.findall(r"`([\w.*]+)\.(\w+)` / `\.(\w+)`", readme)}
    for name in leaves(defaults["monitoring"], "monitoring") + leaves(defaults["tracing"], "tracing"):
        generic = re.sub(r"\.(service|pod)Monitor\.", ".*Monitor.", name)
        assert {name, generic} & documented, f"{name} is not in deploy/helm/README.md"
