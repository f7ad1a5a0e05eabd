"""Route payments exactly once: big ones to payments.review, the rest to payments.cleared."""

import argparse
import logging
from decimal import Decimal

import paykafka


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--threshold", type=Decimal, default=Decimal(1000), help="amounts above go to review"
    )
    parser.add_argument("--review", default="payments.review", help="topic of big payments")
    parser.add_argument("--cleared", default="payments.cleared", help="topic of the rest")
    parser.add_argument("--group", default="payment-router", help="consumer group of routers")
    parser.add_argument("--max-events", type=int, help="stop after about this many inputs")
    parser.add_argument("--idle-timeout", type=float, help="stop after N seconds with no input")
    parser.add_argument(
        "--until-end", action="store_true", help="stop once every partition is read to its end"
    )
    args = parser.parse_args()
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("paykafka.librdkafka").setLevel(logging.CRITICAL)

    def route(event: paykafka.PaymentEvent) -> paykafka.Output:
        return paykafka.Output(
            args.review if event.amount > args.threshold else args.cleared, event
        )

    settings = paykafka.Settings.from_env(group_id=args.group)
    outputs = [args.review, args.cleared]
    with paykafka.PaymentProcessor(settings, output_topics=outputs) as router:
        print(f"🔀 Routing {settings.topic} -> {' / '.join(outputs)} exactly once", flush=True)
        routed = router.run(
            route,
            max_events=args.max_events,
            idle_timeout=args.idle_timeout,
            stop_at_end=args.until_end,
        )
    print(f"✅ Routed {routed} payments ({router.dead_lettered} dead-lettered)", flush=True)


if __name__ == "__main__":
    try:
        main()
    except paykafka.PayKafkaError as exc:
        raise SystemExit(f"❌ {exc}") from None
