"""The variable-name check the manifest tests rely on: it finds what Settings reads, refuses the rest."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import Field, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

from tests.deploy.settings_variables import (
    PENDING,
    load_settings,
    missing_required,
    settings_variables,
    unknown_variables,
)


class _Section(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="DEMO_")

    token: str
    retries: int = 3
    named: str = Field(default="x", validation_alias="LEGACY_NAME")


class _Root(BaseSettings):
    log_level: str = "INFO"
    demo: _Section = Field(default_factory=lambda: _Section(token="t"))


def test_reads_top_level_fields_and_prefixed_sections() -> None:
    found = settings_variables(_Root)
    assert set(found) == {"LOG_LEVEL", "DEMO_TOKEN", "DEMO_RETRIES", "LEGACY_NAME"}
    assert found["DEMO_TOKEN"].required and not found["DEMO_RETRIES"].required
    assert found["DEMO_RETRIES"].default == 3


def test_the_real_settings_include_the_documented_variables() -> None:
    found = settings_variables()
    assert {
        "LOG_LEVEL",
        "KAFKA_BOOTSTRAP_SERVERS",
        "MONGODB_URI",
        "API_HOST",
        "CONSUMER_MAX_BATCH_RECORDS",
    } <= set(found)


def test_a_variable_nothing_reads_is_reported() -> None:
    known = settings_variables(_Root)
    assert unknown_variables(["DEMO_TOKEN", "DEMO_TOKNE", "KAFKA_TOPIC"], known) == {
        "DEMO_TOKNE",
        "KAFKA_TOPIC",
    }


def test_opentelemetry_variables_are_left_to_the_sdk() -> None:
    assert (
        unknown_variables(["OTEL_SERVICE_NAME", "OTEL_EXPORTER_OTLP_ENDPOINT"], settings_variables(_Root))
        == set()
    )


def test_pending_names_pass_only_until_auth_settings_exist() -> None:
    without_auth = settings_variables(_Root)
    assert unknown_variables(PENDING, without_auth) == set()

    class _WithAuth(_Root):
        auth_enabled: bool = True

    # Once Settings reads any AUTH_ variable, a pending name it does not read is an error again.
    assert unknown_variables(PENDING, settings_variables(_WithAuth)) == PENDING - {"AUTH_ENABLED"}


def test_a_setting_without_default_must_be_provided() -> None:
    known = settings_variables(_Root)
    assert missing_required(["LOG_LEVEL"], known) == {"DEMO_TOKEN"}
    assert missing_required(["DEMO_TOKEN"], known) == set()


def test_settings_are_loaded_from_exactly_the_given_variables(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("KAFKA_TOPIC", "from-the-test-run")
    settings = load_settings({"API_PORT": "8123"}, monkeypatch, tmp_path)
    assert settings.api.port == 8123
    assert settings.kafka.topic == "activities"


def test_loading_refuses_an_invalid_value(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        load_settings({"KAFKA_TOPIC_PARTITIONS": "six"}, monkeypatch, tmp_path)
