"""Production connectivity (docs/configuration.md): Temporal through the SDK's environment
configuration (API key, TLS, profiles) under the ORCH_ overrides, and Kafka over SASL/TLS.

These check the arguments the clients are built with; the embedded servers speak neither
TLS nor SASL, so the connections themselves are proven by the rest of the suite.
"""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from temporalio.service import TLSConfig

from core.connections import kafka_options, temporal_config
from core.settings import ConfigurationError, load_settings

_TEMPORAL_VARIABLES = (
    "TEMPORAL_ADDRESS",
    "TEMPORAL_NAMESPACE",
    "TEMPORAL_API_KEY",
    "TEMPORAL_PROFILE",
    "TEMPORAL_TLS",
    "TEMPORAL_TLS_CLIENT_CERT_PATH",
    "TEMPORAL_TLS_CLIENT_KEY_PATH",
    "TEMPORAL_TLS_SERVER_CA_CERT_PATH",
    "TEMPORAL_TLS_SERVER_NAME",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Neither the machine's Temporal profile nor its ORCH_ settings leak into a case."""
    for name in _TEMPORAL_VARIABLES + ("ORCH_TEMPORAL_ADDRESS", "ORCH_TEMPORAL_NAMESPACE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(tmp_path / "absent.toml"))


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed client certificate and its key, as PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "orchestrator-worker")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "client.pem", directory / "client.key"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


def test_local_defaults_without_any_configuration() -> None:
    config = temporal_config(load_settings())
    assert config["target_host"] == "127.0.0.1:7233"
    assert config["namespace"] == "default"
    assert "api_key" not in config and "tls" not in config


def test_an_api_key_from_the_sdk_environment_turns_tls_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "acme.a1b2c.tmprl.cloud:7233")
    monkeypatch.setenv("TEMPORAL_NAMESPACE", "acme.a1b2c")
    monkeypatch.setenv("TEMPORAL_API_KEY", "key-123")
    config = temporal_config(load_settings())
    assert config["target_host"] == "acme.a1b2c.tmprl.cloud:7233"
    assert config["namespace"] == "acme.a1b2c"
    assert config["api_key"] == "key-123"
    assert config["tls"] is True


def test_client_certificates_from_the_sdk_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    cert_file, key_file = _certificate(tmp_path)
    monkeypatch.setenv("TEMPORAL_ADDRESS", "temporal.internal:7233")
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_CERT_PATH", str(cert_file))
    monkeypatch.setenv("TEMPORAL_TLS_CLIENT_KEY_PATH", str(key_file))
    monkeypatch.setenv("TEMPORAL_TLS_SERVER_NAME", "temporal.internal")
    tls = temporal_config(load_settings())["tls"]
    assert isinstance(tls, TLSConfig)
    assert tls.client_cert == cert_file.read_bytes()
    assert tls.client_private_key == key_file.read_bytes()
    assert tls.domain == "temporal.internal"


def test_a_profile_from_a_config_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    profiles = tmp_path / "temporal.toml"
    profiles.write_text(
        '[profile.prod]\naddress = "prod.internal:7233"\nnamespace = "orchestrator"\n'
        'api_key = "from-file"\n'
    )
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(profiles))
    monkeypatch.setenv("TEMPORAL_PROFILE", "prod")
    config = temporal_config(load_settings())
    assert (config["target_host"], config["namespace"], config["api_key"]) == (
        "prod.internal:7233",
        "orchestrator",
        "from-file",
    )


def test_orch_settings_override_the_sdk_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEMPORAL_ADDRESS", "elsewhere:7233")
    monkeypatch.setenv("TEMPORAL_API_KEY", "key-123")
    monkeypatch.setenv("ORCH_TEMPORAL_ADDRESS", "127.0.0.1:7999")
    monkeypatch.setenv("ORCH_TEMPORAL_NAMESPACE", "orders")
    config = temporal_config(load_settings())
    assert (config["target_host"], config["namespace"]) == ("127.0.0.1:7999", "orders")
    assert config["api_key"] == "key-123"


def test_an_unreadable_profile_names_the_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    broken = tmp_path / "temporal.toml"
    broken.write_text("[profile.prod\naddress = ")
    monkeypatch.setenv("TEMPORAL_CONFIG_FILE", str(broken))
    with pytest.raises(ConfigurationError, match="TEMPORAL_CONFIG_FILE"):
        temporal_config(load_settings())


def test_kafka_in_plain_text_by_default() -> None:
    options = kafka_options(load_settings())
    assert options == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}


def test_kafka_over_sasl_ssl(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    password = tmp_path / "kafka-password"
    password.write_text("s3cret\n")
    monkeypatch.setenv("ORCH_KAFKA_BOOTSTRAP", "broker-1:9093,broker-2:9093")
    monkeypatch.setenv("ORCH_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("ORCH_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("ORCH_KAFKA_SASL_USERNAME", "orchestrator")
    monkeypatch.setenv("ORCH_KAFKA_SASL_PASSWORD_FILE", str(password))
    options = kafka_options(load_settings())
    assert options["bootstrap_servers"] == "broker-1:9093,broker-2:9093"
    assert options["security_protocol"] == "SASL_SSL"
    assert options["sasl_mechanism"] == "SCRAM-SHA-512"
    assert (options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "orchestrator",
        "s3cret",
    )
    assert isinstance(options["ssl_context"], ssl.SSLContext)


def test_sasl_without_a_password_file_stops_start_up(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ORCH_KAFKA_SECURITY_PROTOCOL", "SASL_PLAINTEXT")
    with pytest.raises(ConfigurationError, match="ORCH_KAFKA_SASL_PASSWORD_FILE: required"):
        load_settings()
