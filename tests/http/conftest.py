"""The in-process HTTP tier: the real app (create_app: middleware, auth, routes, problem mapping) over the
in-memory fakes, driven through httpx's ASGI transport with the app's lifespan running. No process, no
broker, no database: every test builds its own settings, so nothing the shell exports reaches it."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from activity_service.application.check_readiness import CheckReadiness
from activity_service.application.count_activities import CountActivities
from activity_service.application.erase_users import GetErasure, LiveErasures, RequestErasure
from activity_service.application.follow_activities import FollowActivities
from activity_service.application.get_activity import GetActivity
from activity_service.application.get_event_status import GetEventStatus
from activity_service.application.list_activities import ListActivities
from activity_service.application.read_freshness import ReadFreshness
from activity_service.application.record_activity import RecordActivity
from activity_service.application.record_batch import RecordBatch
from activity_service.application.resends import RecentContent
from activity_service.bootstrap import ApiServices
from activity_service.infrastructure.rate_limit import TokenBuckets
from activity_service.infrastructure.settings import (
    ApiSettings,
    AuthSettings,
    IngestSettings,
    QuerySettings,
    RateLimitSettings,
    Settings,
    StreamSettings,
)
from activity_service.interfaces.http.app import create_app
from tests.fakes import (
    FixedClock,
    InMemoryCounts,
    InMemoryDeadLetterLog,
    InMemoryErasureLog,
    InMemoryFeed,
    InMemoryProgressLog,
    InMemoryPublisher,
    InMemoryRepository,
    SequentialIds,
)

TOPIC = "activities"
PARTITIONS = 2
WRITE, READ = "activities:write", "activities:read"
READ_PII, ERASE = "activities:read-pii", "activities:erase"
FULL_KEY = "http-full-access-key-0123456789"
READER_KEY = "http-reader-key-0123456789"
WRITER_KEY = "http-writer-key-0123456789"
ERASER_KEY = "http-eraser-key-0123456789"
KEYS = [
    {"name": "full", "key": FULL_KEY, "scopes": [WRITE, READ]},
    {"name": "reader", "key": READER_KEY, "scopes": [READ]},
    {"name": "writer", "key": WRITER_KEY, "scopes": [WRITE]},
    {"name": "eraser", "key": ERASER_KEY, "scopes": [ERASE]},
]
PEER = ("127.0.0.1", 40000)


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@dataclass
class Fakes:
    """The adapters the use cases run over, for a test to arrange and inspect."""

    publisher: InMemoryPublisher = field(default_factory=InMemoryPublisher)
    repository: InMemoryRepository = field(default_factory=InMemoryRepository)
    dead_letters: InMemoryDeadLetterLog = field(default_factory=InMemoryDeadLetterLog)
    progress: InMemoryProgressLog = field(default_factory=InMemoryProgressLog)
    clock: FixedClock = field(default_factory=FixedClock)
    ids: SequentialIds = field(default_factory=SequentialIds)
    feed: InMemoryFeed = field(default_factory=InMemoryFeed)
    erasures: InMemoryErasureLog = field(default_factory=InMemoryErasureLog)

    def __post_init__(self) -> None:
        self.publisher.feed = self.feed  # what is published reaches the live tail, as through Kafka

    def services(
        self, max_batch_items: int, query: QuerySettings | None = None
    ) -> Callable[[], AbstractAsyncContextManager[ApiServices]]:
        """The use cases over the fakes, bounded as ``query`` says (the defaults when None)."""
        query = query if query is not None else QuerySettings.explicit()

        @asynccontextmanager
        async def provide() -> AsyncIterator[ApiServices]:
            freshness = ReadFreshness(self.progress, TOPIC, partitions=PARTITIONS)
            live = LiveErasures(self.erasures, self.clock)
            recent = RecentContent(live)
            yield ApiServices(
                record_activity=RecordActivity(self.publisher, self.clock, self.ids, recent),
                record_batch=RecordBatch(
                    self.publisher, self.clock, self.ids, max_items=max_batch_items, recent=recent
                ),
                list_activities=ListActivities(
                    self.repository, freshness, max_depth=query.max_depth, max_count=query.max_count
                ),
                get_activity=GetActivity(self.repository),
                get_event_status=GetEventStatus(self.repository, self.dead_letters, freshness),
                count_activities=CountActivities(InMemoryCounts(self.repository), freshness),
                follow_activities=FollowActivities(self.feed, live),
                request_erasure=RequestErasure(self.erasures, self.ids, self.clock, live),
                get_erasure=GetErasure(self.erasures),
                readiness=CheckReadiness(
                    {"kafka": self.publisher.ping, "mongodb": self.repository.ping}, timeout_seconds=1
                ),
            )

        return provide


def settings(
    *,
    keys: list[dict[str, Any]] | None = None,
    auth: dict[str, Any] | None = None,
    api: dict[str, Any] | None = None,
    ingest: dict[str, Any] | None = None,
    stream: dict[str, Any] | None = None,
    query: dict[str, Any] | None = None,
    rate_limit: dict[str, Any] | None = None,
    **top: Any,
) -> Settings:
    """Explicit settings (the environment is never read): the three keys above unless told otherwise."""
    return Settings.explicit(
        auth=AuthSettings.explicit(api_keys=json.dumps(KEYS if keys is None else keys), **(auth or {})),
        api=ApiSettings.explicit(**(api or {})),
        ingest=IngestSettings.explicit(**(ingest or {})),
        stream=StreamSettings.explicit(**(stream or {})),
        query=QuerySettings.explicit(**(query or {})),
        rate_limit=RateLimitSettings.explicit(**(rate_limit or {})),
        **top,
    )


@asynccontextmanager
async def serve(
    fakes: Fakes,
    config: Settings | None = None,
    *,
    rate_limiter: TokenBuckets | None = None,
    address_limiter: TokenBuckets | None = None,
    key: str | None = FULL_KEY,
    peer: tuple[str, int] = PEER,
) -> AsyncIterator[httpx.AsyncClient]:
    """The app over ``fakes``, started (lifespan) and stopped around the block; the client sends ``key``."""
    async with started(fakes, config, rate_limiter=rate_limiter, address_limiter=address_limiter) as app:
        transport = httpx.ASGITransport(app=app, client=peer)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api.test", headers=bearer(key) if key else {}
        ) as client:
            yield client


@asynccontextmanager
async def started(
    fakes: Fakes,
    config: Settings | None = None,
    *,
    rate_limiter: TokenBuckets | None = None,
    address_limiter: TokenBuckets | None = None,
    fast_ingest: bool = True,
) -> AsyncIterator[FastAPI]:
    """The app over ``fakes`` with its lifespan running (for clients other than httpx's, e.g. streams)."""
    config = config if config is not None else settings()
    app = create_app(
        config,
        services=fakes.services(config.ingest.max_batch_items, config.query),
        rate_limiter=rate_limiter,
        address_limiter=address_limiter,
        fast_ingest=fast_ingest,
    )
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
def fakes() -> Fakes:
    return Fakes()


@pytest.fixture
async def http(fakes: Fakes) -> AsyncIterator[httpx.AsyncClient]:
    """The app with default settings, as the full-access key."""
    async with serve(fakes) as client:
        yield client
