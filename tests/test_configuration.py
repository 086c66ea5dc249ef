"""A bad setting stops start-up with one line naming the variable (docs/interface.md, section 2)."""

from __future__ import annotations

import json
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from core.policy import load_policy
from core.settings import ConfigurationError, load_settings
from deploy.services import free_ports

RunCli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("ORCH_API_PORT", "70000", "less than or equal to 65535"),
        ("ORCH_API_PORT", "http", "valid integer"),
        ("ORCH_REDIS_URL", "not a url", "URL"),
        ("ORCH_SLM_BASE_URL", "ftp//nowhere", "URL"),
        ("ORCH_TEMPORAL_ADDRESS", "localhost", "host:port"),
        ("ORCH_KAFKA_BOOTSTRAP", "broker:99999", "host:port"),
        ("ORCH_AUTH_KEY_FILE", "/nonexistent/key.pem", "no such file"),
        ("ORCH_POLICY_FILE", "/nonexistent/policy.json", "no such file"),
        ("ORCH_AUTH_JWKS_URL", "jwks", "URL"),
        ("ORCH_AUTH_ALGORITHMS", '["HS256"]', "symmetric"),
        ("ORCH_READINESS_CHECKS", '["slm", "database"]', "choose one or more"),
        ("ORCH_READINESS_CHECKS", "temporal,redis", "expected a JSON list"),
        ("ORCH_AUTH_ALGORITHMS", "ES256", "expected a JSON list"),
    ],
)
def test_bad_value_stops_start_up_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, reason: str
) -> None:
    """What every command says of its settings before it starts anything (the test below
    runs the command line as a user would)."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as refused:
        load_settings()
    said = str(refused.value)
    assert "\n" not in said
    assert said.startswith(f"{variable}:")
    assert reason in said


@pytest.mark.parametrize("command", ["api", "worker"])
def test_a_bad_value_stops_the_command_with_one_line_and_status_2(
    run_cli: RunCli, command: str
) -> None:
    result = run_cli(command, env={"ORCH_API_PORT": "70000"})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "orchestrator: configuration error: ORCH_API_PORT: "
        "Input should be less than or equal to 65535 (got '70000')"
    ], result.stderr


_OTLP_JSON = {
    "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/json",
}


@pytest.mark.parametrize(
    ("environment", "variable", "reason"),
    [
        ({"OTEL_TRACES_EXPORTER": "zipkin"}, "OTEL_TRACES_EXPORTER", "unknown exporter"),
        (_OTLP_JSON, "OTEL_EXPORTER_OTLP_PROTOCOL", "not supported"),
    ],
)
@pytest.mark.parametrize("command", ["api", "worker"])
def test_a_trace_exporter_it_cannot_run_stops_start_up(
    run_cli: RunCli, command: str, environment: dict[str, str], variable: str, reason: str
) -> None:
    result = run_cli(command, env=environment)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"orchestrator: configuration error: {variable}:")
    assert reason in lines[0]


def test_a_bad_url_is_named_without_its_password(run_cli: RunCli) -> None:
    result = run_cli("api", env={"ORCH_REDIS_URL": "redis://:s3cret-pw@redis.internal:port/0"})
    assert result.returncode == 2
    assert "ORCH_REDIS_URL" in result.stderr and "redis://:***@redis.internal" in result.stderr
    assert "s3cret-pw" not in result.stderr


def test_worker_refuses_an_unknown_queue(run_cli: RunCli) -> None:
    result = run_cli("worker", "--queue", "nope", env={"ORCH_TEMPORAL_ADDRESS": "127.0.0.1:1"})
    assert result.returncode == 2
    assert "--queue" in result.stderr and "nope" in result.stderr


def test_dev_names_a_port_in_use_with_its_flag(run_cli: RunCli, tmp_path: object) -> None:
    ports = free_ports(7)
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", ports[3]))
        squatter.listen()
        result = run_cli(
            "dev",
            "--services",
            "--data-dir",
            str(tmp_path),
            "--api-port",
            str(ports[0]),
            "--temporal-port",
            str(ports[1]),
            "--temporal-ui-port",
            str(ports[2]),
            "--kafka-port",
            str(ports[3]),
            "--redis-port",
            str(ports[4]),
            "--slm-port",
            str(ports[5]),
            "--worker-metrics-port",
            str(ports[6]),
        )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (
        f"orchestrator: port {ports[3]} for kafka is in use; choose another with --kafka-port"
    )


def test_dev_refuses_a_port_out_of_range(run_cli: RunCli) -> None:
    result = run_cli("dev", "--redis-port", "0")
    assert result.returncode == 2
    assert "--redis-port" in result.stderr


@pytest.mark.parametrize("command", ["api", "worker"])
@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("not json", "Expecting value"),
        ('{"policy_version": "x", "provider": "rules", "categories": {}}', "lacks the categories"),
    ],
)
def test_a_bad_policy_file_stops_start_up(
    run_cli: RunCli, tmp_path: Path, command: str, content: str, reason: str
) -> None:
    policy = tmp_path / "policy.json"
    policy.write_text(content)
    result = run_cli(command, env={"ORCH_POLICY_FILE": str(policy)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "orchestrator: configuration error: ORCH_POLICY_FILE:"
    )
    assert reason in lines[0]


def test_worker_names_an_unreachable_temporal(run_cli: RunCli, tmp_path: Path) -> None:
    environment = {
        "ORCH_TEMPORAL_ADDRESS": "127.0.0.1:1",
        "ORCH_WORKER_METRICS_ADDRESS": "",
        "ORCH_DATA_DIR": str(tmp_path),
        "ORCH_DEV_MODE": "true",
    }
    result = run_cli("worker", env=environment)
    assert result.returncode == 1
    expected = (
        "orchestrator: cannot reach Temporal at 127.0.0.1:1 "
        "(ORCH_TEMPORAL_ADDRESS or TEMPORAL_ADDRESS): Failed client connect; "
        "start it (make services) or point the setting at it"
    )
    assert result.stderr.strip().splitlines() == [expected]


def _bundled_policy_with(tmp_path: Path, **changes: object) -> Path:
    document = json.loads(load_policy(None).document.model_dump_json())
    document.update(changes)
    path = tmp_path / "policy.json"
    path.write_text(json.dumps(document))
    return path


@pytest.mark.parametrize("command", ["api", "worker"])
def test_a_layered_policy_without_its_classifier_stops_start_up(
    run_cli: RunCli, tmp_path: Path, command: str
) -> None:
    policy = _bundled_policy_with(tmp_path, classifier=None)
    result = run_cli(command, env={"ORCH_POLICY_FILE": str(policy)})
    assert result.returncode == 2
    assert "ORCH_POLICY_FILE:" in result.stderr and "needs its classifier" in result.stderr


def test_thresholds_for_other_heads_stop_the_worker(run_cli: RunCli, tmp_path: Path) -> None:
    policy = _bundled_policy_with(tmp_path, classifier={"heads": "1999.01.01"})
    result = run_cli("worker", env={"ORCH_POLICY_FILE": str(policy)})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(
        "orchestrator: configuration error: ORCH_POLICY_FILE: the policy's thresholds are for "
        "classifier heads 1999.01.01"
    )


@pytest.mark.parametrize(
    ("command", "variable"), [("api", "ORCH_AUTH_JWKS_URL"), ("worker", "ORCH_CODEC_KEY_FILE")]
)
def test_outside_dev_mode_no_dev_key_is_made_and_start_up_says_what_to_configure(
    run_cli: RunCli, tmp_path: Path, command: str, variable: str
) -> None:
    result = run_cli(command, env={"ORCH_DATA_DIR": str(tmp_path)})
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"orchestrator: configuration error: {variable}:")
    assert "ORCH_DEV_MODE=true" in lines[0]
    assert not list(tmp_path.rglob("*key*")), "a key was made outside dev mode"


def test_outside_dev_mode_the_api_verifies_with_a_public_key_never_a_signing_key(
    run_cli: RunCli, tmp_path: Path
) -> None:
    """`orchestrator token` is a dev action: it makes the signing key. An API outside dev
    mode does not read it: it takes the public half (or an identity provider's keys)."""
    assert run_cli("token", "--tenant", "acme", "--role", "user",
                   env={"ORCH_DATA_DIR": str(tmp_path)}).returncode == 0  # fmt: skip
    key = tmp_path / "auth" / "dev-signing-key.pem"
    assert key.stat().st_mode & 0o777 == 0o600
    refused = run_cli("api", env={"ORCH_DATA_DIR": str(tmp_path)})
    assert refused.returncode == 2
    assert "ORCH_AUTH_PUBLIC_KEY_FILE" in refused.stderr and "ORCH_DEV_MODE=true" in refused.stderr
    public = tmp_path / "public.pem"
    private = serialization.load_pem_private_key(key.read_bytes(), password=None)
    public.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    env = {"ORCH_DATA_DIR": str(tmp_path), "ORCH_AUTH_PUBLIC_KEY_FILE": str(public)}
    result = run_cli("api", env=env)
    # It gets past the token keys (and on to the next setting, the codec's keys).
    assert "ORCH_CODEC_KEY_FILE:" in result.stderr, result.stderr


_CODEC_KEYS = '{"active": "k1", "keys": {"k1": "' + "A" * 43 + '="}}'


@pytest.mark.parametrize(
    ("command", "variable", "content"),
    [
        ("api", "ORCH_AUTH_KEY_FILE", None),
        ("api", "ORCH_CODEC_KEY_FILE", _CODEC_KEYS),
        ("worker", "ORCH_CODEC_KEY_FILE", _CODEC_KEYS),
    ],
)
def test_a_key_file_other_users_can_read_is_refused(
    run_cli: RunCli, tmp_path: Path, command: str, variable: str, content: str | None
) -> None:
    key = tmp_path / "key"
    if content is None:
        run_cli("token", "--tenant", "acme", "--role", "user", env={"ORCH_DATA_DIR": str(tmp_path)})
        (tmp_path / "auth" / "dev-signing-key.pem").rename(key)
    else:
        key.write_text(content)
    key.chmod(0o644)
    # Refused in dev mode too: dev mode makes keys, it never loosens reading them.
    environment = {"ORCH_DATA_DIR": str(tmp_path), "ORCH_DEV_MODE": "true", variable: str(key)}
    result = run_cli(command, env=environment)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith(f"orchestrator: configuration error: {variable}:")
    assert "can be read by other users" in result.stderr and "chmod 600" in result.stderr


def test_a_key_file_its_group_can_read_is_taken_as_kubernetes_mounts_secrets(
    run_cli: RunCli, tmp_path: Path
) -> None:
    key = tmp_path / "keys.json"
    key.write_text(_CODEC_KEYS)
    key.chmod(0o440)  # a Secret mounted for the pod's fsGroup
    environment = {
        "ORCH_DATA_DIR": str(tmp_path),
        "ORCH_CODEC_KEY_FILE": str(key),
        "ORCH_TEMPORAL_ADDRESS": "127.0.0.1:1",
        "ORCH_WORKER_METRICS_ADDRESS": "",
    }
    result = run_cli("worker", env=environment)
    assert "cannot reach Temporal" in result.stderr, result.stderr  # past the keys


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("ORCH_REDIS_URL", "redis://user:pa/ss@w0rd@host:99999"),
        ("ORCH_REDIS_URL", "redis://:pa:ss@w0rd@host:port/0"),
        ("ORCH_SLM_BASE_URL", "http://user:pa/ss@w0rd@host:99999/v1"),
    ],
)
def test_a_password_in_a_bad_url_is_never_echoed(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError) as refused:
        load_settings()
    said = str(refused.value)
    assert said.startswith(f"{variable}:"), said
    assert "w0rd" not in said and "pa/ss" not in said and "pa:ss" not in said
    assert "//user:***@host" in said or "//:***@host" in said
