"""Write an order row and its payment event in ONE database transaction, through the outbox.

The event is a row of the outbox table, committed (or rolled back) with the order; a relay
publishes committed rows to Kafka. ``--relay`` runs the relay here until the outbox is empty;
in production run ``paykafka outbox relay --db URL`` next to the service.
"""

import argparse
import logging
from decimal import Decimal

import paykafka


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--db", default="shop.db", help="SQLite path or postgresql:// URL")
    parser.add_argument("--user", default="marek")
    parser.add_argument("--amount", default="249.99")
    parser.add_argument("--currency", default="PLN")
    parser.add_argument("--method", default="credit_card")
    parser.add_argument("--relay", action="store_true", help="publish what is pending, then stop")
    args = parser.parse_args()
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("paykafka.librdkafka").setLevel(logging.CRITICAL)

    outbox = paykafka.Outbox(args.db)
    event = paykafka.PaymentEvent(
        user=args.user, amount=Decimal(args.amount), currency=args.currency, method=args.method
    )
    db = outbox.database
    tx = db.connect()
    tx.execute("CREATE TABLE IF NOT EXISTS orders (payment_id TEXT PRIMARY KEY, user_id TEXT)")
    tx.commit()
    db.begin(tx)
    order = "INSERT INTO orders (payment_id, user_id) VALUES (?, ?)".replace("?", db.ph)
    tx.execute(order, (str(event.payment_id), event.user))
    outbox.add(tx, event)
    tx.commit()  # the order and its event, together
    tx.close()
    print(f"🛒 order {event.payment_id} committed with its payment event", flush=True)
    if args.relay:
        with paykafka.OutboxRelay(outbox) as relay:
            published = relay.run(stop_when_empty=True)
        print(f"📤 relay published {published} event(s)", flush=True)
    status = outbox.status()
    print(f"⏳ pending in the outbox: {status.pending}", flush=True)


if __name__ == "__main__":
    try:
        main()
    except paykafka.PayKafkaError as exc:
        raise SystemExit(f"❌ {exc}") from None
