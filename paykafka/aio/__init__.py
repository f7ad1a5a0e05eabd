"""paykafka for asyncio: the same events, settings, serde, errors and guarantees as the sync
API, awaited instead of waited for.

``from paykafka.aio import AsyncPaymentProducer``; the modules behind it are private.
"""

from paykafka.aio._producer import AsyncPaymentProducer, DeliveryTask

__all__ = [
    "AsyncPaymentProducer",
    "DeliveryTask",
]
