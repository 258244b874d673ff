"""The Kubernetes manifests agree with the app, the image and each other: port, probes, user, namespace, policy."""

import re

import pytest
import yaml

from app.main import create_app
from app.settings import Settings, setting_variables
from tests.helpers import REPO_ROOT

K8S = REPO_ROOT / "deploy" / "k8s"


def _manifest(name: str) -> dict:
    return yaml.safe_load((K8S / name).read_text())


@pytest.fixture(scope="module")
def container() -> dict:
    [only] = _manifest("deployment.yaml")["spec"]["template"]["spec"]["containers"]
    return only


def _dockerfile_value(instruction: str) -> str:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    return re.search(rf"^{instruction}\s+(.+)$", dockerfile, re.MULTILINE).group(1).strip()


def test_container_ports_are_the_ports_the_image_listens_on(container):
    assert _dockerfile_value("EXPOSE") == "8000 8001"
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert re.search(r"^\s+PORT=8000 \\$", dockerfile, re.MULTILINE)
    assert re.search(r"^\s+GRPC_PORT=8001 \\$", dockerfile, re.MULTILINE)
    assert container["ports"] == [{"name": "http", "containerPort": 8000}, {"name": "grpc", "containerPort": 8001}]
    service_ports = {port["name"]: port["targetPort"] for port in _manifest("service.yaml")["spec"]["ports"]}
    assert service_ports == {"http": "http", "grpc": "grpc"}


def test_probes_use_the_apps_health_and_readiness_routes(container):
    paths = set(create_app(Settings()).app.openapi()["paths"])
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["startupProbe"]["httpGet"]["path"] == "/readyz"
    for probe in ("livenessProbe", "startupProbe"):
        assert container[probe]["httpGet"]["path"] in paths
        assert container[probe]["httpGet"]["port"] == "http"
    # Readiness through the gRPC door's health service (the server's own, service ""), on its port.
    assert container["readinessProbe"]["grpc"] == {"port": Settings().grpc_port}


def test_pod_runs_as_the_images_non_root_user_on_a_read_only_root(container):
    pod = _manifest("deployment.yaml")["spec"]["template"]["spec"]
    image_user, image_group = _dockerfile_value("USER").split(":")
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert str(pod["securityContext"]["runAsUser"]) == image_user != "0"
    assert str(pod["securityContext"]["runAsGroup"]) == image_group
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert {mount["mountPath"] for mount in container["volumeMounts"]} == {"/tmp"}


def test_resources_have_requests_and_limits(container):
    assert set(container["resources"]) == {"requests", "limits"}
    for kind in ("requests", "limits"):
        assert set(container["resources"][kind]) == {"cpu", "memory"}


def test_service_and_autoscaler_point_at_the_deployment():
    deployment = _manifest("deployment.yaml")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert _manifest("service.yaml")["spec"]["selector"].items() <= labels.items()
    target = _manifest("hpa.yaml")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", deployment["metadata"]["name"])


def test_settings_named_in_the_manifest_exist(container):
    assert {variable["name"] for variable in container["env"]} <= set(setting_variables())


def test_everything_lives_in_the_namespace_applied_first():
    # kubectl apply -f deploy/k8s/ applies files in name order: the namespace must exist first.
    assert sorted(path.name for path in K8S.glob("*.yaml"))[0] == "00-namespace.yaml"
    namespace = _manifest("00-namespace.yaml")["metadata"]["name"]
    for name in ("deployment.yaml", "service.yaml", "hpa.yaml", "networkpolicy.yaml"):
        assert _manifest(name)["metadata"]["namespace"] == namespace, name


def test_network_policy_admits_the_pods_http_and_grpc_ports_only(container):
    policy = _manifest("networkpolicy.yaml")["spec"]
    labels = _manifest("deployment.yaml")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items()
    [rule] = policy["ingress"]
    assert rule["ports"] == [{"port": "http", "protocol": "TCP"}, {"port": "grpc", "protocol": "TCP"}]
    assert {"http", "grpc"} <= {port["name"] for port in container["ports"]}
    assert policy["egress"] == []
