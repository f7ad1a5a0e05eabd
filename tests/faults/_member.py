"""One tracker of a consumer group, as its own process, for the rebalance fault tests.

``python -m tests.faults._member OUT STRATEGY`` with the settings in ``PAYKAFKA_*`` variables:
runs ``PaymentTracker.run`` (SIGTERM stops it cleanly) and appends each handled payment id to
``OUT``, one line per handling, written before the handler returns, so a SIGKILL loses no
line of an event that was handled.
"""

from __future__ import annotations

import logging
import os
import sys

from paykafka import PaymentEvent, PaymentTracker, Settings


def main() -> None:
    out, strategy = sys.argv[1], sys.argv[2]
    logging.basicConfig(level=logging.WARNING)
    fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def handle(event: PaymentEvent) -> None:
        os.write(fd, f"{event.payment_id}\n".encode())

    overrides = {
        # A SIGKILLed member is noticed in seconds, not the default 45.
        "session.timeout.ms": 6000,
        "heartbeat.interval.ms": 1000,
        "partition.assignment.strategy": strategy,
    }
    with PaymentTracker(Settings.from_env(), kafka_options=overrides) as tracker:
        tracker.run(handle)
    os.close(fd)


if __name__ == "__main__":
    main()
