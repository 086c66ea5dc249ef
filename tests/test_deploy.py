"""What ships to production, checked offline: the lockfiles cover pyproject, the Dockerfiles
keep their rules (hadolint, and ours), and both Kubernetes overlays render, validate
strictly against the Kubernetes schemas, and hold the properties operators rely on
(docs/deployment.md)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from core.settings import Settings, load_settings

ROOT = Path(__file__).parent.parent
BIN = Path(sys.executable).parent
DOCKERFILES = (ROOT / "deploy" / "Dockerfile", ROOT / "deploy" / "slm.Dockerfile")
OVERLAYS = ("dev", "prod")
#: Kinds whose schemas Kubernetes does not carry (the prometheus-operator's).
CUSTOM_KINDS = {"ServiceMonitor", "PrometheusRule"}


def _run(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=120, check=False
    )


def _name(requirement: str) -> str:
    return re.split(r"[<>=!\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _locked(lockfile: str) -> set[str]:
    lines = (ROOT / lockfile).read_text().splitlines()
    return {_name(line) for line in lines if line and not line.startswith((" ", "#"))}


def test_the_lockfiles_pin_everything_pyproject_asks() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert {_name(r) for r in project["dependencies"]} <= _locked("requirements.lock")
    extras = {_name(r) for group in project["optional-dependencies"].values() for r in group}
    assert extras <= _locked("requirements-dev.lock")
    for lockfile in ("requirements.lock", "requirements-dev.lock"):
        pins = [
            line
            for line in (ROOT / lockfile).read_text().splitlines()
            if line and not line.startswith((" ", "#"))
        ]
        assert all("==" in line for line in pins), lockfile


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_finds_nothing(dockerfile: Path) -> None:
    result = _run(BIN / "hadolint", dockerfile)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_images_are_built_in_stages_and_run_unprivileged(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    base = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE)
    assert base and re.fullmatch(r"python:\d+\.\d+\.\d+-slim-\w+(@sha256:[0-9a-f]{64})?", base[1])
    stages = re.split(r"^FROM ", text, flags=re.MULTILINE)[1:]
    assert len(stages) >= 2 and all(s.startswith("${PYTHON_IMAGE}") for s in stages)
    final = stages[-1]
    user = re.search(r"^USER (\S+)$", final, re.MULTILINE)
    assert user and user[1].split(":")[0] not in ("0", "root")
    assert re.search(r"^HEALTHCHECK .*CMD", final, re.MULTILINE | re.DOTALL)
    for tool in ("apt-get", "build-essential", "gcc", "cmake", "pip install"):
        assert tool not in final, f"the final stage of {dockerfile.name} runs {tool}"


def test_the_product_image_installs_the_lockfile_without_the_dev_servers() -> None:
    text = DOCKERFILES[0].read_text()
    assert "pip install --no-compile -r requirements.lock" in text
    assert "pip install --no-compile --no-deps ." in text
    assert "[embedded" not in text and "requirements-dev.lock" not in text
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "tests"} <= set(ignored)


@cache
def _rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    result = _run(BIN / "kubectl", "kustomize", ROOT / "deploy" / "k8s" / "overlays" / overlay)
    assert result.returncode == 0, result.stderr
    return tuple(d for d in yaml.safe_load_all(result.stdout) if d)


def _of_kind(overlay: str, kind: str) -> list[dict[str, Any]]:
    return [d for d in _rendered(overlay) if d["kind"] == kind]


def _pod_templates(overlay: str) -> list[dict[str, Any]]:
    owners = _of_kind(overlay, "Deployment") + _of_kind(overlay, "Job")
    return [owner["spec"]["template"] for owner in owners]


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    wanted = selector.get("matchLabels", {})
    return all(labels.get(k) == v for k, v in wanted.items()) and all(
        labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions", [])
    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_overlay_validates_strictly(overlay: str, tmp_path: Path) -> None:
    files = []
    for index, document in enumerate(_rendered(overlay)):
        if document["kind"] in CUSTOM_KINDS:
            assert document["apiVersion"] == "monitoring.coreos.com/v1" and document["spec"]
            continue
        files.append(tmp_path / f"{index:02d}.yaml")
        files[-1].write_text(yaml.safe_dump(document))
    result = _run(BIN / "kubernetes-validate", "--strict", "--quiet", *files)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_are_probed_bounded_and_unprivileged(overlay: str) -> None:
    deployments = _of_kind(overlay, "Deployment")
    assert {d["metadata"]["name"] for d in deployments} == {
        "orchestrator-api",
        "orchestrator-worker",
        "orchestrator-slm-worker",
    }
    for template in _pod_templates(overlay):
        spec = template["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["automountServiceAccountToken"] is False
        for container in spec["containers"]:
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"]["drop"] == ["ALL"]
            assert {"cpu", "memory"} <= set(container["resources"]["requests"])
            assert {"cpu", "memory"} <= set(container["resources"]["limits"])
    for deployment in deployments:
        spec = deployment["spec"]["template"]["spec"]
        (container,) = spec["containers"]
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
        # Above the worker's 20 s drain and the API's 10 s.
        assert spec["terminationGracePeriodSeconds"] > 20
        assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_budgets_policies_and_autoscalers_find_what_they_govern(overlay: str) -> None:
    labels = [t["metadata"]["labels"] for t in _pod_templates(overlay)]
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for document in _of_kind(overlay, kind):
            key = "selector" if kind == "PodDisruptionBudget" else "podSelector"
            selector = document["spec"][key]
            assert any(_selects(selector, pod) for pod in labels), document["metadata"]["name"]
    names = {d["metadata"]["name"] for d in _of_kind(overlay, "Deployment")}
    scaled = {
        h["spec"]["scaleTargetRef"]["name"] for h in _of_kind(overlay, "HorizontalPodAutoscaler")
    }
    assert scaled == names
    (monitor,) = _of_kind(overlay, "ServiceMonitor")
    services = [s["metadata"]["labels"] for s in _of_kind(overlay, "Service")]
    assert sum(_selects(monitor["spec"]["selector"], s) for s in services) == 3


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_configured_setting_exists_and_loads(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    known = {f"ORCH_{name.upper()}" for name in Settings.model_fields}
    configured = {
        key: value
        for config in _of_kind(overlay, "ConfigMap")
        for key, value in config["data"].items()
        if key.startswith("ORCH_")
    }
    assert configured and set(configured) <= known, sorted(set(configured) - known)
    for key, value in configured.items():
        monkeypatch.setenv(key, value)
    load_settings()  # each value is one the setting accepts


def test_compose_pins_its_images_and_configures_as_the_manifests() -> None:
    compose = yaml.safe_load((ROOT / "deploy" / "compose" / "compose.yaml").read_text())
    services: dict[str, dict[str, Any]] = compose["services"]
    for name, service in services.items():
        image = service["image"]
        if "build" in service:  # built here from deploy/
            assert image.endswith(":dev"), name
        else:
            assert re.fullmatch(r"[\w./-]+:v?\d+(\.\d+)+[\w.-]*", image), f"{name}: {image}"
    product = {n for n, s in services.items() if s["image"] == "slm-orchestrator:dev"}
    assert product == {"setup", "api", "worker", "slm-worker"}
    configmap = yaml.safe_load((ROOT / "deploy" / "k8s" / "base" / "configmap.yaml").read_text())
    # The same settings as on Kubernetes, but no identity provider: the dev key signs tokens
    # (dev mode makes it, and the codec's dev keys, in the data volume).
    expected = set(configmap["data"]) - {"ORCH_AUTH_JWKS_URL"} | {"ORCH_DEV_MODE"}
    for name in product:
        environment = services[name]["environment"]
        assert {k for k in environment if k.startswith("ORCH_")} == expected, name
