"""Reading a body inflated as it comes: every coding clients send, and never more than the bound in
memory, whatever the stream claims."""

from __future__ import annotations

import gzip
import os
import tracemalloc
import zlib

import pytest
from starlette.types import Message, Receive

from activity_service.interfaces.http import bodies

BODY = b'{"activities": [' + b",".join([b'{"userId": "u", "action": "a"}'] * 100) + b"]}"
MIB = 1 << 20


def raw_deflate(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-15)
    return compressor.compress(data) + compressor.flush()


def receiving(body: bytes, chunk: int = 1000) -> Receive:
    """The body in messages of ``chunk`` bytes, as a server hands it to the app."""
    pieces = [body[i : i + chunk] for i in range(0, len(body), chunk)] or [b""]
    messages: list[Message] = [
        {"type": "http.request", "body": piece, "more_body": i < len(pieces) - 1}
        for i, piece in enumerate(pieces)
    ]

    async def receive() -> Message:
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    return receive


@pytest.mark.parametrize(
    ("encoding", "compressed"),
    [
        ("gzip", gzip.compress(BODY)),
        ("deflate", zlib.compress(BODY)),  # RFC 9110's deflate: the zlib format
        ("deflate", raw_deflate(BODY)),  # what some clients send as deflate
        ("gzip", gzip.compress(BODY[:700]) + gzip.compress(BODY[700:])),  # two members (RFC 1952)
        ("gzip", gzip.compress(BODY) + b"\0" * 10),  # zero padding, as gzip tools may leave
    ],
    ids=["gzip", "zlib", "raw-deflate", "gzip-members", "gzip-padded"],
)
@pytest.mark.parametrize("chunk", [1, 7, 65536])
async def test_every_coding_is_inflated_whatever_the_chunks(
    encoding: str, compressed: bytes, chunk: int
) -> None:
    inflated = await bodies.read(receiving(compressed, chunk), 10_000, encoding, 100, len(compressed))
    assert inflated == BODY
    assert await bodies.read(receiving(compressed, chunk), 10_000, encoding, 100, None) == BODY  # chunked


@pytest.mark.parametrize(
    ("encoding", "broken"),
    [
        ("gzip", gzip.compress(BODY)[:-10]),
        ("gzip", gzip.compress(BODY)[:5]),
        ("gzip", b"\x1f\x8b" + b"not gzip at all"),
        ("gzip", gzip.compress(BODY) + b"trailing"),
        ("deflate", zlib.compress(BODY)[:-3]),
        ("deflate", zlib.compress(BODY) + b"trailing"),
        ("deflate", b"x"),
        ("gzip", b""),
    ],
    ids=[
        "truncated",
        "header-only",
        "garbage",
        "gzip-trailing",
        "zlib-truncated",
        "zlib-trailing",
        "1-byte",
        "empty",
    ],
)
async def test_a_stream_that_does_not_inflate_whole_is_corrupt(encoding: str, broken: bytes) -> None:
    with pytest.raises(bodies.Corrupt):
        await bodies.read(receiving(broken, 3), 10_000, encoding, 100, len(broken))


async def test_a_bomb_is_refused_having_inflated_no_more_than_the_limit() -> None:
    bomb = gzip.compress(b"\0" * (10 * MIB), 9)  # ~10 KB on the wire
    for declared in (len(bomb), None):
        tracemalloc.start()
        try:
            with pytest.raises(bodies.TooLarge) as refused:
                await bodies.read(receiving(bomb, 4096), MIB, "gzip", 10_000, declared)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert refused.value.ratio is None and refused.value.limit == MIB
        assert peak < 2.5 * MIB, f"held {peak} bytes for a {MIB}-byte limit"


async def test_the_ratio_bounds_what_a_small_body_may_inflate_to() -> None:
    zeros = gzip.compress(b"\0" * 200_000, 9)  # ~1000:1
    assert len(zeros) < 1000
    for declared in (len(zeros), None):  # known before inflating, or once the body is in
        with pytest.raises(bodies.TooLarge) as refused:
            await bodies.read(receiving(zeros), MIB, "gzip", 100, declared)
        assert refused.value.ratio == 100
    assert len(await bodies.read(receiving(zeros), MIB, "gzip", 1000, len(zeros))) == 200_000


async def test_the_bytes_on_the_wire_count_too() -> None:
    noise = os.urandom(5000)
    wire = gzip.compress(noise)  # larger than what it inflates to
    assert len(wire) > 5010
    with pytest.raises(bodies.TooLarge):
        await bodies.read(receiving(wire), 5010, "gzip", 100, None)
    assert await bodies.read(receiving(wire), len(wire), "gzip", 100, None) == noise


def test_codings() -> None:
    assert bodies.coding(None) is bodies.coding("identity") is bodies.coding("") is None
    assert bodies.coding("GZIP") == bodies.coding("x-gzip") == bodies.coding("gzip, identity") == "gzip"
    assert bodies.coding("deflate") == "deflate"
    for refused in ("br", "zstd", "gzip, gzip", "deflate, gzip", "compress"):
        with pytest.raises(ValueError):
            bodies.coding(refused)
