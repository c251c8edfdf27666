"""What held events cost in memory: `python -m bench.inflight_memory [--max-bytes N]`.

1. While Kafka takes nothing (a broker down or partitioned away), every request that gives up after its
   deadline leaves its encoded events queued in the publisher's record batches, until the bound refuses
   more (INGEST_MAX_IN_FLIGHT_EVENTS, and INGEST_MAX_IN_FLIGHT_BYTES). This fills that queue with ~33 KB
   events, one request each, through the real KafkaEventPublisher over a producer that never takes a
   batch, and prints the process's RSS growth once the bound refuses: what a pod pays in that state.
2. What a batch request holds while it is processed (its body, parsed, validated, its activities and
   their encoding), per byte of body: the factor INGEST_MAX_BODY_BYTES_IN_PROGRESS is multiplied by.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka.producer.message_accumulator import BatchBuilder

from activity_service.domain.activity import Activity
from activity_service.domain.errors import Overloaded, PublishUnavailable
from activity_service.infrastructure.kafka.codec import encode
from activity_service.infrastructure.kafka.publisher import KafkaEventPublisher
from activity_service.infrastructure.settings import IngestSettings, KafkaSettings
from activity_service.infrastructure.system import Uuid7Ids
from activity_service.interfaces.http.schemas.ingest import BatchIn, parse_item
from activity_service.interfaces.http.strict_json import loads

METADATA_BYTES = (
    32_500  # with the other fields, ~33 KB encoded: the largest event INGEST_MAX_EVENT_BYTES allows
)


class StuckProducer:
    async def partitions_for(self, topic: str) -> set[int]:
        return set(range(6))

    def create_batch(self) -> BatchBuilder:
        return BatchBuilder(KafkaSettings.explicit().producer_max_batch_bytes, 0)

    async def send_batch(self, batch: Any, topic: str, *, partition: int) -> Any:
        await asyncio.Event().wait()


def rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


async def fill(max_events: int, max_bytes: int) -> dict[str, float]:
    publisher = KafkaEventPublisher(
        StuckProducer(),  # type: ignore[arg-type]
        "t",
        timeout_seconds=0.001,
        max_in_flight=max_events,
        max_in_flight_bytes=max_bytes,
    )
    received = datetime.now(UTC)
    before = rss_mib()
    held = 0
    while True:
        event = Activity.record(
            id=f"e{held}",
            user_id=f"user-{held % 1000}",
            action="page_view",
            received_at=received,
            metadata={"blob": "x" * METADATA_BYTES},
        )
        try:
            await publisher.publish([event])
        except Overloaded:
            break
        except PublishUnavailable:
            held += 1
    return {"events": held, "rss_growth_mib": rss_mib() - before}


def batch_cost(items: int, pad: int, requests: int = 16) -> tuple[int, float]:
    """(body bytes, RSS per body byte) of ``requests`` batch requests held at once, each mid-publish."""
    events = [
        {
            "userId": f"user-{i}",
            "action": "page_view",
            "timestamp": "2026-11-26T10:00:00Z",
            "metadata": {"path": "/pricing", "n": i, "blob": "x" * pad},
        }
        for i in range(items)
    ]
    template = json.dumps({"activities": events}).encode()
    gc.collect()
    before = rss_mib()
    held = []
    for n in range(requests):
        body = template[:-1] + b" " * (n % 2) + b"}"  # each request reads its own copy
        parsed = BatchIn.model_validate(loads(body))
        drafts = [parse_item(raw, "127.0.0.1", 1 << 20) for raw in parsed.activities]
        ids, now = Uuid7Ids(), datetime.now(UTC)
        activities = [d.to_activity(ids, now) for d in drafts if not isinstance(d, list)]
        held.append((body, parsed, drafts, activities, [encode(a) for a in activities]))
    return len(template), (rss_mib() - before) * 2**20 / (requests * len(template))


def main(argv: Sequence[str]) -> int:
    defaults = IngestSettings.explicit()
    parser = argparse.ArgumentParser(prog="bench.inflight_memory")
    parser.add_argument("--max-events", type=int, default=defaults.max_in_flight_events)
    parser.add_argument("--max-bytes", type=int, default=defaults.max_in_flight_bytes)
    args = parser.parse_args(argv)
    result = asyncio.run(fill(args.max_events, args.max_bytes))
    print(
        f"max {args.max_events} events, {args.max_bytes / 2**20:.0f} MiB: held {result['events']:.0f} events "
        f"of ~33 KB, RSS +{result['rss_growth_mib']:.0f} MiB"
    )
    for items, pad in ((500, 1900), (30, 32_000), (100, 60)):
        size, factor = batch_cost(items, pad)
        print(f"batch of {items} events, {size / 1024:.0f} KiB: RSS {factor:.1f}x its body while processed")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
