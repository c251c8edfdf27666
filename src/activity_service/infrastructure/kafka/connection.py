"""How every Kafka client of the service reaches the brokers: one set of options built from KafkaSettings
(the brokers, TLS, SASL) for the producer, the consumer, the dead-letter producer, replay, the live tail,
topic admin and readiness alike; and, when they cannot connect, what to check, in words.

A bare ``"host:port,..."`` string is accepted wherever options are (PLAINTEXT, nothing else): tests and
tools that talk to the local stack pass one.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import Any, Protocol

from aiokafka.conn import create_conn
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context

from activity_service.infrastructure.settings import KafkaSettings

ClientOptions = Mapping[str, Any]
"""Keyword arguments every aiokafka client takes: bootstrap_servers, security_protocol, ssl_context,
sasl_*."""

Connection = str | ClientOptions
"""Client options, or a bootstrap string (PLAINTEXT)."""


class KafkaUnreachable(RuntimeError):
    """The brokers could not be reached, or refused the connection; the message says what to check."""


class _Startable(Protocol):
    async def start(self) -> None: ...


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """The options of every client: the same brokers, protocol, CA, client certificate and credentials."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=settings.ssl_ca_file or None,
            certfile=settings.ssl_cert_file or None,
            keyfile=settings.ssl_key_file or None,
            password=settings.ssl_key_password.get_secret_value() or None,
        )
    if settings.security_protocol.startswith("SASL_"):
        options.update(
            sasl_mechanism=settings.sasl_mechanism,
            sasl_plain_username=settings.sasl_username,
            sasl_plain_password=settings.sasl_password.get_secret_value(),
        )
    return options


def options_of(connection: Connection) -> dict[str, Any]:
    if isinstance(connection, str):
        return {"bootstrap_servers": connection}
    return dict(connection)


async def start(client: _Startable, connection: Connection) -> None:
    """``client.start()``; when it cannot bootstrap, KafkaUnreachable saying why (aiokafka only logs the
    cause and raises "Unable to bootstrap")."""
    try:
        await client.start()
    except KafkaConnectionError as exc:
        raise KafkaUnreachable(await explain(connection)) from exc


async def explain(connection: Connection, timeout_seconds: float = 10.0) -> str:
    """Why a client cannot use the brokers, found by connecting to each bootstrap server in turn as the
    clients do (TLS handshake and SASL authentication included): the first failure, and what to check."""
    options = options_of(connection)
    servers = str(options["bootstrap_servers"])
    protocol = str(options.get("security_protocol", "PLAINTEXT"))
    failures = []
    for address in [s.strip() for s in servers.split(",") if s.strip()]:
        host, _, port = address.rpartition(":")
        try:
            conn = await asyncio.wait_for(
                create_conn(
                    host.strip("[]"),
                    int(port),
                    security_protocol=protocol,
                    ssl_context=options.get("ssl_context"),
                    sasl_mechanism=options.get("sasl_mechanism", "PLAIN"),
                    sasl_plain_username=options.get("sasl_plain_username"),
                    sasl_plain_password=options.get("sasl_plain_password"),
                ),
                timeout_seconds,
            )
        except (OSError, KafkaError, TimeoutError, ValueError) as exc:
            failures.append((address, exc))
            if isinstance(exc, SaslAuthenticationFailed | UnsupportedSaslMechanismError | ssl.SSLError):
                break  # the brokers of a cluster answer alike: the first says it all
            continue
        conn.close()
        return (
            f"Kafka at {address} accepts a connection ({protocol}) but the client could not use the cluster: "
            "check the broker's logs and the advertised listeners (the addresses brokers give clients)"
        )
    if not failures:
        return f"KAFKA_BOOTSTRAP_SERVERS={servers!r} names no broker (host:port,...)"
    first, failure = failures[0]
    return f"cannot use Kafka at {servers} ({protocol}): {first}: {_advice(failure, options)}"


def _advice(exc: BaseException, options: ClientOptions) -> str:
    protocol = str(options.get("security_protocol", "PLAINTEXT"))
    if isinstance(exc, SaslAuthenticationFailed):
        return (
            f"the broker refused the credentials of user {options.get('sasl_plain_username')!r} "
            f"({options.get('sasl_mechanism')}): check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD and "
            f"KAFKA_SASL_MECHANISM ({exc})"
        )
    if isinstance(exc, UnsupportedSaslMechanismError):
        return f"{exc}: set KAFKA_SASL_MECHANISM to one the broker enables"
    if isinstance(exc, ssl.SSLCertVerificationError):
        return (
            f"the broker's TLS certificate is not trusted ({exc.verify_message}): set KAFKA_SSL_CA_FILE to "
            "the CA that signed it (empty: the system's CAs), and check that the certificate names the "
            "host clients connect to"
        )
    if isinstance(exc, ssl.SSLError):
        return (
            f"the TLS handshake failed ({exc}): does this listener speak {protocol} "
            "(KAFKA_SECURITY_PROTOCOL)? Does it require a client certificate (KAFKA_SSL_CERT_FILE, "
            "KAFKA_SSL_KEY_FILE)?"
        )
    if isinstance(exc, ConnectionRefusedError):
        return (
            "nothing listens there: is the broker running (locally: make stack-up)? "
            "Check KAFKA_BOOTSTRAP_SERVERS"
        )
    if isinstance(exc, TimeoutError | KafkaConnectionError | ConnectionResetError | ConnectionAbortedError):
        hint = (
            "a listener that expects TLS or SASL closes a PLAINTEXT client"
            if protocol == "PLAINTEXT"
            else "a PLAINTEXT listener resets a TLS client or leaves it waiting, and one that requires a "
            "client certificate closes a client without one (KAFKA_SSL_CERT_FILE, KAFKA_SSL_KEY_FILE)"
        )
        return (
            f"the broker closed the connection or did not answer ({_detail(exc)}): is "
            f"KAFKA_SECURITY_PROTOCOL={protocol} what this listener speaks? ({hint})"
        )
    return f"{_detail(exc)}: check KAFKA_BOOTSTRAP_SERVERS and KAFKA_SECURITY_PROTOCOL"


def _detail(exc: BaseException) -> str:
    """aiokafka's errors name their class already; the standard library's mostly do not."""
    text = str(exc)
    return text if text.startswith(type(exc).__name__) else f"{type(exc).__name__}: {text}".rstrip(": ")
