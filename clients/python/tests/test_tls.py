"""https: both clients verify the server's certificate (here a self-signed one they are told to trust)."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from activity_client import AsyncClient, Client
from tests.conftest import FAST
from tests.fake_api import API_KEY, FakeApi


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a certificate")
    where = tmp_path_factory.mktemp("tls")
    cert, key = where / "cert.pem", where / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture
def https_api(certificate: tuple[Path, Path]) -> Iterator[FakeApi]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*certificate)
    api = FakeApi(tls=context).start()
    yield api
    api.stop()


def test_both_clients_deliver_over_https(https_api: FakeApi, certificate: tuple[Path, Path]) -> None:
    trusted = ssl.create_default_context(cafile=str(certificate[0]))
    with Client(https_api.url, API_KEY, ssl_context=trusted, **FAST) as client:
        sync_ids = [client.track("u1", "login") for _ in range(10)]
        assert client.flush(10)

    async def main() -> list[str]:
        async with AsyncClient(https_api.url, API_KEY, ssl_context=trusted, **FAST) as client:
            ids = [await client.track("u1", "login") for _ in range(10)]
            assert await client.flush(10)
            return ids

    async_ids = asyncio.run(main())
    assert set(https_api.stored) == set(sync_ids + async_ids)


def test_an_untrusted_certificate_is_never_accepted(https_api: FakeApi) -> None:
    client = Client(https_api.url, API_KEY, **FAST)  # the system's trust store: it does not know this one
    client.track("u1", "login")
    assert not client.flush(0.5)
    assert client.stats.delivered == 0 and client.stats.retries >= 1
    client.close(timeout=0)
    assert not https_api.stored
