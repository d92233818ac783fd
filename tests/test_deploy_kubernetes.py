"""Kubernetes manifests: schemas, kustomize, probes, shutdown and security.

Every manifest is validated strictly (unknown fields fail) against the
Kubernetes OpenAPI schemas that kubernetes-validate ships, for the oldest
and the newest version checked here. The ServiceMonitor is a custom resource
of the Prometheus Operator, whose schema no package installed here ships;
its fields are checked against the Service it selects instead.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from service_helpers import ROOT

KUSTOMIZE_DIR = ROOT / "deploy" / "kubernetes"
OLDEST_VERSION = "1.30"
CUSTOM_KINDS = {"ServiceMonitor"}
SHUTDOWN_TIMEOUT_S = 20
PRESTOP_SLEEP_S = 5


def kustomization() -> dict[str, Any]:
    return yaml.safe_load((KUSTOMIZE_DIR / "kustomization.yaml").read_text("utf-8"))


def manifest_files() -> list[Path]:
    return [KUSTOMIZE_DIR / name for name in kustomization()["resources"]]


def load_documents(path: Path) -> list[dict[str, Any]]:
    return [doc for doc in yaml.safe_load_all(path.read_text("utf-8")) if doc]


def resources_of_kind(kind: str) -> list[dict[str, Any]]:
    return [
        document
        for path in manifest_files()
        for document in load_documents(path)
        if document["kind"] == kind
    ]


def one_resource(kind: str) -> dict[str, Any]:
    (resource,) = resources_of_kind(kind)
    return resource


def container() -> dict[str, Any]:
    (serving,) = one_resource("Deployment")["spec"]["template"]["spec"]["containers"]
    return serving


def env_entries() -> dict[str, dict[str, Any]]:
    return {entry["name"]: entry for entry in container()["env"]}


def standard_documents() -> list[Any]:
    return [
        pytest.param(document, id=f"{path.name}:{document['kind']}")
        for path in manifest_files()
        for document in load_documents(path)
        if document["kind"] not in CUSTOM_KINDS
    ]


@pytest.mark.parametrize("document", standard_documents())
@pytest.mark.parametrize(
    "version", [OLDEST_VERSION, kubernetes_validate.latest_version()]
)
def test_manifest_matches_kubernetes_schema(document, version):
    validated = kubernetes_validate.validate(document, version, strict=True)

    assert validated


def test_kustomization_lists_every_manifest():
    on_disk = {path.name for path in KUSTOMIZE_DIR.glob("*.yaml")}

    listed = set(kustomization()["resources"]) | {"kustomization.yaml"}

    assert listed == on_disk


def test_kustomize_build_renders_every_resource():
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl not found: install kubectl, which includes kustomize")
    expected = sum(len(load_documents(path)) for path in manifest_files())

    result = subprocess.run(
        [kubectl, "kustomize", str(KUSTOMIZE_DIR)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert len([d for d in yaml.safe_load_all(result.stdout) if d]) == expected


def test_deployment_probes_readiness_on_readyz():
    probe = container()["readinessProbe"]

    assert probe["httpGet"]["path"] == "/readyz"


def test_deployment_probes_liveness_on_healthz():
    probe = container()["livenessProbe"]

    assert probe["httpGet"]["path"] == "/healthz"


def test_deployment_grace_period_outlasts_drain():
    spec = one_resource("Deployment")["spec"]["template"]["spec"]

    drain = int(env_entries()["WATCHTIME_SHUTDOWN_TIMEOUT_S"]["value"])
    assert drain == SHUTDOWN_TIMEOUT_S
    assert spec["terminationGracePeriodSeconds"] > PRESTOP_SLEEP_S + drain


def test_deployment_prestop_pauses_before_sigterm():
    pre_stop = container()["lifecycle"]["preStop"]

    assert pre_stop["exec"]["command"] == ["sleep", str(PRESTOP_SLEEP_S)]


def test_deployment_sets_cpu_and_memory_limits():
    resources = container()["resources"]

    assert set(resources["limits"]) == {"cpu", "memory"}
    assert set(resources["requests"]) == {"cpu", "memory"}


def test_deployment_runs_as_non_root():
    pod = one_resource("Deployment")["spec"]["template"]["spec"]["securityContext"]

    assert pod["runAsNonRoot"] is True
    assert pod["runAsUser"] != 0


def test_deployment_root_filesystem_read_only():
    security = container()["securityContext"]

    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False


def test_deployment_tmp_is_empty_dir():
    volumes = one_resource("Deployment")["spec"]["template"]["spec"]["volumes"]
    mounts = {
        mount["mountPath"]: mount["name"] for mount in container()["volumeMounts"]
    }

    (tmp,) = [volume for volume in volumes if volume["name"] == mounts["/tmp"]]
    assert "emptyDir" in tmp


def test_deployment_mounts_model_repository_read_only():
    mounts = {mount["mountPath"]: mount for mount in container()["volumeMounts"]}

    repository = env_entries()["WATCHTIME_MODEL_REPOSITORY"]["value"]
    assert mounts[repository]["readOnly"] is True


def test_deployment_admin_token_comes_from_secret():
    token = env_entries()["WATCHTIME_ADMIN_TOKEN"]

    assert "value" not in token
    assert token["valueFrom"]["secretKeyRef"]["optional"] is True


def test_deployment_leaves_threads_to_service():
    names = set(env_entries())

    assert "WATCHTIME_INTRA_OP_THREADS" not in names


def test_autoscaler_targets_deployment_cpu():
    spec = one_resource("HorizontalPodAutoscaler")["spec"]

    deployment = one_resource("Deployment")["metadata"]["name"]
    assert spec["scaleTargetRef"]["name"] == deployment
    assert spec["metrics"][0]["resource"]["name"] == "cpu"


def test_disruption_budget_selects_deployment_pods():
    selector = one_resource("PodDisruptionBudget")["spec"]["selector"]

    labels = one_resource("Deployment")["spec"]["template"]["metadata"]["labels"]
    assert selector["matchLabels"].items() <= labels.items()


def test_service_monitor_selects_service():
    selector = one_resource("ServiceMonitor")["spec"]["selector"]["matchLabels"]

    labels = one_resource("Service")["metadata"]["labels"]
    assert selector.items() <= labels.items()


def test_service_monitor_scrapes_named_service_port():
    (endpoint,) = one_resource("ServiceMonitor")["spec"]["endpoints"]

    ports = {port["name"] for port in one_resource("Service")["spec"]["ports"]}
    assert endpoint["port"] in ports
    assert endpoint["path"] == "/metrics"


def test_service_targets_container_port():
    (port,) = one_resource("Service")["spec"]["ports"]

    names = {p["name"] for p in container()["ports"]}
    assert port["targetPort"] in names
