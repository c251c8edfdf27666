#!/usr/bin/env python3
"""Readiness probes for the local stack (scripts/stack.sh). Standard library only: runs before .venv exists.

    python3 scripts/stack_probe.py kafka HOST:PORT     # Metadata v1 request; ok when >= 1 broker is listed
                                                       # (--node-id N: when broker N is among them)
    python3 scripts/stack_probe.py mongo HOST:PORT     # OP_MSG {ping: 1, $db: "admin"}; ok when ok == 1
    python3 scripts/stack_probe.py postgres HOST:PORT  # StartupMessage as --user to --database (default
                                                       # activity / activity_service); ok on ReadyForQuery

Exit status 0 when the service answers as expected, 1 otherwise (quietly; the reason goes to stderr with
--verbose). An open port is not enough: the probe speaks the wire protocol, so "ready" means the Kafka broker
has joined its own KRaft quorum and registered, and the database accepts commands.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import sys

KAFKA_METADATA_API_KEY = 3
KAFKA_METADATA_VERSION = 1  # non-flexible (no tagged fields); supported by every broker from 0.10 to 4.x
MONGO_OP_MSG = 2013
POSTGRES_PROTOCOL_3_0 = 196608  # major 3, minor 0
MAX_RESPONSE_BYTES = 16 * 1024 * 1024


class ProbeError(Exception):
    """The service did not answer as expected."""


def _split_address(address: str) -> tuple[str, int]:
    host, sep, port = address.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ProbeError(f"expected HOST:PORT, got {address!r}")
    return host.strip("[]"), int(port)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    chunks = bytearray()
    while len(chunks) < n:
        chunk = sock.recv(n - len(chunks))
        if not chunk:
            raise ProbeError(f"connection closed after {len(chunks)} of {n} bytes")
        chunks += chunk
    return bytes(chunks)


# --- Kafka -------------------------------------------------------------------------------------------------


def _kafka_metadata_request(correlation_id: int) -> bytes:
    client_id = b"stack-probe"
    header = struct.pack(
        ">hhih", KAFKA_METADATA_API_KEY, KAFKA_METADATA_VERSION, correlation_id, len(client_id)
    )
    body = struct.pack(">i", -1)  # topics: null = all topics
    payload = header + client_id + body
    return struct.pack(">i", len(payload)) + payload


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        if self.pos + size > len(self.data):
            raise ProbeError("truncated response")
        (value,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += size
        return int(value)

    def skip(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.data):
            raise ProbeError("truncated response")
        self.pos += n

    def string(self) -> str:
        length = self.take(">h")
        if length < 0:
            return ""
        start = self.pos
        self.skip(length)
        return self.data[start : self.pos].decode("utf-8", "replace")


def probe_kafka(host: str, port: int, timeout: float, node_id: int | None = None) -> str:
    """Ready: the broker lists at least one broker, or with ``node_id``, that one. A node of a cluster lists
    itself only once the controller has registered and unfenced it: it then serves its partitions."""
    correlation_id = os.getpid() & 0x7FFFFFFF
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(_kafka_metadata_request(correlation_id))
        (size,) = struct.unpack(">i", _recv_exact(sock, 4))
        if not 4 <= size <= MAX_RESPONSE_BYTES:
            raise ProbeError(f"unexpected response size {size}")
        reader = _Reader(_recv_exact(sock, size))
    if reader.take(">i") != correlation_id:
        raise ProbeError("response correlation id does not match the request")
    broker_count = reader.take(">i")
    if broker_count < 1:
        raise ProbeError("the broker answered but lists no brokers yet (still starting)")
    brokers = []
    for _ in range(broker_count):
        broker_id = reader.take(">i")
        broker_host = reader.string()
        broker_port = reader.take(">i")
        reader.string()  # rack (nullable)
        brokers.append(f"{broker_id}@{broker_host}:{broker_port}")
    controller_id = reader.take(">i")
    listed = f"brokers {', '.join(brokers)}; controller {controller_id}"
    if node_id is not None and not any(b.startswith(f"{node_id}@") for b in brokers):
        raise ProbeError(f"node {node_id} is not registered and unfenced yet ({listed})")
    return listed


# --- MongoDB wire protocol ---------------------------------------------------------------------------------


def _cstring(value: str) -> bytes:
    return value.encode() + b"\x00"


def _bson_ping() -> bytes:
    db = b"admin\x00"
    elements = b"\x10" + _cstring("ping") + struct.pack("<i", 1) + b"\x02" + _cstring("$db")
    elements += struct.pack("<i", len(db)) + db
    return struct.pack("<i", len(elements) + 5) + elements + b"\x00"


def _bson_skip_cstring(doc: bytes, pos: int) -> int:
    end = doc.index(b"\x00", pos)
    return end + 1


def _bson_top_level(doc: bytes) -> dict[str, object]:
    """The scalar top-level fields of a BSON document (nested documents and other types are skipped)."""
    (length,) = struct.unpack_from("<i", doc, 0)
    if length != len(doc) or doc[-1] != 0:
        raise ProbeError("malformed BSON reply")
    fields: dict[str, object] = {}
    pos = 4
    while pos < length - 1:
        kind = doc[pos]
        name_end = doc.index(b"\x00", pos + 1)
        name = doc[pos + 1 : name_end].decode("utf-8", "replace")
        pos = name_end + 1
        if kind == 0x01:  # double
            fields[name] = struct.unpack_from("<d", doc, pos)[0]
            pos += 8
        elif kind == 0x10:  # int32
            fields[name] = struct.unpack_from("<i", doc, pos)[0]
            pos += 4
        elif kind == 0x12:  # int64
            fields[name] = struct.unpack_from("<q", doc, pos)[0]
            pos += 8
        elif kind == 0x08:  # bool
            fields[name] = doc[pos] == 1
            pos += 1
        elif kind in (0x02, 0x0D, 0x0E):  # string, JavaScript code, symbol
            (n,) = struct.unpack_from("<i", doc, pos)
            fields[name] = doc[pos + 4 : pos + 3 + n].decode("utf-8", "replace")
            pos += 4 + n
        elif kind in (0x03, 0x04, 0x0F):  # document, array, code with scope
            pos += struct.unpack_from("<i", doc, pos)[0]
        elif kind == 0x05:  # binary
            pos += 5 + struct.unpack_from("<i", doc, pos)[0]
        elif kind in (0x06, 0x0A, 0x7F, 0xFF):  # undefined, null, max key, min key
            pass
        elif kind == 0x07:  # ObjectId
            pos += 12
        elif kind in (0x09, 0x11):  # datetime, timestamp
            pos += 8
        elif kind == 0x0B:  # regex: two C strings
            pos = _bson_skip_cstring(doc, _bson_skip_cstring(doc, pos))
        elif kind == 0x0C:  # DBPointer
            pos += 4 + struct.unpack_from("<i", doc, pos)[0] + 12
        elif kind == 0x13:  # decimal128
            pos += 16
        else:
            raise ProbeError(f"unknown BSON type 0x{kind:02x} in reply")
    return fields


def probe_mongo(host: str, port: int, timeout: float) -> str:
    request_id = os.getpid() & 0x7FFFFFFF
    body = struct.pack("<I", 0) + b"\x00" + _bson_ping()  # flagBits, section kind 0 (body)
    message = struct.pack("<iiii", 16 + len(body), request_id, 0, MONGO_OP_MSG) + body
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(message)
        length, _, response_to, op_code = struct.unpack("<iiii", _recv_exact(sock, 16))
        if not 16 < length <= MAX_RESPONSE_BYTES:
            raise ProbeError(f"unexpected reply length {length}")
        payload = _recv_exact(sock, length - 16)
    if op_code != MONGO_OP_MSG or response_to != request_id:
        raise ProbeError(f"unexpected reply (opCode {op_code}, responseTo {response_to})")
    if len(payload) < 5 or payload[4] != 0:
        raise ProbeError("reply does not start with a body section")
    fields = _bson_top_level(payload[5:])
    ok = fields.get("ok")
    if isinstance(ok, bool) or not isinstance(ok, (int, float)) or ok != 1:
        raise ProbeError(f"ping answered without ok: 1: {fields}")
    return "ping ok"


# --- PostgreSQL frontend/backend protocol ---------------------------------------------------------------


def _postgres_startup(user: str, database: str) -> bytes:
    params = b"".join(
        _cstring(key) + _cstring(value)
        for key, value in (("user", user), ("database", database), ("application_name", "stack-probe"))
    )
    body = struct.pack(">i", POSTGRES_PROTOCOL_3_0) + params + b"\x00"
    return struct.pack(">i", len(body) + 4) + body


def _postgres_fields(payload: bytes) -> dict[str, str]:
    """An ErrorResponse's fields, each a type byte and a C string: S severity, C code, M message..."""
    fields: dict[str, str] = {}
    for part in payload.split(b"\x00"):
        if part:
            fields[chr(part[0])] = part[1:].decode("utf-8", "replace")
    return fields


