"""Settings, one class per concern, each read from its own environment prefix (and from .env).

Every variable is listed with its default in .env.example. ``Settings()`` reads the environment, as the
processes do; ``Settings.explicit(...)`` takes only the values given (and the defaults), whatever the
shell or a ``.env`` file holds: for tests and tools that must not depend on the environment.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, Self
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, PydanticBaseSettingsSource, SettingsConfigDict

from activity_service.domain.addresses import AddressMode

_read_environment: ContextVar[bool] = ContextVar("read_environment", default=True)


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, env_file=".env", extra="ignore")


class _Section(BaseSettings):
    """A group of settings read from the environment, unless built with ``explicit``."""

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        if not _read_environment.get():
            return (init_settings,)
        return (init_settings, env_settings, dotenv_settings, file_secret_settings)

    @classmethod
    def explicit(cls, **values: Any) -> Self:
        """These values and the defaults, nothing from the environment or ``.env`` (nested sections
        built meanwhile, by their defaults, ignore it too)."""
        with _environment_ignored():
            return cls(**values)


@contextmanager
def _environment_ignored() -> Iterator[None]:
    token = _read_environment.set(False)
    try:
        yield
    finally:
        _read_environment.reset(token)


KafkaSecurityProtocol = Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"]
KafkaSaslMechanism = Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]


class KafkaSettings(_Section):
    model_config = SettingsConfigDict(
        env_prefix="KAFKA_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "activities"
    consumer_group: str = "activity-persister"
    topic_partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    min_insync_replicas: int = Field(
        default=0, ge=0, description="Of the topics it creates; 0: replication factor - 1, at least 1."
    )
    retention_hours: int = Field(
        default=0, ge=-1, description="retention.ms of the topics it creates; 0: the broker's; -1: forever."
    )
    client_id: str = "activity-service"
    producer_linger_ms: int = Field(
        default=0,
        ge=0,
        description="How long a record batch waits for more records before it is sent. The publisher "
        "batches itself (the events of every request arriving while a partition's last batch is with the "
        "broker), so waiting only delays. Against 2 ms, in two runs each (bench/results/linger): batch "
        "POST 19,700 and 19,040 events/s against 15,720 and 18,420, single POST 1,947 and 1,293 against "
        "1,502 and 1,367, a raw producer's single sends 2.1x.",
    )
    producer_max_batch_bytes: int = Field(default=262_144, ge=1024)
    producer_request_timeout_ms: int = Field(
        default=5000, ge=1000, description="A produce request unanswered this long is sent again."
    )
    dlq_topic: str = Field(default="", description="Dead-letter topic; empty means '<topic>.dlq'.")
    security_protocol: KafkaSecurityProtocol = "PLAINTEXT"
    sasl_mechanism: KafkaSaslMechanism = "PLAIN"
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    ssl_ca_file: str = Field(default="", description="PEM CA bundle; empty: the system's trusted CAs.")
    ssl_cert_file: str = Field(default="", description="PEM client certificate (mutual TLS).")
    ssl_key_file: str = Field(default="", description="PEM private key of the client certificate.")
    ssl_key_password: SecretStr = SecretStr("")

    @property
    def dead_letter_topic(self) -> str:
        return self.dlq_topic or f"{self.topic}.dlq"

    @property
    def topic_min_insync_replicas(self) -> int:
        """min.insync.replicas of the topics the service creates: with acks=all, a write is acknowledged
        once this many replicas have it, so one broker may fail without losing what was acknowledged."""
        return self.min_insync_replicas or max(1, self.replication_factor - 1)

    @model_validator(mode="after")
    def _coherent(self) -> KafkaSettings:
        if self.min_insync_replicas > self.replication_factor:
            raise ValueError(
                f"KAFKA_MIN_INSYNC_REPLICAS={self.min_insync_replicas} exceeds KAFKA_REPLICATION_FACTOR="
                f"{self.replication_factor}: no write could ever be acknowledged"
            )
        sasl = self.security_protocol.startswith("SASL_")
        tls = self.security_protocol.endswith("SSL")
        if sasl and not (self.sasl_username and self.sasl_password.get_secret_value()):
            raise ValueError(
                f"KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs KAFKA_SASL_USERNAME and "
                "KAFKA_SASL_PASSWORD"
            )
        if not sasl and (self.sasl_username or self.sasl_password.get_secret_value()):
            raise ValueError(
                f"KAFKA_SASL_USERNAME/KAFKA_SASL_PASSWORD are set but KAFKA_SECURITY_PROTOCOL="
                f"{self.security_protocol} does not use them (SASL_SSL or SASL_PLAINTEXT does)"
            )
        files = {
            "KAFKA_SSL_CA_FILE": self.ssl_ca_file,
            "KAFKA_SSL_CERT_FILE": self.ssl_cert_file,
            "KAFKA_SSL_KEY_FILE": self.ssl_key_file,
        }
        given = [name for name, path in files.items() if path]
        if given and not tls:
            raise ValueError(
                f"{', '.join(given)} set but KAFKA_SECURITY_PROTOCOL={self.security_protocol} does not use "
                "TLS (SSL or SASL_SSL does)"
            )
        if bool(self.ssl_cert_file) != bool(self.ssl_key_file):
            raise ValueError("KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together (a client certificate)")
        for name, path in files.items():
            if path and not Path(path).is_file():
                raise ValueError(f"{name}={path}: no such file")
        return self


class MongoSettings(_Section):
    model_config = _config("MONGODB_")

    uri: str = "mongodb://127.0.0.1:27017"
    database: str = "activity_service"
    collection: str = "activities"
    timeout_ms: int = Field(default=5000, ge=100)


class PostgresSettings(_Section):
    model_config = _config("POSTGRES_")

    dsn: SecretStr = Field(
        default=SecretStr("postgresql://activity@127.0.0.1:5432/activity_service"),
        description="libpq connection URI; may hold a password, so it is a secret.",
    )
    timeout_ms: int = Field(default=5000, ge=100, description="Connecting and each statement, at most.")
    pool_size: int = Field(default=10, ge=1, description="Connections per process, at most.")


class ApiSettings(_Section):
    model_config = _config("API_")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    access_log: bool = Field(default=True, description="One log line per request.")
    trusted_proxies: str = Field(
        default="",
        description="Comma-separated IPs/CIDRs of reverse proxies whose X-Forwarded-For is believed.",
    )
    cors_origins: str = Field(
        default="",
        description="Comma-separated origins a browser may call every route from (`*`: any); none by "
        "default.",
    )
    header_timeout_seconds: float = Field(
        default=10.0, gt=0, description="A request's line and headers must arrive within this (else 408)."
    )
    body_timeout_seconds: float = Field(
        default=30.0, gt=0, description="A request's body must arrive within this after its headers (408)."
    )
    max_header_bytes: int = Field(
        default=65_536,
        ge=1024,
        description="A request's line and headers, at most (else 431). The longest URL a read accepts "
        "(20 actions of 128 characters, percent-encoded) is ~40 KB.",
    )
    keep_alive_seconds: int = Field(default=5, ge=1, description="An idle connection is closed after this.")

    @field_validator("trusted_proxies")
    @classmethod
    def _networks_parse(cls, value: str) -> str:
        for entry in _comma_list(value):
            try:
                ipaddress.ip_network(entry, strict=False)
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or CIDR network") from None
        return value

    @property
    def trusted_proxy_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        return tuple(ipaddress.ip_network(entry, strict=False) for entry in _comma_list(self.trusted_proxies))

    @property
    def cors_origin_list(self) -> list[str]:
        return [origin.rstrip("/") for origin in _comma_list(self.cors_origins)]


class IngestSettings(_Section):
    """Limits and deadlines of the ingest endpoints."""

    model_config = _config("INGEST_")

    publish_timeout_seconds: float = Field(default=5.0, gt=0)
    max_in_flight_events: int = Field(default=20_000, ge=1)
    max_in_flight_bytes: int = Field(
        default=67_108_864, ge=1_048_576, description="Encoded events held by the publisher, at most."
    )
    max_concurrent_requests: int = Field(default=128, ge=1)
    max_loop_lag_seconds: float = Field(default=0.25, gt=0)
    max_accept_queue: int = Field(default=64, ge=1)
    max_batch_items: int = Field(default=500, ge=1)
    max_batch_bytes: int = Field(default=1_048_576, ge=1024)
    max_event_bytes: int = Field(default=32_768, ge=256)
    max_body_bytes_in_progress: int = Field(
        default=16_777_216, ge=1024, description="Bodies of the ingest requests alive, at most (then 503)."
    )
    max_compression_ratio: int = Field(
        default=100,
        ge=1,
        description="A compressed body (Content-Encoding gzip or deflate) may inflate to at most this many "
        "times its size on the wire (then 413), besides the size limits, which count its inflated bytes.",
    )


class QuerySettings(_Section):
    """What one read may cost the database, and how many run at once in one API process."""

    model_config = _config("QUERY_")

    timeout_ms: int = Field(
        default=5000, ge=10, description="Every read query, at most, on the server (then 503 + Retry-After)."
    )
    max_concurrent: int = Field(default=16, ge=1, description="Reads in progress per API process (then 503).")
    max_depth: int = Field(
        default=10_000, ge=100, description="page x limit, at most, in page mode (then 400: use a cursor)."
    )
    max_count: int = Field(
        default=10_000, ge=1, description="Matches counted for `total`, at most (then totalCapped: true)."
    )


class ReadinessSettings(_Section):
    model_config = _config("READINESS_")

    timeout_ms: int = Field(
        default=2000, ge=50, description="Each dependency's ping, on its own connection, at most."
    )


class ConsumerSettings(_Section):
    model_config = _config("CONSUMER_")

    max_batch_records: int = Field(default=500, ge=1)
    batches_in_flight: int = Field(
        default=2,
        ge=1,
        le=16,
        description=(
            "Batches written at once (each its own statement and connection), committed in order;"
            " PostgreSQL only (MongoDB writes one at a time)."
        ),
    )
    fetch_timeout_ms: int = Field(default=500, ge=1)
    fetch_max_wait_ms: int = Field(
        default=100,
        ge=0,
        le=500,
        description=(
            "How long the broker holds a fetch for partitions that have nothing new. While it does, the"
            " client fetches nothing else from that broker, even for partitions whose records it has"
            " already handed out, so it bounds the stalls of a drain whose partitions end unevenly."
        ),
    )
    retry_initial_seconds: float = Field(default=0.2, gt=0)
    retry_max_seconds: float = Field(default=10.0, gt=0)
    progress_interval_seconds: float = Field(default=1.0, gt=0)
    erasure_interval_seconds: float = Field(
        default=2.0, gt=0, description="How often the consumer looks for erasures to carry out."
    )
    metrics_host: str = "0.0.0.0"
    metrics_port: int = Field(default=9100, ge=0, le=65535, description="0 serves no metrics.")


class StreamSettings(_Section):
    """The live tail (GET /api/activities/stream)."""

    model_config = _config("STREAM_")

    max_clients: int = Field(default=200, ge=1, description="Open streams per API process; beyond, 503.")
    heartbeat_seconds: float = Field(default=15.0, gt=0)
    buffer_events: int = Field(
        default=20_000, ge=100, description="Recent events held for followers; fall further behind: overflow."
    )
    idle_seconds: float = Field(
        default=30.0, ge=0, description="The tail stops this long after the last stream."
    )
    max_seconds: float = Field(
        default=0,
        ge=0,
        description="A stream ends this long after it began (0: never); clients resume with Last-Event-ID, "
        "so long-lived streams spread over API processes again.",
    )


class RetentionSettings(_Section):
    model_config = _config("RETENTION_")

    days: int = Field(
        default=0, ge=0, description="Keep events this many days by their timestamp; 0 = forever."
    )
    purge_interval_seconds: float = Field(default=3600.0, gt=0)


ApiScope = Literal["activities:write", "activities:read", "activities:read-pii", "activities:erase"]
MIN_KEY_LENGTH = 16
# Keys that are shipped in this repository and so are no secret: k8s/secret.example.yaml's placeholders
# (anything holding PLACEHOLDER_MARK) and docker/app.env's committed laptop key (by digest, so that its
# sha256 form is known too). The API refuses them unless APP_ENV=development.
PLACEHOLDER_MARK = "CHANGE-ME"
COMMITTED_DEV_KEYS = ("local-dev-key-not-a-secret",)
_COMMITTED_DIGESTS = frozenset(hashlib.sha256(key.encode()).digest() for key in COMMITTED_DEV_KEYS)
PUBLISHABLE_SCOPE = "activities:write"


class ApiKey(BaseModel):
    """One entry of AUTH_API_KEYS. ``name`` identifies the client (logs, rate-limit budget); the secret is
    the key itself or, so that the configuration need not hold it, its SHA-256 in hex."""

    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)

    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:@-]+$")
    tenant: str = Field(
        default="default",
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:@-]+$",
        description="Whose events it writes and reads; keys without one belong to `default`.",
    )
    key: SecretStr | None = None
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    scopes: tuple[ApiScope, ...] = Field(min_length=1)
    publishable: bool = Field(
        default=False,
        description="A key for web pages, which anyone can read in them: activities:write only, from its "
        "`origins` only, and it may travel in the query (`?key=`).",
    )
    origins: tuple[str, ...] = Field(
        default=(), description="A publishable key's web origins (`https://shop.example`), at least one."
    )

    @model_validator(mode="after")
    def _one_secret(self) -> ApiKey:
        if (self.key is None) == (self.sha256 is None):
            raise ValueError(f"key {self.name!r}: give exactly one of `key` and `sha256`")
        if self.key is not None and len(self.key.get_secret_value()) < MIN_KEY_LENGTH:
            raise ValueError(f"key {self.name!r}: a key must be at least {MIN_KEY_LENGTH} characters")
        return self

    @model_validator(mode="after")
    def _publishable_writes_from_its_origins(self) -> ApiKey:
        if not self.publishable:
            if self.origins:
                raise ValueError(
                    f'key {self.name!r}: `origins` is only for a publishable key; add "publishable": true '
                    "(it then may only write) or remove `origins`"
                )
            return self
        others = sorted(set(self.scopes) - {PUBLISHABLE_SCOPE})
        if others:
            raise ValueError(
                f"key {self.name!r}: a publishable key is public (it is in the page) and may hold only the "
                f"scope {PUBLISHABLE_SCOPE}; remove {', '.join(others)} from its scopes, or make a second, "
                "secret key for them"
            )
        if not self.origins:
            raise ValueError(
                f"key {self.name!r}: a publishable key needs `origins`, the web origins of the pages that "
                'use it (e.g. ["https://shop.example"])'
            )
        return self

    @field_validator("origins")
    @classmethod
    def _web_origins(cls, value: tuple[str, ...], info: ValidationInfo) -> tuple[str, ...]:
        return tuple(_origin(str(info.data.get("name", "?")), origin) for origin in value)

    @property
    def shipped(self) -> bool:
        """A placeholder or a key committed to this repository: anyone can read it, so it guards nothing."""
        if self.key is not None and PLACEHOLDER_MARK in self.key.get_secret_value():
            return True
        return self.digest in _COMMITTED_DIGESTS

    @property
    def digest(self) -> bytes:
        """SHA-256 of the key: the only form in which the service keeps it."""
        if self.key is not None:
            return hashlib.sha256(self.key.get_secret_value().encode()).digest()
        assert self.sha256 is not None
        return bytes.fromhex(self.sha256)


def _origin(key: str, value: str) -> str:
    """``value`` as browsers send it in ``Origin``: scheme://host[:port], lower case, no default port."""
    try:
        parts = urlsplit(value.strip().rstrip("/").lower())
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (
        parts is None
        or parts.scheme not in ("http", "https")
        or not parts.hostname
        or parts.username is not None
        or parts.password is not None
        or parts.path
        or parts.query
        or parts.fragment
    ):
        raise ValueError(
            f"key {key!r}: {value!r} is not a web origin; write scheme://host[:port], e.g. https://shop.example"
        )
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    default = {"http": 80, "https": 443}[parts.scheme]
    return f"{parts.scheme}://{host}" if port in (None, default) else f"{parts.scheme}://{host}:{port}"


