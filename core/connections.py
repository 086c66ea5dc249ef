"""How to reach Temporal and Kafka in production: the SDK's own environment configuration
for Temporal, and the broker's security settings for Kafka.

Temporal: `temporalio.envconfig` reads `TEMPORAL_ADDRESS`, `TEMPORAL_NAMESPACE`,
`TEMPORAL_API_KEY`, `TEMPORAL_TLS_*`, `TEMPORAL_PROFILE` and `TEMPORAL_CONFIG_FILE` (a
TOML file of profiles), as the Temporal CLI does; `ORCH_TEMPORAL_ADDRESS` and
`ORCH_TEMPORAL_NAMESPACE`, where set, override its address and namespace.
"""

from __future__ import annotations

import dataclasses
import ssl
from typing import Any

import temporalio.converter
from aiokafka.helpers import create_ssl_context
from temporalio.client import Client
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.converter import DataConverter
from temporalio.envconfig import ClientConfig, ClientConnectConfig

from core.codec import CodecKeyError, CodecKeys, EncryptionCodec
from core.settings import ConfigurationError, Settings


def temporal_config(settings: Settings) -> ClientConnectConfig:
    """`Client.connect`'s arguments: target, namespace, API key, TLS and gRPC metadata."""
    try:
        config = ClientConfig.load_client_connect_config()
    except Exception as error:  # noqa: BLE001 - the SDK raises several kinds; all mean "fix it"
        raise ConfigurationError(f"TEMPORAL_CONFIG_FILE / TEMPORAL_PROFILE: {error}") from None
    chosen = settings.model_fields_set
    if "temporal_address" in chosen or not config.get("target_host"):
        config["target_host"] = settings.temporal_address
    if "temporal_namespace" in chosen or not config.get("namespace"):
        config["namespace"] = settings.temporal_namespace
    return config


async def connect_temporal(settings: Settings, **options: Any) -> Client:
    """A client with the tracing interceptor, so spans flow into workflows and activities,
    and the payload codec, so what Temporal stores is encrypted."""
    arguments: dict[str, Any] = {**temporal_config(settings), **options}
    return await Client.connect(
        **arguments, interceptors=[TracingInterceptor()], data_converter=data_converter(settings)
    )


def data_converter(settings: Settings) -> DataConverter:
    """The SDK's converter, with the encryption codec (and failures' messages and stack traces
    encoded by it) unless ORCH_PAYLOAD_ENCRYPTION=false."""
    if not settings.payload_encryption:
        return temporalio.converter.default()
    try:
        keys = CodecKeys.load_or_create(settings.codec_key_path, create=settings.dev_mode)
    except CodecKeyError as error:
        raise ConfigurationError(f"ORCH_CODEC_KEY_FILE: {error}") from None
    # A failure's message and stack trace go into an encoded (so encrypted) attribute: they
    # can quote a message, a holder's name or a path, and would stay plain in history.
    return dataclasses.replace(
        temporalio.converter.default(),
        payload_codec=EncryptionCodec(keys),
        failure_converter_class=temporalio.converter.DefaultFailureConverterWithEncodedAttributes,
    )


def kafka_options(settings: Settings) -> dict[str, Any]:
    """The bootstrap servers and security arguments every aiokafka client takes."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = _ssl_context(settings)
    if settings.kafka_security_protocol.startswith("SASL_"):
        options["sasl_mechanism"] = settings.kafka_sasl_mechanism
        options["sasl_plain_username"] = settings.kafka_sasl_username
        options["sasl_plain_password"] = _read_secret(settings)
    return options


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    cafile = str(settings.kafka_ssl_cafile) if settings.kafka_ssl_cafile else None
    try:
        context: ssl.SSLContext = create_ssl_context(cafile=cafile)
    except (OSError, ssl.SSLError) as error:
        raise ConfigurationError(f"ORCH_KAFKA_SSL_CAFILE: {error}") from None
    return context


def _read_secret(settings: Settings) -> str:
    """Read at each connection, so a rotated Secret is picked up on reconnect."""
    assert settings.kafka_sasl_password_file is not None  # required with SASL (settings.py)
    try:
        return settings.kafka_sasl_password_file.read_text().strip()
    except OSError as error:
        raise ConfigurationError(f"ORCH_KAFKA_SASL_PASSWORD_FILE: {error}") from None
