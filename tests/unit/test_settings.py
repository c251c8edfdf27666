""".env.example lists every setting with its real default, and nothing else."""

from __future__ import annotations

from pathlib import Path

from pydantic_settings import BaseSettings

from activity_service.infrastructure.settings import Settings

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
