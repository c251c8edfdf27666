"""Kafka's connection and topic settings: what is refused at start, what every client is given, and that
the secrets stay secret."""

from __future__ import annotations

import ssl

import pytest
from pydantic import SecretStr, ValidationError

from activity_service.bootstrap import group_consumer, topic_configs
from activity_service.infrastructure.kafka.connection import client_options
from activity_service.infrastructure.settings import ConsumerSettings, KafkaSettings, Settings

PASSWORD = "s3cret-never-printed"


def sasl(**values: object) -> KafkaSettings:
    return KafkaSettings.explicit(
        security_protocol="SASL_SSL", sasl_username="svc", sasl_password=PASSWORD, **values
    )


def test_the_passwords_are_secrets_and_never_appear_in_a_repr_or_an_error() -> None:
    for name in ("sasl_password", "ssl_key_password"):
        assert KafkaSettings.model_fields[name].annotation is SecretStr
    settings = sasl()
    assert PASSWORD not in repr(settings) and PASSWORD not in repr(Settings.explicit(kafka=settings))
    with pytest.raises(ValidationError) as refused:
        KafkaSettings.explicit(sasl_username="svc", sasl_password=PASSWORD)  # PLAINTEXT: refused
    assert PASSWORD not in str(refused.value)


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"security_protocol": "SASL_SSL"}, "needs KAFKA_SASL_USERNAME and KAFKA_SASL_PASSWORD"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_username": "svc"}, "needs KAFKA_SASL_USERNAME"),
        ({"sasl_username": "svc", "sasl_password": "x"}, "does not use them"),
        ({"ssl_ca_file": "/etc/hostname"}, "does not use TLS"),
        ({"security_protocol": "SSL", "ssl_cert_file": "/etc/hostname"}, "go together"),
        ({"security_protocol": "SSL", "ssl_ca_file": "/no/such/ca.pem"}, "no such file"),
        ({"replication_factor": 3, "min_insync_replicas": 4}, "no write could ever be acknowledged"),
    ],
)
def test_settings_that_cannot_work_are_refused_at_start_saying_why(
    values: dict[str, object], says: str
) -> None:
    with pytest.raises(ValidationError, match=says):
        KafkaSettings.explicit(**values)


def test_min_insync_replicas_defaults_to_one_fewer_than_the_replicas_so_one_broker_may_fail() -> None:
    assert [KafkaSettings.explicit(replication_factor=n).topic_min_insync_replicas for n in (1, 2, 3, 5)] == [
        1,
        1,
        2,
        4,
    ]
    assert KafkaSettings.explicit(replication_factor=3, min_insync_replicas=3).topic_min_insync_replicas == 3


def test_topics_are_created_with_min_insync_replicas_and_the_retention_asked() -> None:
    assert topic_configs(KafkaSettings.explicit(replication_factor=3)) == {"min.insync.replicas": "2"}
    assert topic_configs(KafkaSettings.explicit(retention_hours=48)) == {
        "min.insync.replicas": "1",
        "retention.ms": str(48 * 3600 * 1000),
    }
    assert topic_configs(KafkaSettings.explicit(retention_hours=-1))["retention.ms"] == "-1"


def test_plaintext_clients_get_the_brokers_and_nothing_else() -> None:
    options = client_options(KafkaSettings.explicit(bootstrap_servers="a:9092,b:9092"))
    assert options == {"bootstrap_servers": "a:9092,b:9092", "security_protocol": "PLAINTEXT"}


def test_sasl_ssl_clients_get_the_credentials_and_a_verifying_tls_context() -> None:
    options = client_options(sasl(sasl_mechanism="SCRAM-SHA-512"))
    assert (options["sasl_mechanism"], options["sasl_plain_username"], options["sasl_plain_password"]) == (
        "SCRAM-SHA-512",
        "svc",
        PASSWORD,
    )
    context = options["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname


async def test_the_consumer_asks_the_broker_to_hold_an_empty_fetch_only_briefly() -> None:
    # At Kafka's default (500 ms) the client fetched nothing else meanwhile, not even for the partitions
    # it had run out of: a drain whose partitions ended unevenly stalled up to 0.45 s a fetch.
    settings = Settings.explicit()
    consumer = group_consumer(settings, client_options(settings.kafka))
    assert consumer._fetch_max_wait_ms == settings.consumer.fetch_max_wait_ms == 100
    tuned = Settings.explicit(consumer=ConsumerSettings.explicit(fetch_max_wait_ms=20))
    assert group_consumer(tuned, client_options(tuned.kafka))._fetch_max_wait_ms == 20
    with pytest.raises(ValidationError):
        ConsumerSettings.explicit(fetch_max_wait_ms=501)
