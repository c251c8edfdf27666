"""API keys as configured (AUTH_API_KEYS) and as checked: by digest, with scopes, never echoed."""

from __future__ import annotations

import hashlib
import json

import pytest
from pydantic import ValidationError

from activity_service.infrastructure.settings import ApiSettings, AuthSettings
from activity_service.interfaces.http.security.keys import READ, WRITE, ApiKeys
from activity_service.interfaces.http.security.policy import HttpSecurity, InsecureConfiguration

WRITER_KEY = "writer-key-0123456789"
READER_KEY = "reader-key-0123456789"


def auth(keys: list[dict[str, object]], **values: object) -> AuthSettings:
    return AuthSettings.explicit(api_keys=json.dumps(keys), **values)  # type: ignore[arg-type]  # as from the env


def test_a_key_is_known_by_its_value_or_by_its_sha256() -> None:
    settings = auth(
        [
            {"name": "writer", "key": WRITER_KEY, "scopes": [WRITE]},
            {"name": "reader", "sha256": hashlib.sha256(READER_KEY.encode()).hexdigest(), "scopes": [READ]},
        ]
    )
    keys = ApiKeys(settings.api_keys)
    writer, reader = keys.identify(WRITER_KEY), keys.identify(READER_KEY)
    assert writer is not None and reader is not None
    assert (writer.name, writer.scopes, writer.bucket) == ("writer", {WRITE}, "key:writer")
    assert (reader.name, reader.scopes) == ("reader", {READ})
    assert keys.identify("writer-key-012345678") is None
    assert keys.identify(WRITER_KEY + " ") is None
    assert keys.identify("") is None
    assert keys.identify("x" * 100_000) is None


def test_the_sha256_may_be_given_in_upper_case() -> None:
    digest = hashlib.sha256(READER_KEY.encode()).hexdigest().upper()
    keys = ApiKeys(auth([{"name": "r", "sha256": digest, "scopes": [READ]}]).api_keys)
    assert keys.identify(READER_KEY) is not None


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "both", "key": WRITER_KEY, "sha256": "0" * 64, "scopes": [WRITE]},
        {"name": "neither", "scopes": [WRITE]},
        {"name": "short", "key": "short-key", "scopes": [WRITE]},
        {"name": "typo", "key": WRITER_KEY, "scopes": ["activities:writ"]},
        {"name": "none", "key": WRITER_KEY, "scopes": []},
        {"name": "bad digest", "sha256": "abc", "scopes": [READ]},
        {"name": "extra", "key": WRITER_KEY, "scopes": [READ], "admin": True},
    ],
)
def test_a_malformed_entry_is_refused_without_echoing_the_key(entry: dict[str, object]) -> None:
    with pytest.raises(ValidationError) as refused:
        auth([entry])
    assert WRITER_KEY not in str(refused.value)


def test_invalid_json_is_refused_without_echoing_it() -> None:
    with pytest.raises(ValidationError) as refused:
        AuthSettings.explicit(api_keys='[{"name": "a", "key": "' + WRITER_KEY + '", ')  # type: ignore[arg-type]
    assert "not valid JSON" in str(refused.value)
    assert WRITER_KEY not in str(refused.value)


def test_names_and_keys_are_unique() -> None:
    with pytest.raises(ValidationError, match="same name"):
        auth(
            [
                {"name": "a", "key": WRITER_KEY, "scopes": [WRITE]},
                {"name": "a", "key": READER_KEY, "scopes": [READ]},
            ]
        )
    digest = hashlib.sha256(WRITER_KEY.encode()).hexdigest()
    with pytest.raises(ValidationError, match="configured twice"):
        auth(
            [
                {"name": "a", "key": WRITER_KEY, "scopes": [WRITE]},
                {"name": "b", "sha256": digest, "scopes": [READ]},
            ]
        )


def test_the_key_never_shows_in_the_settings_repr() -> None:
    settings = auth([{"name": "writer", "key": WRITER_KEY, "scopes": [WRITE]}])
    assert WRITER_KEY not in repr(settings)
    assert WRITER_KEY not in str(settings)


def test_auth_on_with_no_keys_refuses_to_start_with_a_message() -> None:
    with pytest.raises(InsecureConfiguration) as refused:
        HttpSecurity.from_settings(AuthSettings.explicit(api_keys=[]), ApiSettings.explicit())
    assert isinstance(refused.value, SystemExit)
    assert "AUTH_API_KEYS" in str(refused.value.code)
    assert "AUTH_ENABLED" in str(refused.value.code)


def test_auth_off_needs_no_keys_and_protects_nothing() -> None:
    security = HttpSecurity.from_settings(
        AuthSettings.explicit(enabled=False, protect_docs=True, protect_metrics=True), ApiSettings.explicit()
    )
    assert security.keys is None
    assert not security.protect_docs and not security.protect_metrics


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "CHANGE-ME", "key": "CHANGE-ME-generate-a-long-random-key", "scopes": [WRITE]},
        {"name": "laptop", "key": "local-dev-key-not-a-secret", "scopes": [WRITE]},
        {
            "name": "hashed",
            "sha256": hashlib.sha256(b"local-dev-key-not-a-secret").hexdigest(),
            "scopes": [WRITE],
        },
    ],
)
def test_a_key_shipped_in_the_repository_runs_only_in_development(entry: dict[str, object]) -> None:
    settings = auth([{"name": "own", "key": WRITER_KEY, "scopes": [WRITE]}, entry])
    with pytest.raises(InsecureConfiguration) as refused:
        HttpSecurity.from_settings(settings, ApiSettings.explicit())
    assert "refusing to start" in str(refused.value.code) and "APP_ENV=development" in str(refused.value.code)
    assert WRITER_KEY not in str(refused.value.code)
    assert HttpSecurity.from_settings(settings, ApiSettings.explicit(), development=True).keys is not None
