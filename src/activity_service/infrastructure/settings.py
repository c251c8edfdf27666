"""Settings, one class per concern, each read from its own environment prefix (and from .env).

Every variable is listed with its default in .env.example.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, env_file=".env", extra="ignore")


class KafkaSettings(BaseSettings):
    model_config = _config("KAFKA_")

    bootstrap_servers: str = "127.0.0.1:9092"
    topic: str = "activities"
    consumer_group: str = "activity-persister"
    topic_partitions: int = Field(default=6, ge=1)
    replication_factor: int = Field(default=1, ge=1)
    client_id: str = "activity-service"
    producer_linger_ms: int = Field(default=2, ge=0)
    producer_max_batch_bytes: int = Field(default=262_144, ge=1024)
    dlq_topic: str = Field(default="", description="Dead-letter topic; empty means '<topic>.dlq'.")

    @property
    def dead_letter_topic(self) -> str:
        return self.dlq_topic or f"{self.topic}.dlq"


class MongoSettings(BaseSettings):
    model_config = _config("MONGODB_")

    uri: str = "mongodb://127.0.0.1:27017"
    database: str = "activity_service"
    collection: str = "activities"
    timeout_ms: int = Field(default=5000, ge=100)


class ApiSettings(BaseSettings):
    model_config = _config("API_")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)


class IngestSettings(BaseSettings):
    """Limits and deadlines of the ingest endpoints."""

    model_config = _config("INGEST_")

    publish_timeout_seconds: float = Field(default=5.0, gt=0)
    max_in_flight_events: int = Field(default=20_000, ge=1)
    max_batch_items: int = Field(default=500, ge=1)
    max_batch_bytes: int = Field(default=1_048_576, ge=1024)
    max_event_bytes: int = Field(default=32_768, ge=256)


class ConsumerSettings(BaseSettings):
    model_config = _config("CONSUMER_")

    max_batch_records: int = Field(default=500, ge=1)
    fetch_timeout_ms: int = Field(default=500, ge=1)
    retry_initial_seconds: float = Field(default=0.2, gt=0)
    retry_max_seconds: float = Field(default=10.0, gt=0)
    progress_interval_seconds: float = Field(default=1.0, gt=0)


class RetentionSettings(BaseSettings):
    model_config = _config("RETENTION_")

    days: int = Field(
        default=0, ge=0, description="Keep events this many days by their timestamp; 0 = forever."
    )
    purge_interval_seconds: float = Field(default=3600.0, gt=0)


class Settings(BaseSettings):
    model_config = _config("")

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    mongodb: MongoSettings = Field(default_factory=MongoSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    consumer: ConsumerSettings = Field(default_factory=ConsumerSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
