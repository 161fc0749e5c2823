"""deploy/: every manifest validates against a current Kubernetes, and the
settings the manifests pass are ones the binary accepts."""

from __future__ import annotations

import base64
import re
import subprocess
from pathlib import Path

import yaml

from conftest import BINARY, ROOT

BASE = ROOT / "deploy" / "base"
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


def test_the_binary_accepts_the_settings_the_manifests_pass(tmp_path):
    settings = manifest("configmap.yaml")["data"]
    mounts = mounted_files(tmp_path)
    env = {}
    for key, value in settings.items():
        for mount_path, local in mounts.items():
            if value.startswith(mount_path + "/"):
                value = str(local) + value[len(mount_path):]
        env[key] = value
    for setting in ["MTR_SSO_API_KEY_FILE", "MTR_SSO_CALLER_TOKENS_FILE", "MTR_SSO_POLICY_FILE"]:
        assert Path(env[setting]).is_file(), f"{setting} points into a mounted volume"
    result = subprocess.run([str(BINARY), "--check-config"], env=env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "configuration OK"

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
