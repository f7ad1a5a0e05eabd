"""The router of ``examples/router.py``, with a handler slowed to ~0.2 ms per payment.

Why: a batch then spends most of its time with records already on the broker but not yet
committed, so a SIGKILL lands inside an open transaction (the fault test checks that a
read_uncommitted reader sees the aborted copies). Run by tests/faults/test_exactly_once.py.
"""

import logging
import sys
import time
from decimal import Decimal

import paykafka


def main() -> None:
    """``_router.py GROUP REVIEW_TOPIC CLEARED_TOPIC``."""
    group, review, cleared = sys.argv[1:4]
    # INFO: a failing fault test prints the tail of this log, which then says where it stood.
    logging.basicConfig(
        format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO
    )

    def route(event: paykafka.PaymentEvent) -> paykafka.Output:
        time.sleep(0.0002)
        return paykafka.Output(review if event.amount > Decimal(1000) else cleared, event)

    settings = paykafka.Settings.from_env(group_id=group)
    with paykafka.PaymentProcessor(settings, output_topics=[review, cleared]) as router:
        router.run(route)


if __name__ == "__main__":
    try:
        main()
    except paykafka.PayKafkaError as exc:
        raise SystemExit(f"router stopped: {exc}") from None
