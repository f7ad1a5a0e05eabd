"""An asyncio web service that takes payments: POST /payments -> Kafka, answered once acked.

    pip install 'paykafka[examples]'
    python examples/service.py --port 8000
    curl -X POST localhost:8000/payments \\
         -d '{"user": "marek", "amount": 249.99, "currency": "PLN", "method": "blik"}'

202 with where the event was stored (topic, partition, offset) once the broker acknowledged it;
422 when the body is not a valid payment (the reason, and the field when there is one);
503 when it could not be delivered (the reason; ``Retry-After`` when trying again can help).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from decimal import Decimal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import paykafka
from paykafka.aio import AsyncPaymentProducer

# What a client may send; the server stamps the time. payment_id is optional (idempotency key).
FIELDS = frozenset({"payment_id", "user", "amount", "currency", "method", "note"})


def problem(status: int, error: str, **extra: object) -> JSONResponse:
    return JSONResponse({"error": error, **extra}, status_code=status)


async def create_payment(request: Request) -> JSONResponse:
    producer: AsyncPaymentProducer = request.app.state.producer
    try:
        # Amounts as exact decimals: 249.99 must not become 249.98999999999999.
        body = json.loads(await request.body(), parse_float=Decimal)
    except ValueError:
        return problem(422, "the body is not JSON")
    if not isinstance(body, dict):
        return problem(422, "the body must be a JSON object")
    unknown = sorted(set(body) - FIELDS)
    if unknown:
        return problem(422, f"unknown fields: {', '.join(unknown)}")
    missing = sorted({"user", "amount", "currency", "method"} - set(body))
    if missing:
        return problem(422, f"missing fields: {', '.join(missing)}")
    try:
        event = paykafka.PaymentEvent(**body)
    except paykafka.ValidationError as exc:
        return problem(422, str(exc), field=exc.field)
    try:
        delivery = await producer.send(event)
    except paykafka.DeliveryError as exc:
        headers = {"Retry-After": "5"} if exc.retriable else None
        response = problem(503, str(exc), retriable=exc.retriable)
        if headers:
            response.headers.update(headers)
        return response
    return JSONResponse(
        {
            "payment_id": str(event.payment_id),
            "topic": delivery.topic,
            "partition": delivery.partition,
            "offset": delivery.offset,
        },
        status_code=202,
    )


async def health(_request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


def build_app(delivery_timeout: float) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # One producer for the whole service; closing it reports anything undelivered.
        overrides = {"message.timeout.ms": int(delivery_timeout * 1000)}
        async with AsyncPaymentProducer(kafka_options=overrides) as producer:
            app.state.producer = producer
            yield

    return Starlette(
        routes=[
            Route("/payments", create_payment, methods=["POST"]),
            Route("/health", health),
        ],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--delivery-timeout",
        type=float,
        default=10.0,
        help="seconds to wait for the broker's acknowledgement before answering 503",
    )
    args = parser.parse_args()
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    # librdkafka logs each internal retry; what matters reaches us as paykafka exceptions.
    logging.getLogger("paykafka.librdkafka").setLevel(logging.CRITICAL)
    uvicorn.run(build_app(args.delivery_timeout), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