def probe_postgres(host: str, port: int, timeout: float, user: str, database: str) -> str:
    """Ready means the role can log in to the database without a password and the server takes queries:
    ReadyForQuery after AuthenticationOk. "Starting up" or "in recovery" (57P03) is not ready yet."""
    server_version = "?"
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(_postgres_startup(user, database))
        while True:
            kind = _recv_exact(sock, 1)
            (length,) = struct.unpack(">i", _recv_exact(sock, 4))
            if not 4 <= length <= MAX_RESPONSE_BYTES:
                raise ProbeError(f"unexpected message length {length} (not a PostgreSQL server?)")
            payload = _recv_exact(sock, length - 4)
            if kind == b"R":
                (method,) = struct.unpack_from(">i", payload)
                if method != 0:
                    raise ProbeError(f"the server asks {user!r} for a password (auth method {method})")
            elif kind == b"E":
                fields = _postgres_fields(payload)
                raise ProbeError(f"{fields.get('S', 'ERROR')} {fields.get('C', '?')}: {fields.get('M', '')}")
            elif kind == b"S":
                name, _, rest = payload.partition(b"\x00")
                if name == b"server_version":
                    server_version = rest.rstrip(b"\x00").decode("utf-8", "replace")
            elif kind == b"Z":
                sock.sendall(b"X" + struct.pack(">i", 4))  # Terminate: a clean goodbye, no log noise
                return f"{user}@{database} accepted (PostgreSQL {server_version})"
            elif kind not in (b"K", b"N", b"v"):  # BackendKeyData, NoticeResponse, NegotiateProtocolVersion
                raise ProbeError(f"unexpected message type {kind!r} (not a PostgreSQL server?)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Probe the local Kafka broker, MongoDB-wire database or PostgreSQL server."
    )
    parser.add_argument("service", choices=["kafka", "mongo", "postgres"])
    parser.add_argument("address", help="HOST:PORT")
    parser.add_argument(
        "--timeout", type=float, default=2.0, help="seconds for connect and reply (default 2)"
    )
    parser.add_argument("--user", default="activity", help="postgres: role to log in as (default activity)")
    parser.add_argument(
        "--database", default="activity_service", help="postgres: database (default activity_service)"
    )
    parser.add_argument(
        "--node-id", type=int, help="kafka: ready only once this node is listed (a node of a cluster)"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="say why on stderr")
    args = parser.parse_args(argv)
    try:
        host, port = _split_address(args.address)
        if args.service == "postgres":
            detail = probe_postgres(host, port, args.timeout, args.user, args.database)
        elif args.service == "kafka":
            detail = probe_kafka(host, port, args.timeout, args.node_id)
        else:
            detail = probe_mongo(host, port, args.timeout)
    except (OSError, ProbeError, ValueError, struct.error) as exc:
        if args.verbose:
            print(f"{args.service} {args.address}: not ready: {exc or type(exc).__name__}", file=sys.stderr)
        return 1
    if args.verbose:
        print(f"{args.service} {args.address}: ready: {detail}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