class AuthSettings(_Section):
    """API keys. AUTH_API_KEYS holds secrets: give it from a secret store, never commit it."""

    model_config = SettingsConfigDict(
        env_prefix="AUTH_", env_file=".env", extra="ignore", hide_input_in_errors=True
    )

    enabled: bool = True
    api_keys: Annotated[list[ApiKey], NoDecode] = Field(
        default=[], description='JSON list of {"name", "key" or "sha256", "scopes"}.'
    )
    protect_docs: bool = False
    protect_metrics: bool = False

    @field_validator("api_keys", mode="before")
    @classmethod
    def _from_json(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        if not value.strip():
            return []
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:  # the message must not echo the value: it holds secrets
            raise ValueError(
                f'not valid JSON ({exc.msg} at character {exc.pos}); expected a list of {{"name": ..., '
                '"key": ... or "sha256": ..., "scopes": ["activities:write", "activities:read"]}'
            ) from None

    @model_validator(mode="after")
    def _distinct(self) -> AuthSettings:
        names = [k.name for k in self.api_keys]
        if len(set(names)) != len(names):
            raise ValueError("two API keys have the same name")
        if len({k.digest for k in self.api_keys}) != len(self.api_keys):
            raise ValueError("the same API key is configured twice")
        return self


class RateLimitSettings(_Section):
    """A token bucket per API key (per client address when auth is off); a publishable key also has one
    per client address, so that one visitor cannot spend the whole key's budget."""

    model_config = _config("RATE_LIMIT_")

    enabled: bool = True
    events_per_second: float = Field(default=1000.0, gt=0)
    burst: int = Field(default=2000, ge=1)
    storage_uri: str = Field(
        default="memory://", description="memory:// (this process) or redis://host:port/db (shared)."
    )
    address_events_per_second: float = Field(
        default=50.0,
        gt=0,
        description="Publishable keys also have a bucket per client address (IPv6: per /64): its refill.",
    )
    address_burst: int = Field(
        default=500, ge=1, description="The size of a publishable key's bucket per client address."
    )

    @field_validator("storage_uri")
    @classmethod
    def _known_storage(cls, value: str) -> str:
        if urlsplit(value).scheme not in ("memory", "redis", "rediss"):
            raise ValueError("must be memory:// or a redis:// (rediss://) URI")
        return value


def _comma_list(value: str) -> list[str]:
    return [entry.strip() for entry in value.split(",") if entry.strip()]


class Settings(_Section):
    model_config = _config("")

    app_env: Literal["production", "development"] = Field(
        default="production",
        description="development allows the keys shipped in this repository (docker/app.env's, the k8s "
        "example's placeholders); production refuses to start with them.",
    )
    ip_address_mode: AddressMode = Field(
        default=AddressMode.FULL,
        description="What of the client's address an event keeps: all of it, its network (IPv4 /24, IPv6 "
        "/48) or nothing; applied before the event is published.",
    )
    pii_read_scope_required: bool = Field(
        default=False, description="true: reads show ipAddress only to keys with activities:read-pii."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "text"] = Field(
        default="auto", description="auto: text when stderr is a terminal, JSON lines otherwise."
    )
    metrics_enabled: bool = Field(
        default=True, description="Prometheus metrics (API /metrics, consumer port)."
    )
    store: Literal["mongodb", "postgresql"] = Field(
        default="mongodb", description="Where the consumer stores events and the API reads them."
    )
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    mongodb: MongoSettings = Field(default_factory=MongoSettings)
    postgres: PostgresSettings = Field(default_factory=PostgresSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    query: QuerySettings = Field(default_factory=QuerySettings)
    readiness: ReadinessSettings = Field(default_factory=ReadinessSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    stream: StreamSettings = Field(default_factory=StreamSettings)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    rate_limit: RateLimitSettings = Field(default_factory=RateLimitSettings)
