"""Valid sample events for the tests that send payments through the real stack."""

from __future__ import annotations

from decimal import Decimal

from paykafka import PaymentEvent


def make_events(n: int, *, prefix: str = "user", users: int = 50) -> list[PaymentEvent]:
    """``n`` valid events spread over ``users`` keys (so over every partition)."""
    return [
        PaymentEvent(
            user=f"{prefix}-{i % users}",
            amount=Decimal(f"{(i % 9000) + 1}.{i % 100:02d}"),
            currency="PLN",
            method="blik" if i % 2 else "credit_card",
        )
        for i in range(n)
    ]
