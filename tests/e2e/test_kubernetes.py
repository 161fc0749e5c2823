"""deploy/: every manifest validates against a current Kubernetes, the
settings the manifests pass are ones the binary accepts, and the optional
monitoring component scrapes what the base serves."""

from __future__ import annotations

import base64
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from conftest import BINARY, ROOT

BASE = ROOT / "deploy" / "base"
OVERLAYS = ROOT / "deploy" / "overlays"
MONITORING = ROOT / "deploy" / "components" / "monitoring"
KUBERNETES_VERSION = "1.37.0"


def manifest(name: str) -> dict:
    return yaml.safe_load((BASE / name).read_text())


def kustomize_resources() -> list[str]:
    return manifest("kustomization.yaml")["resources"]


def duration_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", text)
    assert match, text
    return int(match.group(1)) * units[match.group(2)]


def test_kustomization_lists_every_manifest():
    files = sorted(p.name for p in BASE.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kustomize_resources()) == files


def test_every_manifest_validates_strictly_against_a_current_kubernetes():
    for name in kustomize_resources():
        result = subprocess.run(
            ["kubernetes-validate", "--strict", "-k", KUBERNETES_VERSION, str(BASE / name)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0 and "passed" in result.stdout + result.stderr, result.stdout + result.stderr


def mounted_files(tmp_path: Path) -> dict[str, Path]:
    """Every file the Deployment mounts, written under tmp_path from its
    ConfigMap or Secret; maps the in-pod mount path to the local directory."""
    pod = manifest("deployment.yaml")["spec"]["template"]["spec"]
    sources = {}
    for name in kustomize_resources():
        resource = manifest(name)
        if resource["kind"] in ("ConfigMap", "Secret"):
            data = dict(resource.get("data", {}))
            if resource["kind"] == "Secret":
                data = {k: base64.b64decode(v).decode() for k, v in data.items()}
                data.update(resource.get("stringData", {}))
            sources[(resource["kind"], resource["metadata"]["name"])] = data
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {}
    for mount in pod["containers"][0]["volumeMounts"]:
        volume = volumes[mount["name"]]
        key = ("Secret", volume["secret"]["secretName"]) if "secret" in volume else ("ConfigMap", volume["configMap"]["name"])
        local = tmp_path / mount["name"]
        local.mkdir()
        for filename, content in sources[key].items():
            (local / filename).write_text(content)
        mounts[mount["mountPath"]] = local
    return mounts


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_redis(password: str, workdir: Path) -> tuple[subprocess.Popen, int]:
    """A real redis-server on loopback that requires `password`, as the base's own does."""
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--requirepass", password,
         "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return server, port
        except OSError:
            time.sleep(0.05)
    server.kill()
    raise AssertionError("redis-server did not start")


def test_the_binary_accepts_the_settings_the_manifests_pass(tmp_path):
    settings = manifest("configmap.yaml")["data"]
    mounts = mounted_files(tmp_path)
    env = {}
    for key, value in settings.items():
        for mount_path, local in mounts.items():
            if value.startswith(mount_path + "/"):
                value = str(local) + value[len(mount_path):]
        env[key] = value
    for setting in ["MTR_SSO_API_KEY_FILE", "MTR_SSO_CALLER_TOKENS_FILE", "MTR_SSO_POLICY_FILE",
                    "MTR_SSO_REDIS_PASSWORD_FILE"]:
        assert Path(env[setting]).is_file(), f"{setting} points into a mounted volume"
    # The base's Redis, played by a local redis-server with the Secret's password:
    # --check-config connects to Redis, as the start does.
    password = Path(env["MTR_SSO_REDIS_PASSWORD_FILE"]).read_text().strip()
    redis, port = start_redis(password, tmp_path)
    try:
        assert env["MTR_SSO_REDIS_URL"] == "redis://mtr-sso-redis:6379"
        env["MTR_SSO_REDIS_URL"] = f"redis://127.0.0.1:{port}"
        result = subprocess.run([str(BINARY), "--check-config"], env=env, capture_output=True, text=True, timeout=30)
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "configuration OK"
        wrong = tmp_path / "wrong-password"
        wrong.write_text("not-the-password")
        refused = dict(env, MTR_SSO_REDIS_PASSWORD_FILE=str(wrong))
        result = subprocess.run([str(BINARY), "--check-config"], env=refused, capture_output=True, text=True, timeout=30)
        assert result.returncode == 64 and "--redis-password-file" in result.stderr, result.stderr
    finally:
        redis.kill()
        redis.wait()
    # Without Redis, the shipped settings refuse to start rather than split the quota.
    without_redis = {k: v for k, v in env.items() if not k.startswith("MTR_SSO_REDIS_")}
    result = subprocess.run([str(BINARY), "--check-config"], env=without_redis, capture_output=True, text=True, timeout=30)
    assert result.returncode == 64 and "--require-shared-state" in result.stderr, result.stderr

    broken = dict(env, MTR_SSO_UPSTREAM_TIMEOUT="soon")
    result = subprocess.run([str(BINARY), "--check-config"], env=broken, capture_output=True, text=True, timeout=30)
    assert result.returncode == 64 and "--upstream-timeout" in result.stderr


def test_deployment_probes_security_and_shutdown_timing_fit_the_service():
    deployment = manifest("deployment.yaml")
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    settings = manifest("configmap.yaml")["data"]
    port = int(settings["MTR_SSO_LISTEN"].rsplit(":", 1)[1])
    health_port = int(settings["MTR_SSO_HEALTH_LISTEN"].rsplit(":", 1)[1])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert (ports["grpc"], ports["health"]) == (port, health_port)
    # Probes use the plaintext health port: the kubelet cannot authenticate as a caller.
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"]:
        assert container[probe]["grpc"]["port"] == health_port, probe
    assert container["readinessProbe"]["grpc"]["service"] == "matchtrader.sso.v1.SsoService"

    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    drain = duration_seconds(settings["MTR_SSO_SHUTDOWN_GRACE"])
    assert pod["terminationGracePeriodSeconds"] > pre_stop + drain

    assert pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert "memory" in container["resources"]["limits"] and "cpu" in container["resources"]["requests"]

    mount_paths = {m["mountPath"] for m in container["volumeMounts"] if m["readOnly"] is True}
    for setting in ["MTR_SSO_API_KEY_FILE", "MTR_SSO_CALLER_TOKENS_FILE", "MTR_SSO_POLICY_FILE"]:
        assert str(Path(settings[setting]).parent) in mount_paths, setting


def test_metrics_are_served_and_scraped_on_the_same_port():
    settings = manifest("configmap.yaml")["data"]
    port = int(settings["MTR_SSO_METRICS_ADDR"].rsplit(":", 1)[1])
    template = manifest("deployment.yaml")["spec"]["template"]
    ports = {p["name"]: p["containerPort"] for p in template["spec"]["containers"][0]["ports"]}
    assert ports["metrics"] == port
    annotations = template["metadata"]["annotations"]
    assert annotations["prometheus.io/scrape"] == "true"
    assert int(annotations["prometheus.io/port"]) == port and annotations["prometheus.io/path"] == "/metrics"


def test_network_policy_admits_callers_on_grpc_and_monitoring_on_metrics_only():
    policy = manifest("networkpolicy.yaml")["spec"]
    grpc_rule, metrics_rule = policy["ingress"]
    assert grpc_rule["ports"] == [{"protocol": "TCP", "port": 50051}]
    assert list(grpc_rule["from"][0]) == ["namespaceSelector"]
    assert metrics_rule["ports"] == [{"protocol": "TCP", "port": 9090}]
    assert metrics_rule["from"][0]["namespaceSelector"]["matchLabels"] == {"kubernetes.io/metadata.name": "monitoring"}
    assert manifest("service.yaml")["spec"]["ports"][0]["targetPort"] == "grpc"
    assert manifest("poddisruptionbudget.yaml")["spec"]["minAvailable"] == 1
    hpa = manifest("horizontalpodautoscaler.yaml")["spec"]
    assert hpa["minReplicas"] >= 2 and hpa["scaleTargetRef"]["name"] == "mtr-sso"


def kustomize_build(directory: Path) -> list[dict]:
    kubectl = shutil.which("kubectl")
    assert kubectl, "kubectl (with its built-in kustomize) is installed by scripts/setup"
    result = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return [doc for doc in yaml.safe_load_all(result.stdout) if doc]


def by_kind_and_name(documents: list[dict]) -> dict[tuple[str, str], dict]:
    return {(d["kind"], d["metadata"]["name"]): d for d in documents}


def validate_built(documents: list[dict], tmp_path: Path, name: str) -> None:
    built = tmp_path / f"{name}.yaml"
    built.write_text(yaml.safe_dump_all(documents))
    result = subprocess.run(
        ["kubernetes-validate", "--strict", "-k", KUBERNETES_VERSION, str(built)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0 and "passed" in result.stdout + result.stderr, result.stdout + result.stderr


def test_the_base_brings_its_own_redis_and_every_replica_points_at_it(tmp_path):
    documents = by_kind_and_name(kustomize_build(BASE))
    redis = documents[("StatefulSet", "mtr-sso-redis")]["spec"]
    container = redis["template"]["spec"]["containers"][0]
    image = container["image"].split(":")[0]
    assert image in ("redis", "valkey/valkey"), image
    args = container["args"]
    # Persistence off: everything stored is short-lived.
    assert args[args.index("--save") + 1] == "" and args[args.index("--appendonly") + 1] == "no"
    assert args[args.index("--requirepass") + 1] == "$(REDIS_PASSWORD)"
    password_ref = next(e for e in container["env"] if e["name"] == "REDIS_PASSWORD")["valueFrom"]["secretKeyRef"]
    assert password_ref == {"name": "mtr-sso-redis", "key": "password"}

    service = documents[("Service", "mtr-sso-redis")]["spec"]
    assert service["selector"].items() <= redis["template"]["metadata"]["labels"].items()
    settings = documents[("ConfigMap", "mtr-sso")]["data"]
    assert settings["MTR_SSO_REDIS_URL"] == f"redis://mtr-sso-redis:{service['ports'][0]['port']}"
    assert settings["MTR_SSO_REQUIRE_SHARED_STATE"] == "true"
    # While Redis is out each replica spends quota / MTR_SSO_REPLICAS: below
    # the autoscaler's ceiling, the fleet could overspend.
    autoscaler = documents[("HorizontalPodAutoscaler", "mtr-sso")]["spec"]
    assert int(settings["MTR_SSO_REPLICAS"]) >= autoscaler["maxReplicas"]
    pod = documents[("Deployment", "mtr-sso")]["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    mounted_from = next(name for name, secret in secrets.items() if secret == "mtr-sso-redis")
    assert settings["MTR_SSO_REDIS_PASSWORD_FILE"] == mounts[mounted_from] + "/password"
    pod_name = next(e for e in pod["containers"][0]["env"] if e["name"] == "MTR_SSO_POD_NAME")
    assert pod_name["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"

    # Only mtr-sso's pods reach Redis; mtr-sso may reach it.
    policy = documents[("NetworkPolicy", "mtr-sso-redis")]["spec"]
    assert policy["podSelector"]["matchLabels"] == redis["selector"]["matchLabels"]
    (rule,) = policy["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "mtr-sso"}}}]
    assert rule["ports"] == [{"protocol": "TCP", "port": 6379}]
    egress = documents[("NetworkPolicy", "mtr-sso")]["spec"]["egress"]
    assert any(r.get("to") == [{"podSelector": {"matchLabels": redis["selector"]["matchLabels"]}}] for r in egress)
    validate_built(list(documents.values()), tmp_path, "base")


def test_the_managed_redis_overlay_has_no_redis_of_its_own_and_points_at_a_tls_endpoint(tmp_path):
    documents = by_kind_and_name(kustomize_build(OVERLAYS / "managed-redis"))
    assert not [key for key in documents if key[1] == "mtr-sso-redis" and key[0] != "Secret"], sorted(documents)
    assert not any(d["kind"] == "StatefulSet" for d in documents.values())
    settings = documents[("ConfigMap", "mtr-sso")]["data"]
    assert settings["MTR_SSO_REDIS_URL"].startswith("rediss://")
    egress = documents[("NetworkPolicy", "mtr-sso")]["spec"]["egress"]
    assert not any("to" in rule for rule in egress), "no rule names the base's Redis pods"
    assert any({"protocol": "TCP", "port": 6379} in rule.get("ports", []) for rule in egress)
    validate_built(list(documents.values()), tmp_path, "managed-redis")


def component(name: str) -> dict:
    return yaml.safe_load((MONITORING / name).read_text())


def test_the_monitoring_component_lists_its_manifests_in_the_base_s_namespace():
    kustomization = component("kustomization.yaml")
    assert (kustomization["apiVersion"], kustomization["kind"]) == ("kustomize.config.k8s.io/v1alpha1", "Component")
    files = sorted(p.name for p in MONITORING.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == files == ["prometheusrule.yaml", "servicemonitor.yaml"]
    assert kustomization["namespace"] == manifest("kustomization.yaml")["namespace"]
    kinds = {component(name)["kind"]: component(name)["apiVersion"] for name in files}
    assert kinds == {"PrometheusRule": "monitoring.coreos.com/v1", "ServiceMonitor": "monitoring.coreos.com/v1"}


def test_the_service_monitor_scrapes_the_metrics_port_of_every_replica_as_job_mtr_sso():
    monitor = component("servicemonitor.yaml")["spec"]
    base_labels = manifest("kustomization.yaml")["labels"][0]["pairs"]
    service = manifest("service.yaml")
    service_labels = {**service["metadata"].get("labels", {}), **base_labels}
    assert monitor["selector"]["matchLabels"].items() <= service_labels.items()
    (endpoint,) = monitor["endpoints"]
    ports = {p["name"]: p for p in service["spec"]["ports"]}
    assert endpoint["port"] in ports and endpoint["path"] == "/metrics"
    container = manifest("deployment.yaml")["spec"]["template"]["spec"]["containers"][0]
    container_ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    metrics_port = int(manifest("configmap.yaml")["data"]["MTR_SSO_METRICS_ADDR"].rsplit(":", 1)[1])
    assert container_ports[ports[endpoint["port"]]["targetPort"]] == metrics_port
    # The job label comes from a Service label; MtrSsoDown looks for that job.
    job = service_labels[monitor["jobLabel"]]
    rules = yaml.safe_load((ROOT / "deploy" / "monitoring" / "rules.yaml").read_text())["groups"]
    down = next(r for g in rules for r in g["rules"] if r.get("alert") == "MtrSsoDown")
    assert f'up{{job="{job}"}}' in down["expr"]
    # The metrics' own `endpoint` label must not be renamed by the target label of that name.
    assert endpoint["honorLabels"] is True
    # The NetworkPolicy lets Prometheus (namespace monitoring) reach that port.
    policy = manifest("networkpolicy.yaml")["spec"]
    assert any(rule["ports"] == [{"protocol": "TCP", "port": metrics_port}] for rule in policy["ingress"])


def test_an_overlay_of_the_base_and_the_monitoring_component_builds(tmp_path):
    overlay = tmp_path / "overlay"
    overlay.mkdir()
    (overlay / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(BASE, overlay)], "components": [os.path.relpath(MONITORING, overlay)]}))
    documents = kustomize_build(overlay)
    built = by_kind_and_name(documents)
    base = by_kind_and_name(kustomize_build(BASE))
    assert set(built) == set(base) | {("PrometheusRule", "mtr-sso"), ("ServiceMonitor", "mtr-sso")}
    for kind in ("PrometheusRule", "ServiceMonitor"):
        resource = built[(kind, "mtr-sso")]
        assert resource["metadata"]["namespace"] == "mtr-sso"
        assert resource["metadata"]["labels"]["app.kubernetes.io/name"] == "mtr-sso"
    assert built[("PrometheusRule", "mtr-sso")]["spec"] == component("prometheusrule.yaml")["spec"]
    # The selector also matches the base's other Services (they carry the same
    # name label), but only mtr-sso's has the port scraped: one job of replicas.
    monitor = built[("ServiceMonitor", "mtr-sso")]["spec"]
    selected = [d for d in documents if d["kind"] == "Service"
                and monitor["selector"]["matchLabels"].items() <= d["metadata"]["labels"].items()
                and any(p["name"] == monitor["endpoints"][0]["port"] for p in d["spec"]["ports"])]
    assert [s["metadata"]["name"] for s in selected] == ["mtr-sso"]
    assert selected[0]["metadata"]["labels"][monitor["jobLabel"]] == "mtr-sso"
