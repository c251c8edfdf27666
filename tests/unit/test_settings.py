""".env.example lists every setting with its real default, and nothing else."""

from __future__ import annotations

import io
import logging
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr
from pydantic_settings import BaseSettings

from activity_service.infrastructure.logging import JsonFormatter, TextFormatter, configure_logging
from activity_service.infrastructure.settings import KafkaSettings, Settings

ROOT = Path(__file__).resolve().parents[2]


def documented() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, value = line.partition("=")
            pairs[name] = value
    return pairs


def written(value: object) -> str:
    """A default as .env.example writes it: booleans in lower case, like the JSON the shell expects."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return str(value).lower() if isinstance(value, bool) else str(value)


def defaults() -> dict[str, str]:
    found = {}
    for name, field in Settings.model_fields.items():
        if isinstance(field.default_factory, type) and issubclass(field.default_factory, BaseSettings):
            section = field.default_factory
            prefix = str(section.model_config.get("env_prefix", ""))
            for sub, sub_field in section.model_fields.items():
                found[f"{prefix}{sub}".upper()] = written(sub_field.default)
        else:
            found[name.upper()] = written(field.default)
    return found


def test_env_example_lists_every_setting_with_its_default() -> None:
    assert documented() == defaults()


def test_explicit_settings_ignore_the_environment_and_dotenv(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AUTH_ENABLED", "false")
    monkeypatch.setenv("KAFKA_TOPIC", "from-the-shell")
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("RATE_LIMIT_BURST=7\n")
    assert (Settings().auth.enabled, Settings().kafka.topic, Settings().rate_limit.burst) == (
        False,
        "from-the-shell",
        7,
    )
    explicit = Settings.explicit(kafka=KafkaSettings.explicit(topic="given"))
    assert (explicit.auth.enabled, explicit.kafka.topic, explicit.rate_limit.burst) == (True, "given", 2000)


@pytest.mark.parametrize(
    ("setting", "tty", "expected"),
    [
        ("auto", True, TextFormatter),
        ("auto", False, JsonFormatter),
        ("json", True, JsonFormatter),
        ("text", False, TextFormatter),
    ],
)
def test_logs_are_text_at_a_terminal_and_json_otherwise_unless_told(
    monkeypatch: pytest.MonkeyPatch, setting: str, tty: bool, expected: type
) -> None:
    class Stderr(io.StringIO):
        def isatty(self) -> bool:
            return tty

    monkeypatch.setattr(sys, "stderr", Stderr())
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        configure_logging("INFO", setting)
        assert type(root.handlers[0].formatter) is expected
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
