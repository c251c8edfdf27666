"""The environment variables the service reads, derived from the Settings class at run time, so a
manifest that sets a variable nobody reads (a typo, a renamed setting) fails the deployment tests."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from activity_service.infrastructure.settings import Settings

# Read by the OpenTelemetry SDK itself, not by Settings.
SDK_PREFIXES = ("OTEL_",)

# Authentication lands in a parallel change: the manifests set these two already. They are accepted only
# while Settings reads no AUTH_ variable at all; once the auth settings exist, every AUTH_ name in the
# manifests must be one they read, and this set gives no more cover. Remove it then.
PENDING = {"AUTH_ENABLED", "AUTH_API_KEYS"}
PENDING_PREFIX = "AUTH_"


@dataclass(frozen=True)
class Variable:
    name: str
    required: bool
    default: Any


def settings_variables(settings: type[BaseSettings] = Settings) -> dict[str, Variable]:
    """Every variable `settings` reads: top-level fields by name, nested sections with their env_prefix."""
    found: dict[str, Variable] = {}
    for name, field in settings.model_fields.items():
        section = field.annotation
        if isinstance(section, type) and issubclass(section, BaseSettings):
            prefix = str(section.model_config.get("env_prefix", ""))
            for sub, sub_field in section.model_fields.items():
                found.update(_variables(prefix, sub, sub_field))
        else:
            found.update(_variables(str(settings.model_config.get("env_prefix", "")), name, field))
    return found


def _variables(prefix: str, name: str, field: FieldInfo) -> dict[str, Variable]:
    # pydantic-settings applies no prefix to an aliased field: the alias is the variable's whole name.
    alias = field.validation_alias
    if isinstance(alias, str):
        names = [alias]
    elif isinstance(alias, AliasChoices):
        names = [choice for choice in alias.choices if isinstance(choice, str)]
    else:
        names = [f"{prefix}{name}"]
    default = None if field.is_required() else field.get_default(call_default_factory=True)
    return {n.upper(): Variable(n.upper(), field.is_required(), default) for n in names}


def unknown_variables(names: Iterable[str], known: dict[str, Variable] | None = None) -> set[str]:
    """The names in `names` that nothing reads."""
    known = settings_variables() if known is None else known
    auth_landed = any(k.startswith(PENDING_PREFIX) for k in known)
    return {
        n
        for n in names
        if n not in known and not n.startswith(SDK_PREFIXES) and not (n in PENDING and not auth_landed)
    }


def missing_required(names: Iterable[str], known: dict[str, Variable] | None = None) -> set[str]:
    """The settings without a default that `names` does not provide."""
    known = settings_variables() if known is None else known
    return {v.name for v in known.values() if v.required} - set(names)


def default_of(name: str) -> Any:
    return settings_variables()[name].default


def load_settings(env: Mapping[str, str], monkeypatch: pytest.MonkeyPatch, scratch: Path) -> Settings:
    """Settings as the process reads them from exactly `env`: the test run's own variables of the same
    names are removed, and the working directory is a new empty folder under `scratch`, so no .env is
    read either. Raises pydantic's ValidationError as the process would."""
    known = settings_variables()
    for name in list(os.environ):
        if name.upper() in known:
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    cwd = scratch / "settings-cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    return Settings()
