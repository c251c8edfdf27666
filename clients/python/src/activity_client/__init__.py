"""Python SDK for activity-service: ``Client`` (threads) and ``AsyncClient`` (asyncio)."""

from activity_client._core import ClientClosed, QueueFull, Stats
from activity_client._delivery import FieldProblem, Refusal
from activity_client.async_client import AsyncClient
from activity_client.client import Client

__all__ = ["AsyncClient", "Client", "ClientClosed", "FieldProblem", "QueueFull", "Refusal", "Stats"]
__version__ = "0.1.0"
