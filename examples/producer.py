"""Send payment events to the payments topic: the tutorial's producer.py on paykafka."""

import argparse
import logging
from decimal import Decimal

import paykafka


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--user", default="marek")
    parser.add_argument("--amount", type=Decimal, default=Decimal("249.99"))
    parser.add_argument("--currency", default="PLN")
    parser.add_argument("--method", default="credit_card")
    parser.add_argument("--count", type=int, default=1, help="how many events to send")
    parser.add_argument(
        "--set", action="append", default=[], metavar="NAME=VALUE", help="optional field"
    )
    args = parser.parse_args()
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    # librdkafka logs each internal retry; what matters reaches us as paykafka exceptions.
    logging.getLogger("paykafka.librdkafka").setLevel(logging.CRITICAL)

    def report(future: paykafka.DeliveryFuture) -> None:
        delivery = future.result()
        print(f"✅ Delivered {delivery.event.to_json()}")
        print(
            f"✅ Delivered to {delivery.topic} : partition {delivery.partition} "
            f": at offset {delivery.offset}"
        )

    # Fail fast, like `paykafka produce`: no broker means one error in seconds, not a wait
    # for every event to time out. A delivery that fails later makes close() raise.
    paykafka.KafkaAdmin(timeout=10).brokers()
    with paykafka.PaymentProducer() as producer:
        for _ in range(args.count):
            event = paykafka.PaymentEvent(
                user=args.user,
                amount=args.amount,
                currency=args.currency,
                method=args.method,
                **paykafka.optional_fields(args.set),
            )
            producer.send(event, on_delivery=report)


if __name__ == "__main__":
    try:
        main()
    except paykafka.PayKafkaError as exc:
        raise SystemExit(f"❌ {exc}") from None
