"""A concurrent async tracker in its own process, for the crash test: each handled payment id is
appended to the file named by argv[1] once its handler returned (before it is acknowledged)."""

from __future__ import annotations

import asyncio
import random
import sys
from pathlib import Path

from paykafka import PaymentEvent, Settings
from paykafka.aio import AsyncPaymentTracker


async def main(out: Path, until_end: bool) -> None:
    rng = random.Random()
    with out.open("a", buffering=1) as sink:

        async def handler(event: PaymentEvent) -> None:
            await asyncio.sleep(rng.random() * 0.003)
            sink.write(f"{event.payment_id}\n")

        settings = Settings.from_env(commit_interval=0.2)
        async with AsyncPaymentTracker(settings, concurrency=32) as tracker:
            await tracker.run(handler, stop_at_end=until_end, idle_timeout=60)


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), "--until-end" in sys.argv))
