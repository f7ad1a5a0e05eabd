"""paykafka for asyncio: the same events, settings, serde, errors and guarantees as the sync
API, awaited instead of waited for.

``from paykafka.aio import AsyncPaymentProcessor, AsyncPaymentProducer, AsyncPaymentTracker``;
the modules behind them are private.
"""

from paykafka._exactly_once import AsyncPostgresInbox, AsyncSqliteInbox
from paykafka.aio._processor import AsyncPaymentProcessor
from paykafka.aio._producer import AsyncPaymentProducer, DeliveryTask
from paykafka.aio._tracker import AsyncPaymentTracker

__all__ = [
    "AsyncPaymentProcessor",
    "AsyncPaymentProducer",
    "AsyncPaymentTracker",
    "AsyncPostgresInbox",
    "AsyncSqliteInbox",
    "DeliveryTask",
]
