"""An ingest request's body: what it may be, and reading it within its bounds, inflated when compressed.

Media types: JSON (``application/json``, ``application/*+json``), and ``text/plain`` (UTF-8) holding
JSON, which only a publishable key may send: it is what ``navigator.sendBeacon`` sends and what a
browser sends cross-origin without a CORS preflight.

Content codings (``Content-Encoding``): ``gzip`` (``x-gzip``; several members as RFC 1952 allows),
``deflate`` (the zlib format RFC 9110 names, or the raw deflate some clients send, told apart by the zlib
header, which a raw stream cannot start with) and ``identity``. Any other is refused (415).

Bounds: a body is read chunk by chunk and inflated as it comes (``zlib.decompressobj`` with
``max_length``), so no more than the route's limit + 1 byte is ever inflated: the limit counts the
inflated body (413), and so do the bounds on bodies in progress (the guard reserves the whole limit for
a compressed body, whose inflated size is unknown until read). A body may also inflate to at most
``max_ratio`` times its size on the wire (413; with a declared length this is known before inflating),
which bounds what a client makes the API hold per byte it sends. A stream that is corrupt, truncated or
followed by anything else is a 400.
"""

from __future__ import annotations

import zlib

from starlette.types import Message, Receive

GZIP, DEFLATE = "gzip", "deflate"
CODINGS = {"gzip": GZIP, "x-gzip": GZIP, "deflate": DEFLATE}
ACCEPTED_CODINGS = "gzip, deflate"
"""What the Accept-Encoding of a 415 lists (RFC 9110 15.5.16)."""
STEP = 65_536
"""Bytes inflated per call at most."""
_GZIP_WBITS, _ZLIB_WBITS, _RAW_WBITS = 31, 15, -15


class Gone(Exception):
    """The client went away while its body was read."""


class TooLarge(Exception):
    def __init__(self, limit: int, ratio: int | None = None, *, encoded: bool = False) -> None:
        """``ratio``: set when it was the compression ratio that the body passed."""
        super().__init__(limit, ratio)
        self.limit = limit
        self.ratio = ratio
        self.encoded = encoded

    def __str__(self) -> str:
        if self.ratio is not None:
            return (
                f"The body inflates to more than {self.ratio} times its compressed size, more than this API "
                "accepts (INGEST_MAX_COMPRESSION_RATIO)."
            )
        inflated = ", decompressed," if self.encoded else ""
        return f"The body{inflated} is larger than this endpoint's limit of {self.limit} bytes."


class Corrupt(Exception):
    """The compressed body cannot be inflated: its message says why."""


def media_type(content_type: str) -> str | None:
    """``json`` or ``text`` (text/plain in UTF-8) for a body the ingest routes read, else None."""
    media, _, parameters = content_type.partition(";")
    media = media.strip().lower()
    if media == "application/json" or (media.startswith("application/") and media.endswith("+json")):
        return "json"
    if media == "text/plain":
        for parameter in parameters.split(";"):
            name, _, value = parameter.partition("=")
            charset = value.strip().strip('"').lower()
            if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
                return None
        return "text"
    return None


def coding(content_encoding: str | None) -> str | None:
    """The one coding the body was compressed with (None: not compressed); ValueError for one this API
    does not take, or for more than one (no client stacks them)."""
    if content_encoding is None:
        return None
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c and c != "identity"]
    if not codings:
        return None
    if len(codings) > 1 or codings[0] not in CODINGS:
        raise ValueError(content_encoding)
    return CODINGS[codings[0]]


async def read(
    receive: Receive,
    limit: int,
    encoding: str | None = None,
    max_ratio: int = 100,
    declared: int | None = None,
) -> bytes:
    """The whole body, inflated when ``encoding`` says it is compressed; raises TooLarge beyond ``limit``
    bytes (on the wire, and inflated) or beyond ``max_ratio``, Corrupt for a stream that cannot be
    inflated, Gone if the client went away. ``declared``: its Content-Length, when it has one."""
    inflater = _Inflater(encoding) if encoding is not None else None
    cap = limit
    if inflater is not None and declared is not None and max_ratio * declared < limit:
        cap = max_ratio * declared  # known before inflating a byte: the ratio bounds it more tightly
    chunks: list[bytes] = []
    wire = size = 0
    while True:
        message: Message = await receive()
        if message["type"] != "http.request":
            raise Gone
        chunk = message.get("body", b"")
        wire += len(chunk)
        if wire > limit:
            raise TooLarge(limit)
        if inflater is None:
            chunks.append(chunk)
        else:
            for piece in inflater.inflate(chunk, cap + 1 - size):
                size += len(piece)
                chunks.append(piece)
            if size > cap:
                raise TooLarge(limit, max_ratio if cap < limit else None, encoded=True)
        if not message.get("more_body", False):
            break
    if inflater is not None:
        inflater.finish()
        if size > max_ratio * wire:
            raise TooLarge(limit, max_ratio, encoded=True)
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class _Inflater:
    """Inflates a gzip or deflate stream piece by piece, never more than it is asked for."""

    def __init__(self, encoding: str) -> None:
        self._gzip = encoding == GZIP
        self._stream = zlib.decompressobj(_GZIP_WBITS) if self._gzip else None
        self._head = b""
        """The first bytes of a deflate stream, until there are two: its format is told by them."""
        self._ended = False
        """Whether the stream (every gzip member so far) ended."""

    def inflate(self, data: bytes, room: int) -> list[bytes]:
        """What ``data`` inflates to: at most ``room`` bytes, less only when it needs more input."""
        if self._stream is None:
            self._head += data
            if len(self._head) < 2:
                return []
            data, self._head = self._head, b""
            zlib_header = data[0] & 0x0F == 8 and data[0] >> 4 <= 7 and (data[0] << 8 | data[1]) % 31 == 0
            self._stream = zlib.decompressobj(_ZLIB_WBITS if zlib_header else _RAW_WBITS)
        pieces: list[bytes] = []
        stream = self._stream
        while room > 0:
            if stream.eof:
                data = stream.unused_data + data
                if self._gzip:
                    data = data.lstrip(b"\0")  # gzip files may be padded with zeros
                if not data:
                    break
                if not self._gzip:
                    raise Corrupt("The body goes on after the end of its deflate stream.")
                stream = self._stream = zlib.decompressobj(_GZIP_WBITS)  # the next gzip member
            step = min(STEP, room)
            try:
                piece = stream.decompress(data, step)
            except zlib.error as exc:
                name = "gzip" if self._gzip else "deflate"
                raise Corrupt(f"The body is not a valid {name} stream ({exc}).") from None
            data = stream.unconsumed_tail
            if piece:
                pieces.append(piece)
                room -= len(piece)
            if not data and not stream.eof and len(piece) < step:
                break  # everything given is inflated: the stream needs more
        self._ended = stream.eof
        return pieces

    def finish(self) -> None:
        """After the last piece: raises Corrupt unless the stream ended."""
        if self._stream is None or not self._ended:
            raise Corrupt("The compressed body is truncated: its stream does not end.")


def replay(body: bytes, receive: Receive) -> Receive:
    """``receive`` as the routes read the body: ``body`` whole, in one message."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
