"""What every benchmark shares: the events, alternating timing, and the result rows."""

from __future__ import annotations

import gc
import random
import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import attrs

from paykafka import PaymentEvent, PaymentMethod

_CURRENCIES = ("PLN", "EUR", "USD", "GBP", "JPY", "KWD")
_PLACES = {"JPY": 0, "KWD": 3}


def make_event(rng: random.Random, i: int, *, now: datetime | None = None) -> PaymentEvent:
    """A realistic payment: varied users, amounts, currencies and methods; some with a note."""
    currency = _CURRENCIES[i % len(_CURRENCIES)]
    places = _PLACES.get(currency, 2)
    units = rng.randint(1, 5_000_000)
    return PaymentEvent(
        payment_id=uuid.UUID(int=rng.getrandbits(128), version=4),
        user=f"user-{rng.randint(1, 5000)}",
        amount=Decimal(units).scaleb(-places),
        currency=currency,
        method=list(PaymentMethod)[i % len(PaymentMethod)],
        timestamp=(now or datetime.now(UTC)) - timedelta(microseconds=rng.randint(0, 10**9)),
        note=f"invoice 2026/11/{i}" if i % 10 == 0 else None,
    )


def make_events(n: int, seed: int = 7) -> list[PaymentEvent]:
    """``n`` events, the same for every run with the same seed."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    return [make_event(rng, i, now=now) for i in range(n)]


def stream_events(n: int, seed: int = 7) -> Iterator[PaymentEvent]:
    """The same events made one at a time, so a long run holds none of them."""
    rng = random.Random(seed)
    for i in range(n):
        yield make_event(rng, i)


def alternate(cases: Mapping[str, Callable[[], object]], rounds: int) -> dict[str, list[float]]:
    """Seconds per run of each case, running the cases in turn, reversing the order each round.

    Alternating is what makes two measurements comparable on a machine others are loading.
    """
    names = list(cases)
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(rounds):
        for name in names if r % 2 == 0 else reversed(names):
            gc.collect()
            start = time.perf_counter()
            cases[name]()
            times[name].append(time.perf_counter() - start)
    return times


@attrs.frozen
class Row:
    """One line of the table: the same measure for the stock path and for paykafka."""

    group: str
    name: str
    unit: str
    stock: float | None
    paykafka: float
    #: paykafka over stock for rates, stock over paykafka for costs: above 1 is better.
    ratio: float | None = None
    target: str | None = None
    met: bool | None = None
    detail: Mapping[str, Any] = attrs.field(factory=dict)

    def as_json(self) -> dict[str, Any]:
        """The row as plain JSON data."""
        return attrs.asdict(self)


def rate_row(
    group: str,
    name: str,
    n: int,
    stock: list[float],
    ours: list[float],
    *,
    target: float | None = None,
) -> Row:
    """Events per second from best-of-N timings, with the median ratio kept for reference."""
    best_stock, best_ours = n / min(stock), n / min(ours)
    ratio = best_ours / best_stock
    median_ratio = statistics.median(stock) / statistics.median(ours)
    return Row(
        group=group,
        name=name,
        unit="events/s",
        stock=round(best_stock),
        paykafka=round(best_ours),
        ratio=round(ratio, 2),
        target=None if target is None else f">= {target}x",
        met=None if target is None else ratio >= target,
        detail={
            "n": n,
            "runs": len(ours),
            "median_ratio": round(median_ratio, 2),
            "stock_seconds": [round(t, 4) for t in stock],
            "paykafka_seconds": [round(t, 4) for t in ours],
        },
    )


def render(rows: list[Row]) -> str:
    """The rows as a markdown table."""
    lines = [
        "| benchmark | unit | stock confluent-kafka | paykafka | ratio | target | met |",
        "| --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for row in rows:
        stock = "-" if row.stock is None else _number(row.stock)
        ratio = "-" if row.ratio is None else f"{row.ratio:.2f}x"
        met = "-" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(
            f"| {row.group}: {row.name} | {row.unit} | {stock} | {_number(row.paykafka)} | "
            f"{ratio} | {row.target or '-'} | {met} |"
        )
    return "\n".join(lines)


def _number(value: float) -> str:
    if value >= 1000:
        return f"{value:,.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"
