"""Compressed POST bodies in-process: gzip and deflate accepted on both ingest routes, the size limits
counting the decompressed body, the ratio bound, corrupt streams, codings the API does not take, and the
OpenAPI document saying so."""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from tests.http.conftest import Fakes, serve, settings

EVENT = {"userId": "u", "action": "compressed", "metadata": {"path": "/pricing"}}


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return compressor.compress(data) + compressor.flush()


CODINGS = {
    "gzip": ("gzip", gzip.compress),
    "x-gzip": ("x-gzip", gzip.compress),
    "zlib": ("deflate", zlib.compress),
    "raw-deflate": ("deflate", raw_deflate),
}


def compressed(value: Any, coding: str = "gzip") -> dict[str, Any]:
    """httpx.post arguments sending ``value`` as JSON compressed with ``coding`` (a CODINGS name)."""
    name, compress = CODINGS[coding]
    return {
        "content": compress(json.dumps(value).encode()),
        "headers": {"content-type": "application/json", "content-encoding": name},
    }


async def in_chunks(body: bytes, size: int = 1000) -> AsyncIterator[bytes]:
    """No Content-Length: the body's size is known only once it is read."""
    for start in range(0, len(body), size):
        yield body[start : start + size]


@pytest.mark.parametrize("coding", CODINGS)
async def test_gzip_and_deflate_bodies_are_accepted_on_both_routes(
    coding: str, http: httpx.AsyncClient, fakes: Fakes
) -> None:
    single = await http.post("/api/activities", **compressed(EVENT, coding))
    assert single.status_code == 202, single.text
    batch = await http.post("/api/activities/batch", **compressed({"activities": [EVENT] * 3}, coding))
    assert batch.status_code == 202 and batch.json()["accepted"] == 3, batch.text
    assert [a.metadata for a in fakes.publisher.published] == [EVENT["metadata"]] * 4


async def test_a_compressed_body_is_still_strict_json_and_validated(http: httpx.AsyncClient) -> None:
    duplicate = gzip.compress(b'{"userId": "u", "userId": "v", "action": "a"}')
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    assert (await http.post("/api/activities", content=duplicate, headers=headers)).status_code == 400
    invalid = await http.post("/api/activities", **compressed({"userId": "", "action": "a"}))
    assert invalid.status_code == 400 and invalid.json()["errors"][0]["field"] == "userId"


async def test_the_size_limits_count_the_decompressed_body(fakes: Fakes) -> None:
    config = settings(ingest={"max_event_bytes": 2048, "max_batch_bytes": 8192})
    big = {**EVENT, "metadata": {"blob": "x" * 3000}}  # ~60 bytes gzipped, 3 KB inflated
    async with serve(fakes, config) as http:
        single = await http.post("/api/activities", **compressed(big))
        assert single.status_code == 413, single.text
        assert single.json()["limit"] == 2048 and "decompressed" in single.json()["detail"]
        batch = await http.post("/api/activities/batch", **compressed({"activities": [big] * 3}))
        assert batch.status_code == 413 and batch.json()["limit"] == 8192
        arguments = compressed(big)
        chunked = await http.post(
            "/api/activities", content=in_chunks(arguments["content"], 10), headers=arguments["headers"]
        )
        assert chunked.status_code == 413
        fits = await http.post("/api/activities/batch", **compressed({"activities": [EVENT] * 3}))
        assert fits.status_code == 202
    assert len(fakes.publisher.published) == 3


async def test_a_gzip_bomb_is_a_413(http: httpx.AsyncClient, fakes: Fakes) -> None:
    bomb = gzip.compress(b"\0" * 10_000_000, 9)  # 10 MB of zeros in ~10 KB
    headers = {"content-type": "application/json", "content-encoding": "gzip"}
    for body in (bomb, in_chunks(bomb)):
        refused = await http.post("/api/activities/batch", content=body, headers=headers)
        assert refused.status_code == 413, refused.text
        assert refused.headers["content-type"] == "application/problem+json"
    assert fakes.publisher.published == []


async def test_a_body_may_inflate_to_at_most_the_compression_ratio(fakes: Fakes) -> None:
    repetitive = {"activities": [{"userId": "u", "action": "a", "metadata": {"n": "x" * 2000}}] * 100}
    arguments = compressed(repetitive)
    ratio = len(json.dumps(repetitive)) / len(arguments["content"])
    assert 100 < ratio < 1000, ratio  # within the size limit, over the default ratio
    async with serve(fakes) as http:
        refused = await http.post("/api/activities/batch", **arguments)
        assert refused.status_code == 413 and refused.json()["maxCompressionRatio"] == 100
        chunked = await http.post(
            "/api/activities/batch", content=in_chunks(arguments["content"]), headers=arguments["headers"]
        )
        assert chunked.status_code == 413 and chunked.json()["maxCompressionRatio"] == 100
    async with serve(fakes, settings(ingest={"max_compression_ratio": 1000})) as lenient:
        assert (await lenient.post("/api/activities/batch", **arguments)).status_code == 202


@pytest.mark.parametrize(
    ("coding", "body"),
    [
        ("gzip", gzip.compress(json.dumps(EVENT).encode())[:-12]),
        ("gzip", b"\x1f\x8b\x08\x00 certainly not a gzip stream"),
        ("gzip", gzip.compress(json.dumps(EVENT).encode()) + b"{}"),
        ("deflate", zlib.compress(json.dumps(EVENT).encode())[:-4]),
        ("gzip", json.dumps(EVENT).encode()),  # not compressed at all
    ],
    ids=["truncated", "garbage", "trailing", "deflate-truncated", "plain"],
)
async def test_a_corrupt_or_truncated_stream_is_a_400(
    coding: str, body: bytes, http: httpx.AsyncClient
) -> None:
    headers = {"content-type": "application/json", "content-encoding": coding}
    refused = await http.post("/api/activities", content=body, headers=headers)
    assert refused.status_code == 400, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    assert coding in refused.json()["detail"] or "truncated" in refused.json()["detail"]


@pytest.mark.parametrize("coding", ["br", "zstd", "compress", "gzip, gzip", "deflate, gzip"])
async def test_another_coding_is_a_415_naming_those_accepted(coding: str, http: httpx.AsyncClient) -> None:
    headers = {"content-type": "application/json", "content-encoding": coding}
    refused = await http.post("/api/activities", content=b"{}", headers=headers)
    assert refused.status_code == 415
    assert refused.headers["accept-encoding"] == "gzip, deflate"
    assert "Content-Encoding" in refused.json()["detail"]
    plain = {"content-type": "application/json", "content-encoding": "identity"}
    assert (await http.post("/api/activities", json=EVENT, headers=plain)).status_code == 202


async def test_the_openapi_document_says_bodies_may_be_compressed(http: httpx.AsyncClient) -> None:
    spec = (await http.get("/openapi.json")).json()
    for path in ("/api/activities", "/api/activities/batch"):
        post = spec["paths"][path]["post"]
        encoding = [p for p in post["parameters"] if p["name"] == "Content-Encoding"]
        assert encoding and encoding[0]["in"] == "header", path
        assert set(encoding[0]["schema"]["enum"]) == {"gzip", "x-gzip", "deflate", "identity"}
        assert "Content-Encoding" in post["responses"]["415"]["description"]
        assert "decompressed" in post["responses"]["413"]["description"]
