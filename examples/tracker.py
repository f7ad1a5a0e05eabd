"""Print payment events as they arrive: the tutorial's tracker.py on paykafka."""

import argparse
import logging

import paykafka


def show(event: paykafka.PaymentEvent) -> None:
    print(
        f"💳 Payment: {event.amount} {event.currency} via {event.method} "
        f"from {event.user} at {event.timestamp.isoformat()}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--from-beginning",
        action="store_true",
        help="start at the oldest event where the group has no offset yet",
    )
    parser.add_argument("--max-events", type=int, help="stop after this many events")
    parser.add_argument(
        "--until-end", action="store_true", help="stop once every partition is read to its end"
    )
    args = parser.parse_args()
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    # librdkafka logs each internal retry; what matters reaches us as paykafka exceptions.
    logging.getLogger("paykafka.librdkafka").setLevel(logging.CRITICAL)
    paykafka.KafkaAdmin(timeout=10).brokers()  # fail fast, like `paykafka track`
    with paykafka.PaymentTracker(from_beginning=args.from_beginning) as tracker:
        print(
            f"🟢 Consumer is running and subscribed to {tracker.settings.topic} topic", flush=True
        )
        tracker.run(show, max_events=args.max_events, stop_at_end=args.until_end)


if __name__ == "__main__":
    try:
        main()
    except paykafka.PayKafkaError as exc:
        raise SystemExit(f"❌ {exc}") from None
